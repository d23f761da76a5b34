"""Progressive inference (issue 17): the mean network's result first, then one update per draw.

Real parts only: the bundled model on a 128x160 crop of sample well C10 (five worms, two
crossing) and on the whole well; a tiny real U-Net where the model's weights do not matter.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from napari_probseg.checkpoint import PostprocessConfig
from napari_probseg.inference import (
    Cancelled,
    forward_draws,
    predict,
    predict_progressive,
    prepare_input,
)
from napari_probseg.masks import mask_iou
from napari_probseg.models import load_model
from napari_probseg.postprocess import cluster_draw
from napari_probseg.sample_data import load_sample
from tests.conftest import tiny_model

CROP = (slice(None), slice(112, 240), slice(224, 384))


@pytest.fixture(scope="module")
def bundled():
    return load_model("bbbc010-concrete")


def matched_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iou = mask_iou(a, b)
    r, c = linear_sum_assignment(-iou)
    return iou[r, c]


def test_first_update_is_the_mean_network_with_labels_then_one_per_draw(bundled):
    post = replace(bundled.postprocess, min_size=100)  # the crop cuts worms: smaller than a whole one
    ups = list(predict_progressive(bundled.model, load_sample("C10")[CROP], post, draws=3))
    assert [u.done for u in ups] == [0, 1, 2, 3] and [u.final for u in ups] == [False, False, False, True]
    first = ups[0].prediction()
    assert first.labels().max() >= 3 and first.draws == []  # worms at once, no draw held yet
    assert set(np.unique(first.probabilities)) <= {0.0, 1.0} and not first.entropy.any() and first.peaks == []
    assert [len(u.prediction().draws) for u in ups[1:]] == [1, 2, 3]
    assert ups[-1].prediction().entropy.max() > 0  # draws disagree somewhere: uncertainty appears


def test_final_update_equals_predict_with_the_same_seed(bundled):
    img, post = load_sample("C10")[CROP], bundled.postprocess
    last = list(predict_progressive(bundled.model, img, post, draws=3, seed=4, batch=1, seeded=True))[-1].prediction()
    pred = predict(bundled.model, img, post, draws=3, seed=4, batch=1, seeded=True)
    np.testing.assert_array_equal(last.probabilities, pred.probabilities)
    np.testing.assert_array_equal(last.entropy, pred.entropy)
    assert [(p.y, p.x) for p in last.peaks] == [(p.y, p.x) for p in pred.peaks]
    assert [it.score for it in last.review_items()] == [it.score for it in pred.review_items()]


def test_cancel_keeps_the_updates_already_yielded():
    got = []
    with pytest.raises(Cancelled):
        for up in predict_progressive(tiny_model(), load_sample("C10")[CROP], PostprocessConfig(min_size=1), draws=6,
                                      should_stop=lambda: len(got) >= 3):
            got.append(up)
    assert [u.done for u in got] == [0, 1, 2]
    assert len(got[-1].prediction().draws) == 2


def test_one_draw_or_no_dropout_runs_the_network_once():
    img = load_sample("C10")[CROP]
    for model, draws in ((tiny_model(), 1), (tiny_model("baseline"), 3)):
        passes = []
        hook = model.head.register_forward_hook(lambda *a, passes=passes: passes.append(1))
        ups = list(predict_progressive(model, img, PostprocessConfig(min_size=1), draws=draws))
        hook.remove()
        assert len(passes) == 1 and ups[-1].done == draws
        np.testing.assert_array_equal(ups[-1].draws[0], ups[0].mean)


def test_batch_size_does_not_change_the_draw_count():
    x = prepare_input(load_sample("C10")[CROP], tiny_model())
    assert len(list(forward_draws(tiny_model(), x, 5, batch=1))) == len(list(forward_draws(tiny_model(), x, 5))) == 5


def test_seeded_mean_shift_gives_the_unseeded_instances_on_real_well_c10(bundled):
    """Each MC draw clustered from the mean network's centres against the unseeded path, on
    the whole well C10: the same number of instances, every matched IoU >= 0.95."""
    post = bundled.postprocess
    x = prepare_input(load_sample("C10"), bundled.model)
    mean = next(forward_draws(bundled.model, x, 1))
    _, centres = cluster_draw(*mean, post.bandwidth, post.cluster_radius, post.min_size)
    for i, (emb, logits) in enumerate(forward_draws(bundled.model, x, 3)):
        plain = cluster_draw(emb, logits, post.bandwidth, post.cluster_radius, post.min_size, seed=i)[0]
        seeded = cluster_draw(emb, logits, post.bandwidth, post.cluster_radius, post.min_size, seed=i, init=centres)[0]
        assert len(seeded) == len(plain) >= 1, i
        assert matched_ious(plain, seeded).min() >= 0.95, i


def test_progressive_leaves_global_rng_alone():
    model = tiny_model()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    list(predict_progressive(model, load_sample("C10")[CROP], PostprocessConfig(min_size=1), draws=2))
    assert torch.equal(torch.get_rng_state(), state)
