"""Issue 19 in the Segment dock: the fluorescence box's "none (brightfield only)" entry, driven as clicks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from napari_probseg._widgets import InferenceWidget  # noqa: E402
from napari_probseg._widgets._channels import NO_FLUORESCENCE, match_channels  # noqa: E402
from napari_probseg._widgets._channels import LayerInfo as L  # noqa: E402
from napari_probseg.channels import NEEDS_BOTH, channel_meta  # noqa: E402
from napari_probseg.checkpoint import PostprocessConfig, save_checkpoint  # noqa: E402

from .conftest import tiny_model  # noqa: E402
from .gui_helpers import add_crop, errors, pick_layer  # noqa: E402


def test_none_is_kept_only_when_chosen():
    fl, bf = L("C10 fluorescence", "fluorescence", "C10"), L("C10 brightfield", "brightfield", "C10")
    assert match_channels([bf, fl], 2, [NO_FLUORESCENCE, ""], [True, False]) == [NO_FLUORESCENCE, "C10 brightfield"]
    assert match_channels([bf, fl], 2, [NO_FLUORESCENCE, ""], [False, False])[0] == "C10 fluorescence"


def test_brightfield_only_choice_runs_for_an_allowing_model_and_is_refused_otherwise(
        make_napari_viewer, qtbot, tmp_path: Path, tiny_checkpoint: Path, notes):
    bf_model = save_checkpoint(tmp_path / "bf.safetensors", tiny_model(), PostprocessConfig(min_size=5),
                               channel_meta(0.25))
    viewer = make_napari_viewer(show=True)
    raw = add_crop(viewer)
    w = InferenceWidget(viewer)
    viewer.window.add_dock_widget(w, name="Segment worms")
    w.set_model(bf_model)
    w.draws.setValue(2)
    assert w.layer_combos[0].findText(NO_FLUORESCENCE) >= 0
    pick_layer(w.layer_combos[0], NO_FLUORESCENCE)
    assert w.channel_warning.isHidden()
    viewer.add_image(np.zeros((8, 8)), name="notes layer")  # a refresh keeps the user's "none"
    assert w.layer_combos[0].currentText() == NO_FLUORESCENCE
    qtbot.mouseClick(w.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert not errors(notes)
    sess = viewer.layers["C10 labels"].metadata["probseg_session"]
    np.testing.assert_array_equal(sess.image, raw[1:])  # brightfield alone was segmented

    w.set_model(tiny_checkpoint)  # a model that needs fluorescence: the same clear message, Run refuses
    assert w.layer_combos[0].currentText() == NO_FLUORESCENCE
    assert not w.channel_warning.isHidden() and NEEDS_BOTH in w.channel_warning.text()
    qtbot.mouseClick(w.run_button, Qt.LeftButton)
    assert w.worker is None and NEEDS_BOTH in errors(notes)[-1]
