"""Review candidates in a clump of worms (one per worm) and the shape features (skeleton, expected IoU)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_probseg.review import ReviewConfig, review_items
from napari_probseg.review_candidates import candidates
from napari_probseg.review_features import instance_stats

from .test_review import A, B, C, probs, worm

# four arms from one centre: in half of the draws the arms are merged in pairs (1+2, 3+4)
ARMS = [worm(60, 80, 10, 30), worm(60, 80, 10, 130), worm(60, 80, 110, 30), worm(60, 80, 110, 130)]
CLUMP = probs([ARMS if t % 2 else [ARMS[0] | ARMS[1], ARMS[2] | ARMS[3]] for t in range(8)])


def test_a_clump_gives_one_candidate_per_worm_pointing_at_both_merges():
    whole = candidates(CLUMP, 0.75, replace(ReviewConfig(), max_group=99))
    assert len(whole) == 1 and len(whole[0].instances) == 4  # one point for two merges: one is not shown
    split = candidates(CLUMP, 0.75, ReviewConfig())
    assert ReviewConfig().max_group == 3 and len(split) == 4
    assert all(len(c.instances) >= 2 for c in split)  # each names its worm and the worms it competes with
    assert all(c.kind == "merge" for c in split)
    on_arm = {k for c in split for k, arm in enumerate(ARMS) if arm[c.y, c.x]}
    assert on_arm & {0, 1} and on_arm & {2, 3}  # both merges have a point on them
    unfolded = review_items(CLUMP, 0.75, replace(ReviewConfig(), min_score=0, spot_px=0))
    assert len(unfolded) == 4 and len({(it.y, it.x) for it in unfolded}) >= 2
    items = review_items(CLUMP, 0.75, replace(ReviewConfig(), min_score=0))  # the two at each spot are one
    assert len(items) == 2 and np.hypot(items[0].y - items[1].y, items[0].x - items[1].x) >= ReviewConfig().spot_px
    assert {(it.y, it.x) for it in items} <= {(it.y, it.x) for it in unfolded}


def test_skeleton_of_two_merged_worms_branches_and_a_fragment_is_short():
    cross = worm(60, 20, 60, 140) | worm(10, 80, 110, 80)  # two worms crossing, as one instance
    half = worm(20, 20, 20, 80)  # a worm half as long as the others
    st = instance_stats(np.stack([A, B, C, cross, half]).astype(np.float32), 0.75)
    assert st["endpoints"][:3].tolist() == [2, 2, 2] and st["branches"][:3].max() == 0
    assert st["endpoints"][3] == 4 and st["branches"][3] >= 1
    assert st["length"][4] < 0.6 and st["length"][3] > 1.5  # against the median worm
    assert st["soft_iou"][:5] == pytest.approx(1.0)  # every draw agrees: expected IoU 1


def test_expected_iou_falls_when_the_draws_disagree_on_the_tail():
    short = worm(20, 20, 20, 80)
    p = probs([[A, B] if t % 2 else [short, B] for t in range(8)])  # A's tail in half of the draws
    st = instance_stats(p, 0.75)
    a = int(np.argmax([q[20, 130] for q in p]))
    assert st["soft_iou"][a] < 0.8 < st["soft_iou"][1 - a]
    (cand,) = candidates(p, 0.75, ReviewConfig())
    assert cand.features["min_soft_iou"] == pytest.approx(st["soft_iou"][a])
    assert cand.features["log_length_min"] < 0  # A's binarised mask is the short worm


def test_fit_weighs_only_the_features_it_may_use():
    from napari_probseg.review_features import BASE_FEATURES, FEATURES
    from napari_probseg.review_fit import WellData, fit_weights

    rng = np.random.default_rng(1)
    wells = []
    for _ in range(10):  # on an error exactly when the expected IoU is low: a shape feature decides
        X = rng.normal(size=(6, len(FEATURES)))
        on = X[:, FEATURES.index("min_soft_iou")] < 0
        wells.append(WellData(X, np.diag(on)[on].reshape(-1, 6), X[:, 0]))
    w_all, _ = fit_weights(wells)
    w_base, _ = fit_weights(wells, use=BASE_FEATURES)
    assert w_all[FEATURES.index("min_soft_iou")] < -1  # learned from all features
    assert all(v == 0 for f, v in zip(FEATURES, w_base) if f not in BASE_FEATURES)  # the others stay 0


def test_skeletons_are_skipped_only_when_the_scoring_gives_them_no_weight():
    from napari_probseg.review import FEATURES, score_candidates
    from napari_probseg.review_features import SKELETON_FEATURES

    shipped = ReviewConfig()
    assert not shipped.needs_skeletons  # the shipped rule weighs no skeleton feature
    k = FEATURES.index("max_endpoints")
    weighted = replace(shipped, weights=tuple(1.0 if i == k else w for i, w in enumerate(shipped.weights)))
    assert weighted.needs_skeletons and not replace(weighted, scoring="mass").needs_skeletons
    full, quick = candidates(CLUMP, 0.75, shipped), candidates(CLUMP, 0.75, shipped, skeletons=False)
    assert [(c.y, c.x, c.instances) for c in full] == [(c.y, c.x, c.instances) for c in quick]
    np.testing.assert_allclose(score_candidates(full, shipped), score_candidates(quick, shipped))
    # the skeletons were really skipped: the skeleton features differ, and nothing else does
    assert any(c.features[f] != q.features[f] for c, q in zip(full, quick) for f in SKELETON_FEATURES)
    assert all(c.features[f] == q.features[f] for c, q in zip(full, quick) for f in FEATURES
               if f not in SKELETON_FEATURES)
