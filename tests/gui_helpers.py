"""Shared parts of the widget tests: the sample crop, a small saved session, the error notifications
and the ways a user opens docks and picks layers (the fixtures ``notes`` and ``autosave_dir`` are in
conftest.py).

Why a module of its own: five widget test files use them; importing them from one test file
made that file a dependency of the others.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.utils.notifications import Notification

from napari_probseg import session as S
from napari_probseg._layers import channel_layers as _channel_layers
from napari_probseg._widgets import InferenceWidget
from napari_probseg.inference import Prediction, bernoulli_entropy, uncertainty_peaks
from napari_probseg.sample_data import load_sample

CROP = (slice(None), slice(112, 240), slice(224, 384))  # 5 worms of C10, two of them crossing


def add_crop(viewer, name: str = "C10") -> np.ndarray:
    raw = load_sample("C10")[CROP]
    for data, kwargs, _kind in _channel_layers(raw, name, "sample:C10"):
        viewer.add_image(data, **kwargs)
    return raw


def errors(notes: list[Notification]) -> list[str]:
    # plain Notifications: an exception would arrive as an ErrorNotification with a traceback
    assert all(type(n) is Notification for n in notes), [type(n) for n in notes]
    return [str(n.message) for n in notes if n.severity == "error"]


def run_and_wait(qtbot, widget: InferenceWidget, timeout: int = 60000):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return worker


def bars_session(tmp_path: Path) -> Path:
    """A saved session with three known 'worms' and peaks on them: A|B touching, C long; and
    a fourth worm seen in 40% of the draws (never binarised): the one suspected error."""
    p = np.zeros((4, 64, 96), np.float32)
    p[0, 10:16, 10:40] = 1.0
    p[1, 10:16, 40:70] = 1.0
    p[1, 10:16, 40:44] = 0.5  # uncertain seam between 1 and 2
    p[2, 40:46, 10:86] = 1.0
    p[2, 40:46, 46:50] = 0.6  # uncertain middle of the long one
    p[3, 24:33, 10:86] = 0.4  # a worm below the threshold: a possible missed worm
    ent = bernoulli_entropy(p).max(0)
    pred = Prediction(p, p >= 0.5, ent, uncertainty_peaks(ent, p), [], 0.5)
    image = np.stack([(p.max(0) * 1000).astype(np.uint16) + 10, np.full((64, 96), 500, np.uint16)])
    image[1, 0, 0] = 0
    s = S.Session.from_prediction(pred, "bars", image, channel_names=["bars fl", "bars bf"], meta={"model": "toy"})
    assert len(s.peaks) >= 2
    return s.save(tmp_path / "bars.probseg.npz")


def open_dock(viewer, name: str):
    """Open one of the plugin's docks as the Plugins menu does."""
    return viewer.window.add_plugin_dock_widget("napari-probseg", name)[1]


def pick_layer(combo, name: str) -> None:
    """Choose a layer in a box as a user does (the index changes outside the dock's refresh)."""
    combo.setCurrentIndex(combo.findText(name))
    combo.activated.emit(combo.currentIndex())
