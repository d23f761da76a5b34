"""The count rules added for issue 18: the core gate of the end-branch rule (shipped) and the
rules tried and not shipped (mean-probability merges and gate, thin strips, faint instances)."""
from __future__ import annotations

import numpy as np

from napari_probseg.count_evidence import core_uncertain
from napari_probseg.count_fit import END_MIN_CORES, candidate_shapes, choose_calibration, count_errors
from napari_probseg.counts import DEFAULT_CALIBRATION, Calibration, count_inputs, count_interval, instance_weights

SHAPE = (240, 360)
ENDS = Calibration("evidence", merge_ratio=0.0, end_widths=1.8, end_min_area=1.1, sub_weight="one")


def bar(y, x, h, w, p=1.0):
    m = np.zeros(SHAPE, np.float32)
    m[y:y + h, x:x + w] = p
    return m


def worms(n=8):
    """``n`` single worms found whole by all eight draws: 8 x 100 px bars."""
    return [bar(10 + 28 * (k % 8), 10 if k < 8 else 200, 8, 100) for k in range(n)]


def spurred():
    """One worm with a stub on its side, found whole by every draw: three long end branches."""
    return np.minimum(bar(60, 200, 8, 100) + bar(68, 246, 30, 8), 1.0)


def crossing():
    """A worm with another's arm attached, which some draws split off: the arm is uncertain
    (the same outline as ``spurred``, 1.3 x a worm's area, so no area rule sees it)."""
    return np.maximum(bar(150, 200, 8, 100), bar(158, 246, 30, 8, 0.625))


def test_core_uncertain_tells_a_certain_worm_from_an_uncertain_crossing():
    w = bar(10, 10, 8, 100)
    edge = w.copy()
    edge[10, 10:110] = 0.625  # the outline wavers between draws; the core does not
    assert core_uncertain(edge, edge >= 0.5) == 0.0
    assert core_uncertain(spurred(), spurred() >= 0.5) == 0.0
    c = crossing()
    assert 0.1 < core_uncertain(c, c >= 0.5) < 0.5
    assert core_uncertain(w, np.zeros(SHAPE, bool)) == 0.0
    assert core_uncertain(bar(0, 0, 1, 50), bar(0, 0, 1, 50) > 0) == 0.0  # a 1 px line has no core


def test_the_core_gate_keeps_a_spurred_worm_single_and_a_crossing_double():
    probs = np.stack(worms(6) + [spurred(), crossing()])
    inp = count_inputs(probs, probs >= 0.75, [8] * 8)
    assert inp["core_uncertain"][6] == 0.0 and inp["core_uncertain"][7] > 0.1
    assert instance_weights(inp, ENDS)[6:].tolist() == [2.0, 2.0]  # the end rule alone: both look like two
    gated = Calibration("evidence", merge_ratio=0.0, end_widths=1.8, end_min_area=1.1, sub_weight="one", end_min_core=0.05)
    assert instance_weights(inp, gated)[6:].tolist() == [1.0, 2.0]
    assert count_interval(inp, DEFAULT_CALIBRATION).count == 9  # the shipped rule: 6 + 1 + 2


def test_inputs_without_the_core_share_keep_the_ungated_rule():
    probs = np.stack(worms(6) + [spurred()])
    inp = count_inputs(probs, probs >= 0.75, [8] * 8)
    del inp["core_uncertain"]
    assert instance_weights(inp, Calibration(**{**ENDS.as_dict(), "end_min_core": 0.05}))[6] == 2.0


def test_gated_shapes_come_after_the_plain_grid_and_are_chosen_when_spurs_fool_the_end_rule():
    shapes = candidate_shapes()
    first_gated = next(k for k, s in enumerate(shapes) if s.end_min_core > 0)
    assert all(s.end_min_core == 0 for s in shapes[:first_gated])  # ties keep the ungated rule
    assert {s.end_min_core for s in shapes[first_gated:]} == set(END_MIN_CORES)
    base = worms()
    plain = count_inputs(np.stack(base), np.stack(base) >= 0.75, [8] * 8)
    spur = np.stack(base[:7] + [spurred()])
    cross = np.stack(base[:7] + [crossing()])
    with_spur = count_inputs(spur, spur >= 0.75, [8] * 8)
    with_cross = count_inputs(cross, cross >= 0.75, [8] * 8)
    ins = [plain, with_spur, with_cross] * 4
    truth = [8, 8, 9] * 4
    cal = choose_calibration(ins, truth)
    assert cal.estimator == "evidence" and cal.end_widths > 0 and cal.end_min_core > 0
    assert count_errors([count_interval(i, cal) for i in ins], truth)["mae"] == 0


def test_mass_and_mean_probability_rules():
    # not shipped (no held-out gain, docs/measurements.md): each rule does what it says
    probs = np.stack(worms(6) + [np.maximum(bar(200, 10, 8, 100), bar(208, 10, 4, 100, 0.75)),  # 1.5 x, uncertain half
                                 bar(200, 200, 8, 100, 0.375),  # a worm three draws of eight found
                                 bar(230, 10, 4, 330)])  # a long strip half a worm wide: the well's rim
    inp = count_inputs(probs, probs >= 0.75, [8] * 8)
    assert inp["mass"][7] == 300.0 and inp["area"][7] == 0
    plain = Calibration("evidence", merge_ratio=0.0)
    assert instance_weights(inp, plain)[6:].tolist() == [1.0, 0.0, 1.0]
    rules = Calibration("evidence", merge_ratio=0.0, merge_probability=0.95, faint_weight="mass", thin_width=0.8)
    w = instance_weights(inp, rules)
    assert w[6] == 2.0 and w[7] == 0.375 and w[8] == 0.0
    certain = Calibration("evidence", merge_ratio=0.0, end_widths=1.8, end_min_area=1.1, end_max_probability=0.97)
    spur = np.stack(worms(6) + [spurred()])
    assert instance_weights(count_inputs(spur, spur >= 0.75, [8] * 8), certain)[6] == 1.0


def comb(y=190, x=20, teeth=5):
    """A blob shaped like a comb, as the debris along a well's rim: a bar with ``teeth`` prongs,
    so its skeleton has ``teeth`` + 2 end branches (a worm has 2)."""
    m = bar(y, x, 8, 120)
    for k in range(teeth):
        m = np.maximum(m, bar(y + 8, x + 8 + 24 * k, 30, 6))
    return m


def test_a_comb_shaped_blob_counts_no_worm_and_a_worm_still_counts_one():
    probs = np.stack(worms(6) + [comb(teeth=8), comb(y=110, x=200, teeth=1)])
    inp = count_inputs(probs, probs >= 0.75, [8] * 8)
    assert len(inp["ends"][6]) >= 9 and len(inp["ends"][7]) == 3
    weights = instance_weights(inp, DEFAULT_CALIBRATION)
    assert weights[6] == 0.0  # not worm-shaped: debris
    assert weights[7] >= 1.0 and list(weights[:6]) == [1.0] * 6
    off = Calibration(**{**DEFAULT_CALIBRATION.as_dict(), "blob_ends": 0})
    assert instance_weights(inp, off)[6] >= 1.0  # the rule is what zeroes it
    assert count_interval(inp, DEFAULT_CALIBRATION).count == count_interval(inp, off).count - instance_weights(inp, off)[6]
