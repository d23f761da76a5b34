"""The worm-width passes on a big image run by windows (bounded memory) and see what the whole pass sees."""
from __future__ import annotations

import numpy as np
import pytest

from napari_probseg.data import load_image
from napari_probseg.scale import foreground_probability, worm_width


@pytest.fixture(scope="module")
def model():
    from napari_probseg.models import load_model

    return load_model("bbbc010-concrete").model


def _field(data_dir) -> np.ndarray:
    """A 1040x1392 field of four test wells: above AUTO_TILE_PX, so the auto passes use windows."""
    a, b, c, d = (load_image(data_dir, w) for w in ("C07", "C08", "C09", "C10"))
    return np.concatenate([np.concatenate([a, b], -1), np.concatenate([c, d], -1)], -2)


@pytest.fixture(scope="module")
def passes(model, data_dir):
    field = _field(data_dir)
    # auto: 1024 px cores on this field; 0: one pass over the whole field
    return field, foreground_probability(model, field), foreground_probability(model, field, tile=0)


def test_windowed_foreground_matches_the_whole_pass(model, passes):
    field, windowed, whole = passes
    assert windowed.shape == whole.shape == field.shape[-2:]
    assert np.abs(windowed - whole).max() < 0.02
    assert ((windowed > 0.5) != (whole > 0.5)).mean() < 1e-4
    small = foreground_probability(model, field, tile=300)  # many windows, cores off the pooling grid
    assert ((small > 0.5) != (whole > 0.5)).mean() < 1e-3


def test_width_measured_by_windows_is_the_whole_pass_width(passes):
    _, windowed, whole = passes
    w_windowed, w_whole = worm_width(windowed > 0.5), worm_width(whole > 0.5)
    assert w_windowed is not None and abs(w_windowed - w_whole) < 0.05
