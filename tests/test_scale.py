"""Object size: width measure, resampling round trip, segmentation at another magnification (issue 19)."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_probseg.scale import (
    TRAINING_WORM_WIDTH,
    choose_scale,
    predict_at_scale,
    prediction_to_shape,
    resample_image,
    resample_stack,
    worm_width,
)

SAMPLE = "src/napari_probseg/sample_data/C10.tif"


@pytest.fixture(scope="module")
def bundled_model():
    from napari_probseg.models import load_model

    return load_model("bbbc010-concrete")


@pytest.mark.parametrize("width", [4, 9, 15])
def test_worm_width_of_a_straight_and_a_bent_ribbon(width):
    bar = np.zeros((200, 300), bool)
    bar[100 - width // 2: 100 - width // 2 + width, 40:260] = True
    assert worm_width(bar) == pytest.approx(width, rel=0.15)
    yy, xx = np.mgrid[:300, :300]
    r = np.hypot(yy - 150, xx - 150)
    arc = (np.abs(r - 100) < width / 2) & (xx > 150)  # half ring
    assert worm_width(arc) == pytest.approx(width, rel=0.15)


def test_worm_width_of_nothing_is_unknown():
    assert worm_width(np.zeros((64, 64), bool)) is None


def test_resampling_round_trip_keeps_masks():
    mask = np.zeros((1, 120, 160), bool)
    mask[0, 30:90, 50:70] = True
    small = resample_stack(mask, (72, 96), order=0)
    back = resample_stack(small, (120, 160), order=0)
    assert back.dtype == bool and back.shape == mask.shape
    assert (back & mask).sum() / (back | mask).sum() > 0.9
    img = np.random.default_rng(0).random((2, 120, 160)).astype(np.float32)
    assert resample_image(img, 0.6).shape == (2, 72, 96)


def test_given_width_sets_the_factor(bundled_model):
    info = choose_scale(bundled_model.model, np.zeros((2, 64, 64)), given_width=TRAINING_WORM_WIDTH / 2)
    assert info.factor == pytest.approx(2.0) and not info.estimated
    assert choose_scale(bundled_model.model, np.zeros((2, 64, 64)), TRAINING_WORM_WIDTH).factor == 1.0


def test_a_shrunk_well_segments_in_the_users_pixels(bundled_model):
    """C10 at 0.6x with the width given: the same worms come back, in the small image's pixels."""
    lm = bundled_model
    image = tifffile.imread(SAMPLE)
    native = predict_at_scale(lm.model, image, lm.postprocess, TRAINING_WORM_WIDTH, draws=2)[0]
    small = resample_image(image, 0.6)
    pred, info = predict_at_scale(lm.model, small, lm.postprocess, TRAINING_WORM_WIDTH * 0.6, draws=2)
    assert info.factor == pytest.approx(1 / 0.6)
    assert pred.probabilities.shape[1:] == small.shape[1:] and pred.entropy.shape == small.shape[1:]
    assert pred.instances.shape == pred.probabilities.shape
    assert all(0 <= p.y < small.shape[1] and 0 <= p.x < small.shape[2] for p in pred.peaks)
    n_native, n_small = len(native.binary_instances()), len(pred.binary_instances())
    assert abs(n_small - n_native) <= 2, (n_native, n_small)


def test_prediction_to_shape_recomputes_instances_from_probabilities(bundled_model):
    lm = bundled_model
    image = tifffile.imread(SAMPLE)[:, :256, :256]
    pred, _ = predict_at_scale(lm.model, image, lm.postprocess, TRAINING_WORM_WIDTH, draws=2)
    big = prediction_to_shape(pred, (384, 384))
    assert np.array_equal(big.instances, big.probabilities >= pred.threshold)
    assert big.entropy.shape == (384, 384) and len(big.draws) == len(pred.draws)
