"""How well a review list finds the real errors of a well (ground truth needed; ``probseg evaluate``).

An *error* of a well, from the binarised prediction and the ground truth (one-to-one Hungarian
matching on IoU, as the metrics):

- ``merged``: one predicted instance holds >= half of each of two or more gt worms;
- ``false``: a predicted instance with no gt partner at IoU >= 0.5 (and not a merge);
- ``missed``: a gt worm with no predicted partner at IoU >= 0.5 (and not inside a merge);
- ``imprecise``: a matched pair with 0.5 <= IoU < 0.8 (its pixels: where the two differ).

A list entry *finds* an error when its point lies within ``RADIUS`` px of the error's pixels.
For a list of points (review items, or 4x4 patches at their centre) this module counts the
errors found by the top 1/3/5/10 entries and how many of the top 5 lie on some error, and
redoes the paper's proofreading simulation with review items instead of patches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .masks import drop_empty, mask_iou
from .metrics import aggregate, image_scores
from .uncertainty_metrics import correct_instances

RADIUS = 10  # px
TOP_KS = (1, 3, 5, 10)
ON_ERROR_K = 5
SUMMARY_KEYS = ("avAP", "AP50", "AP75", "recall80", "avAP_dsb")


@dataclass
class ErrorSite:
    kind: str  # merged | false | missed | imprecise
    mask: np.ndarray  # [H,W] bool, the error's pixels

    def near(self, radius: int = RADIUS) -> np.ndarray:
        """Pixels within ``radius`` of the error (Euclidean)."""
        return ndimage.distance_transform_edt(~self.mask) <= radius


def find_errors(pred: np.ndarray, gt: np.ndarray) -> list[ErrorSite]:
    """The errors (see the module text) of binarised, non-empty predictions [N,H,W] vs gt [M,H,W]."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    iou = mask_iou(pred, gt)
    n, m = iou.shape
    partner_p, partner_g = np.full(n, -1), np.full(m, -1)
    if n and m:
        rows, cols = linear_sum_assignment(-iou)
        ok = iou[rows, cols] >= 0.5
        partner_p[rows[ok]], partner_g[cols[ok]] = cols[ok], rows[ok]
    errors, in_merge, merges = [], np.zeros(m, bool), np.zeros(n, bool)
    if n and m:
        inter = pred.reshape(n, -1).astype(np.float32) @ gt.reshape(m, -1).T.astype(np.float32)
        held = inter / np.maximum(gt.reshape(m, -1).sum(1), 1)[None, :] >= 0.5  # [N,M]
        merges = held.sum(1) >= 2
        in_merge = held[merges].any(0)
    for i in range(n):
        if merges[i]:
            errors.append(ErrorSite("merged", pred[i]))
        elif partner_p[i] < 0:
            errors.append(ErrorSite("false", pred[i]))
        elif iou[i, partner_p[i]] < 0.8:
            errors.append(ErrorSite("imprecise", pred[i] ^ gt[partner_p[i]]))
    for j in range(m):
        if partner_g[j] < 0 and not in_merge[j]:
            errors.append(ErrorSite("missed", gt[j]))
    return errors


def score_list(points: list[tuple[int, int]], errors: list[ErrorSite], ks: tuple[int, ...] = TOP_KS,
               radius: int = RADIUS) -> dict:
    """Errors found by the top k points (k in ``ks``) and top-``ON_ERROR_K`` points on an error, for one well."""
    near = [e.near(radius) for e in errors]
    pts = [(int(y), int(x)) for y, x in points]
    hits = np.array([[nr[y, x] for y, x in pts] for nr in near], bool).reshape(len(errors), len(pts))  # [E,P]
    first = np.where(hits.any(1), hits.argmax(1) if hits.size else 0, np.iinfo(np.int64).max)  # first finder per error
    top = hits[:, :ON_ERROR_K].any(0)
    return {"errors": len(errors), "kinds": sorted(e.kind for e in errors), "entries": len(pts),
            "found": {str(k): int((first < k).sum()) for k in ks},
            "top_on_error": int(top.sum()), "top_entries": int(len(top))}


def summarise(per_well: dict[str, dict], ks: tuple[int, ...] = TOP_KS) -> dict:
    """Pooled over wells: fraction of errors found by the top k, fraction of top-5 entries on an error."""
    rows = list(per_well.values())
    n_err = sum(r["errors"] for r in rows)
    n_top = sum(r["top_entries"] for r in rows)
    return {
        "wells": len(rows), "errors": n_err, "errors_per_well": n_err / max(len(rows), 1),
        "entries_per_well": float(np.mean([r["entries"] for r in rows])) if rows else 0.0,
        "found_fraction": {str(k): sum(r["found"][str(k)] for r in rows) / n_err if n_err else float("nan") for k in ks},
        "top_on_error_fraction": sum(r["top_on_error"] for r in rows) / n_top if n_top else float("nan"),
    }


def simulate_items(predictions: dict[str, np.ndarray], probabilities: dict[str, np.ndarray],
                   items: dict[str, list[tuple[float, list[int]]]], gts: dict[str, np.ndarray],
                   ks: tuple[int, ...] = tuple(range(11)), pooled: bool = False, prob_floor: float = 0.1) -> list[dict]:
    """Metrics after correcting the top k review items: of each well (``pooled`` False) or the k
    highest-scoring over all wells (``pooled`` True, as the paper's Table 2 counts patches).

    Correcting an item replaces each instance it names by its best-IoU gt worm (the rule of the
    patch simulation, ``uncertainty_metrics._correct``); ``items[well]`` are (score, instance
    indices into the well's full probability stack), best first.
    """
    wells = list(gts)
    order = sorted(((float(s), wi, r) for wi, w in enumerate(wells) for r, (s, _) in enumerate(items.get(w, []))),
                   key=lambda t: -t[0])
    base = {w: image_scores(drop_empty(predictions[w]), gts[w]) for w in wells}
    rows = []
    for k in ks:
        chosen: dict[str, list[int]] = {}
        picks = [(wells[wi], r) for _, wi, r in order[:k]] if pooled else \
            [(w, r) for w in wells for r in range(min(k, len(items.get(w, []))))]
        for w, r in picks:
            chosen.setdefault(w, []).extend(items[w][r][1])
        scores = []
        for w in wells:
            if not chosen.get(w):
                scores.append(base[w])
                continue
            pred = np.asarray(predictions[w], bool)
            hit = np.zeros(len(pred), bool)
            hit[sorted(set(chosen[w]))] = True
            present = pred | (np.asarray(probabilities[w]) > prob_floor)
            scores.append(image_scores(drop_empty(correct_instances(pred, present, np.asarray(gts[w], bool), hit)),
                                       gts[w]))
        agg = aggregate(scores)
        rows.append({"k": int(k), **{m: agg[m] for m in SUMMARY_KEYS}})
    return rows


def score_well(items: list[tuple[int, int]], patches: list[tuple[int, int]], pred: np.ndarray, gt: np.ndarray) -> dict:
    """One well's errors and how the review items and the patches (points, best first) find them."""
    errors = find_errors(pred, gt)
    return {"items": score_list(items, errors), "patches": score_list(patches, errors)}


def review_summary(per_well: dict[str, dict], predictions: dict, probabilities: dict, items: dict, gts: dict) -> dict:
    """``metrics.json['review']``: list scores (pooled and per well) and both item simulations."""
    return {
        "items": summarise({w: r["items"] for w, r in per_well.items()}),
        "patches": summarise({w: r["patches"] for w, r in per_well.items()}),
        "per_well": per_well,
        "simulation_per_well": simulate_items(predictions, probabilities, items, gts),
        "simulation_pooled": simulate_items(predictions, probabilities, items, gts, ks=(0, 5, 10, 15, 20), pooled=True),
    }


PROOFREAD_K = 5  # review items fixed per well in the count-after-proofreading figure


def _nonempty(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(len(masks), int(np.prod(masks.shape[1:]))).any(1)


def fix_items(pred: np.ndarray, prob: np.ndarray, gt: np.ndarray, items: list[list[int]],
              prob_floor: float = 0.1) -> np.ndarray:
    """Instances [N',H,W] after a proofreader fixes ``items`` (each a list of instance indices)
    with the ground truth as the answer.

    Each item's instances (binarised or not) are removed and replaced by every gt worm that
    lies at least half inside them (as the proofreader sees them: probability > ``prob_floor``),
    or, when none does, by their best-IoU gt worm; a gt worm already matched (IoU >= 0.5) by
    an instance no item names, or already put in, is not added twice.  Unlike the Table 2 rule
    (one gt worm per corrected instance), a merge of two worms becomes two worms: the count
    changes the way a proofreader's split changes it.
    """
    pred, gt, prob = np.asarray(pred, bool), np.asarray(gt, bool), np.asarray(prob)
    hit = np.zeros(len(pred), bool)
    for insts in items:
        hit[[i for i in insts if i < len(pred)]] = True
    if not hit.any():
        return pred
    keep = pred[~hit]
    keep = keep[_nonempty(keep)]
    if not len(gt):
        return keep
    gt_area = np.maximum(gt.reshape(len(gt), -1).sum(1), 1)
    added = mask_iou(keep, gt).max(0) >= 0.5 if len(keep) else np.zeros(len(gt), bool)
    taken = added.copy()
    for insts in items:
        idx = [i for i in insts if i < len(pred)]
        if not idx:
            continue
        seen = (pred[idx] | (prob[idx] > prob_floor)).any(0)
        chosen = np.flatnonzero((gt & seen[None]).reshape(len(gt), -1).sum(1) / gt_area >= 0.5)
        if not len(chosen):
            iou = mask_iou(seen[None], gt)[0]
            chosen = np.array([int(iou.argmax())]) if iou.max() > 0 else np.array([], int)
        added[chosen] = True
    new = gt[added & ~taken]
    return np.concatenate([keep, new]) if len(new) else keep


def proofread_counts(predictions: dict[str, np.ndarray], probabilities: dict[str, np.ndarray],
                     items: dict[str, list[tuple[float, list[int]]]], gts: dict[str, np.ndarray],
                     k: int = PROOFREAD_K) -> dict:
    """Worm count of each well's label image after fixing its top ``k`` review items (``fix_items``):
    MAE, bias and exact share against the true count, with the count before for comparison."""
    per_well = {}
    for w, gt in gts.items():
        pred = np.asarray(predictions[w], bool)
        fixed = fix_items(pred, probabilities[w], gt, [insts for _, insts in items.get(w, [])[:k]])
        per_well[w] = {"before": int(_nonempty(pred).sum()), "after": int(_nonempty(fixed).sum()), "true": int(len(gt))}
    err = np.array([r["after"] - r["true"] for r in per_well.values()], float)
    before = np.array([r["before"] - r["true"] for r in per_well.values()], float)
    return {"k": k, "rule": "items' instances replaced by the gt worms at least half inside them (review_metrics.fix_items)",
            "mae": float(np.abs(err).mean()) if len(err) else 0.0, "bias": float(err.mean()) if len(err) else 0.0,
            "exact": float((err == 0).mean()) if len(err) else 0.0,
            "mae_before": float(np.abs(before).mean()) if len(before) else 0.0, "per_well": per_well}
