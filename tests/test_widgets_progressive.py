"""The Segment dock shows the mean network's result at once and refines it in place (issue 17).

A real viewer under Xvfb, the bundled model on the 128x160 crop of sample well C10 used by
test_widgets.py; what the user would see is read from the layers and the status line.
"""
from __future__ import annotations

import gc

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_probseg._widgets import InferenceWidget, ProofreadingWidget  # noqa: E402
from napari_probseg._widgets._common import docked  # noqa: E402

from .gui_helpers import add_crop, errors  # noqa: E402

pytestmark = pytest.mark.gui


def segment_dock(viewer, draws: int) -> InferenceWidget:
    add_crop(viewer)
    w = InferenceWidget(viewer)
    viewer.window.add_dock_widget(w, name="Segment worms")
    w.set_model("bbbc010-concrete")
    w.draws.setValue(draws)
    w.min_size.setValue(100)  # the crop cuts worms: smaller than a whole one
    return w


def test_first_result_on_screen_before_the_worker_ends_then_refined_in_place(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer(show=True)
    w = segment_dock(viewer, draws=4)
    seen, ended, frozen = [], [], []
    assert gc.get_freeze_count() == 0
    worker = w.run()
    worker.returned.connect(lambda _res: ended.append(True))

    def look(part):  # runs after the dock's own handler: the layers it wrote are there
        labels = viewer.layers["C10 labels"] if "C10 labels" in viewer.layers else None
        seen.append((part.done, labels, labels is not None and labels.metadata.get("probseg_preview"),
                     labels is not None and labels.data.max(), bool(ended), w.status.text()))
        frozen.append(gc.get_freeze_count())

    worker.yielded.connect(look)
    qtbot.waitUntil(lambda: w.worker is None, timeout=120000)
    assert not errors(notes) and seen
    done, first_labels, preview, n_labels, had_ended, status = seen[0]
    assert done == 0 and first_labels is not None and preview and n_labels >= 3 and not had_ended
    assert "mean network at the image's own scale; estimating the worm width" in status and "refining" in status
    assert min(frozen) > 0 and gc.get_freeze_count() == 0  # objects older than the run left out of GC only meanwhile
    final = viewer.layers["C10 labels"]
    assert final is first_labels  # the same layer, updated in place (no second set of layers)
    assert len([l for l in viewer.layers if l.metadata.get("probseg_role") == "labels"]) == 1
    sess = final.metadata["probseg_session"]
    assert "probseg_preview" not in final.metadata and final.editable and sess.meta["draws"] == 4
    assert viewer.layers["C10 uncertainty (entropy)"].data.max() > 0  # the draws brought uncertainty
    assert docked(viewer, ProofreadingWidget).session is sess
    assert "4 draws" in w.status.text() and "instances" in w.status.text()


def cancel_at_first_result(make_napari_viewer, qtbot, messages) -> None:
    """Run with 40 draws, Cancel at the first result on screen; checks what was kept (also run on a tiled field)."""
    viewer = make_napari_viewer(show=True)
    w = segment_dock(viewer, draws=40)
    worker = w.run()
    worker.yielded.connect(lambda part: w.cancel())  # at the first result on screen
    qtbot.waitUntil(lambda: w.worker is None, timeout=120000)
    assert not errors(messages)
    labels = viewer.layers["C10 labels"]
    sess = labels.metadata["probseg_session"]
    held = sess.meta["draws"]
    assert held < 40 and labels.data.max() >= 3 and labels.editable
    assert w.status.text().startswith(f"cancelled: kept the result of {held} of 40 draws")
    assert docked(viewer, ProofreadingWidget).session is sess and w.run_button.isEnabled()


def test_cancel_keeps_what_has_arrived(make_napari_viewer, qtbot, notes):
    cancel_at_first_result(make_napari_viewer, qtbot, notes)


def test_worm_width_resamples_for_the_model_and_results_stay_in_the_users_pixels(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer(show=True)
    w = segment_dock(viewer, draws=2)
    w.worm_width.setText("wide")
    assert w.run() is None and any("Worm width" in n for n in errors(notes))  # refused before any compute
    notes.clear()
    w.worm_width.setText("13")  # worms drawn wider than trained: shrunk x0.66 for the network
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=120000)
    assert not errors(notes)
    labels = viewer.layers["C10 labels"]
    assert labels.data.shape == viewer.layers[0].data.shape[-2:]  # the user's pixels, not the network's
    meta = labels.metadata["probseg_session"].meta
    assert meta["worm_width_mode"] == "given" and abs(meta["scale_factor"] - 8.6 / 13) < 0.02
    assert "resampled x0.66" in w.status.text()
