"""The box form of a prediction (issue 17): each instance as its box and the crops inside it.

Why: ``inference.Prediction`` holds one full-size [H,W] array per instance, so a plate scan
(4096x4096, ~600 worms) needs ~40 GB for its probabilities alone.  ``BoxPrediction`` holds
each instance as (top-left, probability crop); the binarised mask is ``crop >= binarize``.
Memory grows with the worms' area, not with instances x image area.  It offers what the
outputs need from a ``Prediction`` (labels, entropy, peaks, review list, draw counts); the
review list (``box_review``) and the worm table (``box_measure``) are computed on crops and
equal the dense path's on an ordinary well.

No torch here: the napari reader builds it from a file (``box_file``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .masks import grown_window
from .peaks import PATCH, Peak
from .uncertainty_metrics import peak_patches

# the box form is used when the dense per-instance probabilities ([N,H,W] float32) would need
# more than this (or more than the memory available); below it the outputs are the dense ones
DENSE_LIMIT_BYTES = 1 << 30


@dataclass
class Crop:
    """One instance: its probabilities inside its box, whose top-left pixel is (y, x) in the image."""

    y: int
    x: int
    probabilities: np.ndarray  # [h,w] float32; zero outside the box

    @property
    def box(self) -> tuple[slice, slice]:
        h, w = self.probabilities.shape
        return slice(self.y, self.y + h), slice(self.x, self.x + w)

    def window(self, pad: int, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
        """The box grown by ``pad`` px (clipped to the image ``shape``) and the crop pasted into it:
        exactly the dense [H,W] array's content there, so local computations give the dense values."""
        h, w = self.probabilities.shape
        y0, x0 = max(self.y - pad, 0), max(self.x - pad, 0)
        y1, x1 = min(self.y + h + pad, shape[0]), min(self.x + w + pad, shape[1])
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        out[self.y - y0: self.y - y0 + h, self.x - x0: self.x - x0 + w] = self.probabilities
        return (slice(y0, y1), slice(x0, x1)), out

    def touches_border(self, mask: np.ndarray, shape: tuple[int, int]) -> bool:
        """Whether ``mask`` (this crop's shape) reaches the image's edge."""
        h, w = mask.shape
        return bool((self.y == 0 and mask[0].any()) or (self.y + h == shape[0] and mask[-1].any())
                    or (self.x == 0 and mask[:, 0].any()) or (self.x + w == shape[1] and mask[:, -1].any()))


def crop_of(prob: np.ndarray) -> Crop:
    """A dense [H,W] probability map as a ``Crop`` of its nonzero pixels (an empty one at (0, 0))."""
    rows, cols = np.flatnonzero(prob.any(1)), np.flatnonzero(prob.any(0))
    if rows.size == 0:
        return Crop(0, 0, np.zeros((0, 0), np.float32))
    return Crop(int(rows[0]), int(cols[0]),
                np.ascontiguousarray(prob[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], dtype=np.float32))


@dataclass
class BoxPrediction:
    """A prediction with per-instance arrays as boxes: what ``outputs.write_prediction`` writes."""

    crops: list[Crop]
    entropy: np.ndarray  # [H,W] float32, max over instances of the Bernoulli entropy
    peaks: list[Peak]
    binarize: float
    bf16: bool = False
    device: str = "cpu"
    counts: list[int] = field(default_factory=list)  # instances per MC draw
    tiles: int = 0
    truncated: int = 0
    _items: list | None = field(default=None, repr=False, compare=False)
    _count_inputs: dict | None = field(default=None, init=False, repr=False, compare=False)  # cached (not copied)

    @classmethod
    def from_dense(cls, pred) -> BoxPrediction:
        """A dense ``Prediction`` in box form (the same instances, entropy and peaks)."""
        return cls([crop_of(p) for p in pred.probabilities], pred.entropy, list(pred.peaks), float(pred.binarize),
                   pred.bf16, pred.device, list(pred.draw_counts), int(getattr(pred, "tiles", 0)))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.entropy.shape)  # type: ignore[return-value]

    @property
    def draw_counts(self) -> list[int]:
        return list(self.counts)

    def mask(self, k: int) -> np.ndarray:
        """Instance ``k``'s binarised mask inside its box."""
        return self.crops[k].probabilities >= self.binarize

    def nonempty(self) -> np.ndarray:
        """[N] bool: instances with a binarised pixel (``masks.nonempty`` of the dense form)."""
        return np.array([bool(self.mask(k).any()) for k in range(len(self.crops))], bool)

    @property
    def n_instances(self) -> int:
        return int(self.nonempty().sum())

    def labels(self) -> np.ndarray:
        """Label image (0 = background, instance i -> i + 1; the later one wins where they overlap)."""
        lab = np.zeros(self.shape, np.int32)
        for k, c in enumerate(self.crops):
            lab[c.box][self.mask(k)] = k + 1
        return lab

    def dense_bytes(self) -> int:
        """Bytes of the dense form's float32 probabilities [N,H,W]."""
        return len(self.crops) * self.shape[0] * self.shape[1] * 4

    def to_dense(self) -> np.ndarray:
        """The dense [N,H,W] float32 probabilities (callers check ``dense_bytes`` first)."""
        out = np.zeros((len(self.crops), *self.shape), np.float32)
        for k, c in enumerate(self.crops):
            out[k][c.box] = c.probabilities
        return out

    def review_items(self, show_all: bool = False) -> list:
        """The review list on crops (``box_review``): the dense path's items."""
        from .box_review import review_items_boxes
        from .review import ReviewConfig

        if self._items is None:
            self._items = review_items_boxes(self.crops, self.shape, self.binarize, show_all=True,
                                             counted=self.count_inputs())
        return list(self._items) if show_all else [it for it in self._items if it.score >= ReviewConfig().min_score]

    def count_inputs(self) -> dict:
        """``counts.count_inputs`` on crops (``box_measure.box_count_inputs``), computed once."""
        from .box_measure import box_count_inputs

        if self._count_inputs is None:
            self._count_inputs = box_count_inputs(self)
        return self._count_inputs


def wants_boxes(n: int, shape: tuple[int, int], available: int | None = None) -> bool:
    """Whether ``n`` instances of an image of ``shape`` are written in box form: their dense
    probabilities would need more than ``DENSE_LIMIT_BYTES`` or more than the memory available
    (the dense outputs need about 3x their probabilities while written)."""
    need = n * int(shape[0]) * int(shape[1]) * 4
    if available is None:
        from .tiling import available_bytes  # (the compute path: torch is loaded there anyway)

        available = available_bytes()
    return need > DENSE_LIMIT_BYTES or 3 * need > available


def bounds(instances: list) -> np.ndarray:
    """[N,4] int: each box's (y0, x0, y1, x1), end exclusive, of instances in boxes (``Crop`` or
    ``tiling.Instance``); [0,4] for none."""
    return np.array([[i.y, i.x, i.y + i.probabilities.shape[0], i.x + i.probabilities.shape[1]] for i in instances],
                    dtype=np.int64).reshape(-1, 4)


def paste_max(shape: tuple[int, int], parts: list, value: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """[H,W] float32: each pixel's max over ``parts`` (crops or stitched instances: a ``box`` and
    its ``probabilities``) of ``value(probabilities)``, by default the probabilities themselves.
    With ``uncertainty_metrics.bernoulli_entropy`` it is the entropy map of the box form."""
    out = np.zeros(shape, np.float32)
    for part in parts:
        v = part.probabilities if value is None else value(part.probabilities)
        region = out[part.box]
        np.maximum(region, np.asarray(v, np.float32), out=region)
    return out


def sparse_peaks(entropy: np.ndarray, instances: list) -> list[Peak]:
    """``peaks.uncertainty_peaks`` on instances in boxes (``Crop`` or ``tiling.Instance``): the same
    peaks and touched instances."""
    if not instances:
        return [Peak(s, y, x, []) for s, y, x in peak_patches(entropy, None, PATCH)]
    boxes = bounds(instances)
    out = []
    for score, y, x in peak_patches(entropy, None, PATCH):
        wy, wx = grown_window(y, x, PATCH, entropy.shape)
        near = np.flatnonzero((boxes[:, 0] < wy.stop) & (boxes[:, 2] > wy.start)
                              & (boxes[:, 1] < wx.stop) & (boxes[:, 3] > wx.start))
        touched = []
        for k in near:
            i = instances[k]
            sub = i.probabilities[max(wy.start - i.y, 0): wy.stop - i.y, max(wx.start - i.x, 0): wx.stop - i.x]
            if (sub > 0).any():
                touched.append(int(k))
        out.append(Peak(score, y, x, touched))
    return out
