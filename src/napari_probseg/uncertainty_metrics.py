"""Uncertainty-quality metrics (paper section 2.4) and the proofreading simulation (section 3.1).

Why: a useful uncertainty is high where the segmentation is wrong and low where it is right.
Following Mukhoti & Gal, every 4x4 patch of every predicted instance is classed as
accurate/inaccurate and certain/uncertain; p(accurate|certain), p(uncertain|inaccurate) and
PAvPU summarise how well the two agree over a range of entropy cuts. The simulation
measures how much proofreading the k most uncertain patches would improve the metrics.
See docs/metrics.md for the exact conventions.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.special import xlogy

from .masks import drop_empty, grown_window, mask_iou
from .metrics import aggregate, image_scores

ENTROPY_CUTS = np.round(np.linspace(0.0, 0.7, 15), 3)


def bernoulli_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p ln p - (1-p) ln(1-p) in nats; exactly 0 at p in {0, 1}, ln 2 at 0.5."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return -xlogy(p, p) - xlogy(1.0 - p, 1.0 - p)


def entropy_map(probabilities: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per pixel, the largest Bernoulli entropy over the instances (float32 [H,W]; zeros when there
    is no instance): the uncertainty map predict, saved predictions and resampled ones all show."""
    if len(probabilities) == 0:
        return np.zeros(tuple(shape)[-2:], np.float32)
    return bernoulli_entropy(probabilities).max(0).astype(np.float32)


def patch_mean(x: np.ndarray, size: int = 4) -> np.ndarray:
    """Mean over non-overlapping ``size`` x ``size`` patches of the last two axes.

    A remainder at the bottom/right border forms smaller patches averaged over their valid
    pixels only (nothing is cropped); BBBC010's 520 x 696 divides by 4 exactly.
    """
    a = np.asarray(x, dtype=np.float64)
    h, w = a.shape[-2:]
    ph, pw = -h % size, -w % size
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    shape = a.shape[:-2] + ((h + ph) // size, size, (w + pw) // size, size)
    sums = np.pad(a, pad).reshape(shape).sum(axis=(-3, -1))
    counts = np.pad(np.ones((h, w)), [(0, ph), (0, pw)]).reshape(shape[-4:]).sum(axis=(-3, -1))
    return sums / counts


def _matched_gt(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Index of each prediction's Hungarian-matched gt instance, -1 if none (or IoU 0)."""
    iou = mask_iou(pred, gt)
    out = np.full(len(pred), -1)
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] > 0
        out[rows[keep]] = cols[keep]
    return out


def _patch_window(mask: np.ndarray, size: int) -> tuple[slice, slice] | None:
    """Bounding box of ``mask`` widened to the patch grid (same patches, far fewer pixels)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return (slice(rows[0] // size * size, (rows[-1] // size + 1) * size),
            slice(cols[0] // size * size, (cols[-1] // size + 1) * size))


def uncertainty_counts(prob: np.ndarray, gt: np.ndarray, binarize: float = 0.75,
                       entropy_cuts: np.ndarray = ENTROPY_CUTS, size: int = 4) -> dict:
    """n_ac, n_au, n_ic, n_iu per entropy cut, summed over the predicted instances.

    Instance i is ``prob[i] >= binarize``, matched to a gt instance by Hungarian IoU
    (unmatched: an empty mask). Its patches are those with foreground in the binarised
    prediction or the matched gt; a patch is accurate when mean(pred == gt) >= 0.5 and
    uncertain when its mean entropy H(prob[i]) > the cut. Instances that binarise to empty
    and are unmatched have no patches; missed gt instances do not count (only predictions).
    """
    prob = np.asarray(prob, dtype=np.float64)
    gt = np.asarray(gt, dtype=bool)
    th = np.asarray(entropy_cuts, dtype=np.float64)
    pred = prob >= binarize
    match = _matched_gt(pred, gt)
    n = {k: np.zeros(len(th), dtype=np.int64) for k in ("n_ac", "n_au", "n_ic", "n_iu")}
    for i in range(len(pred)):
        g = gt[match[i]] if match[i] >= 0 else np.zeros_like(pred[i])
        win = _patch_window(pred[i] | g, size)
        if win is None:
            continue
        b, g, pr = pred[i][win], g[win], prob[i][win]
        fg = patch_mean(b | g, size) > 0
        acc = patch_mean(b == g, size)[fg] >= 0.5
        unc = patch_mean(bernoulli_entropy(pr), size)[fg][None, :] > th[:, None]  # [T,P]
        n["n_ac"] += (acc & ~unc).sum(1)
        n["n_au"] += (acc & unc).sum(1)
        n["n_ic"] += (~acc & ~unc).sum(1)
        n["n_iu"] += (~acc & unc).sum(1)
    return {"entropy_cuts": th, **n}


def uncertainty_curves(counts_list: list[dict]) -> dict:
    """Sum the counts over images, then the three curves; an empty denominator gives NaN."""
    th = counts_list[0]["entropy_cuts"]
    s = {k: np.sum([c[k] for c in counts_list], axis=0).astype(np.float64)
         for k in ("n_ac", "n_au", "n_ic", "n_iu")}

    def ratio(a: np.ndarray, b: np.ndarray) -> list[float]:
        return np.divide(a, b, out=np.full(a.shape, np.nan), where=b > 0).tolist()

    total = s["n_ac"] + s["n_au"] + s["n_ic"] + s["n_iu"]
    return {
        "entropy_cuts": np.asarray(th).tolist(),
        "p_accurate_given_certain": ratio(s["n_ac"], s["n_ac"] + s["n_ic"]),
        "p_uncertain_given_inaccurate": ratio(s["n_iu"], s["n_ic"] + s["n_iu"]),
        "pavpu": ratio(s["n_ac"] + s["n_iu"], total),
        **{k: v.astype(np.int64).tolist() for k, v in s.items()},
    }


def peak_patches(entropy_map: np.ndarray, k: int | None = None, size: int = 4) -> list[tuple[float, int, int]]:
    """Local maxima (3x3 patch neighbourhood) of the patch-mean entropy, score > 0, best first.

    Returns (score, y0, x0) with (y0, x0) the top-left pixel of the patch.  A plateau of
    equal maxima (e.g. a whole worm seen in half of the draws has entropy ln 2 along its
    length) is one peak, at the plateau patch nearest its centre: otherwise one uncertain
    worm fills the top of the list and the proofreader sees the same error k times.
    Ties between peaks are ordered by position.
    """
    pm = patch_mean(entropy_map, size)
    peak = (pm == ndimage.maximum_filter(pm, size=3, mode="constant", cval=-np.inf)) & (pm > 0)
    lab, n = ndimage.label(peak, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    ys, xs = np.nonzero(peak)
    ids = lab[ys, xs]
    members = np.bincount(ids, minlength=n + 1)[ids]  # patches in each point's plateau
    cy = np.bincount(ids, weights=ys, minlength=n + 1)[ids] / members
    cx = np.bincount(ids, weights=xs, minlength=n + 1)[ids] / members
    near = np.lexsort((xs, ys, (ys - cy) ** 2 + (xs - cx) ** 2, ids))  # per plateau: nearest the centre first
    _, first = np.unique(ids[near], return_index=True)
    ys, xs = ys[near[first]], xs[near[first]]
    order = np.lexsort((xs, ys, -pm[ys, xs]))
    out = [(float(pm[ys[i], xs[i]]), int(ys[i]) * size, int(xs[i]) * size) for i in order]
    return out if k is None else out[:k]


def _correct(pred: np.ndarray, prob: np.ndarray | None, gt: np.ndarray, boxes: list[tuple[int, int]],
             patch: int, prob_floor: float) -> np.ndarray:
    """Replace the predictions touching any box by their best-IoU gt instance (no duplicates)."""
    h, w = gt.shape[-2:]
    touch = np.zeros((h, w), dtype=bool)
    for y0, x0 in boxes:  # the patch dilated by one pixel: "within or directly neighbouring"
        touch[grown_window(y0, x0, patch, (h, w))] = True
    present = pred if prob is None else pred | (prob > prob_floor)
    return correct_instances(pred, present, gt, present[:, touch].any(axis=1))


def correct_instances(pred: np.ndarray, present: np.ndarray, gt: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """Replace the instances ``hit`` (bool [N]) by their best-IoU gt instance (no duplicates);
    ``present`` is each instance as the proofreader sees it (uncertain part included)."""
    h, w = gt.shape[-2:]
    if not hit.any():
        return pred
    keep = [m for m in pred[~hit]]
    iou = mask_iou(present[hit], gt)  # the instance as the proofreader sees it, uncertain part included
    best = iou.argmax(axis=1) if gt.shape[0] else np.array([], dtype=int)
    for j in sorted({int(b) for b, v in zip(best, iou.max(axis=1, initial=0.0)) if v > 0}):
        if not any(np.array_equal(gt[j], m) for m in keep):  # already predicted: do not duplicate
            keep.append(gt[j])
    return np.stack(keep) if keep else np.zeros((0, h, w), dtype=bool)


def simulate_proofreading(predictions: dict[str, np.ndarray], probabilities: dict[str, np.ndarray] | None,
                          peaks: dict[str, list[tuple[float, int, int]]], gts: dict[str, np.ndarray],
                          ks: tuple[int, ...] = (0, 5, 10, 15, 20), patch: int = 4,
                          prob_floor: float = 0.1) -> list[dict]:
    """Metrics after proofreading the k highest-scoring peak patches pooled over all wells.

    A predicted instance is corrected when its binary mask (or, with ``probabilities``, its
    probability > ``prob_floor``) reaches the patch dilated by one pixel; it is replaced by its
    best-IoU gt instance (IoU of that same mask), or removed when it overlaps none. Missed gt
    worms are not added.  ``predictions`` and ``probabilities`` are aligned stacks; an
    instance whose binary mask is empty (below the binarisation threshold everywhere) is
    not scored but can still be corrected: it is the uncertain worm a proofreader is sent to.
    """
    wells = list(gts)
    pooled = sorted(((float(s), wi, int(y), int(x)) for wi, wl in enumerate(wells) for s, y, x in peaks.get(wl, [])),
                    key=lambda t: -t[0])  # stable: ties keep well order, then peak order
    base = {wl: image_scores(drop_empty(predictions[wl]), gts[wl]) for wl in wells}
    rows = []
    for k in ks:
        boxes: dict[str, list[tuple[int, int]]] = {}
        for _, wi, y, x in pooled[:k]:
            boxes.setdefault(wells[wi], []).append((y, x))
        scores = []
        for wl in wells:
            if wl not in boxes:
                scores.append(base[wl])
                continue
            prob = None if probabilities is None else np.asarray(probabilities[wl])
            fixed = _correct(np.asarray(predictions[wl], bool), prob, np.asarray(gts[wl], bool), boxes[wl],
                             patch, prob_floor)
            scores.append(image_scores(drop_empty(fixed), gts[wl]))
        agg = aggregate(scores)
        rows.append({"k": int(k), **{m: agg[m] for m in ("avAP", "AP50", "AP75", "recall80", "avAP_dsb")}})
    return rows
