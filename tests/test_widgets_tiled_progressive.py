"""The Segment dock on a field it segments by tiles: the first result on screen before the end,
refined in place, Cancel keeps what has arrived (issue 17).

A real viewer under Xvfb, the bundled model on test_widgets.py's 128x160 crop of C10.  The
crop goes the tiled way because the test lowers ``inference.AUTO_TILE_PX``, the field size
from which ``tiles_image`` tiles (1024x1024 in use): the same code path as a plate scan,
without its minutes.
"""
from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_probseg import inference  # noqa: E402
from napari_probseg._widgets import ProofreadingWidget  # noqa: E402
from napari_probseg._widgets._common import docked  # noqa: E402
from napari_probseg.counts import count_inputs  # noqa: E402
from napari_probseg.review import review_items  # noqa: E402

from .gui_helpers import errors  # noqa: E402
from .test_widgets_progressive import cancel_at_first_result, segment_dock  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def tiled(monkeypatch):
    monkeypatch.setattr(inference, "AUTO_TILE_PX", 50 * 50)  # the crop and its x0.66 network view
    assert inference.tiles_image((2, 128, 160), None) and inference.tiles_image((2, 84, 106), None)


def _watch(viewer, w, worker):
    seen, ended = [], []
    worker.returned.connect(lambda _res: ended.append(True))

    def look(part):  # after the dock's own handler: the layers it wrote are there
        labels = viewer.layers["C10 labels"] if "C10 labels" in viewer.layers else None
        seen.append(dict(part=part, labels=labels, shape=None if labels is None else labels.data.shape,
                         preview=labels is not None and labels.metadata.get("probseg_preview"),
                         n=0 if labels is None else int(labels.data.max()), ended=bool(ended),
                         status=w.status.text(), bar=(w.progress.value(), w.progress.maximum())))

    worker.yielded.connect(look)
    return seen


def test_tiled_field_shows_the_quick_pass_first_then_refines_in_place(make_napari_viewer, qtbot, notes, tiled):
    viewer = make_napari_viewer(show=True)
    w = segment_dock(viewer, draws=4)
    worker = w.run()
    seen = _watch(viewer, w, worker)
    qtbot.waitUntil(lambda: w.worker is None, timeout=120000)
    assert not errors(notes) and seen
    first = seen[0]
    # worm width auto (the dock's default): the quick pass at the image's own scale while the width is estimated
    assert first["part"].scale_pending and first["part"].done == 0
    assert first["labels"] is not None and first["preview"] and first["n"] >= 3 and not first["ended"]
    assert first["shape"] == viewer.layers[0].data.shape[-2:]
    assert "estimating the worm width" in first["status"] and "refining" in first["status"]
    assert first["bar"] == (1, 5)  # forward passes: the quick one and 4 draws (the scale is kept: one run)
    assert all(s["labels"] is first["labels"] for s in seen)
    final = viewer.layers["C10 labels"]
    assert final is first["labels"]  # updated in place
    assert len([l for l in viewer.layers if l.metadata.get("probseg_role") == "labels"]) == 1
    sess = final.metadata["probseg_session"]
    assert "probseg_preview" not in final.metadata and final.editable and sess.meta["draws"] == 4
    assert viewer.layers["C10 uncertainty (entropy)"].data.max() > 0
    assert viewer.layers["C10 probability (max)"].data.shape == final.data.shape
    assert docked(viewer, ProofreadingWidget).session is sess
    assert "4 draws" in w.status.text() and w.progress.value() == 5
    # review list and count inputs came from crops (finish's boxes=): the dense path's values
    probs = sess.probabilities
    assert sess.items == review_items(probs, sess.binarize, show_all=True) and sess.items
    ref = count_inputs(probs, probs >= sess.binarize, sess.meta["count_inputs"]["draw_counts"])
    assert sess.meta["count_inputs"] == ref and len(ref["draw_counts"]) == 4


def test_tiled_field_cancel_keeps_the_first_result(make_napari_viewer, qtbot, notes, tiled):
    cancel_at_first_result(make_napari_viewer, qtbot, notes)


def cancel_as_the_width_estimate_ends(make_napari_viewer, qtbot, messages, monkeypatch, width: float) -> None:
    """Cancel at the first result on screen, while the width estimate waits for that cancel and then
    says ``width``: a new run at another scale starts and sees the stop at once.  The quick pass on
    screen must be kept (it used to end as 'cancelled before a first result', leaving a preview layer
    without a session)."""
    import time

    from napari_probseg import scale

    def estimate_after_cancel(model, image, device="cpu", should_stop=None):
        while should_stop is not None and not should_stop():
            time.sleep(0.01)
        return width

    monkeypatch.setattr(scale, "estimate_worm_width", estimate_after_cancel)
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    w = segment_dock(viewer, draws=4)
    qtbot.mouseClick(w.run_button, Qt.LeftButton)  # Run, then Cancel at the first result on screen, as a user would
    w.worker.yielded.connect(lambda part: qtbot.mouseClick(w.cancel_button, Qt.LeftButton))
    qtbot.waitUntil(lambda: w.worker is None, timeout=120000)
    assert not errors(messages)
    labels = viewer.layers["C10 labels"]
    sess = labels.metadata["probseg_session"]
    assert "probseg_preview" not in labels.metadata and labels.editable and labels.data.max() >= 3
    assert sess.meta["draws"] == 0 and w.status.text().startswith("cancelled: kept the result of 0 of 4 draws")
    assert docked(viewer, ProofreadingWidget).session is sess


def test_cancel_while_a_resampled_tiled_run_starts_keeps_the_quick_pass(make_napari_viewer, qtbot, notes, tiled,
                                                                         monkeypatch):
    cancel_as_the_width_estimate_ends(make_napari_viewer, qtbot, notes, monkeypatch, 13.0)  # x0.66, still tiled


def test_cancel_while_an_image_grown_into_a_tiled_field_starts_keeps_the_quick_pass(make_napari_viewer, qtbot,
                                                                                   notes, monkeypatch):
    """The untiled path: the crop is not tiled, but magnified x1.6 for the network it is."""
    monkeypatch.setattr(inference, "AUTO_TILE_PX", 25_000)
    assert not inference.tiles_image((2, 128, 160), None) and inference.tiles_image((2, 204, 255), None)
    cancel_as_the_width_estimate_ends(make_napari_viewer, qtbot, notes, monkeypatch, 5.4)


def test_tiled_preview_of_a_resampled_field_is_in_the_users_pixels(make_napari_viewer, qtbot, notes, tiled):
    viewer = make_napari_viewer(show=True)
    w = segment_dock(viewer, draws=2)
    w.worm_width.setText("13")  # shrunk x0.66 for the network
    worker = w.run()
    seen = _watch(viewer, w, worker)
    qtbot.waitUntil(lambda: w.worker is None, timeout=120000)
    assert not errors(notes) and seen
    user = viewer.layers[0].data.shape[-2:]
    assert seen[0]["part"].what == "mean network (no dropout)" and "mean network (no dropout)" in seen[0]["status"]
    assert all(s["shape"] == user for s in seen)
    assert viewer.layers["C10 review items"].data.shape[1] == 2
    assert viewer.layers["C10 labels"].data.shape == user and "resampled x0.66" in w.status.text()


def test_status_texts_of_a_field_of_several_tiles():
    """What the status line says of a 9-tile run (tiny model: tests/test_tiled_progress.py's case)."""
    import numpy as np

    from napari_probseg._widgets._segment_job import cancel_text
    from napari_probseg._widgets._segment_tiled import describe
    from napari_probseg.checkpoint import PostprocessConfig
    from napari_probseg.tiled_progress import predict_tiled_progressive

    from .conftest import tiny_model

    img = np.random.default_rng(0).integers(0, 1000, (2, 150, 170)).astype(np.uint16)
    ups = list(predict_tiled_progressive(tiny_model(), img, PostprocessConfig(min_size=1), draws=3, tile=64, margin=24))
    assert describe(ups[0]) == "mean network (no dropout), tile 1 of 9"
    assert describe(ups[9 + 3]) == "tile 2 of 9: 1 of 3 draws; tiles 3-9: mean network"
    assert describe(ups[-1]) == "tile 9 of 9: 3 of 3 draws"
    mid = ups[9 + 3]
    assert cancel_text({"draws": 0, "tile_draws": list(mid.tile_draws), "tiles_reached": mid.reached}, 3) == \
        "cancelled: kept the tiles' results of 3/1/0/0/0/0/0/0/0 of 3 draws. "
    assert cancel_text({"draws": 0, "tile_draws": [0] * 9, "tiles_reached": 1}, 3) == \
        ("cancelled: kept the result of 0 of 3 draws (mean network only, no uncertainty) "
         "(tile 1 of 9; the rest not segmented). ")
    assert cancel_text({"draws": 2}, 8) == "cancelled: kept the result of 2 of 8 draws. "
