"""The proofreading session: what a proofreader has corrected, headless and saveable.

A session binds one image (a reference plus an embedded copy, so it reopens alone)
to the model's per-instance probabilities, the entropy map, the ranked uncertainty
peaks (section 3.1 of the paper), the review items (``review``: suspected errors,
the default list), the corrected label image and a reviewed flag per peak and per item.  It is stored as one ``.npz`` read with ``allow_pickle=False`` and written
atomically, so a crash during a save never destroys the previous file.

The label edits (merge, split, erase, replace) are computed here as ``Edit`` pixel
lists; the napari dock applies them with ``Labels.data_setitem`` so they are undoable.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import re
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .inference import PATCH, Peak, uncertainty_peaks
from .review import ReviewConfig, ReviewItem, items_from_arrays, items_to_arrays, review_items
from .safe_npz import SafeNpz

FORMAT = "napari-probseg-session/1"
SUFFIX = ".probseg.npz"
AUTOSAVE_ENV = "NAPARI_PROBSEG_AUTOSAVE_DIR"


class SessionError(ValueError):
    """A session file or an edit that cannot be used; the message says why."""


@dataclass
class Edit:
    """Pixels to set (``labels[indices] = values``) for one undoable correction."""

    indices: tuple[np.ndarray, np.ndarray]
    values: np.ndarray
    description: str

    def apply(self, labels: np.ndarray) -> None:
        labels[self.indices] = self.values


@dataclass
class Session:
    image_name: str
    probabilities: np.ndarray  # [N,H,W] float32
    entropy: np.ndarray  # [H,W] float32
    labels: np.ndarray  # [H,W] int32, corrected in place by the proofreader
    peaks: list[Peak]
    threshold: float = 0.75
    reviewed: np.ndarray = None  # type: ignore[assignment]  # [K] bool, one per peak
    image: np.ndarray | None = None  # raw [C,H,W] input, so the session reopens alone
    image_source: str = ""  # file path or "sample:<well>"; empty when unknown
    channel_names: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # provenance: model, sha256, draws, seed...
    history: list[dict] = field(default_factory=list)  # one entry per correction
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    items: list[ReviewItem] | None = None  # all review items, best first (None: computed from probabilities)
    items_reviewed: np.ndarray = None  # type: ignore[assignment]  # [I] bool, one per item

    def __post_init__(self) -> None:
        if self.reviewed is None:
            self.reviewed = np.zeros(len(self.peaks), dtype=bool)
        if self.items is None:
            self.items = review_items(self.probabilities, self.threshold, show_all=True)
        if self.items_reviewed is None:
            self.items_reviewed = np.zeros(len(self.items), dtype=bool)
        if len(self.items_reviewed) != len(self.items):
            raise SessionError(f"{len(self.items_reviewed)} reviewed flags for {len(self.items)} review items")
        if self.labels.shape != self.entropy.shape:
            raise SessionError(f"labels {self.labels.shape} and entropy {self.entropy.shape} differ in shape")
        if len(self.reviewed) != len(self.peaks):
            raise SessionError(f"{len(self.reviewed)} reviewed flags for {len(self.peaks)} peaks")

    # ---- construction -----------------------------------------------------------
    @classmethod
    def from_prediction(cls, pred, image_name: str, image: np.ndarray | None = None, **kw) -> "Session":
        """A fresh session from ``inference.predict``: labels start as the binarised instances."""
        return cls(image_name, pred.probabilities, pred.entropy, pred.labels(), list(pred.peaks),
                   threshold=float(pred.threshold), image=image, items=pred.review_items(show_all=True), **kw)

    @property
    def image_fingerprint(self) -> str:
        return fingerprint(self.image) if self.image is not None else ""

    # ---- progress -----------------------------------------------------------------
    @property
    def n_reviewed(self) -> int:
        return int(self.reviewed.sum())

    def next_unreviewed(self, start: int = 0) -> int | None:
        """First unreviewed peak at or after ``start`` (wrapping), None when all are done."""
        k = len(self.peaks)
        for i in range(k):
            j = (start + i) % k
            if not self.reviewed[j]:
                return j
        return None

    def peak_labels(self, index: int, labels: np.ndarray | None = None) -> list[int]:
        """Label ids at a peak: those in its patch (grown by one pixel) first, then the
        model's instances there that still exist - the worms a proofreader looks at."""
        lab = self.labels if labels is None else labels
        pk = self.peaks[index]
        h, w = lab.shape
        win = lab[max(pk.y - 1, 0): min(pk.y + PATCH + 1, h), max(pk.x - 1, 0): min(pk.x + PATCH + 1, w)]
        ids = [int(v) for v in np.unique(win) if v]
        present = set(np.unique(lab).tolist())
        ids += [i + 1 for i in pk.instances if i + 1 in present and i + 1 not in ids]
        return ids

    def default_items(self) -> list[int]:
        """Indices (into ``items``) of the default review list: items at or above the calibrated score."""
        return [i for i, it in enumerate(self.items) if it.score >= ReviewConfig().min_score]

    def item_labels(self, index: int, labels: np.ndarray | None = None, radius: int = 3) -> list[int]:
        """Label ids at a review item: those around its point first, then its instances that still exist."""
        lab = self.labels if labels is None else labels
        it = self.items[index]
        h, w = lab.shape
        win = lab[max(it.y - radius, 0): min(it.y + radius + 1, h), max(it.x - radius, 0): min(it.x + radius + 1, w)]
        ids = [int(v) for v in np.unique(win) if v]
        present = set(np.unique(lab).tolist())
        ids += [i + 1 for i in it.instances if i + 1 in present and i + 1 not in ids]
        return ids

    def record(self, action: str, peak: int | None, **details) -> None:
        self.history.append({"time": time.time(), "action": action, "peak": peak, **details})

    # ---- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the whole session as one .npz, atomically (temp file, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(p.instances) for p in self.peaks]).astype(np.int64)
        arrays = {
            "format": np.array(FORMAT),
            "session_id": np.array(self.session_id),
            "image_name": np.array(self.image_name),
            "image_source": np.array(self.image_source),
            "image_fingerprint": np.array(self.image_fingerprint),
            "channel_names": np.array(json.dumps(self.channel_names)),
            "probabilities": self.probabilities.astype(np.float16),
            "entropy": self.entropy.astype(np.float32),
            "labels": np.asarray(self.labels, dtype=np.int32),
            "threshold": np.float32(self.threshold),
            "peaks": np.array([[p.score, p.y, p.x] for p in self.peaks], np.float64).reshape(-1, 3),
            "peak_instances": np.array([i for p in self.peaks for i in p.instances], np.int32),
            "peak_offsets": offsets,
            "reviewed": self.reviewed.astype(bool),
            **items_to_arrays(self.items),
            "items_reviewed": self.items_reviewed.astype(bool),
            "meta": np.array(json.dumps(self.meta, default=str)),
            "history": np.array(json.dumps(self.history, default=str)),
        }
        if self.image is not None:
            arrays["image"] = np.asarray(self.image)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(tmp, "wb") as f:
                _write_npz(f, arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Session":
        """Read a session file; any problem becomes a SessionError naming the file."""
        path = Path(path)
        z = _open_npz(path)
        with z:
            try:
                if "format" not in z.files or str(z["format"]) != FORMAT:
                    raise SessionError(f"{path} is not a napari-probseg session file (format {FORMAT!r} expected)")
                p = z["peaks"].reshape(-1, 3)
                inst, off = z["peak_instances"], z["peak_offsets"]
                peaks = [Peak(float(s), int(y), int(x), inst[off[i]:off[i + 1]].tolist()) for i, (s, y, x) in enumerate(p)]
                s = cls(
                    image_name=str(z["image_name"]),
                    probabilities=z["probabilities"].astype(np.float32),
                    entropy=z["entropy"].astype(np.float32),
                    labels=z["labels"].astype(np.int32),
                    peaks=peaks,
                    threshold=float(z["threshold"]),
                    reviewed=z["reviewed"].astype(bool),
                    image=z["image"] if "image" in z.files else None,
                    image_source=str(z["image_source"]),
                    channel_names=json.loads(str(z["channel_names"])),
                    meta=json.loads(str(z["meta"])),
                    history=json.loads(str(z["history"])),
                    session_id=str(z["session_id"]),
                    items=items_from_arrays(z) if "items" in z.files else None,  # older sessions: recomputed
                    items_reviewed=z["items_reviewed"].astype(bool) if "items_reviewed" in z.files else None,
                )
            except SessionError as exc:
                if str(path) in str(exc):
                    raise
                raise SessionError(f"{path}: inconsistent session: {exc}") from exc
            except _DAMAGE as exc:
                raise SessionError(f"{path} is a damaged napari-probseg session file ({type(exc).__name__}: {exc}); "
                                   "try its autosave copy") from exc
        if s.probabilities.ndim != 3 or s.probabilities.shape[1:] != s.labels.shape or s.labels.ndim != 2:
            raise SessionError(f"{path}: probabilities {s.probabilities.shape} do not match labels {s.labels.shape}")
        return s

    @classmethod
    def from_probabilities_file(cls, path: str | Path) -> "Session":
        """A session from ``probseg predict``'s ``<stem>_probabilities.npz`` (+ ``_peaks.csv``)."""
        path = Path(path)
        z = _open_npz(path)
        with z:
            missing = {"probabilities", "instances", "entropy", "threshold"} - set(z.files)
            if missing:
                raise SessionError(f"{path} is not a probseg probabilities file (missing {sorted(missing)})")
            try:
                probs = z["probabilities"].astype(np.float32)
                inst = z["instances"].astype(bool)
                ent = z["entropy"].astype(np.float32)
                thr = float(z["threshold"])
                meta = _literal_dict(str(z["meta"])) if "meta" in z.files else {}
            except _DAMAGE as exc:
                raise SessionError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
        stem = path.name[: -len("_probabilities.npz")] if path.name.endswith("_probabilities.npz") else path.stem
        csv_path = path.with_name(f"{stem}_peaks.csv")
        peaks = read_peaks_csv(csv_path) if csv_path.exists() else uncertainty_peaks(ent, probs)
        labels = np.zeros(ent.shape, np.int32)
        for i, m in enumerate(inst):  # as Prediction.labels(): later instances win
            labels[m] = i + 1
        return cls(stem, probs, ent, labels, peaks, threshold=thr, image_source=str(path), meta=meta)


def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1: a quarter of the time for nearly the same
    size, which matters because the dock autosaves after every edit."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, a in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)


def _open_npz(path: Path) -> SafeNpz:
    if not path.is_file():
        raise SessionError(f"session file {path} does not exist")
    try:
        return SafeNpz(path)
    except _DAMAGE as exc:
        raise SessionError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}); "
                           "it may be truncated or not a napari-probseg file") from exc


# everything a damaged member can raise while it is read and decoded
# NotImplementedError: zipfile's answer to a damaged compression-method field
_DAMAGE = (KeyError, ValueError, IndexError, TypeError, zipfile.BadZipFile, OSError, EOFError, zlib.error,
           MemoryError, OverflowError, json.JSONDecodeError, NotImplementedError)


def _literal_dict(text: str) -> dict:
    """``outputs.write_prediction`` stores meta as a Python literal; parse it without eval."""
    try:
        d = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"raw": text}
    return d if isinstance(d, dict) else {"raw": text}


def read_peaks_csv(path: Path) -> list[Peak]:
    """Peaks as ``outputs.write_prediction`` wrote them (instance numbers there are 1-based)."""
    with open(path, newline="") as f:
        return [Peak(float(r["score"]), int(r["y"]), int(r["x"]), [int(i) - 1 for i in r["instances"].split()])
                for r in csv.DictReader(f)]


def file_kind(path: str | Path) -> str | None:
    """'session', 'probabilities' or None, from the .npz's member names (nothing is unpickled)."""
    p = Path(path)
    if p.suffix != ".npz" or not p.is_file():
        return None
    try:
        with zipfile.ZipFile(p) as zf:
            names = {n[:-4] for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError):
        return "session" if p.name.endswith(SUFFIX) else None  # let the reader report the damage
    if "format" in names and "labels" in names:
        return "session"
    if {"probabilities", "instances", "entropy"} <= names:
        return "probabilities"
    return None


def fingerprint(image: np.ndarray) -> str:
    a = np.ascontiguousarray(image)
    return hashlib.sha1(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()[:16]


def autosave_dir() -> Path:
    env = os.environ.get(AUTOSAVE_ENV)
    return Path(env) if env else Path.home() / ".napari-probseg" / "autosave"


def autosave_path(image_name: str, folder: str | Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_name).strip("._") or "image"
    return Path(folder or autosave_dir()) / f"{safe}{SUFFIX}"


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.probseg.npz.<pid>.partial`` files whose writer process is gone.

    Why: a save killed with ``kill -9`` leaves its temporary file; the finished file it
    would have replaced is intact, so the leftover is only clutter (and disk space).
    """
    removed = []
    for f in Path(folder).glob(f".*{SUFFIX}.*.partial"):
        pid = f.name[: -len(".partial")].rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def autosave(session: Session, folder: str | Path | None = None) -> Path:
    """Save to the autosave slot of the image; another session's autosave there is kept
    under a name with its id rather than overwritten."""
    path = autosave_path(session.image_name, folder)
    if path.parent.is_dir():
        remove_stale_partials(path.parent)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                other = str(z["session_id"])
        except Exception:
            other = "damaged"
        if other != session.session_id:
            os.replace(path, path.with_name(path.name.replace(SUFFIX, f".{other[:8]}{SUFFIX}")))
    return session.save(path)


# ---- label edits (pure functions, applied undoably by the GUI) -----------------------
def _check(labels: np.ndarray, *ids: int) -> None:
    present = set(np.unique(labels).tolist())
    for i in ids:
        if i <= 0 or i not in present:
            raise SessionError(f"instance {i} is not in the label image")


def merge(labels: np.ndarray, keep: int, other: int) -> Edit:
    """Relabel ``other`` as ``keep`` (two pieces of one worm)."""
    _check(labels, keep, other)
    if keep == other:
        raise SessionError("choose two different instances to merge")
    idx = np.nonzero(labels == other)
    return Edit(idx, np.full(len(idx[0]), keep, labels.dtype), f"merge {other} into {keep}")


def erase(labels: np.ndarray, label: int) -> Edit:
    _check(labels, label)
    idx = np.nonzero(labels == label)
    return Edit(idx, np.zeros(len(idx[0]), labels.dtype), f"erase {label}")


def replace(labels: np.ndarray, label: int, mask: np.ndarray) -> Edit:
    """Swap an instance for a painted mask (keeping its id); a new id when ``label`` is 0."""
    mask = np.asarray(mask, bool)
    if mask.shape != labels.shape or not mask.any():
        raise SessionError("paint the new instance first (the paint layer is empty or has another shape)")
    if label:
        _check(labels, label)
    new = label or int(labels.max()) + 1
    out = labels.copy()
    if label:
        out[labels == label] = 0
    out[mask] = new
    idx = np.nonzero(out != labels)
    return Edit(idx, out[idx], f"replace {label} by painted instance {new}" if label else f"add painted instance {new}")


def split(labels: np.ndarray, label: int, seeds: np.ndarray, snap: float = 5.0) -> Edit:
    """Split an instance by watershed on its distance transform from >= 2 seed points.

    Seeds ([S,2] y,x) a few pixels off the instance are snapped onto it; the region of
    the first seed keeps the id, the others get new ids.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    _check(labels, label)
    seeds = np.round(np.asarray(seeds, float).reshape(-1, 2)).astype(int)
    if len(seeds) < 2:
        raise SessionError("place at least two seed points on the instance to split it")
    mask = labels == label
    dist, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
    h, w = mask.shape
    markers = np.zeros(labels.shape, np.int32)
    for k, (y, x) in enumerate(seeds, 1):
        if not (0 <= y < h and 0 <= x < w) or dist[y, x] > snap:
            raise SessionError(f"seed point ({y}, {x}) is not on instance {label}")
        markers[iy[y, x], ix[y, x]] = k
    if len(np.unique(markers)) - 1 < 2:
        raise SessionError("the seed points fall on the same pixel; spread them over the instance")
    regions = watershed(-ndimage.distance_transform_edt(mask), markers, mask=mask)
    base = int(labels.max())
    new_ids = np.where(regions > 1, base + regions - 1, label)
    idx = np.nonzero(mask & (regions > 1))
    return Edit(idx, new_ids[idx].astype(labels.dtype), f"split {label} into {len(seeds)}")


def label_masks(labels: np.ndarray) -> np.ndarray:
    """One bool mask per label id [N,H,W]: corrected labels as training targets."""
    ids = [int(i) for i in np.unique(labels) if i]
    return np.stack([labels == i for i in ids]) if ids else np.zeros((0, *labels.shape), bool)


def mean_peak_entropy(entropy: np.ndarray, peaks: list[Peak]) -> float:
    """Mean entropy over the 4x4 patches of ``peaks`` (NaN for none): before/after fine-tuning."""
    if not peaks:
        return float("nan")
    return float(np.mean([entropy[p.y: p.y + PATCH, p.x: p.x + PATCH].mean() for p in peaks]))
