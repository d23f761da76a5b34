"""Count estimators and intervals: known inputs, calibration, the 2-fold protocol, zero worms."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_probseg.count_evidence import end_branches
from napari_probseg.count_fit import choose_calibration, conformal_share, count_errors, cross_fit, fit_calibration
from napari_probseg.counts import (
    AREA_ESTIMATORS,
    DEFAULT_CALIBRATION,
    Calibration,
    count_inputs,
    count_interval,
    instance_weights,
    phenotype_counts,
    point_estimate,
    spread,
    worm_multiplicity,
)


def inputs(q, draws, area=None, binarised=None):
    q = list(q)
    return {"q": q, "binarised": binarised if binarised is not None else [v >= 0.75 for v in q],
            "area": area if area is not None else [1000] * len(q), "draw_counts": list(draws)}


def test_zero_instances_count_zero_with_an_interval():
    inp = count_inputs(np.zeros((0, 8, 8), np.float32), np.zeros((0, 8, 8), bool), [0] * 8)
    r = count_interval(inp, Calibration("expected", 0.0, 0.0))
    assert (r.count, r.low, r.high) == (0, 0, 0) and r.text() == "0 worms (0-0, 90%)"
    r = count_interval(inp, Calibration("binarised", 0.0, 1.0))
    assert r.count == 0 and r.low == 0 and r.high == 1  # never below zero; z * 1.0 = 1.64 -> up to 1


def test_inputs_from_probability_maps():
    p = np.zeros((3, 10, 10), np.float32)
    p[0, :4] = 1.0
    p[1, 5:7] = 0.5
    p[2, 8, 8] = 0.125  # seen in one of eight draws
    inp = count_inputs(p, p >= 0.75, [2, 2, 3, 2, 2, 1, 2, 2])
    assert inp["q"] == [1.0, 0.5, 0.125] and inp["binarised"] == [True, False, False]
    assert inp["area"] == [40, 20, 0] and inp["mean_p"] == [1.0, 0.5, 0.0] and inp["ends"][2] == []
    assert point_estimate(inp, "binarised") == 1
    assert point_estimate(inp, "expected") == 1.5  # the one-draw fragment is left out
    assert point_estimate(inp, "draws") == 2
    # Poisson-binomial variance 0.25 (q = 0.5), per-draw MAD 0: sd 0.5
    assert spread(inp) == pytest.approx(0.5)


def test_certain_instances_and_agreeing_draws_give_a_point_interval():
    inp = inputs([1.0] * 12, [12] * 8)
    r = count_interval(inp, Calibration("expected", 0.0, 0.0))
    assert (r.count, r.low, r.high) == (12, 12, 12)
    wide = count_interval(inp, Calibration("expected", 0.0, 1.0))
    assert (wide.low, wide.high) == (11, 13)  # 12 -+ 1.645


def test_merged_worm_counts_twice_by_area():
    inp = inputs([1.0] * 5, [5] * 8, area=[1000, 1100, 950, 1050, 2100])
    assert point_estimate(inp, "binarised") == 5
    assert point_estimate(inp, "binarised_area") == 6 and point_estimate(inp, "expected_area") == 6


def test_multiplicity_ratio_and_cap():
    area, kept = [1000, 1000, 1000, 1450, 10000], [True] * 5
    assert worm_multiplicity(area, kept).tolist() == [1, 1, 1, 1, 10]  # a 10,000 px blob: 10 worms uncapped
    assert worm_multiplicity(area, kept, 1.4, 2).tolist() == [1, 1, 1, 2, 2]
    assert worm_multiplicity(area, kept, 1.6, 3).tolist() == [1, 1, 1, 1, 3]
    inp = inputs([1.0] * 5, [5] * 8, area=area)
    assert point_estimate(inp, "binarised_area", Calibration("binarised_area", merge_ratio=1.4, max_multiplicity=2)) == 7


def test_choice_of_estimator_ratio_and_cap_on_labelled_wells():
    # merged pairs of worms (2,000 px) and big clumps that hold two worms too (5,000 px): capped area counts are exact
    rng = np.random.default_rng(2)
    ins, truth = [], []
    for k in range(24):
        n, pairs = int(rng.integers(9, 14)), int(rng.integers(0, 3))
        area = [1000] * n + [2000] * pairs + [5000] * (k % 3 == 0)
        ins.append(inputs([1.0] * len(area), [len(area)] * 8, area=area))
        truth.append(n + 2 * pairs + 2 * (k % 3 == 0))
    cal = choose_calibration(ins, truth)
    assert cal.estimator in AREA_ESTIMATORS and cal.max_multiplicity == 2 and cal.bias == 0
    res = count_errors([count_interval(i, cal) for i in ins], truth)
    assert res["mae"] == 0 and res["coverage"] == 1
    uncapped = Calibration(cal.estimator, 0.0, cal.sigma0, merge_ratio=cal.merge_ratio)
    assert count_errors([count_interval(i, uncapped) for i in ins], truth)["mae"] > 0.5


def test_calibration_learns_bias_and_extra_error():
    rng = np.random.default_rng(1)
    truth, ins = [], []
    for _ in range(40):  # a segmenter that misses one worm, give or take one
        n = int(rng.integers(10, 16))
        ins.append(inputs([1.0] * n, [n] * 8))
        truth.append(n + 1 + int(rng.integers(-1, 2)))
    cal = fit_calibration(ins, truth, "binarised")
    assert cal.bias == 1.0 and cal.sigma0 > 0
    res = [count_interval(i, cal) for i in ins]
    e = count_errors(res, truth)
    assert e["coverage"] >= 0.9 and e["bias"] == pytest.approx(np.mean([r.count for r in res]) - np.mean(truth))
    assert count_errors([count_interval(i, Calibration("binarised")) for i in ins], truth)["coverage"] < 0.5


def test_sigma0_covers_the_conformal_share_of_few_wells():
    """On 22 wells a 90% interval must hold 21 (ceil(23 x 0.9) / 22), not 20: fitted to exactly 90%
    of so few wells, intervals held 79% of the other fold's counts."""
    assert conformal_share(22, 0.9) == pytest.approx(21 / 22) and conformal_share(47, 0.9) == pytest.approx(44 / 47)
    assert conformal_share(5, 0.9) == 1.0 and conformal_share(1000, 0.9) == pytest.approx(0.901)
    ins = [inputs([1.0] * 12, [12] * 8) for _ in range(22)]  # certain draws: the width is sigma0 alone
    truth = [12] * 19 + [13, 14, 15]  # 19 exact, then off by 1, 2 and 3

    def covered(cal):
        return sum(r.low <= t <= r.high for r, t in zip((count_interval(i, cal) for i in ins), truth))

    cal = fit_calibration(ins, truth, "binarised")
    assert cal.bias == 0 and covered(cal) == 21  # off by 2 covered, off by 3 not: the least sigma0 that holds 21
    assert covered(replace(cal, sigma0=round(cal.sigma0 / 2, 2))) <= 20


def test_cross_fit_applies_each_folds_calibration_to_the_other_fold():
    ins = {f"A{i:02d}": inputs([1.0] * 10, [10] * 8) for i in range(10)}
    truth = {w: 12 if int(w[1:]) < 5 else 10 for w in ins}  # fold 1 misses two worms, fold 2 none
    folds = [[f"A{i:02d}" for i in range(5)], [f"A{i:02d}" for i in range(5, 10)]]
    cv = cross_fit(ins, truth, folds)
    assert cv["calibrations"][0]["bias"] == 2.0 and cv["calibrations"][1]["bias"] == 0.0
    assert all(cv["results"][w].count == 10 for w in folds[0])  # fold 2's calibration: no correction
    assert all(cv["results"][w].count == 12 for w in folds[1])


def test_phenotype_counts_split_the_expected_count():
    inp = inputs([1.0, 1.0, 0.5, 1.0, 0.75], [4, 5, 4, 5, 4, 5, 4, 5])
    ph = phenotype_counts(inp, [True, False, True, False, False], cal=Calibration("expected", 1.0, 0.5))
    assert ph["straight"].mean + ph["curved"].mean == pytest.approx(4.25 + 1.0)
    assert ph["straight"].low <= ph["straight"].count <= ph["straight"].high
    none = phenotype_counts(inputs([], []), [], cal=Calibration("expected", 1.0, 0.5))
    assert none["straight"].count == 0 and none["curved"].count == 0


# synthetic wells for the evidence estimator: worms are 8 px wide bars, 100 px long
EVIDENCE = Calibration("evidence", 0.0, 0.0, 0.9, merge_ratio=1.5, max_multiplicity=2, end_widths=1.8,
                       end_min_area=1.1, sub_weight="one", ragged_probability=0.75)


def bar(shape, y, x, h, w, p=1.0):
    m = np.zeros(shape, np.float32)
    m[y:y + h, x:x + w] = p
    return m


def synthetic_well(extra=()):
    """Eight single worms (horizontal bars) plus the ``extra`` probability maps."""
    shape = (240, 360)
    worms = [bar(shape, 10 + 28 * (k % 8), 10 if k < 8 else 200, 8, 100) for k in range(8)]
    probs = np.stack(worms + [e for e in extra])
    return probs, shape


def test_end_branches_of_a_worm_and_of_a_crossing():
    straight = bar((60, 160), 20, 20, 8, 100) > 0
    ends = end_branches(straight)
    assert len(ends) == 2 and min(ends) > 40  # one branch, end to end
    plus = (bar((160, 160), 76, 30, 8, 100) + bar((160, 160), 30, 76, 100, 8)) > 0
    ends = end_branches(plus)
    assert len(ends) == 4 and min(ends) > 30  # two worms crossing: four long ends
    assert end_branches(np.zeros((10, 10), bool)) == []


def test_a_merged_pair_counts_two():
    # two worms crossing in one instance (a plus, 1.9 x a worm's area) and a worm with another's arm (a T, 1.3 x)
    probs, shape = synthetic_well()
    cross = bar(shape, 150, 220, 8, 100) + bar(shape, 110, 266, 90, 8)
    tee = np.minimum(bar(shape, 60, 200, 8, 100) + bar(shape, 68, 246, 30, 8), 1.0)
    probs = np.concatenate([probs[:6], np.minimum(cross, 1.0)[None], tee[None]])
    inp = count_inputs(probs, probs >= 0.75, [8] * 8)
    assert point_estimate(inp, "binarised") == 8
    weights = instance_weights(inp, EVIDENCE)
    assert weights[:6].tolist() == [1.0] * 6 and weights[6] == 2 and weights[7] == 2
    assert point_estimate(inp, "evidence", EVIDENCE) == 10
    # the end-branch rule alone (area rule off) still sees the T, whose area (1.3 x) the area rule misses
    ends_only = instance_weights(inp, Calibration("evidence", merge_ratio=0.0, end_widths=1.8, end_min_area=1.1))
    area_only = instance_weights(inp, Calibration("evidence", merge_ratio=1.5, end_widths=0.0))
    assert ends_only[7] == 2 and area_only[7] == 1 and area_only[6] == 2


def test_fragments_do_not_add_a_worm():
    shape = (240, 360)
    fragment_one_draw = bar(shape, 200, 10, 8, 30, 1 / 8)  # seen in one draw of eight
    fragment_faint = bar(shape, 200, 60, 8, 30, 0.375)  # three draws, never in half of them: no p >= 0.5 mask
    rim = bar(shape, 230, 10, 6, 330, 0.625)  # a long ragged strip at the well's rim, found in 5 of 8 draws
    probs, _ = synthetic_well([fragment_one_draw, fragment_faint, rim])
    inp = count_inputs(probs, probs >= 0.75, [8, 9, 8, 8, 8, 10, 8, 8])
    w = instance_weights(inp, EVIDENCE)
    assert w[:8].tolist() == [1.0] * 8 and w[8:].tolist() == [0.0, 0.0, 0.0]
    r = count_interval(inp, EVIDENCE)
    assert r.count == 8
    no_ragged = instance_weights(inp, Calibration("evidence", merge_ratio=0.0, sub_weight="one", ragged_probability=0.0))
    assert no_ragged[10] == 1  # without the ragged rule the rim counts as a worm below the cut


def test_a_clean_well_interval_holds_its_count():
    probs, _ = synthetic_well()
    inp = count_inputs(probs, probs >= 0.75, [8] * 8)
    for cal in (DEFAULT_CALIBRATION, EVIDENCE):
        r = count_interval(inp, cal)
        assert r.low <= 8 <= r.high and r.count == 8 and r.high - r.low <= 3


def test_inputs_saved_before_the_evidence_fall_back_to_the_area_rule():
    old = inputs([1.0] * 5, [5] * 8, area=[1000, 1100, 950, 1050, 2100])
    assert point_estimate(old, "evidence", DEFAULT_CALIBRATION) == 6  # the 2,100 px instance: two worms by area
    assert count_interval(old, DEFAULT_CALIBRATION).count == 6


def test_phenotype_counts_keep_the_evidence_weights():
    probs, shape = synthetic_well()
    cross = np.minimum(bar(shape, 150, 220, 8, 100) + bar(shape, 110, 266, 90, 8), 1.0)
    probs = np.concatenate([probs[:6], cross[None]])
    inp = count_inputs(probs, probs >= 0.75, [7] * 8)
    ph = phenotype_counts(inp, [True] * 6 + [False], cal=EVIDENCE)
    assert ph["straight"].count == 6 and ph["curved"].count == 2  # the crossing is two worms in its class too


def test_choice_prefers_the_evidence_when_merges_hide_from_the_area():
    # wells whose merged instances are worms with another's arm attached (1.3 x a worm's area)
    probs, shape = synthetic_well()
    tee = np.minimum(bar(shape, 60, 200, 8, 100) + bar(shape, 68, 246, 30, 8), 1.0)
    base = count_inputs(probs, probs >= 0.75, [8] * 8)
    merged = count_inputs(np.concatenate([probs[:7], tee[None]]), np.concatenate([probs[:7], tee[None]]) >= 0.75, [8] * 8)
    ins = [merged if k % 2 else base for k in range(12)]
    truth = [9 if k % 2 else 8 for k in range(12)]
    cal = choose_calibration(ins, truth)
    assert cal.estimator == "evidence" and cal.end_widths > 0
    assert count_errors([count_interval(i, cal) for i in ins], truth)["mae"] == 0
