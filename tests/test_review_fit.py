"""Review items merged per instance, scored by the logistic rule, fitted by 2-fold CV; counts after proofreading."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_probseg.review import ReviewConfig, review_items
from napari_probseg.review_candidates import FEATURES, candidates
from napari_probseg.review_fit import (
    WellData,
    choose_cut,
    cross_validate,
    fit_rule,
    fit_weights,
    score_order,
    well_data,
)
from napari_probseg.review_metrics import fix_items, proofread_counts

from .test_review import A, B, C, X, Y, probs, worm

A_WIDE = worm(20, 20, 20, 140, width=14)
A_SHORT = worm(20, 20, 20, 95)  # A without its tail


def test_tail_and_outline_of_one_worm_are_one_item():
    # half of the draws see a wider A, the other half a short one: a disputed tail and a disputed outline
    p = probs([[A_WIDE, C] if t % 2 else [A_SHORT, C] for t in range(8)])
    mass = replace(ReviewConfig(), scoring="mass", min_score=0)
    split = review_items(p, 0.75, replace(mass, merge_parts=False))
    assert len(split) == 2 and {len(it.instances) for it in split} == {1} and split[0].instances == split[1].instances
    merged = review_items(p, 0.75, mass)
    assert len(merged) == 1 and merged[0].instances == split[0].instances
    assert merged[0].score == pytest.approx(sum(it.score for it in split), abs=0.05)
    assert A_WIDE[merged[0].y, merged[0].x] and merged[0].x >= 95  # the point is on the disputed tail


def test_features_say_what_differs():
    p = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])  # B seen in half of the draws
    (cand,) = candidates(p, 0.75, ReviewConfig())
    f = cand.features
    assert set(f) == set(FEATURES)
    assert f["unbinarised"] == 1 and f["min_existence"] == pytest.approx(0.5) and f["instances"] == 1
    assert f["log_region_mass"] > np.log(500) and f["log_outline_mass"] == 0
    merged = probs([[X, Y, A] if t % 2 else [X | Y, A] for t in range(8)])
    big = max(candidates(merged, 0.75, ReviewConfig()), key=lambda c: c.features["instances"])
    assert big.features["instances"] == 2 and big.features["unbinarised"] == 0.5  # Y alone never reaches the cut


def test_logistic_score_is_a_percentage_and_weights_rank():
    p = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])
    w = np.zeros(len(FEATURES))
    w[FEATURES.index("unbinarised")] = 4.0
    hi = review_items(p, 0.75, replace(ReviewConfig(), scoring="model", weights=tuple(w), intercept=-2.0, min_score=0))
    lo = review_items(p, 0.75, replace(ReviewConfig(), scoring="model", weights=tuple(-w), intercept=-2.0, min_score=0))
    assert hi[0].score == pytest.approx(100 / (1 + np.exp(-2)), abs=0.01)
    assert lo[0].score == pytest.approx(100 / (1 + np.exp(6)), abs=0.01)
    assert review_items(p, 0.75, replace(ReviewConfig(), scoring="model", weights=tuple(-w), intercept=-2.0,
                                           min_score=5)) == []


def _well(x: list[float], hits: list[list[bool]]) -> WellData:
    X = np.zeros((len(x), len(FEATURES)))
    X[:, 0] = x
    return WellData(X, np.array(hits, bool).reshape(len(hits), len(x)), np.array(x, float))


def test_list_scores_cut_and_fit_on_synthetic_wells():
    # two candidates on one error and one off it: ranked by feature 0
    d = _well([3.0, 1.0, 2.0], [[True, False, False], [False, False, True]])
    s = score_order([d], [d.mass], min_score=0)
    assert s["found_fraction"]["1"] == 0.5 and s["found_fraction"]["3"] == 1.0 and s["entries_per_well"] == 3
    assert s["top_on_error_fraction"] == pytest.approx(2 / 3)
    s = score_order([d], [d.mass], min_score=1.5)  # the off-error candidate is cut: precision rises
    assert s["entries_per_well"] == 2 and s["top_on_error_fraction"] == 1.0 and s["found_fraction"]["5"] == 1.0
    mass = replace(ReviewConfig(), scoring="mass")
    assert choose_cut([d], mass) == 2.0  # the cut that drops only the off-error candidate (scores 1, 2, 3)
    assert choose_cut([d], mass, max_items=1) == 4.0 or score_order([d], [d.mass], choose_cut([d], mass, 1))[
        "entries_per_well"] <= 1
    rng = np.random.default_rng(0)
    wells = []
    for _ in range(20):  # feature 0 is larger on errors: the fit learns a positive weight
        x = rng.normal(size=6)
        on = x + rng.normal(scale=0.5, size=6) > 0.3
        wells.append(_well(list(x), [[bool(v) and j == i for j, v in enumerate(on)] for i in range(6)]))
    w, _ = fit_weights(wells)
    assert w[0] > 0
    rule = fit_rule(wells, replace(ReviewConfig(), scoring="model"))
    assert rule.scoring == "model" and 0 <= rule.min_score < 100
    cv = cross_validate({f"w{i}": d for i, d in enumerate(wells)}, [[f"w{i}" for i in range(10)],
                        [f"w{i}" for i in range(10, 20)]], replace(ReviewConfig(), scoring="model"))
    assert cv["held_out"]["wells"] == 20 and len(cv["rules"]) == 2
    assert cv["held_out"]["top_on_error_fraction"] > 0.5  # better than the 35-40% base rate of the toy wells
    with pytest.raises(ValueError):
        fit_weights([_well([1.0], [[True]])])


def test_well_data_marks_candidates_on_errors():
    p = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])
    d = well_data(p, 0.75, np.stack([A, B, C]))  # B is a real worm the binarised result misses
    assert d.X.shape == (1, len(FEATURES)) and d.hits.shape == (1, 1) and d.positive.tolist() == [True]
    assert well_data(p, 0.75, np.stack([A, C])).hits.shape == (0, 1)  # B is debris: no error, not positive


def test_fixing_items_splits_merges_erases_and_adds():
    gt = np.stack([A, B, X, Y])
    pred = np.stack([A, X | Y, C, np.zeros_like(A)])  # instance 3: B, below the cut everywhere
    prob = pred.astype(np.float32)
    prob[3][B] = 0.5
    assert len(fix_items(pred, prob, gt, [])) == 4  # nothing fixed
    after = fix_items(pred, prob, gt, [[1]])  # the merge becomes X and Y
    assert len(after) == 4 and any(np.array_equal(m, X) for m in after) and any(np.array_equal(m, Y) for m in after)
    assert len(fix_items(pred, prob, gt, [[2]])) == 2  # C matches no worm: erased (plus the empty slot dropped)
    fixed = fix_items(pred, prob, gt, [[1], [2], [3], [0]])
    assert sorted(int(m.sum()) for m in fixed) == sorted(int(g.sum()) for g in gt)  # all four worms, none twice
    res = proofread_counts({"w": pred}, {"w": prob}, {"w": [(90.0, [1]), (80.0, [2]), (70.0, [3])]}, {"w": gt}, k=2)
    assert res["per_well"]["w"] == {"before": 3, "after": 3, "true": 4} and res["mae_before"] == 1
    res = proofread_counts({"w": pred}, {"w": prob}, {"w": [(90.0, [1]), (80.0, [2]), (70.0, [3])]}, {"w": gt}, k=3)
    assert res["mae"] == 0 and res["exact"] == 1
