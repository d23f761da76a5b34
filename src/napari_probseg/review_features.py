"""The numbers a review candidate is ranked by (``review_candidates`` finds the candidates).

Why these: the draws' disagreement alone ranks uncertain outlines of correct worms above real
errors.  What tells them apart is mostly the *shape* of the instances involved against the
typical worm of the image (median over its binarised instances): a merge is about twice a worm's
area or has a skeleton with branches / more than 2 endpoints, a fragment is short, and an
instance whose binarised mask the draws would cut elsewhere has a low expected IoU with it (an
imprecise worm is one matched at IoU < 0.8).  All numbers are per instance; a candidate takes
the most suspicious value over the instances it names (see ``features``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

FEATURES = (
    "log_region_mass",  # log(1 + disputed mass of worm-wide regions)
    "log_outline_mass",  # log(1 + disputed mass along outlines)
    "outline_per_area",  # outline mass / area of the instances (a ragged outline for the worm's size)
    "instances",  # how many instances the candidate names (2+: competing for pixels)
    "unbinarised",  # share of its instances that never reach the binarisation cut
    "min_existence",  # lowest existence probability (highest pixel probability) of its instances
    "log_size_max",  # largest log(area / median instance area): a merge is big
    "log_size_min",  # smallest log(area / median instance area): a fragment is small
    "contact",  # largest share of an instance's 2-px surrounding ring that other instances cover (touching worms)
    "touches_border",  # share of its instances that touch the image edge
    "min_mean_prob",  # lowest mean probability of an instance over its p >= 0.5 mask
    "uncertain_share",  # largest share of an instance's support with 0.2 <= p <= 0.8
    "min_soft_iou",  # lowest expected IoU of a draw with the binarised mask (imprecise worms: < 0.8)
    "max_endpoints",  # most skeleton endpoints of an instance (a worm has 2; merges and crossings more)
    "max_branches",  # most skeleton branch points of an instance
    "log_length_min",  # shortest log(skeleton length / median): a fragment or a worm cut short
    "log_length_max",  # longest log(skeleton length / median): two worms end to end
    "log_width_max",  # widest log(area / length, against the median): two worms side by side
)
BASE_FEATURES = FEATURES[:12]  # disagreement, size and contact (the rule before the shape features)
# the features that need each instance's skeleton, the costly part of ``instance_stats``
SKELETON_FEATURES = ("max_endpoints", "max_branches", "log_length_min", "log_length_max", "log_width_max")


def instance_stats(prob: np.ndarray, threshold: float, skeletons: bool = True) -> dict[str, np.ndarray]:
    """Per-instance numbers the features are built from (``prob``: [N,H,W]).

    ``skeletons=False`` skips the skeletons: the ``SKELETON_FEATURES`` then hold placeholder
    values, for a scoring that gives them no weight (the shipped one)."""
    return normalised_stats(raw_stats(prob, threshold, skeletons))


def raw_stats(prob: np.ndarray, threshold: float, skeletons: bool = True) -> dict[str, np.ndarray]:
    """``instance_stats`` before the image-wide medians: each value depends on its instance alone
    (contact: and its neighbours; border: the array's edge).  Why split: the box form
    (``box_review``) computes these per group of nearby instances and the medians over all."""
    n = len(prob)
    flat = prob.reshape(n, -1)
    half = flat >= 0.5
    area = half.sum(1).astype(float)
    support = (flat > 0.01).sum(1)
    unsure = ((flat >= 0.2) & (flat <= 0.8)).sum(1)
    mean_p = np.array([flat[k][half[k]].mean() if area[k] else 0.0 for k in range(n)])
    shape = (np.array([_shape(prob[k], threshold) for k in range(n)]).reshape(n, 4) if skeletons
             else np.zeros((n, 4)))
    return {"area": area, "existence": flat.max(1), "binarised": flat.max(1) >= threshold,
            "contact": _contact(prob >= 0.5), "mean_prob": mean_p, "border": _touches_border(prob >= 0.5),
            "uncertain_share": unsure / np.maximum(support, 1), "soft_iou": _soft_iou(flat, threshold),
            "endpoints": shape[:, 0], "branches": shape[:, 1], "raw_length": shape[:, 2], "raw_area": shape[:, 3]}


def normalised_stats(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``raw_stats`` of all of an image's instances with size, length and width against their medians."""
    area, binarised, length = raw["area"], raw["binarised"], raw["raw_length"]
    n = len(area)
    ref = area[binarised & (area > 0)]
    med = float(np.median(ref)) if len(ref) else (float(np.median(area[area > 0])) if (area > 0).any() else 1.0)
    ok = binarised & (length > 0)
    med_len = float(np.median(length[ok])) if ok.any() else 1.0
    width = np.where(length > 0, raw["raw_area"] / np.maximum(length, 1.0), 0.0)
    med_w = float(np.median(width[ok])) if ok.any() else 1.0
    out = {k: v for k, v in raw.items() if k not in ("raw_length", "raw_area")}
    return {**out, "median_area": np.full(n, med), "length": np.maximum(length, 1.0) / max(med_len, 1.0),
            "width": np.maximum(width, 1e-3) / max(med_w, 1e-3)}


def _soft_iou(flat: np.ndarray, threshold: float) -> np.ndarray:
    """Expected IoU between one draw (pixel in with probability p) and the mask the instance is cut to.

    An instance that never reaches ``threshold`` is cut at half its peak (as the fixes cut it).
    """
    peak = flat.max(1, keepdims=True)
    b = flat >= np.maximum(np.where(peak >= threshold, threshold, 0.5 * peak), 1e-6)
    inside = np.where(b, flat, 0.0).sum(1)
    outside = np.where(b, 0.0, flat).sum(1)
    return inside / np.maximum(b.sum(1) + outside, 1e-6)


def _shape(p: np.ndarray, threshold: float) -> tuple[float, float, float, float]:
    """Skeleton endpoints, branch points, length (skeleton pixels) and area of the cut mask."""
    from skimage.morphology import skeletonize

    peak = float(p.max())
    level = max(threshold if peak >= threshold else 0.5 * peak, 1e-6)
    m = p >= level
    box = ndimage.find_objects(m.astype(np.int8))
    if not box or box[0] is None:
        return 0.0, 0.0, 0.0, 0.0
    m = np.pad(m[box[0]], 1)
    opened = ndimage.binary_opening(m)  # 1-px bumps of the outline would give skeleton spurs
    m = opened if opened.any() else m
    sk = skeletonize(m)
    nb = ndimage.convolve(sk.astype(np.int8), np.ones((3, 3), np.int8), mode="constant") - 1
    return float((sk & (nb == 1)).sum()), float((sk & (nb >= 3)).sum()), float(sk.sum()), float(m.sum())


def _contact(half: np.ndarray) -> np.ndarray:
    """Per instance: the share of the 2-px ring around its mask that other instances' masks cover."""
    count = half.sum(0)
    out = np.zeros(len(half))
    for k in range(len(half)):
        box = ndimage.find_objects(half[k].astype(np.int8))
        if not box or box[0] is None:
            continue
        sl = tuple(slice(max(s.start - 3, 0), min(s.stop + 3, n)) for s, n in zip(box[0], half.shape[1:]))
        m = half[k][sl]
        ring = ndimage.binary_dilation(m, iterations=2) & ~m
        others = (count[sl] - m) > 0
        out[k] = float((ring & others).sum() / max(ring.sum(), 1))
    return out


def _touches_border(half: np.ndarray) -> np.ndarray:
    edge = np.zeros(half.shape[1:], bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    return (half & edge[None]).reshape(len(half), -1).any(1)


def features(parts: list, insts: list[int], st: dict[str, np.ndarray]) -> dict[str, float]:
    """One candidate's ``FEATURES`` from its parts (``review_candidates._Part``) and instances."""
    region = sum(p.mass for p in parts if p.region)
    outline = sum(p.mass for p in parts if not p.region)
    idx = np.array(insts)
    size = np.clip(np.log(np.maximum(st["area"][idx], 1.0) / st["median_area"][idx]), -3.0, 3.0)
    length = np.clip(np.log(st["length"][idx]), -3.0, 3.0)
    return {
        "log_region_mass": float(np.log1p(region)),
        "log_outline_mass": float(np.log1p(outline)),
        "outline_per_area": float(outline / max(st["area"][idx].sum(), 1.0)),
        "instances": float(len(idx)),
        "unbinarised": float(np.mean(~st["binarised"][idx])),
        "min_existence": float(st["existence"][idx].min()),
        "log_size_max": float(size.max()),
        "log_size_min": float(size.min()),
        "contact": float(st["contact"][idx].max()),
        "touches_border": float(np.mean(st["border"][idx])),
        "min_mean_prob": float(st["mean_prob"][idx].min()),
        "uncertain_share": float(st["uncertain_share"][idx].max()),
        "min_soft_iou": float(st["soft_iou"][idx].min()),
        "max_endpoints": float(min(st["endpoints"][idx].max(), 8.0)),
        "max_branches": float(min(st["branches"][idx].max(), 8.0)),
        "log_length_min": float(length.min()),
        "log_length_max": float(length.max()),
        "log_width_max": float(np.clip(np.log(st["width"][idx]).max(), -3.0, 3.0)),
    }
