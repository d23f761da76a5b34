"""Uncertainty peaks and small instance-stack helpers, without torch.

Why a module of its own: the session, its file format, the review queue and the napari
reader need ``Peak``, ``PATCH`` and ``uncertainty_peaks``, and must not import
``inference`` (which imports torch) to get them; ``inference`` imports them from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .masks import grown_window
from .uncertainty_metrics import peak_patches

PATCH = 4  # side of the paper's uncertainty patches (section 3.1)


@dataclass
class Peak:
    score: float  # mean entropy of the 4x4 patch
    y: int  # top-left pixel of the patch
    x: int
    instances: list[int] = field(default_factory=list)  # indices into the probability stack


def uncertainty_peaks(entropy: np.ndarray, probabilities: np.ndarray, k: int | None = None,
                      size: int = PATCH) -> list[Peak]:
    """Ranked 4x4 patches that are local maxima of patch entropy (3x3 patch window).

    Each peak lists the instances within or touching the patch (probability > 0 in the
    patch grown by one pixel), i.e. those a proofreader would correct there.
    """
    peaks = []
    for score, y, x in peak_patches(entropy, k, size):
        wy, wx = grown_window(y, x, size, entropy.shape)
        touched = [int(n) for n in np.flatnonzero((probabilities[:, wy, wx] > 0).any((1, 2)))]
        peaks.append(Peak(score, y, x, touched))
    return peaks


def mean_peak_entropy(entropy: np.ndarray, peaks: list[Peak]) -> float:
    """Mean entropy over the 4x4 patches of ``peaks`` (NaN for none): before/after fine-tuning."""
    if not peaks:
        return float("nan")
    return float(np.mean([entropy[p.y: p.y + PATCH, p.x: p.x + PATCH].mean() for p in peaks]))
