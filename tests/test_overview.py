"""The overview PNG: its legend says what is drawn (issue 16, item 8)."""
from __future__ import annotations

import numpy as np

from napari_probseg.inference import Prediction, bernoulli_entropy, uncertainty_peaks
from napari_probseg.outputs import labels_rgb, overview_rgb, render_overview


def two_channels() -> np.ndarray:
    rng = np.random.default_rng(0)
    bright = rng.uniform(100, 200, (40, 60)).astype(np.float32)
    fluo = np.full((40, 60), 10, np.float32)
    fluo[:, :20] = 500  # a fluorescent (dead) worm on the left
    return np.stack([fluo, bright])


def test_brightfield_is_grey_and_fluorescence_red():
    rgb, legend = overview_rgb(two_channels())
    right = rgb[:, 30:]
    assert np.allclose(right[..., 0], right[..., 1], atol=0.02) and np.allclose(right[..., 1], right[..., 2])
    assert rgb[:, :20, 0].mean() > rgb[:, :20, 1].mean() + 0.3  # red added where it fluoresces
    assert legend == "input (grey: brightfield, red: fluorescence)"
    grey, legend1 = overview_rgb(two_channels()[1:])
    assert legend1 == "input (grey)" and np.allclose(grey[..., 0], grey[..., 2])


def test_instances_in_the_viewer_colours_and_a_png(tmp_path):
    p = np.zeros((2, 40, 60), np.float32)
    p[0, 5:15, 5:50] = 1
    p[1, 16:30, 5:50] = 0.9  # side by side: different colours
    lab_rgb = labels_rgb((p >= 0.75).argmax(0) * (p >= 0.75).any(0) + (p >= 0.75).any(0))
    assert not np.allclose(lab_rgb[10, 20], lab_rgb[20, 20]) and np.allclose(lab_rgb[35, 55], 0)
    ent = bernoulli_entropy(p).max(0)
    pred = Prediction(p, p >= 0.75, ent, uncertainty_peaks(ent, p), [], 0.75)
    assert render_overview(two_channels(), pred, tmp_path / "o.png").stat().st_size > 0
