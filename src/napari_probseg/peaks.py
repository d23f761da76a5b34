"""Uncertainty peaks and small instance-stack helpers, without torch.

Why a module of its own: the session, its file format, the review queue and the napari
reader need ``Peak``, ``PATCH`` and the grown patch window, and must not import
``inference`` (which imports torch) to get them.  ``inference`` is meant to import these
from here (one copy of each).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .uncertainty_metrics import peak_patches

PATCH = 4  # side of the paper's uncertainty patches (section 3.1)


@dataclass
class Peak:
    score: float  # mean entropy of the 4x4 patch
    y: int  # top-left pixel of the patch
    x: int
    instances: list[int] = field(default_factory=list)  # indices into the probability stack


def grown_window(y: int, x: int, shape: tuple[int, ...], size: int = PATCH, grow: int = 1) -> tuple[slice, slice]:
    """Slices of the ``size`` x ``size`` patch at (y, x) grown by ``grow`` pixels, clipped to ``shape``.

    Why grown: an instance that only touches the patch border is one a proofreader
    corrects there too.
    """
    h, w = shape[-2:]
    return slice(max(y - grow, 0), min(y + size + grow, h)), slice(max(x - grow, 0), min(x + size + grow, w))


def uncertainty_peaks(entropy: np.ndarray, probabilities: np.ndarray, k: int | None = None,
                      size: int = PATCH) -> list[Peak]:
    """Ranked 4x4 patches that are local maxima of patch entropy (3x3 patch window).

    Each peak lists the instances within or touching the patch (probability > 0 in the
    patch grown by one pixel), i.e. those a proofreader would correct there.
    """
    peaks = []
    for score, y, x in peak_patches(entropy, k, size):
        wy, wx = grown_window(y, x, entropy.shape, size)
        touched = [int(n) for n in np.flatnonzero((probabilities[:, wy, wx] > 0).any((1, 2)))]
        peaks.append(Peak(score, y, x, touched))
    return peaks


def label_image(instances: np.ndarray) -> np.ndarray:
    """A label image (0 = background) from an [N,H,W] bool stack; where instances overlap
    the later one wins (napari's Labels layer holds one id per pixel)."""
    inst = np.asarray(instances, bool)
    lab = np.zeros(inst.shape[1:], dtype=np.int32)
    for i, m in enumerate(inst):
        lab[m] = i + 1
    return lab


def mean_peak_entropy(entropy: np.ndarray, peaks: list[Peak]) -> float:
    """Mean entropy over the 4x4 patches of ``peaks`` (NaN for none): before/after fine-tuning."""
    if not peaks:
        return float("nan")
    return float(np.mean([entropy[p.y: p.y + PATCH, p.x: p.x + PATCH].mean() for p in peaks]))
