"""Instances as boxes (issue 17): one window's clustering and agglomeration without [N,H,W] arrays.

Why: tiled inference (``tiling.predict_tiled``) must not hold anything of size instances x
window.  Two things differ from ``postprocess.cluster_draw`` + ``inference.agglomerate``:

- **Clustering per blob.**  Each 8-connected component of non-background pixels is clustered
  on its own.  The embeddings were trained on 384-px crops and only keep worms of one crop
  apart; in a larger field two distant worms can share a cluster, and the overlap heuristic
  then keeps one of them.  A 1040x1392 mosaic of four test wells clustered as a whole gave 40
  instances where the wells alone gave 58; clustered per blob, 57.  On the wells themselves
  (C03-C06) per-blob and whole-image clustering give the same 58 instances (every matched
  IoU >= 0.9), and a blob is clustered the same in every window that holds it whole, so
  tiles agree with each other wherever they overlap.
- **Agglomeration on boxes**: ``inference.agglomerate``'s algorithm (the same Hungarian
  matching on the same IoUs), each instance held as its box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .postprocess import BACKGROUND, FOREGROUND, OVERLAP, assign_clusters, clusters_to_instances, mean_shift

_CONNECTED = np.ones((3, 3), bool)


@dataclass
class Box:
    """A mask or probability map ``a`` whose top-left pixel is (y, x) in its window."""

    y: int
    x: int
    a: np.ndarray

    @property
    def y1(self) -> int:
        return self.y + self.a.shape[0]

    @property
    def x1(self) -> int:
        return self.x + self.a.shape[1]

    @classmethod
    def of(cls, mask: np.ndarray, y: int = 0, x: int = 0) -> Box:
        """``mask`` cropped to its nonzero pixels (an empty mask gives an empty box at (y, x))."""
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size == 0:
            return cls(y, x, mask[:0, :0].copy())
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(y + r0), int(x + c0), np.ascontiguousarray(mask[r0:r1, c0:c1]))

    def placed(self, y0: int, x0: int, y1: int, x1: int, dtype=None) -> np.ndarray:
        """This box's array pasted into the zero box (y0, x0)-(y1, x1), which contains it."""
        out = np.zeros((y1 - y0, x1 - x0), self.a.dtype if dtype is None else dtype)
        out[self.y - y0: self.y1 - y0, self.x - x0: self.x1 - x0] = self.a
        return out

    def centre(self) -> tuple[float, float] | None:
        """Weighted centroid (window coordinates) of ``a``; None when it has no mass."""
        a = self.a.astype(np.float64)
        mass = a.sum()
        if mass <= 0:
            return None
        return (float(a.sum(1) @ np.arange(a.shape[0]) / mass) + self.y,
                float(a.sum(0) @ np.arange(a.shape[1]) / mass) + self.x)


def cluster_blobs(embedding: torch.Tensor, logits: torch.Tensor, bandwidth: float, cluster_radius: float,
                  min_size: int = 50, seed: int = 0, roi: tuple[slice, slice] | None = None) -> list[Box]:
    """One draw's embedding [D,H,W] + logits [3,H,W] -> instances as boxes, each blob clustered alone.

    Within a blob the steps are ``postprocess.cluster_draw``'s (mean-shift of the foreground
    embeddings, assignment within ``cluster_radius``, overlap heuristic, ``min_size``).
    ``roi``: only blobs whose box meets it are clustered (a tile's core: the rest of its window
    is clustered by the tiles around it).
    """
    cls = logits.argmax(0).to(torch.uint8).cpu().numpy()
    lab, n = ndimage.label(cls != BACKGROUND, structure=_CONNECTED)
    emb = embedding.permute(1, 2, 0)
    out: list[Box] = []
    for i, sl in enumerate(ndimage.find_objects(lab)):
        if roi is not None and not all(s.start < r.stop and r.start < s.stop for s, r in zip(sl, roi)):
            continue
        blob = lab[sl] == i + 1
        c = cls[sl]
        fg = blob & (c == FOREGROUND)
        idx = np.flatnonzero(fg)
        if idx.size < min_size:  # no cluster of it can reach min_size
            continue
        pts = emb[sl][torch.from_numpy(fg).to(emb.device)].float()  # a tile's draws come in bf16
        centres = mean_shift(pts, bandwidth, seed=seed)
        labels = assign_clusters(pts, centres, cluster_radius).cpu().numpy()
        for m in clusters_to_instances(labels, idx, len(centres), blob & (c == OVERLAP), min_size, fg.shape):
            out.append(Box.of(m, sl[0].start, sl[1].start))
    return out


def box_iou(a: list[Box], b: list[Box]) -> np.ndarray:
    """IoU [len(a), len(b)] of bool boxes (``masks.mask_iou`` without the full-size arrays)."""
    iou = np.zeros((len(a), len(b)))
    if not a or not b:
        return iou
    ba = np.array([[m.y, m.x, m.y1, m.x1] for m in a])
    bb = np.array([[m.y, m.x, m.y1, m.x1] for m in b])
    area_b = np.array([int(m.a.sum()) for m in b])
    for i, m in enumerate(a):
        lo, hi = np.maximum(bb[:, :2], ba[i, :2]), np.minimum(bb[:, 2:], ba[i, 2:])
        area_a = int(m.a.sum())
        for j in np.flatnonzero((lo < hi).all(1)):
            (y0, x0), (y1, x1) = lo[j], hi[j]
            inter = int((m.a[y0 - m.y: y1 - m.y, x0 - m.x: x1 - m.x]
                         & b[j].a[y0 - b[j].y: y1 - b[j].y, x0 - b[j].x: x1 - b[j].x]).sum())
            union = area_a + area_b[j] - inter
            iou[i, j] = inter / union if union else 0.0
    return iou


def _merged(a: Box, b: Box, op) -> Box:
    """``op(a, b)`` on the box around both."""
    y0, x0, y1, x1 = min(a.y, b.y), min(a.x, b.x), max(a.y1, b.y1), max(a.x1, b.x1)
    return Box(y0, x0, op(a.placed(y0, x0, y1, x1), b.placed(y0, x0, y1, x1, a.a.dtype)))


def agglomerate_boxes(draws: list[list[Box]]) -> list[Box]:
    """``inference.agglomerate`` on boxes: per-instance probabilities from T draws' instances."""
    t = len(draws)
    if t == 0:
        raise ValueError("agglomerate needs at least one draw")
    order = sorted(range(t), key=lambda i: -len(draws[i]))
    base = [Box(m.y, m.x, m.a.astype(bool)) for m in draws[order[0]]]
    sums = [Box(m.y, m.x, m.a.astype(np.float32)) for m in draws[order[0]]]
    for i in order[1:]:
        d = draws[i]
        if not d:
            continue
        iou = box_iou(base, d)
        rows, cols = linear_sum_assignment(-iou) if base else (np.array([], int), np.array([], int))
        matched = set()
        for r, c in zip(rows, cols):
            if iou[r, c] > 0:
                sums[r] = _merged(sums[r], d[c], np.add)
                base[r] = _merged(base[r], d[c], np.logical_or)
                matched.add(c)
        for c in range(len(d)):
            if c not in matched:
                base.append(Box(d[c].y, d[c].x, d[c].a.astype(bool)))
                sums.append(Box(d[c].y, d[c].x, d[c].a.astype(np.float32)))
    return [Box(s.y, s.x, s.a / np.float32(t)) for s in sums]
