"""The worm table and the count inputs of a prediction in box form, computed on crops.

Each value is computed on the instance's box grown by ``PAD`` px and clipped to the image:
there the crop equals the dense [H,W] array, and the measures (skeleton, width, end
branches...) look no further than one pixel around a mask, so the numbers equal the dense
path's (``measurements.measure_prediction``, ``counts.count_inputs``).  Only the overlaps
between instances and the image edge need the other boxes and the image's shape.
"""
from __future__ import annotations

import numpy as np

from .boxes import BoxPrediction, bounds
from .measurements import UNCERTAIN, _probability_columns, columns, shape_measures

PAD = 2


def _overlaps(bp: BoxPrediction, keep: list[int]) -> tuple[list[int], list[int]]:
    """Per kept instance: how many other kept instances share pixels with it, and how many of its
    pixels are shared (``measurements._overlaps`` on boxes)."""
    b = bounds([bp.crops[k] for k in keep])
    n_over, shared = [], []
    for a, k in enumerate(keep):
        m = bp.mask(k)
        covered = np.zeros_like(m)
        others = 0
        lo, hi = np.maximum(b[:, :2], b[a, :2]), np.minimum(b[:, 2:], b[a, 2:])
        for j in np.flatnonzero((lo < hi).all(1)):
            if j == a:
                continue
            (y0, x0), (y1, x1) = lo[j], hi[j]
            o = bp.mask(keep[j])[y0 - b[j, 0]: y1 - b[j, 0], x0 - b[j, 1]: x1 - b[j, 1]]
            region = covered[y0 - b[a, 0]: y1 - b[a, 0], x0 - b[a, 1]: x1 - b[a, 1]]
            inter = o & m[y0 - b[a, 0]: y1 - b[a, 0], x0 - b[a, 1]: x1 - b[a, 1]]
            others += bool(inter.any())
            region |= inter
        n_over.append(others)
        shared.append(int(covered.sum()))
    return n_over, shared


def measure_boxes(bp: BoxPrediction, image: np.ndarray | None = None, channel_names=()) -> dict[str, list]:
    """``measurements.measure_prediction`` of a box form: one row per binarised instance, ``label`` = index + 1."""
    image = None if image is None else np.asarray(image)
    if image is not None and image.ndim == 2:
        image = image[None]
    names = list(channel_names) or ([f"ch{i + 1}" for i in range(len(image))] if image is not None else [])
    cols = columns(names)
    table: dict[str, list] = {c: [] for c in cols}
    keep = [int(k) for k in np.flatnonzero(bp.nonempty())]
    n_over, shared = _overlaps(bp, keep)
    for a, k in enumerate(keep):
        c, m = bp.crops[k], bp.mask(k)
        _, win = c.window(PAD, bp.shape)
        row = {"label": k + 1, **shape_measures(win >= bp.binarize)}
        row.update(touches_border=c.touches_border(m, bp.shape), overlaps=n_over[a], overlap_px=shared[a])
        row.update(_probability_columns(m, c.probabilities, UNCERTAIN))
        for ch, name in enumerate(names):
            vals = image[ch][c.box][m].astype(np.float64)
            row[f"mean_intensity_{name}"] = round(float(vals.mean()), 3) if vals.size else 0.0
            row[f"integrated_intensity_{name}"] = round(float(vals.sum()), 1)
        for col in cols:
            table[col].append(row[col])
    return table


def box_count_inputs(bp: BoxPrediction) -> dict:
    """``counts.count_inputs`` of a box form: each instance's inputs from its grown crop (every
    per-instance key ``count_inputs`` gives, so a new piece of evidence is carried over by itself)."""
    return {**crops_count_inputs(bp.crops, bp.shape, bp.binarize), "draw_counts": [int(v) for v in bp.draw_counts]}


def crops_count_inputs(crops: list, shape: tuple[int, int], binarize: float) -> dict:
    """The per-instance part of ``count_inputs`` (no ``draw_counts``) of instances given as crops."""
    from .counts import count_inputs

    out: dict[str, list] = {}
    for c in crops:
        _, win = c.window(PAD, shape)
        one = count_inputs(win[None], (win >= binarize)[None], [])
        for key, values in one.items():
            if key != "draw_counts":
                out.setdefault(key, []).extend(values)
    if not crops:
        out = {k: v for k, v in count_inputs(np.zeros((0, 1, 1), np.float32), np.zeros((0, 1, 1), bool), []).items()
               if k != "draw_counts"}
    return out
