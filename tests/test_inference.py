import math

import numpy as np
import pytest

from napari_probseg.checkpoint import PostprocessConfig
from napari_probseg.data import InputError
from napari_probseg.inference import (
    Cancelled,
    agglomerate,
    bernoulli_entropy,
    draws_entropy_map,
    predict,
    uncertainty_peaks,
)
from napari_probseg.uncertainty_metrics import entropy_map, patch_mean
from tests.conftest import tiny_model


def squares(*boxes, shape=(20, 20)):
    out = np.zeros((len(boxes), *shape), bool)
    for m, (y0, y1, x0, x1) in zip(out, boxes):
        m[y0:y1, x0:x1] = True
    return out


def test_identical_draws_give_probability_one():
    d = squares((0, 5, 0, 5), (10, 15, 10, 15))
    p = agglomerate([d.copy() for _ in range(8)])
    assert p.shape == (2, 20, 20)
    assert set(np.unique(p)) == {0.0, 1.0}


def test_disjoint_draws_give_fractions():
    a = squares((0, 5, 0, 5))
    b = squares((10, 15, 10, 15))
    p = agglomerate([a, a, a, b])  # b never overlaps a: a new instance
    assert p.shape == (2, 20, 20)
    assert p[0].max() == pytest.approx(0.75) and p[1].max() == pytest.approx(0.25)


def test_base_is_draw_with_most_instances_and_matching_by_iou():
    one = squares((0, 10, 0, 10))
    two = squares((10, 20, 10, 20), (0, 10, 0, 9))  # second overlaps `one` well
    p = agglomerate([one, two])
    assert p.shape == (2, 20, 20)
    assert p[1, 5, 5] == pytest.approx(1.0) and p[1, 5, 9] == pytest.approx(0.5)
    assert p[0, 15, 15] == pytest.approx(0.5)


def test_entropy_values():
    h = bernoulli_entropy(np.array([0.0, 1.0, 0.5]))
    assert h[0] == 0 and h[1] == 0 and h[2] == pytest.approx(math.log(2))


@pytest.mark.parametrize("t", [1, 2, 3, 7, 8, 16])
def test_draws_entropy_map_is_entropy_map_bit_for_bit(t):
    """Agglomerated draws' probabilities (multiples of 1/T, computed as agglomerate does):
    the fast map must equal the reference, also where instances overlap."""
    rng = np.random.default_rng(t)
    probs = (rng.integers(0, t + 1, (6, 40, 50)).astype(np.float32) / t).astype(np.float32)
    probs[:, :5] = 0  # background
    got, ref = draws_entropy_map(probs, (40, 50)), entropy_map(probs, (40, 50))
    assert got.dtype == ref.dtype == np.float32 and np.array_equal(got, ref)
    assert np.array_equal(draws_entropy_map(probs[:0], (40, 50)), np.zeros((40, 50), np.float32))


def test_patch_entropy_and_peaks_touching_instances():
    ent = np.zeros((16, 16), np.float32)
    ent[4:8, 8:12] = 0.6  # one uncertain patch
    ent[12:16, 0:4] = 0.2
    probs = np.zeros((2, 16, 16), np.float32)
    probs[0, 8:12, 8:12] = 0.5  # touches the first patch from below (within 1 px)
    probs[1, 0:2, 0:2] = 1.0
    pe = patch_mean(ent)
    assert pe.shape == (4, 4) and pe[1, 2] == pytest.approx(0.6)
    peaks = uncertainty_peaks(ent, probs)
    assert [(p.y, p.x) for p in peaks] == [(4, 8), (12, 0)]
    assert peaks[0].instances == [0] and peaks[1].instances == []


def test_predict_runs_reports_progress_and_cancels():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, (2, 40, 56)).astype(np.uint16)
    m = tiny_model()
    seen = []
    pred = predict(m, img, PostprocessConfig(min_size=1), draws=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert pred.entropy.shape == (40, 56) and len(pred.draws) == 3
    assert pred.probabilities.shape[1:] == (40, 56)
    with pytest.raises(Cancelled):
        predict(m, img, draws=4, progress=lambda d, t: None, should_stop=lambda: True)


def test_cancel_stops_before_the_next_draw_is_clustered():
    """Cancel after the first draw: no further clustering (the old code ran a batch of 4)."""
    img = np.random.default_rng(0).integers(0, 1000, (2, 40, 56)).astype(np.uint16)
    clustered = []
    with pytest.raises(Cancelled):
        predict(tiny_model(), img, PostprocessConfig(min_size=1), draws=8,
                progress=lambda d, t: clustered.append(d), should_stop=lambda: len(clustered) >= 1)
    assert clustered == [1]


def test_predict_rejects_wrong_channel_count():
    with pytest.raises(InputError, match="expects 1 channel"):
        predict(tiny_model(in_channels=1), np.random.rand(2, 32, 32))


def _img(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, (2, 40, 56)).astype(np.uint16)


def test_same_seed_same_result_whatever_the_global_rng():
    """The dropout masks come from the call's own generator: the global RNG does not matter."""
    import torch

    m = tiny_model()
    post = PostprocessConfig(min_size=1)
    torch.manual_seed(1)
    a = predict(m, _img(), post, draws=3, seed=5)
    torch.manual_seed(12345)
    torch.rand(100)
    b = predict(m, _img(), post, draws=3, seed=5)
    for da, db in zip(a.draws, b.draws):
        np.testing.assert_array_equal(da, db)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    # and the seed matters: other masks, other raw outputs
    from napari_probseg.inference import forward_draws, prepare_input

    x = prepare_input(_img(), m)
    e5 = next(forward_draws(m, x, 2, seed=5))[0]
    e6 = next(forward_draws(m, x, 2, seed=6))[0]
    assert not torch.equal(e5, e6)


def test_predict_leaves_global_rng_and_model_state_alone():
    import torch

    m = tiny_model()
    m.train()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    pred = predict(m, _img(), PostprocessConfig(min_size=1), draws=2, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert m.training and not any(l.drop.mc or l.drop.generator for _, l in m.dropout_layers())
    assert all(p.is_contiguous() for p in m.parameters())  # not left in channels_last
    assert pred.device == "cpu" and isinstance(pred.bf16, bool)


def test_channels_last_model_stays_channels_last():
    import torch

    m = tiny_model().to(memory_format=torch.channels_last)
    predict(m, _img(), PostprocessConfig(min_size=1), draws=2)
    assert not all(p.is_contiguous() for p in m.parameters())


def test_written_meta_records_precision_and_device(tmp_path):
    from napari_probseg.inference import uses_bf16
    from napari_probseg.outputs import write_prediction

    pred = predict(tiny_model(), _img(), PostprocessConfig(min_size=1), draws=2)
    assert pred.bf16 == uses_bf16("cpu")
    paths = write_prediction(pred, tmp_path, "W")
    with np.load(paths["probabilities"], allow_pickle=False) as z:
        meta = str(z["meta"])
    assert ("bfloat16" if pred.bf16 else "float32") in meta and "'cpu'" in meta.replace('"', "'")


def test_deprecated_threshold_keyword_still_binarises():
    m, post = tiny_model(), PostprocessConfig(min_size=1)
    new = predict(m, _img(), post, draws=2, binarize=0.5)
    with pytest.warns(DeprecationWarning, match="binarize"):
        old = predict(m, _img(), post, draws=2, threshold=0.5)
    assert old.binarize == new.binarize == 0.5 and old.threshold == 0.5
    np.testing.assert_array_equal(old.instances, new.instances)


def test_prediction_meta_is_json_and_old_literal_meta_still_reads(tmp_path):
    import json

    from napari_probseg.outputs import read_meta, write_prediction

    pred = predict(tiny_model(), _img(), PostprocessConfig(min_size=1), draws=2)
    paths = write_prediction(pred, tmp_path, "W", {"seed": np.int64(3), "binarize": 0.75})
    with np.load(paths["probabilities"], allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["seed"] == 3 and meta["draw_counts"] == pred.draw_counts and meta["device"] == "cpu"
    assert read_meta(str({"draw_counts": [1, 2], "threshold": 0.75})) == {"draw_counts": [1, 2], "threshold": 0.75}
    assert read_meta("not a dict") == {"raw": "not a dict"}
