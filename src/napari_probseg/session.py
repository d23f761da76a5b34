"""The proofreading session: what a proofreader has corrected, as a headless data model.

A session binds one image (a reference plus an embedded copy, so it reopens alone)
to the model's per-instance probabilities, the entropy map, the ranked uncertainty
peaks (section 3.1 of the paper), the review items (``review``: suspected errors,
the default list), the corrected label image and a reviewed flag per peak and per item.

Around it, one concern per module, none importing torch or ``inference``:
``session_file`` (the ``.npz`` format: save, load, predict's probabilities files),
``autosave`` (where and when a session is saved without asking), ``edits`` (merge,
split, erase, replace, add a model instance, a review item's fix: pure functions),
``targets`` (training targets from a corrected session).  ``save``/``load`` here only delegate to ``session_file``.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .masks import grown_window, labels_from_instances
from .peaks import PATCH, Peak
from .review import ReviewConfig, ReviewItem, review_items


class SessionError(ValueError):
    """A session file or an edit that cannot be used; the message says why."""


@dataclass(frozen=True)
class WormInfo:
    """What the dock shows about the selected worm."""

    label: int
    area: int  # pixels
    instance: int | None  # 0-based model instance covering it best (None: no probabilities)
    mean_probability: float

    def text(self) -> str:
        inst = f" (model instance {self.instance + 1})" if self.instance is not None else ""
        return f"worm {self.label}: {self.area} px, mean probability {self.mean_probability:.2f}{inst}"


@dataclass
class Session:
    image_name: str
    probabilities: np.ndarray  # [N,H,W] float32
    entropy: np.ndarray  # [H,W] float32
    labels: np.ndarray  # [H,W] int32, corrected in place by the proofreader
    peaks: list[Peak]
    binarize: float = 0.75  # probability at which an instance's mask is cut (predict's binarisation)
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
            self.items = review_items(self.probabilities, self.binarize, show_all=True)
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
    def from_prediction(cls, pred, image_name: str, image: np.ndarray | None = None, **kw) -> Session:
        """A fresh session from ``inference.predict``: labels start as the binarised instances."""
        cut = pred.binarize
        return cls(image_name, pred.probabilities, pred.entropy, labels_from_instances(pred.instances), list(pred.peaks),
                   binarize=float(cut), image=image, items=pred.review_items(show_all=True), **kw)

    @property
    def threshold(self) -> float:
        """Old name of ``binarize`` (kept for callers written before the rename)."""
        return self.binarize

    @property
    def image_fingerprint(self) -> str:
        return fingerprint(self.image) if self.image is not None else ""

    # ---- persistence (the format lives in session_file) -----------------------------
    def save(self, path: str | Path) -> Path:
        """Write the whole session as one .npz, atomically (see ``session_file.save``)."""
        from .session_file import save

        return save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Session:
        """Read a session file; any problem becomes a SessionError naming the file."""
        from .session_file import load

        return load(path)

    @classmethod
    def from_probabilities_file(cls, path: str | Path) -> Session:
        """A session from ``probseg predict``'s ``<stem>_probabilities.npz`` (+ ``_peaks.csv``)."""
        from .session_file import from_probabilities_file

        return from_probabilities_file(path)

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
        return _ids_then_instances(lab, lab[grown_window(pk.y, pk.x, PATCH, lab.shape)], pk.instances)

    def default_items(self) -> list[int]:
        """Indices (into ``items``) of the default review list: items at or above the calibrated score."""
        return self.items_scoring(ReviewConfig().min_score)

    def items_scoring(self, min_score: float) -> list[int]:
        """Indices (into ``items``, best first) of the items scoring at least ``min_score``: a prefix."""
        return [i for i, it in enumerate(self.items) if it.score >= min_score]

    def item_labels(self, index: int, labels: np.ndarray | None = None) -> list[int]:
        """Label ids of a review item: its instances that are in the label image, in its order.

        Why not the worms around its point (as for patches): at a missed worm the nearest
        labelled worm is a good neighbour, and offering it invited erasing the wrong worm.
        A missed worm (never binarised) has no id yet: the list is empty, the fix adds it.
        """
        lab = self.labels if labels is None else labels
        present = set(np.unique(lab).tolist())
        return [i + 1 for i in self.items[index].instances if i + 1 in present]

    def instance_at(self, y: int, x: int, min_p: float = 0.1) -> int | None:
        """The model's instance most probable at pixel (y, x) (0-based), None under ``min_p``:
        what a click on a spot the labels leave empty points at."""
        if not len(self.probabilities):
            return None
        h, w = self.labels.shape
        if not (0 <= y < h and 0 <= x < w):
            return None
        col = self.probabilities[:, y, x]
        i = int(np.argmax(col))
        return i if col[i] >= min_p else None

    def worm_info(self, label: int, labels: np.ndarray | None = None) -> WormInfo | None:
        """Area and mean probability of a worm of the label image (None when it is not there).

        The probability is that of the model instance matching the worm best (IoU with the
        instance cut at ``binarize``, or at half its peak when it never reaches it, as the fixes
        cut it), averaged over the worm: a worm the model saw in every draw reads ~1, a worm
        added from an instance seen in 3 of 8 draws ~0.38, two worms merged by hand ~0.5.
        """
        lab = self.labels if labels is None else labels
        mask = lab == label
        if label <= 0 or not mask.any():
            return None
        if not len(self.probabilities):
            return WormInfo(int(label), int(mask.sum()), None, float("nan"))
        p = self.probabilities
        level = np.minimum(self.binarize, 0.5 * p.reshape(len(p), -1).max(1))
        cut = p >= np.maximum(level, 1e-6)[:, None, None]
        inter = cut[:, mask].sum(1)
        iou = inter / (cut.reshape(len(p), -1).sum(1) + mask.sum() - inter)
        best = int(np.argmax(iou))
        return WormInfo(int(label), int(mask.sum()), best, float(p[best][mask].mean()))

    def record(self, action: str, peak: int | None, **details) -> None:
        self.history.append({"time": time.time(), "action": action, "peak": peak, **details})


def _ids_then_instances(labels: np.ndarray, window: np.ndarray, instances: list[int]) -> list[int]:
    """Label ids in ``window``, then the 1-based ids of ``instances`` still in ``labels``."""
    ids = [int(v) for v in np.unique(window) if v]
    present = set(np.unique(labels).tolist())
    return ids + [i + 1 for i in instances if i + 1 in present and i + 1 not in ids]


def fingerprint(image: np.ndarray) -> str:
    """Short hash of an image's shape, dtype and pixels: is the open image the session's?"""
    a = np.ascontiguousarray(image)
    return hashlib.sha1(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()[:16]
