"""The review list of a prediction in box form: ``review.review_items`` without [N,H,W] arrays.

How it stays equal to the dense path: instances interact in the review only where their
supports come within a few pixels (regions joined within ``join_px``, the 2-px contact ring);
everything else the candidates use looks at most ``WINDOW_PAD`` px around an instance's box.  So
instances are grouped by boxes that come within ``join_px`` + 3 px of each other, and each group
is reviewed on its own window (its boxes grown by ``WINDOW_PAD``, clipped to the image) with the
dense code, given the statistics that are image-wide: the median instance area, length and
width over all instances, and which instances touch the image's edge (not the window's).
"""
from __future__ import annotations

import numpy as np

from .boxes import Crop, bounds
from .review import ReviewConfig, ReviewItem, count_flags, ranked_items
from .review_candidates import _union_find, candidates
from .review_features import normalised_stats, raw_stats

WINDOW_PAD = 16  # > the outline window's 8 px and the regions' and contact ring's few px


def groups(crops: list[Crop], gap: int) -> list[list[int]]:
    """Instances (indices, ascending) whose boxes come within ``gap`` px of each other, grouped."""
    if not crops:
        return []
    b = bounds(crops)
    order = np.argsort(b[:, 0], kind="stable")
    pairs = []
    for n, i in enumerate(order):  # sweep down the rows: only boxes that start above i's bottom + gap can meet it
        for j in order[n + 1:]:
            if b[j, 0] >= b[i, 2] + gap:
                break
            if b[j, 1] < b[i, 3] + gap and b[i, 1] < b[j, 3] + gap:
                pairs.append((int(i), int(j)))
    return [sorted(g) for g in _union_find(len(crops), pairs)]


def _window(crops: list[Crop], idx: list[int], shape: tuple[int, int]) -> tuple[int, int, np.ndarray]:
    """The group's instances stacked [k,h,w] on their joint box grown by ``WINDOW_PAD`` (clipped)."""
    y0 = max(min(crops[i].y for i in idx) - WINDOW_PAD, 0)
    x0 = max(min(crops[i].x for i in idx) - WINDOW_PAD, 0)
    y1 = min(max(crops[i].y + crops[i].probabilities.shape[0] for i in idx) + WINDOW_PAD, shape[0])
    x1 = min(max(crops[i].x + crops[i].probabilities.shape[1] for i in idx) + WINDOW_PAD, shape[1])
    stack = np.zeros((len(idx), y1 - y0, x1 - x0), np.float32)
    for k, i in enumerate(idx):
        c = crops[i]
        h, w = c.probabilities.shape
        stack[k, c.y - y0: c.y - y0 + h, c.x - x0: c.x - x0 + w] = c.probabilities
    return y0, x0, stack


def review_items_boxes(crops: list[Crop], shape: tuple[int, int], threshold: float = 0.75,
                       cfg: ReviewConfig | None = None, show_all: bool = False,
                       counted: dict | None = None) -> list[ReviewItem]:
    """``review.review_items`` of the instances ``crops`` in an image of ``shape``: same items, same order
    (``counted``: their ``box_measure.box_count_inputs`` when the caller has them)."""
    cfg = cfg or ReviewConfig()
    if not crops:
        return []
    skeletons = cfg.needs_skeletons
    grouped = groups(crops, cfg.join_px + 3)
    windows, raw = [], [None] * len(crops)
    for idx in grouped:
        y0, x0, stack = _window(crops, idx, shape)
        st = raw_stats(stack, threshold, skeletons)
        for k, i in enumerate(idx):
            raw[i] = {key: v[k] for key, v in st.items()}
            raw[i]["border"] = crops[i].touches_border(crops[i].probabilities >= 0.5, shape)
        windows.append((idx, y0, x0, stack))
    allstats = normalised_stats({key: np.array([r[key] for r in raw]) for key in raw[0]})
    cands = []
    for idx, y0, x0, stack in windows:
        st = {key: v[idx] for key, v in allstats.items()}
        for c in candidates(stack, threshold, cfg, skeletons, stats=st):
            c.y, c.x, c.instances = c.y + y0, c.x + x0, [idx[i] for i in c.instances]
            cands.append(c)
    flags = {}
    if cfg.count_flags and cands:
        from .box_measure import crops_count_inputs

        flags = count_flags(counted if counted is not None else crops_count_inputs(crops, shape, threshold))
    return ranked_items(cands, cfg, show_all, flags)
