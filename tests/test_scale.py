"""Object size: width measure, resampling round trip, segmentation at another magnification (issue 19)."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_probseg.data import load_image, load_masks
from napari_probseg.inference import predict
from napari_probseg.scale import (
    TRAINING_WORM_WIDTH,
    WIDTH_RANGE,
    choose_scale,
    estimate_worm_width,
    parse_worm_width,
    prediction_to_shape,
    resample_image,
    resample_stack,
    segment_at_width,
    worm_width,
)
from napari_probseg.validation import OptionError

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


def test_enlarging_is_cubic_and_sharper_than_linear():
    """A thin bright bar blown up x1.67 (a 0.6x worm brought to the training scale) keeps steeper
    edges than linear interpolation gives; shrinking stays linear and anti-aliased."""
    bar = np.zeros((40, 40), np.float32)
    bar[:, 18:21] = 1
    cubic, linear = resample_image(bar, 1.67), resample_image(bar, 1.67, order=1)
    assert cubic.shape == linear.shape == (67, 67)
    assert (np.diff(cubic, axis=1) ** 2).sum() > 1.02 * (np.diff(linear, axis=1) ** 2).sum()
    img = np.random.default_rng(1).random((3, 50, 50)).astype(np.float32)
    np.testing.assert_array_equal(resample_image(img, 0.6), resample_image(img, 0.6, order=1))


def test_given_width_sets_the_factor(bundled_model):
    info = choose_scale(bundled_model.model, np.zeros((2, 64, 64)), TRAINING_WORM_WIDTH / 2)
    assert info.factor == pytest.approx(2.0) and not info.estimated
    assert choose_scale(bundled_model.model, np.zeros((2, 64, 64)), TRAINING_WORM_WIDTH).factor == 1.0


def test_a_shrunk_well_segments_in_the_users_pixels(bundled_model):
    """C10 at 0.6x with the width given: the same worms come back, in the small image's pixels."""
    lm = bundled_model
    image = tifffile.imread(SAMPLE)
    native = segment_at_width(lm.model, image, lm.postprocess, TRAINING_WORM_WIDTH, draws=2)[0]
    small = resample_image(image, 0.6)
    pred, info = segment_at_width(lm.model, small, lm.postprocess, TRAINING_WORM_WIDTH * 0.6, draws=2)
    assert info.factor == pytest.approx(1 / 0.6)
    assert pred.probabilities.shape[1:] == small.shape[1:] and pred.entropy.shape == small.shape[1:]
    assert pred.instances.shape == pred.probabilities.shape
    assert all(0 <= p.y < small.shape[1] and 0 <= p.x < small.shape[2] for p in pred.peaks)
    n_native, n_small = len(native.binary_instances()), len(pred.binary_instances())
    assert abs(n_small - n_native) <= 2, (n_native, n_small)


def test_prediction_to_shape_recomputes_instances_from_probabilities(bundled_model):
    lm = bundled_model
    image = tifffile.imread(SAMPLE)[:, :256, :256]
    pred, _ = segment_at_width(lm.model, image, lm.postprocess, TRAINING_WORM_WIDTH, draws=2)
    big = prediction_to_shape(pred, (384, 384))
    assert np.array_equal(big.instances, big.probabilities >= pred.binarize)
    assert big.entropy.shape == (384, 384) and len(big.draws) == len(pred.draws)


def test_ribbons_side_by_side_and_crossing_keep_one_worms_width():
    """Why the trimmed skeleton distance: worms touching or crossing must not read as one fat worm."""
    yy, xx = np.mgrid[:240, :320]
    pair = (np.abs(yy - 100) < 4) | (np.abs(yy - 108) < 4)  # two 7 px ribbons lying against each other...
    pair &= (xx > 20) & (xx < 300)
    pair[(np.abs(yy - 108) < 4) & (xx > 160)] = False  # ...for half their length only
    cross = pair | ((np.abs(xx - 80) < 4) & (yy > 20) & (yy < 220))
    assert worm_width(cross) == pytest.approx(7, rel=0.15)


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("AUTO", "auto"), (None, "auto"), ("off", "off"),
                                         ("6.5", 6.5), (12, 12.0)])
def test_worm_width_setting_parses(text, value):
    assert parse_worm_width(text) == value


@pytest.mark.parametrize("bad", ["-3", "0", "nan", "inf", "wide", "", str(WIDTH_RANGE[1] + 1)])
def test_worm_width_setting_refuses_bad_values_naming_the_range(bad):
    with pytest.raises(OptionError, match=r"--worm-width must be 'auto', 'off' or a worm width in pixels >= "):
        parse_worm_width(bad)


def test_off_is_exactly_plain_predict(bundled_model):
    lm = bundled_model
    image = tifffile.imread(SAMPLE)[:, 100:228, 200:328]
    pred, info = segment_at_width(lm.model, image, lm.postprocess, "off", draws=2)
    plain = predict(lm.model, image, lm.postprocess, draws=2)
    assert info.mode == "off" and info.factor == 1.0 and "off" in info.describe()
    assert np.array_equal(pred.probabilities, plain.probabilities)


@pytest.mark.parametrize("factor", [0.6, 1.6])
def test_estimated_width_of_a_resampled_well_is_within_15_percent(bundled_model, data_dir, factor):
    """C10 resampled: the estimate follows the magnification (true = factor x its ground-truth width)."""
    true = factor * worm_width(load_masks(data_dir, "C10").any(0))
    image = resample_image(load_image(data_dir, "C10"), factor)
    est = estimate_worm_width(bundled_model.model, image)
    assert est == pytest.approx(true, rel=0.15), (est, true)
    info = choose_scale(bundled_model.model, image)
    assert info.estimated and info.factor == pytest.approx(TRAINING_WORM_WIDTH / est)
    assert "estimated; give --worm-width to override" in info.describe()


def test_brightfield_alone_is_resampled_and_mapped_back(tmp_path):
    """A 2-D brightfield image (a model trained for it) goes through the same resampling."""
    from napari_probseg.channels import channel_meta
    from napari_probseg.checkpoint import PostprocessConfig, load_checkpoint, save_checkpoint

    from .conftest import tiny_model

    path = save_checkpoint(tmp_path / "bf.safetensors", tiny_model(), PostprocessConfig(min_size=5, mc_draws=2),
                           {"note": "test", **channel_meta(0.25)})
    model = load_checkpoint(path).model
    bf = tifffile.imread(SAMPLE)[1, 100:196, 200:280]
    assert resample_image(bf, 0.5).shape == (48, 40)
    pred, info = segment_at_width(model, bf, None, TRAINING_WORM_WIDTH / 2, draws=2)
    assert info.factor == pytest.approx(2.0)
    assert pred.probabilities.shape[1:] == bf.shape and pred.entropy.shape == bf.shape


@pytest.mark.parametrize("factor", [0.6, 1.6])
def test_instances_mapped_back_keep_their_area(factor):
    """Cutting linearly resized probabilities at 0.75 would shrink a curved worm by 8-9%; masks keep their area."""
    from napari_probseg.inference import Prediction

    yy, xx = np.mgrid[:60, :80]
    probs = np.zeros((1, 60, 80), np.float32)
    probs[0][np.abs(np.hypot(yy - 30, xx - 40) - 20) < 3] = 1.0  # a ring: a curved 6 px wide worm
    probs[0][np.abs(np.hypot(yy - 30, xx - 40) - 23.5) < 0.5] = 0.5  # an uncertain border below the cut
    pred = Prediction(probs, probs >= 0.75, np.zeros((60, 80), np.float32), [], [], 0.75)
    out = prediction_to_shape(pred, (round(60 * factor), round(80 * factor)))
    assert out.instances.sum() == pytest.approx(pred.instances.sum() * factor ** 2, rel=0.04)
    assert np.array_equal(out.instances, out.probabilities >= 0.75)
    assert np.array_equal(out.probabilities.astype(np.float16) >= 0.75, out.instances)  # as the outputs store them


def test_an_empty_field_gives_no_width_and_is_not_resampled(bundled_model):
    """Outside the well there are no worms: nothing to measure, so the image keeps its scale."""
    corner = tifffile.imread(SAMPLE)[:, :64, :64]
    info = choose_scale(bundled_model.model, corner)
    assert info.worm_width is None and info.factor == 1.0 and "no worms found" in info.describe()


def test_the_estimate_is_divided_by_the_networks_own_width_bias(bundled_model, data_dir):
    """A network that draws worms 25% wider than the annotation reports widths 25% smaller: the
    bias stored in the file is how the estimate becomes the width a person would measure."""
    from dataclasses import replace

    image = load_image(data_dir, "D14")
    model = bundled_model.model
    stored = model.cfg
    try:
        model.cfg = replace(stored, worm_width_bias=1.0)
        raw = estimate_worm_width(model, image)
        model.cfg = replace(stored, worm_width_bias=1.25)
        corrected = estimate_worm_width(model, image)
    finally:
        model.cfg = stored
    assert corrected == pytest.approx(raw / 1.25, rel=0.05)
    assert stored.worm_width_bias > 1.0  # the shipped v5 draws borders outside the annotation


@pytest.mark.parametrize("bias", [0.1, 3.0, "1.1", True])
def test_a_model_file_with_a_bad_width_bias_is_refused(tmp_path, bias):
    import json

    from safetensors.torch import save_file

    from napari_probseg.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
    from napari_probseg.models import resolve_model

    header, tensors = read_checkpoint(resolve_model("bbbc010-concrete"))
    header["model"]["worm_width_bias"] = bias
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"probseg": json.dumps(header)})
    with pytest.raises(CheckpointError, match="worm_width_bias"):
        load_checkpoint(bad)


def test_writing_a_bad_width_bias_is_refused_and_leaves_the_file(tmp_path):
    import shutil

    from napari_probseg.checkpoint import CheckpointError, load_checkpoint, set_worm_width_bias
    from napari_probseg.models import resolve_model

    path = tmp_path / "m.safetensors"
    shutil.copy(resolve_model("bbbc010-concrete"), path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="worm_width_bias"):
        set_worm_width_bias(path, 3.0)
    assert path.read_bytes() == before
    set_worm_width_bias(path, 1.25)
    assert load_checkpoint(path).model.cfg.worm_width_bias == 1.25
