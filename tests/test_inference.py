import math

import numpy as np
import pytest

from napari_probseg.checkpoint import PostprocessConfig
from napari_probseg.data import InputError
from napari_probseg.inference import (
    Cancelled,
    agglomerate,
    bernoulli_entropy,
    predict,
    uncertainty_peaks,
)
from napari_probseg.uncertainty_metrics import patch_mean
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


def test_predict_rejects_wrong_channel_count():
    with pytest.raises(InputError, match="expects 1 channel"):
        predict(tiny_model(in_channels=1), np.random.rand(2, 32, 32))
