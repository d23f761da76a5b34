"""``scale.prediction_to_shape`` for the box form: a large image segmented at another scale,
its instances mapped back to the user's pixels crop by crop.

Each crop is resampled as ``skimage.transform.resize`` (order 1, no anti-aliasing) resamples the
whole [H,W] map: the same output-to-input pixel mapping (pixel centres, ``grid_mode``) and the
same mirrored edge, evaluated only on the output pixels the crop (plus a zero margin) reaches.
Probabilities and masks are then reconciled at the binarisation cut as the dense path does.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .boxes import BoxPrediction, Crop, paste_max, sparse_peaks
from .uncertainty_metrics import bernoulli_entropy

PAD = 2  # zero margin around a crop: linear interpolation reaches one input pixel


def _axis(start: int, stop: int, n_in: int, n_out: int) -> tuple[int, np.ndarray]:
    """First output pixel and the input coordinates (relative to ``start``) of the output pixels
    whose linear interpolation stays inside the input window [start, stop)."""
    s = n_in / n_out
    o0 = 0 if start == 0 else max(math.ceil((start + 0.5) / s - 0.5), 0)
    o1 = n_out if stop == n_in else min(math.floor((stop - 1 + 0.5) / s - 0.5) + 1, n_out)
    return o0, (np.arange(o0, max(o1, o0)) + 0.5) * s - 0.5 - start


def _resampled(win: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return ndimage.map_coordinates(win, [yy, xx], order=1, mode="mirror")


def boxes_to_shape(pred: BoxPrediction, shape: tuple[int, int]) -> BoxPrediction:
    """``pred`` (computed on a resampled image) in an image of ``shape``; entropy and peaks recomputed."""
    shape = (int(shape[0]), int(shape[1]))
    cut = float(pred.binarize)
    crops = []
    for c in pred.crops:
        if c.probabilities.size == 0:
            crops.append(Crop(0, 0, np.zeros((0, 0), np.float32)))
            continue
        (wy, wx), win = c.window(PAD, pred.shape)
        oy, ys = _axis(wy.start, wy.stop, pred.shape[0], shape[0])
        ox, xs = _axis(wx.start, wx.stop, pred.shape[1], shape[1])
        p = np.clip(_resampled(win, ys, xs), 0, 1).astype(np.float32)
        inst = _resampled((win >= cut).astype(np.float32), ys, xs) > 0.5
        # a margin of 1e-3 survives the float16 the outputs store probabilities in (as prediction_to_shape)
        p[inst & (p < cut)] = min(1.0, cut + 1e-3)
        p[~inst & (p >= cut)] = max(0.0, cut - 1e-3)
        rows, cols = np.flatnonzero(p.any(1)), np.flatnonzero(p.any(0))
        if rows.size == 0:
            crops.append(Crop(0, 0, np.zeros((0, 0), np.float32)))
            continue
        p = np.ascontiguousarray(p[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        crops.append(Crop(oy + int(rows[0]), ox + int(cols[0]), p))
    ent = paste_max(shape, crops, bernoulli_entropy)
    return BoxPrediction(crops, ent, sparse_peaks(ent, crops), cut, pred.bf16, pred.device, list(pred.counts),
                         pred.tiles, pred.truncated)
