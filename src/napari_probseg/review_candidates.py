"""Candidate review items and their features (numpy/scipy only; ``review.review_items`` scores them).

Why a separate step: finding *where* the draws disagree (regions, outlines) is geometry;
deciding *which* of those places is a real error is a learned ranking (``review.ReviewConfig``
holds its weights, ``review_fit`` fits them).  The geometry:

1. For each instance, the pixels that the draws dispute (p_lo <= p <= 1 - p_lo) are opened
   with a disk of radius ``open_radius``: the 1-2 px bands along every outline disappear;
   connected worm-wide pieces of >= ``min_area`` pixels are *regions*.
2. Regions of different instances that overlap or touch (within ``join_px``) are one group:
   two instances competing for the same pixels.  A group of more than ``max_group``
   instances (a clump of worms) gives one part per instance instead, pointing at that
   instance's own regions: one point for a clump shows only one of its errors.
3. Each binarised instance also gets an outline part: its disputed pixels outside its
   regions, pointing at their densest ``outline_window`` square.
4. Parts (groups and outlines) that share an instance are merged into **one candidate**: a
   worm with a disputed tail and a disputed outline is one suspected error, not two.

Each candidate carries the features in ``review_features.FEATURES`` (one number each).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .review_features import FEATURES, features, instance_stats  # noqa: F401 (FEATURES: re-exported)
from .uncertainty_metrics import bernoulli_entropy

LN2 = float(np.log(2.0))


@dataclass
class Candidate:
    """One suspected error before scoring: point, instances (0-based), kind, features."""

    y: int
    x: int
    kind: str
    instances: list[int]
    fix: str
    area: int  # disputed pixels of its regions (or of its outline when it has no region)
    mass: float  # disputed mass of all its parts
    features: dict[str, float] = field(default_factory=dict)


@dataclass
class _Region:
    inst: int
    sl: tuple[slice, slice]  # bounding box in the image
    mask: np.ndarray  # bool, the box's shape
    mass: float


@dataclass
class _Part:
    """A region group or an outline, before parts on the same instance are merged."""

    y: int
    x: int
    kind: str
    fix: str
    instances: list[int]
    mass: float
    area: int
    region: bool
    key: list[int] = field(default_factory=list)  # the instances by which parts merge (default: ``instances``)

    def __post_init__(self) -> None:
        self.key = self.key or list(self.instances)


def weight(p: np.ndarray, kind: str) -> np.ndarray:
    """Per-pixel disagreement: ``minority`` 2 min(p, 1 - p), or ``entropy`` H(p) / ln 2 (both 1 at p = 0.5)."""
    if kind == "entropy":
        return bernoulli_entropy(p) / LN2
    return 2.0 * np.minimum(p, 1.0 - p)


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= r * r


def _regions(prob: np.ndarray, i: int, cfg) -> list[_Region]:
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
    lab, _ = ndimage.label(u)
    h = weight(p[sl], cfg.weight)
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
    if any(lo_ >= hi_ for lo_, hi_ in zip(lo, hi)):
        return False
    bm = np.zeros([s.stop - s.start + 2 * d for s in b.sl], bool)
    bm[d:d + b.mask.shape[0], d:d + b.mask.shape[1]] = b.mask
    if d > 0:
        bm = ndimage.binary_dilation(bm, _disk(d))
    oy, ox = b.sl[0].start - d, b.sl[1].start - d  # bm's origin
    am = a.mask[lo[0] - a.sl[0].start:hi[0] - a.sl[0].start, lo[1] - a.sl[1].start:hi[1] - a.sl[1].start]
    return bool((am & bm[lo[0] - oy:hi[0] - oy, lo[1] - ox:hi[1] - ox]).any())


def _union_find(n: int, pairs) -> list[list[int]]:
    """Connected components of ``n`` nodes joined by the (i, j) ``pairs`` (an iterable)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[rj] = ri
    out: dict[int, list[int]] = {}
    for i in range(n):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


def _groups(regions: list[_Region], d: int) -> list[list[_Region]]:
    """Regions that overlap or touch, grouped."""
    pairs = ((i, j) for i in range(len(regions)) for j in range(i + 1, len(regions))
             if regions[i].inst != regions[j].inst and _near(regions[i], regions[j], d))
    return [[regions[k] for k in comp] for comp in _union_find(len(regions), pairs)]


def _union(group: list[_Region]) -> tuple[tuple[slice, slice], np.ndarray]:
    y0 = min(r.sl[0].start for r in group)
    x0 = min(r.sl[1].start for r in group)
    y1 = max(r.sl[0].stop for r in group)
    x1 = max(r.sl[1].stop for r in group)
    m = np.zeros((y1 - y0, x1 - x0), bool)
    for r in group:
        m[r.sl[0].start - y0:r.sl[0].stop - y0, r.sl[1].start - x0:r.sl[1].stop - x0] |= r.mask
    return (slice(y0, y1), slice(x0, x1)), m


def _kind(group: list[_Region], prob: np.ndarray, threshold: float, support: np.ndarray) -> tuple[str, str]:
    """What a region group suggests, and the fix, from the instances involved."""
    insts = sorted({r.inst for r in group})
    binarised = [i for i in insts if prob[i].max() >= threshold]
    if len(insts) > 1:
        # a worm hidden in a neighbour that reaches the threshold: split it off; two kept pieces: merge
        return "merge", ("merge" if len(binarised) == len(insts) else "split")
    i = insts[0]
    if not binarised:
        return "missed", "add"
    if sum(int(r.mask.sum()) for r in group) >= 0.5 * support[i]:
        return "false", "erase"
    return "border", "repaint"


def _region_parts(prob: np.ndarray, threshold: float, regions: list[_Region], cfg) -> list[_Part]:
    support = (prob > 0.01).reshape(len(prob), -1).sum(1)
    out = []
    for group in _groups(regions, cfg.join_px):
        insts = sorted({r.inst for r in group})
        if len(insts) <= cfg.max_group:
            out.append(_group_part(group, group, prob, threshold, support))
            continue
        # a clump of many worms: one part per instance (a single point cannot show several errors)
        for i in insts:
            own = [r for r in group if r.inst == i]
            near = [r for r in group if r.inst != i and any(_near(r, o, cfg.join_px) for o in own)]
            out.append(_group_part(own, own + near, prob, threshold, support, key=[i]))
    return out


def _group_part(point_from: list[_Region], group: list[_Region], prob: np.ndarray, threshold: float,
                support: np.ndarray, key: list[int] | None = None) -> _Part:
    """A part pointing at the most interior pixel of ``point_from``, naming ``group``'s instances."""
    sl, m = _union(point_from)
    dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    py, px = np.unravel_index(int(np.argmax(dist)), m.shape)  # the most interior pixel: on the worm
    kind, fix = _kind(group, prob, threshold, support)
    return _Part(int(py + sl[0].start), int(px + sl[1].start), kind, fix, sorted({r.inst for r in group}),
                 sum(r.mass for r in point_from), int(m.sum()), True, key=key or [])


def _outline_parts(prob: np.ndarray, threshold: float, regions: list[_Region], cfg) -> list[_Part]:
    """One part per binarised instance for the uncertainty along its outline (outside its regions)."""
    out = []
    for i in range(len(prob)):
        p = prob[i]
        if not (p >= threshold).any():
            continue
        band = (p > 0.01) & (p < 0.99)
        for r in regions:
            if r.inst == i:
                band[r.sl] &= ~r.mask
        if not band.any():
            continue
        box = ndimage.find_objects(band.astype(np.int8))[0]
        sl = tuple(slice(max(s.start - 8, 0), min(s.stop + 8, n)) for s, n in zip(box, p.shape))
        h = np.where(band[sl], weight(p[sl], cfg.weight), 0.0)
        dens = ndimage.uniform_filter(h, cfg.outline_window)
        py, px = np.unravel_index(int(np.argmax(dens)), h.shape)
        out.append(_Part(int(py + sl[0].start), int(px + sl[1].start), "border", "repaint", [i],
                         cfg.outline_weight * float(h.sum()), int(band.sum()), False))
    return out


KIND_ORDER = ("merge", "missed", "false", "border")  # a merged candidate says the most specific suspicion


def candidates(prob: np.ndarray, threshold: float, cfg, skeletons: bool = True,
               stats: dict[str, np.ndarray] | None = None) -> list[Candidate]:
    """The merged candidates of one prediction's probabilities [N,H,W] (unsorted, unscored).

    ``stats``: ``review_features.instance_stats`` of these instances computed elsewhere (the box
    form's groups of nearby instances take medians and image edges from the whole image)."""
    regions = [r for i in range(len(prob)) for r in _regions(prob, i, cfg)]
    parts = _region_parts(prob, threshold, regions, cfg) + _outline_parts(prob, threshold, regions, cfg)
    if not parts:
        return []
    owner: dict[int, int] = {}
    pairs = []
    for k, part in enumerate(parts):
        for i in part.key:
            if i in owner:
                pairs.append((owner[i], k))
            else:
                owner[i] = k
    st = instance_stats(prob, threshold, skeletons) if stats is None else stats
    out = []
    for comp in _union_find(len(parts), pairs if cfg.merge_parts else []):
        ps = [parts[k] for k in comp]
        lead = max(ps, key=lambda p: (p.region, p.mass))  # a worm-wide region is where the error is
        insts = sorted({i for p in ps for i in p.instances})
        kind = min((p.kind for p in ps), key=KIND_ORDER.index)
        fix = next(p.fix for p in ps if p.kind == kind)
        area = sum(p.area for p in ps if p.region) or sum(p.area for p in ps)
        out.append(Candidate(lead.y, lead.x, kind, insts, fix, int(area), float(sum(p.mass for p in ps)),
                             features(ps, insts, st)))
    return out
