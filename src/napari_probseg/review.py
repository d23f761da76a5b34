"""The review list: a short ranked list of suspected errors instead of hundreds of entropy patches.

Why: the paper's 4x4 uncertainty peaks (``inference.uncertainty_peaks``) put one entry on
every local entropy maximum, so one uncertain worm fills many entries and a typical BBBC010
well lists ~200 of them for ~4 real errors.  Here the uncertainty is grouped into *review
items*, one per suspected error:

1. For each instance, the pixels that the draws dispute (p_lo <= p <= 1 - p_lo) are opened
   with a disk of radius ``ReviewConfig.open_radius``: the 1-2 px bands along every outline,
   where the draws differ by a pixel, disappear; what is left are worm-wide pieces that some
   draws have and others do not.  Each connected piece of >= ``min_area`` pixels is a region.
2. Regions of different instances that overlap or touch (within ``join_px``) are one item:
   two instances competing for the same pixels are one suspected merge/split, not two.
3. Each binarised instance also gets one outline item for the disputed pixels along its
   outline (outside its regions), pointing at their densest spot.
4. An item's score is its disputed mass: the sum over its pixels of 2 min(p, 1 - p) (1 at a
   50/50 split of the draws: roughly "pixels in full dispute"); its point is the most
   interior pixel of its regions.  Items are sorted by score.
5. Items with score >= ``ReviewConfig.min_score`` form the default list; the rest stay
   available ("show all").

The kind (what is suspected) and the suggested fix follow from the instances involved; see
``KINDS`` and docs/review.md.  Everything here is numpy/scipy only (no Qt, no napari).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .uncertainty_metrics import bernoulli_entropy

# kind -> (what the proofreader reads, default suggested fix)
KINDS = {
    "missed": ("possible missed worm", "add"),
    "merge": ("possible merge / split", "split"),
    "false": ("possible false worm", "erase"),
    "border": ("uncertain outline", "repaint"),
}
CSV_FIELDS = ["rank", "y", "x", "kind", "score", "instances", "fix", "area", "description"]
LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class ReviewConfig:
    """The ranking rule.  ``weight``, ``p_lo``, ``open_radius``, ``outline_weight`` and ``min_score``
    were chosen on BBBC010 test fold 1 and scored on fold 2 (and vice versa); see docs/review.md."""

    weight: str = "minority"  # per-pixel uncertainty: "minority" 2 min(p, 1-p), or "entropy" H(p) / ln 2
    p_lo: float = 0.2  # a pixel is disputed when p_lo <= p <= 1 - p_lo (ghosts seen in 1 of 8 draws are not)
    open_radius: int = 2  # px: disputed bands thinner than ~2r+1 (along outlines) are not regions
    min_area: int = 30  # px: smaller disputed pieces are dropped
    join_px: int = 3  # regions of different instances this close form one item
    outline_weight: float = 1.0  # weight of the outline items' mass against the regions'
    outline_window: int = 15  # px: an outline item points at the densest window of this side
    min_score: float = 30.0  # default list: items with at least this score


@dataclass
class ReviewItem:
    """One suspected error: what, where, which instances (0-based), and the fix that fits."""

    score: float  # disputed mass, ~pixels in full (50/50) dispute
    y: int  # the pixel to look at
    x: int
    kind: str  # a key of KINDS
    instances: list[int] = field(default_factory=list)  # indices into the probability stack
    fix: str = ""
    area: int = 0  # uncertain pixels of the item (union of its regions)

    @property
    def description(self) -> str:
        return KINDS[self.kind][0]


@dataclass
class _Region:
    inst: int
    sl: tuple[slice, slice]  # bounding box in the image
    mask: np.ndarray  # bool, the box's shape
    mass: float


def _weight(p: np.ndarray, cfg: ReviewConfig) -> np.ndarray:
    if cfg.weight == "entropy":
        return bernoulli_entropy(p) / LN2
    return 2.0 * np.minimum(p, 1.0 - p)


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= r * r


def _regions(prob: np.ndarray, i: int, cfg: ReviewConfig) -> list[_Region]:
    """Worm-wide pieces of instance ``i`` that the draws disagree on."""
    p = prob[i]
    unsure = (p >= cfg.p_lo) & (p <= 1 - cfg.p_lo)
    box = ndimage.find_objects(unsure.astype(np.int8))
    if not box or box[0] is None:
        return []
    pad = cfg.open_radius + 1
    sl = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box[0], p.shape))
    u = unsure[sl]
    if cfg.open_radius > 0:
        u = ndimage.binary_opening(u, _disk(cfg.open_radius))
    lab, n = ndimage.label(u)
    h = _weight(p[sl], cfg)
    out = []
    for k, piece in enumerate(ndimage.find_objects(lab), 1):
        m = lab[piece] == k
        if m.sum() < cfg.min_area:
            continue
        sub = tuple(slice(a.start + s.start, a.start + s.stop) for a, s in zip(sl, piece))
        out.append(_Region(i, sub, m, float(h[piece][m].sum())))
    return out


def _near(a: _Region, b: _Region, d: int) -> bool:
    """Do two regions overlap or come within ``d`` px of each other?"""
    lo = [max(sa.start, sb.start - d) for sa, sb in zip(a.sl, b.sl)]
    hi = [min(sa.stop, sb.stop + d) for sa, sb in zip(a.sl, b.sl)]
    if any(l >= h for l, h in zip(lo, hi)):
        return False
    bm = np.zeros([s.stop - s.start + 2 * d for s in b.sl], bool)
    bm[d:d + b.mask.shape[0], d:d + b.mask.shape[1]] = b.mask
    if d > 0:
        bm = ndimage.binary_dilation(bm, _disk(d))
    oy, ox = b.sl[0].start - d, b.sl[1].start - d  # bm's origin
    am = a.mask[lo[0] - a.sl[0].start:hi[0] - a.sl[0].start, lo[1] - a.sl[1].start:hi[1] - a.sl[1].start]
    return bool((am & bm[lo[0] - oy:hi[0] - oy, lo[1] - ox:hi[1] - ox]).any())


def _groups(regions: list[_Region], d: int) -> list[list[_Region]]:
    """Union-find over regions that overlap or touch; a group is one item."""
    parent = list(range(len(regions)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(regions)):
        for j in range(i + 1, len(regions)):
            if root(i) != root(j) and _near(regions[i], regions[j], d):
                parent[root(j)] = root(i)
    out: dict[int, list[_Region]] = {}
    for i, r in enumerate(regions):
        out.setdefault(root(i), []).append(r)
    return list(out.values())


def _union(group: list[_Region], shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    y0 = min(r.sl[0].start for r in group)
    x0 = min(r.sl[1].start for r in group)
    y1 = max(r.sl[0].stop for r in group)
    x1 = max(r.sl[1].stop for r in group)
    m = np.zeros((y1 - y0, x1 - x0), bool)
    for r in group:
        m[r.sl[0].start - y0:r.sl[0].stop - y0, r.sl[1].start - x0:r.sl[1].stop - x0] |= r.mask
    return (slice(y0, y1), slice(x0, x1)), m


def _kind(group: list[_Region], prob: np.ndarray, threshold: float, support: np.ndarray) -> tuple[str, str]:
    """What the item suggests, and the fix, from the instances involved."""
    insts = sorted({r.inst for r in group})
    binarised = [i for i in insts if prob[i].max() >= threshold]
    if len(insts) > 1:
        # a worm hidden in a neighbour that reaches the threshold: split it off; two kept pieces: merge
        return "merge", ("merge" if len(binarised) == len(insts) else "split")
    i = insts[0]
    if not binarised:
        return "missed", "add"
    uncertain = sum(int(r.mask.sum()) for r in group)
    if uncertain >= 0.5 * support[i]:
        return "false", "erase"
    return "border", "repaint"


def _outline_items(prob: np.ndarray, threshold: float, regions: list[_Region], cfg: ReviewConfig) -> list[ReviewItem]:
    """One item per binarised instance for the uncertainty along its outline (outside its worm-wide regions)."""
    out = []
    for i in range(len(prob)):
        p = prob[i]
        core = p >= threshold
        if not core.any():
            continue
        band = (p > 0.01) & (p < 0.99)
        for r in regions:
            if r.inst == i:
                band[r.sl] &= ~r.mask
        if not band.any():
            continue
        box = ndimage.find_objects(band.astype(np.int8))[0]
        sl = tuple(slice(max(s.start - 8, 0), min(s.stop + 8, n)) for s, n in zip(box, p.shape))
        h = np.where(band[sl], _weight(p[sl], cfg), 0.0)
        mass = float(h.sum())
        dens = ndimage.uniform_filter(h, cfg.outline_window)
        py, px = np.unravel_index(int(np.argmax(dens)), h.shape)
        out.append(ReviewItem(round(cfg.outline_weight * mass, 2), int(py + sl[0].start), int(px + sl[1].start),
                              "border", [i], "repaint", int(band.sum())))
    return out


def review_items(probabilities: np.ndarray, threshold: float = 0.75, cfg: ReviewConfig | None = None,
                 show_all: bool = False) -> list[ReviewItem]:
    """Ranked review items (highest score first) of one prediction's probabilities [N,H,W].

    ``show_all`` also returns the items below ``cfg.min_score`` (the default list hides them).
    No instance, or no disagreement between the draws, gives an empty list.
    """
    cfg = cfg or ReviewConfig()
    prob = np.asarray(probabilities, dtype=np.float32)
    if prob.ndim != 3 or len(prob) == 0:
        return []
    support = (prob > 0.01).reshape(len(prob), -1).sum(1)
    regions = [r for i in range(len(prob)) for r in _regions(prob, i, cfg)]
    items = []
    for group in _groups(regions, cfg.join_px):
        sl, m = _union(group, prob.shape[1:])
        dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        py, px = np.unravel_index(int(np.argmax(dist)), m.shape)
        kind, fix = _kind(group, prob, threshold, support)
        items.append(ReviewItem(round(sum(r.mass for r in group), 2), int(py + sl[0].start), int(px + sl[1].start),
                                kind, sorted({r.inst for r in group}), fix, int(m.sum())))
    items += _outline_items(prob, threshold, regions, cfg)
    items.sort(key=lambda it: (-it.score, it.y, it.x))
    return items if show_all else [it for it in items if it.score >= cfg.min_score]


def write_review_csv(items: list[ReviewItem], path: str | Path) -> Path:
    """``rank,y,x,kind,score,instances,...`` (instances 1-based, as the label image); header only when empty."""
    from .atomic import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_FIELDS)
            for r, it in enumerate(items, 1):
                w.writerow([r, it.y, it.x, it.kind, f"{it.score:.2f}", " ".join(str(i + 1) for i in it.instances),
                            it.fix, it.area, it.description])

    return atomic_write(path, write)


def read_review_csv(path: str | Path) -> list[ReviewItem]:
    """Items as ``write_review_csv`` wrote them (instances back to 0-based)."""
    with open(path, newline="") as f:
        return [ReviewItem(float(r["score"]), int(r["y"]), int(r["x"]), r["kind"],
                           [int(i) - 1 for i in r["instances"].split()], r["fix"], int(r["area"]))
                for r in csv.DictReader(f)]


def items_to_arrays(items: list[ReviewItem]) -> dict[str, np.ndarray]:
    """Items as plain arrays (no pickle) for a session file; ``items_from_arrays`` reads them back."""
    return {
        "items": np.array([[it.score, it.y, it.x, it.area] for it in items], np.float64).reshape(-1, 4),
        "item_kinds": np.array(json.dumps([[it.kind, it.fix] for it in items])),
        "item_instances": np.array([i for it in items for i in it.instances], np.int32),
        "item_offsets": np.cumsum([0] + [len(it.instances) for it in items]).astype(np.int64),
    }


def items_from_arrays(z) -> list[ReviewItem]:
    a, kinds = z["items"].reshape(-1, 4), json.loads(str(z["item_kinds"]))
    inst, off = z["item_instances"], z["item_offsets"]
    return [ReviewItem(float(s), int(y), int(x), kinds[i][0], inst[off[i]:off[i + 1]].tolist(), kinds[i][1], int(ar))
            for i, (s, y, x, ar) in enumerate(a)]
