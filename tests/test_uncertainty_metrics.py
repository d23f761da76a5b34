import numpy as np
import pytest

from napari_probseg.metrics import aggregate, image_scores
from napari_probseg.uncertainty_metrics import (
    bernoulli_entropy,
    patch_mean,
    peak_patches,
    simulate_proofreading,
    uncertainty_counts,
    uncertainty_curves,
)

H, W = 32, 48


def box(y0, y1, x0, x1, v=True):
    m = np.zeros((H, W), float if v is not True else bool)
    m[y0:y1, x0:x1] = v
    return m


def test_bernoulli_entropy():
    np.testing.assert_array_equal(bernoulli_entropy(np.array([0.0, 1.0])), [0.0, 0.0])
    assert bernoulli_entropy(0.5) == pytest.approx(np.log(2))
    assert bernoulli_entropy(0.2) == pytest.approx(bernoulli_entropy(0.8))


def test_patch_mean():
    x = np.arange(64, dtype=float).reshape(8, 8)
    pm = patch_mean(x)
    assert pm.shape == (2, 2) and pm[0, 0] == x[:4, :4].mean() and pm[1, 1] == x[4:, 4:].mean()
    y = np.ones((2, 5, 6))  # remainder patches average their valid pixels only
    y[:, 4, 4:] = 3.0
    pm = patch_mean(y)
    assert pm.shape == (2, 2, 2)
    np.testing.assert_allclose(pm[0], [[1, 1], [1, 3]])


def test_certain_accurate_prediction():
    gt = np.stack([box(0, 8, 0, 16), box(12, 20, 8, 40)])
    prob = gt.astype(float)[::-1]  # instance order does not matter
    c = uncertainty_counts(prob, gt, entropy_cuts=np.array([0.0, 0.1, 0.5]))
    assert c["n_ac"].tolist() == [8 + 16] * 3  # 2x4 + 2x8 patches
    assert c["n_au"].sum() == c["n_ic"].sum() == c["n_iu"].sum() == 0
    cur = uncertainty_curves([c, c])
    assert cur["p_accurate_given_certain"] == [1.0] * 3 and cur["pavpu"] == [1.0] * 3
    assert np.isnan(cur["p_uncertain_given_inaccurate"]).all()  # no inaccurate patch at all


def test_inaccurate_uncertain_region():
    gt = box(0, 8, 0, 16)[None]  # 2 x 4 patches
    prob = box(0, 8, 0, 16, 1.0)
    prob[4:8, 12:16] = 0.5  # inside gt but below the 0.75 cut: wrong, entropy ln 2
    prob[0:4, 16:20] = 0.8  # outside gt but above the cut: wrong, entropy 0.500
    c = uncertainty_counts(prob[None], gt, entropy_cuts=np.array([0.1, 0.6, 0.7]))
    assert c["n_ac"].tolist() == [7, 7, 7]
    assert c["n_iu"].tolist() == [2, 1, 0]  # H(0.8) = 0.50 < 0.6 < ln 2 = 0.693 < 0.7
    assert c["n_ic"].tolist() == [0, 1, 2]
    assert c["n_au"].tolist() == [0, 0, 0]
    cur = uncertainty_curves([c])
    np.testing.assert_allclose(cur["p_uncertain_given_inaccurate"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(cur["pavpu"], [1.0, 8 / 9, 7 / 9])
    np.testing.assert_allclose(cur["p_accurate_given_certain"], [1.0, 7 / 8, 7 / 9])


def test_unmatched_prediction_compares_to_empty():
    gt = box(0, 8, 0, 8)[None]
    prob = np.stack([box(0, 8, 0, 8, 1.0), box(20, 24, 20, 24, 0.9)])  # second: false positive
    c = uncertainty_counts(prob, gt, entropy_cuts=np.array([0.1]))
    assert c["n_ac"].tolist() == [4] and c["n_iu"].tolist() == [1] and c["n_ic"].tolist() == [0]


def test_peak_patches():
    ent = np.zeros((H, W))
    ent[8:12, 8:12] = 0.6
    ent[8:12, 12:16] = 0.3  # neighbour of the stronger patch: not a peak
    ent[20:24, 40:44] = 0.4
    assert peak_patches(ent) == [(pytest.approx(0.6), 8, 8), (pytest.approx(0.4), 20, 40)]
    assert peak_patches(ent, k=1) == [(pytest.approx(0.6), 8, 8)]
    assert peak_patches(np.zeros((H, W))) == []


def _toy_set():
    gts = {
        "A": np.stack([box(0, 8, 0, 20), box(16, 24, 0, 20)]),
        "B": np.stack([box(0, 8, 24, 44)]),
    }
    preds = {
        "A": np.stack([box(0, 8, 0, 10), box(0, 8, 10, 20), box(16, 24, 0, 20)]),  # false split + exact
        "B": np.stack([box(1, 9, 24, 44), box(24, 28, 0, 8)]),  # shifted + false positive
    }
    probs = {w: p.astype(float) for w, p in preds.items()}
    peaks = {"A": [(0.9, 4, 8)], "B": [(0.5, 0, 24), (0.2, 24, 4)]}
    return preds, probs, peaks, gts


def test_simulation_k0_and_all():
    preds, probs, peaks, gts = _toy_set()
    rows = simulate_proofreading(preds, probs, peaks, gts, ks=(0, 1, 3))
    base = aggregate([image_scores(preds[w], gts[w]) for w in gts])
    for m in ("avAP", "AP50", "AP75", "recall80", "avAP_dsb"):
        assert rows[0][m] == base[m]
        assert rows[2][m] == 1.0
    assert [r["k"] for r in rows] == [0, 1, 3]
    # k=1 fixes only the split in A (top peak touches both halves, merged into one gt copy)
    fixed_a = image_scores(gts["A"], gts["A"])
    assert rows[1]["avAP"] == aggregate([fixed_a, image_scores(preds["B"], gts["B"])])["avAP"]
    assert base["avAP"] < rows[1]["avAP"] < 1.0


def test_simulation_no_probabilities_touch_rule():
    preds, _, _, gts = _toy_set()
    # patch at (8, 24)..(11, 27) is one pixel below the shifted worm's last row 8 -> touches it
    rows = simulate_proofreading(preds, None, {"B": [(1.0, 9, 24)]}, gts, ks=(1,))
    expect = aggregate([image_scores(preds["A"], gts["A"]), image_scores(np.stack([gts["B"][0], preds["B"][1]]), gts["B"])])
    assert rows[0]["avAP"] == expect["avAP"]
    far = simulate_proofreading(preds, None, {"B": [(1.0, 16, 40)]}, gts, ks=(1,))
    assert far[0]["avAP"] == aggregate([image_scores(preds[w], gts[w]) for w in gts])["avAP"]


def test_plateau_is_one_peak_near_its_centre():
    ent = np.zeros((H, W))
    ent[8:12, 4:44] = np.log(2)  # a worm seen in half of the draws: one flat ridge of patches
    ent[24:28, 8:12] = 0.3
    peaks = peak_patches(ent)
    assert len(peaks) == 2
    assert peaks[0][0] == pytest.approx(np.log(2)) and peaks[0][1] == 8 and 20 <= peaks[0][2] <= 24
    assert peaks[1][1:] == (24, 8)


def test_simulation_corrects_a_worm_below_the_threshold():
    gt = np.stack([box(0, 8, 0, 20), box(16, 24, 0, 20)])
    prob = np.stack([box(0, 8, 0, 20).astype(float), box(16, 24, 0, 20, 0.5)])  # second worm: p = 0.5
    pred = prob >= 0.75  # its binary mask is empty: not scored at k = 0
    rows = simulate_proofreading({"A": pred}, {"A": prob}, {"A": [(0.69, 16, 8)]}, {"A": gt}, ks=(0, 1))
    assert rows[0]["recall80"] == pytest.approx(0.5)  # only the certain worm found
    assert rows[1]["avAP"] == 1.0 and rows[1]["recall80"] == 1.0  # the peak sent the proofreader to the other
