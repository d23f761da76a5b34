"""The session file format: one ``.npz`` read without unpickling, written atomically.

Why this shape: a session file is untrusted input (shared, copied, half-written), so
it is read member by member through ``SafeNpz`` with ``allow_pickle=False`` and every
problem becomes a ``SessionError`` naming the file; it is written to a temporary file,
fsynced and renamed, so a crash during a save never destroys the previous file.

Version history: the binarisation cut is stored as ``binarize``; files written before
the rename hold it as ``threshold`` and are still read.  ``probseg predict``'s
``*_probabilities.npz`` stores its metadata as JSON; older ones as a Python literal,
still parsed (without eval).
"""
from __future__ import annotations

import ast
import csv
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import box_file
from .masks import labels_from_instances
from .peaks import Peak, uncertainty_peaks
from .review import items_from_arrays, items_to_arrays
from .safe_npz import SafeNpz
from .session import Session, SessionError

FORMAT = "napari-probseg-session/1"
SUFFIX = ".probseg.npz"

# everything a damaged member can raise while it is read and decoded
# NotImplementedError: zipfile's answer to a damaged compression-method field
DAMAGE = (KeyError, ValueError, IndexError, TypeError, zipfile.BadZipFile, OSError, EOFError, zlib.error,
          MemoryError, OverflowError, json.JSONDecodeError, NotImplementedError)


def to_arrays(session: Session) -> dict[str, np.ndarray]:
    """The members of a session file (plain arrays and JSON strings only)."""
    s = session
    offsets = np.cumsum([0] + [len(p.instances) for p in s.peaks]).astype(np.int64)
    arrays = {
        "format": np.array(FORMAT),
        "session_id": np.array(s.session_id),
        "image_name": np.array(s.image_name),
        "image_source": np.array(s.image_source),
        "image_fingerprint": np.array(s.image_fingerprint),
        "channel_names": np.array(json.dumps(s.channel_names)),
        "probabilities": s.probabilities.astype(np.float16),
        "entropy": s.entropy.astype(np.float32),
        "labels": np.asarray(s.labels, dtype=np.int32),
        "binarize": np.float32(s.binarize),
        "peaks": np.array([[p.score, p.y, p.x] for p in s.peaks], np.float64).reshape(-1, 3),
        "peak_instances": np.array([i for p in s.peaks for i in p.instances], np.int32),
        "peak_offsets": offsets,
        "reviewed": s.reviewed.astype(bool),
        **items_to_arrays(s.items),
        "items_reviewed": s.items_reviewed.astype(bool),
        "meta": np.array(json.dumps(s.meta, default=str)),
        "history": np.array(json.dumps(s.history, default=str)),
    }
    if s.image is not None:
        arrays["image"] = np.asarray(s.image)
    return arrays


def save(session: Session, path: str | Path) -> Path:
    """Write the whole session as one .npz, atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = to_arrays(session)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_npz(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1: a quarter of the time for nearly the same
    size, which matters because the dock autosaves after every edit."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, a in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)


def load(path: str | Path) -> Session:
    """Read a session file; any problem becomes a SessionError naming the file."""
    path = Path(path)
    with open_npz(path) as z:
        try:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise SessionError(f"{path} is not a napari-probseg session file (format {FORMAT!r} expected)")
            s = _from_members(z)
        except SessionError as exc:
            if str(path) in str(exc):
                raise
            raise SessionError(f"{path}: inconsistent session: {exc}") from exc
        except DAMAGE as exc:
            raise SessionError(f"{path} is a damaged napari-probseg session file ({type(exc).__name__}: {exc}); "
                               "try its autosave copy") from exc
    if s.probabilities.ndim != 3 or s.probabilities.shape[1:] != s.labels.shape or s.labels.ndim != 2:
        raise SessionError(f"{path}: probabilities {s.probabilities.shape} do not match labels {s.labels.shape}")
    n = len(s.probabilities)
    bad = [i for it in s.items for i in it.instances + it.nearby if not 0 <= i < n] if n else []
    if bad:  # a fix would index a worm that is not there
        raise SessionError(f"{path}: a review item names the model's worm {bad[0] + 1}, but the session holds {n}")
    return s


def _from_members(z: SafeNpz) -> Session:
    p = z["peaks"].reshape(-1, 3)
    inst, off = z["peak_instances"], z["peak_offsets"]
    peaks = [Peak(float(s), int(y), int(x), inst[off[i]:off[i + 1]].tolist()) for i, (s, y, x) in enumerate(p)]
    return Session(
        image_name=str(z["image_name"]),
        probabilities=z["probabilities"].astype(np.float32),
        entropy=z["entropy"].astype(np.float32),
        labels=z["labels"].astype(np.int32),
        peaks=peaks,
        binarize=float(z["binarize"] if "binarize" in z.files else z["threshold"]),  # older files: threshold
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


def from_probabilities_file(path: str | Path) -> Session:
    """A session from ``probseg predict``'s ``<stem>_probabilities.npz`` (+ ``_peaks.csv``)."""
    path = Path(path)
    if box_file.is_box_file(path):  # layout 2 (a large image's instances as boxes): made dense here
        return _from_box_file(path)
    with open_npz(path) as z:
        cut_key = "binarize" if "binarize" in z.files else "threshold"
        missing = {"probabilities", "instances", "entropy", cut_key} - set(z.files)
        if missing:
            raise SessionError(f"{path} is not a probseg probabilities file (missing {sorted(missing)})")
        try:
            probs = z["probabilities"].astype(np.float32)
            inst = z["instances"].astype(bool)
            ent = z["entropy"].astype(np.float32)
            cut = float(z[cut_key])
            meta = parse_meta(str(z["meta"])) if "meta" in z.files else {}
        except DAMAGE as exc:
            raise SessionError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    return _session_from_arrays(path, probs, inst, ent, cut, meta)


def _from_box_file(path: Path) -> Session:
    """A session from a box-layout probabilities file, if its dense arrays stay under the limit."""
    pred, inst, meta = box_file.load(path)
    if box_file.too_large_for_session(pred):
        raise SessionError(f"{path} holds {len(pred.crops)} instances of a {pred.shape[0]}x{pred.shape[1]} image: as "
                           f"a proofreading session they need {pred.dense_bytes() / 2**30:.1f} GiB; open a crop "
                           "of the image instead (napari shows this file's labels and uncertainty without a session)")
    probs, masks = box_file.dense_arrays(pred, inst)
    return _session_from_arrays(path, probs, masks, pred.entropy, pred.binarize, meta)


def _session_from_arrays(path: Path, probs, inst, ent, cut: float, meta: dict) -> Session:
    stem = path.name[: -len("_probabilities.npz")] if path.name.endswith("_probabilities.npz") else path.stem
    csv_path = path.with_name(f"{stem}_peaks.csv")
    peaks = read_peaks_csv(csv_path) if csv_path.exists() else uncertainty_peaks(ent, probs)
    return Session(stem, probs, ent, labels_from_instances(inst), peaks, binarize=cut, image_source=str(path), meta=meta)


def open_npz(path: Path) -> SafeNpz:
    """A ``SafeNpz`` of ``path``, or a SessionError saying why it cannot be one."""
    if not path.is_file():
        raise SessionError(f"session file {path} does not exist")
    try:
        return SafeNpz(path)
    except DAMAGE as exc:
        raise SessionError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}); "
                           "it may be truncated or not a napari-probseg file") from exc


def parse_meta(text: str) -> dict:
    """Metadata of a probabilities file: JSON, or (files from before JSON) a Python literal
    parsed without eval; anything else is kept as ``{"raw": text}``."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        try:
            d = ast.literal_eval(text)  # old files only
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
    if {"probabilities", "instances", "entropy"} <= names or box_file.is_box_layout(names):
        return "probabilities"
    return None
