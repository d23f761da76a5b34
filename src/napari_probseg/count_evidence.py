"""Per-instance evidence for the worm count, from the instance's own probability map.

Why (issue 18, error analysis in docs/measurements.md): on BBBC010 the count of binarised
instances is wrong through (1) merges, one instance holding two worms, which is either
about twice a worm's area or, at a crossing, one worm plus an arm of the other: a skeleton
with three or four long end branches where a worm has two; (2) worms found in a minority of
the draws (q below the binarisation cut) that are real three times out of four; (3) ragged
strips along the well's rim or debris: long, but with a low mean probability.  None of this
needs the ground truth, so the evidence below is computed for every image (predict, batch,
evaluate, the widget) and weighed by ``evidence_weights`` with the calibration's settings.
Plain numpy/scipy/skimage: no Qt, no napari.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components

from .measurements import _skeleton_graph, shape_measures

AT = 0.5  # an instance's mask for the evidence: pixels found in at least half the draws
RAGGED_LENGTH = 1.5  # the ragged rule looks only at instances this many times the median length
CORE = 2.0  # core_uncertain looks at the mask's pixels at least this far (px) from its edge
MERGE_PROBABILITY_AREA = 1.2  # the mean-probability merge rule looks only at instances this many times the median area


def end_branches(mask: np.ndarray) -> list[float]:
    """Length (px) of every end branch of the mask's skeleton: from an endpoint to the first
    junction (the whole path when there is none).  A worm has two long ends; a crossing of two
    worms, or a worm with another's arm attached, has three or four."""
    from skimage.morphology import skeletonize

    if not mask.any():
        return []
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    skel = skeletonize(mask[max(ys[0] - 1, 0):ys[-1] + 2, max(xs[0] - 1, 0):xs[-1] + 2])
    if skel.sum() < 2:
        return []
    graph, _ = _skeleton_graph(skel)
    graph = (graph + graph.T).tocsr()
    deg = np.diff(graph.indptr)
    ends = np.flatnonzero(deg == 1)
    if len(ends) == 0:  # a closed loop (a worm touching itself): no end branches
        return []
    inner = np.flatnonzero(deg <= 2)  # the skeleton without its junction pixels falls apart into branches
    sub = graph[inner][:, inner]
    _, comp = connected_components(sub, directed=False)
    weight = np.bincount(comp, weights=np.asarray(sub.sum(1)).ravel(), minlength=comp.max() + 1) / 2
    touches_junction = np.zeros(comp.max() + 1, bool)
    rows = np.repeat(np.arange(len(deg)), deg)
    for r, c in zip(rows, graph.indices):  # a branch that meets a junction gets that last step too
        if deg[r] <= 2 and deg[c] > 2:
            touches_junction[comp[np.searchsorted(inner, r)]] = True
    pos = np.searchsorted(inner, ends)
    return [round(float(weight[comp[p]] + touches_junction[comp[p]]), 1) for p in pos]


def core_uncertain(p: np.ndarray, mask: np.ndarray, core: float = CORE) -> float:
    """Share of the mask's core (pixels at least ``core`` px inside its edge) that not every draw
    found (p < 1).  A single worm is found whole by every draw, whatever its outline does, so
    its core is certain; two worms merged at a crossing are split differently by different
    draws, so part of their core is not.  0 for a mask without core."""
    if not mask.any():
        return 0.0
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(max(ys[0] - 1, 0), ys[-1] + 2), slice(max(xs[0] - 1, 0), xs[-1] + 2))
    inner = ndi.distance_transform_edt(mask[box]) >= core
    return round(float((p[box][inner] < 1.0 - 1e-3).mean()), 4) if inner.any() else 0.0


def instance_evidence(probabilities: np.ndarray, at: float = AT) -> dict[str, list]:
    """Per instance of ``probabilities`` [N,H,W]: skeleton length, mean probability and end
    branch lengths of its p >= ``at`` mask (JSON-friendly; zeros and [] for an empty mask), and
    its probability mass (sum of p over all its pixels: draws x pixels / T, also below ``at``)
    and the share of its core that not every draw found (``core_uncertain``)."""
    length, mean_p, ends, core = [], [], [], []
    mass = [round(float(p.sum(dtype=np.float64)), 1) for p in probabilities]
    for p in probabilities:
        m = p >= at
        if not m.any():
            length.append(0.0), mean_p.append(0.0), ends.append([]), core.append(0.0)
            continue
        length.append(round(float(shape_measures(m)["length_px"]), 1))
        mean_p.append(round(float(p[m].mean()), 4))
        ends.append(end_branches(m))
        core.append(core_uncertain(p, m))
    return {"length": length, "mean_p": mean_p, "ends": ends, "mass": mass, "core_uncertain": core}


def has_evidence(inp: dict) -> bool:
    """Whether count inputs carry the per-instance evidence (inputs saved before it do not)."""
    return all(k in inp for k in ("length", "mean_p", "ends"))


def evidence_weights(inp: dict, q: np.ndarray, merge_ratio: float, end_widths: float, end_min_area: float,
                     sub_weight: str, ragged_probability: float, merge_probability: float = 0.0,
                     merge_probability_area: float = MERGE_PROBABILITY_AREA, end_max_probability: float = 0.0,
                     thin_width: float = 0.0, faint_weight: str = "zero", end_min_core: float = 0.0,
                     blob_ends: int = 0) -> np.ndarray:
    """How many worms each instance adds to the ``evidence`` count.

    0 for an instance with no p >= 0.5 pixel or seen in one draw only (``q`` is 0 there), and
    for a ragged one (at least 1.5 x the median length, mean probability below
    ``ragged_probability``; 0 switches the rule off).  Else a binarised instance counts 1 and
    one below the cut counts ``q`` (``sub_weight`` "q") or 1 ("one"); times 2 when it looks
    like two worms: area at least ``merge_ratio`` x the median (0: off), or three or more end
    branches longer than ``end_widths`` x the median worm width (0: off) with an area at
    least ``end_min_area`` x the median.

    Rules from the 2-fold error analysis of issue 18 (each off at its default; docs/measurements.md):
    ``merge_probability``: an instance of at least ``merge_probability_area`` x the median area
    whose mean probability is below this counts 2 (two touching worms that some draws separate:
    their shared mask is uncertain, a single worm's is found whole by every draw);
    ``end_max_probability``: the end-branch rule only fires below this mean probability (a
    single worm with a skeleton spur is certain; a crossing's arms are not);
    ``end_min_core``: ... and only when at least this share of the instance's core was missed by
    some draw (``core_uncertain``; the same idea without the outline's pixels, which every worm has);
    ``thin_width``: a long instance (as for the ragged rule) narrower than this x the median
    worm width counts 0 too (strips along the well's rim are thinner than worms);
    ``faint_weight`` "mass": an instance seen in two or more draws that has no p >= 0.5 pixel
    counts min(1, its probability mass / the median area) instead of 0 (a worm most draws miss);
    ``blob_ends``: an instance whose skeleton has at least this many end branches counts 0 (0: off):
    not worm-shaped (``counts.BLOB_ENDS`` says why; one such rim blob counted as 2 by the end-branch rule).
    """
    area = np.asarray(inp["area"], float)
    kept = np.asarray(inp["binarised"], bool)
    n = len(area)
    if n == 0:
        return np.zeros(0)
    ref = kept & (area > 0)
    length = np.asarray(inp.get("length", [0.0] * n), float)
    med_a = float(np.median(area[ref])) if ref.any() else 0.0
    ok_len = ref & (length > 0)
    med_l = float(np.median(length[ok_len])) if ok_len.any() else 0.0
    med_w = float(np.median(area[ok_len] / length[ok_len])) if ok_len.any() else 0.0
    ar = area / med_a if med_a > 0 else np.ones(n)
    base = np.where(kept, 1.0, q if sub_weight == "q" else 1.0) * ((area > 0) & (q > 0))
    mean_p = np.asarray(inp.get("mean_p", [1.0] * n), float)
    two = (ar >= merge_ratio) if merge_ratio > 0 else np.zeros(n, bool)
    if end_widths > 0 and med_w > 0 and "ends" in inp:
        long_ends = np.array([sum(b >= end_widths * med_w for b in e) for e in inp["ends"]])
        gate = mean_p < end_max_probability if end_max_probability > 0 else np.ones(n, bool)
        if end_min_core > 0:
            gate &= np.asarray(inp.get("core_uncertain", [1.0] * n), float) >= end_min_core
        two |= (long_ends >= 3) & (ar >= end_min_area) & gate
    if merge_probability > 0 and "mean_p" in inp:
        two |= (ar >= merge_probability_area) & (mean_p < merge_probability)
    weights = base * np.where(two, 2.0, 1.0)
    if faint_weight == "mass" and med_a > 0 and "mass" in inp:
        faint = (area == 0) & (q > 0)
        weights[faint] = np.minimum(np.asarray(inp["mass"], float)[faint] / med_a, 1.0)
    if med_l > 0 and "mean_p" in inp:
        long = length >= RAGGED_LENGTH * med_l
        if ragged_probability > 0:
            weights[long & (mean_p < ragged_probability)] = 0.0
        if thin_width > 0 and med_w > 0:
            width = np.divide(area, length, out=np.zeros(n), where=length > 0)
            weights[long & (width < thin_width * med_w)] = 0.0
    if blob_ends > 0 and "ends" in inp:
        weights[np.array([len(e) for e in inp["ends"]]) >= blob_ends] = 0.0
    return weights
