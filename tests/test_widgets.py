"""The napari widgets in a real viewer (Xvfb): inference, fine-tuning, reading and writing, measuring, errors
(the proofreading dock: test_widgets_proofreading.py).

Models are tiny (4 filters, 3 levels) and the image is a 128x160 crop of sample well
C10, so the whole file runs in well under three minutes on two busy cores.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from napari_probseg import session as S
from napari_probseg._layers import channel_layers as _channel_layers  # noqa: E402
from napari_probseg._widgets import InferenceWidget, MeasureWidget, ProofreadingWidget, TrainingWidget  # noqa: E402
from napari_probseg._widgets._common import docked  # noqa: E402
from napari_probseg.checkpoint import PostprocessConfig, save_checkpoint  # noqa: E402
from napari_probseg.inference import Prediction, bernoulli_entropy, uncertainty_peaks  # noqa: E402
from napari_probseg.models import load_model  # noqa: E402
from napari_probseg.outputs import write_prediction  # noqa: E402
from napari_probseg.sample_data import load_sample  # noqa: E402

from .conftest import tiny_model  # noqa: E402
from .gui_helpers import CROP, add_crop, bars_session, errors, open_dock, pick_layer, run_and_wait  # noqa: E402

pytestmark = pytest.mark.gui


def test_segment_bind_results_then_finetune(make_napari_viewer, qtbot, tiny_checkpoint, tmp_path, notes):
    viewer = make_napari_viewer(show=True)
    raw = add_crop(viewer)
    w = InferenceWidget(viewer)
    viewer.window.add_dock_widget(w, name="Segment worms")
    w.set_model(tiny_checkpoint)
    assert [c.currentText() for c in w.layer_combos] == ["C10 fluorescence", "C10 brightfield"]
    w.draws.setValue(2)
    lm = load_model(tiny_checkpoint)
    assert w.min_size.value() == lm.postprocess.min_size  # the model's value is the default
    w.min_size.setValue(lm.postprocess.min_size + 1)
    worker = w.run()
    # switch and overwrite layers mid-run: the results must stay with the captured C10 data
    viewer.add_image(np.ones((64, 64), np.uint16), name="other")
    w.layer_combos[0].setCurrentText("other")
    viewer.layers["C10 fluorescence"].data = np.zeros_like(raw[0])
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert worker is not None and not errors(notes)

    labels = viewer.layers["C10 labels"]
    sess: S.Session = labels.metadata["probseg_session"]
    np.testing.assert_array_equal(sess.image, raw)
    assert labels.data.shape == (128, 160) and sess.channel_names == ["C10 fluorescence", "C10 brightfield"]
    prov = labels.metadata["probseg"]
    assert prov["postprocess"]["min_size"] == lm.postprocess.min_size + 1  # the user's value was used
    assert prov["sha256"] == lm.sha256 and prov["draws"] == 2 and prov["seed"] == 0
    assert prov["binarize"] == pytest.approx(0.75) and prov["dropout_rates"] == pytest.approx(lm.model.dropout_rates())
    ent = viewer.layers["C10 uncertainty (entropy)"]
    assert ent.colormap.name == "magma" and tuple(ent.contrast_limits) == pytest.approx((0, np.log(2)))
    peaks = viewer.layers["C10 uncertainty peaks"]
    assert len(peaks.data) == min(len(sess.peaks), 100) > 0  # the top 100 are drawn, the dock lists all
    np.testing.assert_array_equal(peaks.data[0], (sess.peaks[0].y + 2, sess.peaks[0].x + 2))
    probs = viewer.layers["C10 probability (max)"].metadata["probabilities"]
    assert probs.shape == (len(sess.probabilities), 128, 160)
    dock = docked(viewer, ProofreadingWidget)  # opened by the inference widget and bound to the result
    assert dock is not None and dock.session is sess
    assert "instances" in w.status.text() and "worms (" in w.status.text()  # the count with its interval
    assert list(labels.features.columns[:3]) == ["index", "label", "area_px"]  # the worm table, for hover
    assert list(labels.features["index"]) == sorted(set(np.unique(labels.data)) - {0})

    # fine-tune a few steps on the (corrected) labels and stop: Stop saves a checkpoint
    sess.reviewed[:3] = True
    t = TrainingWidget(viewer)
    viewer.window.add_dock_widget(t, name="Fine-tune")
    assert t.labels_combo.currentText() == "C10 labels" and t.init_edit.text() == str(tiny_checkpoint)
    t.fast_cpu = False
    t.steps.setValue(500)
    t.batch.setValue(1)
    t.crop.setValue(64)
    t.out_edit.setText(str(tmp_path / "ft"))
    assert t.start() is not None
    qtbot.waitUntil(lambda: t.progress.value() >= 2, timeout=60000)
    t.stop()
    qtbot.waitUntil(lambda: t.worker is None, timeout=60000)
    assert t.checkpoint is not None and t.checkpoint.exists() and 2 <= len(t.plot.steps) < 500
    saved = t.save_as(tmp_path / "mine.safetensors")
    assert load_model(saved).meta["step"] == len(t.plot.steps)

    # re-run inference with the fine-tuned model: the training widget compares the peaks
    t.use_for_inference()
    assert w.model_spec() == str(t.checkpoint)
    viewer.layers["C10 fluorescence"].data = raw[0]
    w.layer_combos[0].setCurrentText("C10 fluorescence")
    run_and_wait(qtbot, w)
    assert "Mean entropy at the 3 reviewed peaks" in t.status.text()
    assert not errors(notes)


def test_cancel_and_bad_input(make_napari_viewer, qtbot, tiny_checkpoint, tmp_path, notes):
    viewer = make_napari_viewer(show=True)
    w = InferenceWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.set_model(tiny_checkpoint)
    assert w.run() is None  # no image layer
    assert "No image layer" in errors(notes)[-1]

    viewer.add_image(np.random.rand(2, 64, 64), name="stack")
    assert w.run() is None and "'stack' is chosen for both channels" in errors(notes)[-1]  # the only layer
    viewer.add_image(np.random.rand(64, 64), name="plain")
    w.layer_combos[0].setCurrentText("stack")
    w.layer_combos[1].setCurrentText("plain")
    assert w.run() is None and "shape (2, 64, 64)" in errors(notes)[-1]
    viewer.add_image(np.random.randint(0, 255, (64, 64, 3), np.uint8), name="rgb", rgb=True)
    w.layer_combos[0].setCurrentText("rgb")
    assert w.run() is None and "RGB" in errors(notes)[-1]

    three = save_checkpoint(tmp_path / "three.safetensors", tiny_model(in_channels=3), PostprocessConfig())
    w.set_model(three)
    assert "expects 3 input channels" in errors(notes)[-1] and w.run() is None
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    w.set_model(broken)
    assert "Cannot load model" in errors(notes)[-1]

    # cancel mid-run: what has arrived is kept (issue 17), the widget is ready again
    add_crop(viewer)
    w.set_model(tiny_checkpoint)
    w.layer_combos[0].setCurrentText("C10 fluorescence")
    w.layer_combos[1].setCurrentText("C10 brightfield")
    n_errors = len(errors(notes))
    w.draws.setValue(40)
    # set the stop flag in the worker thread itself: a queued cancel can arrive after a fast tiny model finished
    w.relay.progress.connect(lambda done, total: done == 1 and w._stop.set(), Qt.ConnectionType.DirectConnection)
    worker = w.run()
    assert worker is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert w.status.text().startswith("cancelled: kept the result of ") and w.progress.value() < 40
    held = viewer.layers["C10 labels"].metadata["probseg_session"].meta["draws"]
    assert 1 <= held < 40 and f"of {held} of 40 draws" in w.status.text()
    assert w.run_button.isEnabled() and len(errors(notes)) == n_errors


def test_reader_writer_and_samples(make_napari_viewer, qtbot, tmp_path, notes):
    import npe2

    viewer = make_napari_viewer(show=True)
    c = npe2.PluginManager.instance().get_manifest("napari-probseg").contributions
    assert [w.display_name for w in c.widgets] == ["Segment worms", "Proofreading", "Fine-tune", "Measure worms"]
    assert len(c.sample_data) == 3 and c.readers and c.writers
    viewer.open_sample("napari-probseg", "D21")
    assert [l.name for l in viewer.layers] == ["D21 brightfield", "D21 fluorescence"]
    assert viewer.layers["D21 fluorescence"].data.shape == (520, 696)

    # probseg predict output opens as layers; the proofreading dock, opened afterwards, binds to them
    p = np.zeros((2, 40, 60), np.float32)
    p[0, 5:15, 5:50] = 1
    p[1, 20:30, 5:50] = 0.5
    ent = bernoulli_entropy(p).max(0)
    files = write_prediction(Prediction(p, p >= 0.75, ent, uncertainty_peaks(ent, p), [], 0.75), tmp_path, "W01", {})
    viewer.open(str(files["probabilities"]), plugin="napari-probseg")
    assert docked(viewer, ProofreadingWidget) is None  # the reader opens no dock
    dock = open_dock(viewer, "Proofreading")
    assert dock.session.image_name == "W01" and len(dock.session.peaks) > 0
    assert [it.kind for it in dock.session.items] == ["missed"] and files["review"].exists()
    assert dock.session.meta["draw_counts"] == []  # kept for the count interval (no draws in this file)

    # the writer saves the session of a labels layer; a damaged file is a notification
    out = tmp_path / "w.npz"
    lab = dock.labels_layer
    viewer.layers.selection.active = lab
    written = viewer.layers.save(str(out), selected=True, plugin="napari-probseg")
    assert written == [str(out)] and S.Session.load(out).session_id == dock.session.session_id
    bad = tmp_path / "bad.probseg.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert dock.open(bad) == []
    assert "bad.probseg.npz" in errors(notes)[-1]


def test_field_without_worms_gives_an_empty_result_everywhere(make_napari_viewer, qtbot, tmp_path, notes):
    """Issue 12.1: the bundled model on a corner outside the well: 0 instances, an empty review
    list, no error; the proofreading dock walks nothing and fine-tuning on the empty labels starts."""
    viewer = make_napari_viewer(show=True)
    raw = load_sample("C10")[:, :64, :64]
    for data, kwargs, _kind in _channel_layers(raw, "corner", "sample:C10"):
        viewer.add_image(data, **kwargs)
    w = InferenceWidget(viewer)
    viewer.window.add_dock_widget(w, name="Segment worms")
    w.draws.setValue(4)
    run_and_wait(qtbot, w, timeout=120000)
    assert not errors(notes) and "0 instances, 0 worms" in w.status.text() and "0 suspected errors, 0 uncertainty peaks" in w.status.text(), w.status.text()
    sess: S.Session = viewer.layers["corner labels"].metadata["probseg_session"]
    assert not viewer.layers["corner labels"].data.any() and sess.peaks == [] and len(sess.probabilities) == 0
    dock = docked(viewer, ProofreadingWidget)
    assert dock is not None and dock.session is sess
    dock.next_peak()  # nothing to visit: must not raise
    S.Session.load(sess.save(tmp_path / "empty.probseg.npz"))
    t = TrainingWidget(viewer)
    viewer.window.add_dock_widget(t, name="Fine-tune")
    t.init_edit.setText("bbbc010-concrete")
    t.fast_cpu = False
    t.steps.setValue(1)
    t.batch.setValue(1)
    t.out_edit.setText(str(tmp_path / "ft"))
    assert t.start() is not None
    qtbot.waitUntil(lambda: t.worker is None, timeout=120000)
    assert t.checkpoint is not None and t.checkpoint.exists()


def test_measure_dock_hover_count_and_export(make_napari_viewer, qtbot, tmp_path, notes, data_dir):
    """Real worms (C10's ground truth in the crop) as a session; the dock measures them as a click would."""
    import csv

    from napari_probseg._layers import session_layer_data
    from napari_probseg.counts import count_inputs, count_interval
    from napari_probseg.data import load_masks

    viewer = make_napari_viewer(show=True)
    raw = add_crop(viewer)
    gt = load_masks(data_dir, "C10")[CROP]
    gt = gt[gt.reshape(len(gt), -1).sum(1) > 300]  # worms with at least 300 px inside the crop
    probs = gt.astype(np.float32)
    probs[0][gt[0]] = 0.625  # the first worm is doubtful
    ent = bernoulli_entropy(probs).max(0)
    pred = Prediction(probs, probs >= 0.5, ent, uncertainty_peaks(ent, probs), [], 0.5)
    meta = {"count_inputs": count_inputs(probs, pred.instances, [len(gt)] * 8)}
    sess = S.Session.from_prediction(pred, "C10", raw, channel_names=["C10 fluorescence", "C10 brightfield"], meta=meta)
    for data, kwargs, kind in session_layer_data(sess, images=False):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    w = MeasureWidget(viewer)
    viewer.window.add_dock_widget(w, name="Measure worms")
    assert w.layer_combo.currentText() == "C10 labels"
    qtbot.mouseClick(w.measure_button, Qt.LeftButton)
    labels = viewer.layers["C10 labels"]
    f = labels.features
    assert len(f) == len(gt) and list(f["index"]) == list(range(1, len(gt) + 1))
    assert f["area_px"].tolist() == [int((labels.data == i).sum()) for i in range(1, len(gt) + 1)]
    assert (f["length_px"] > 30).all() and f["mean_probability"].iloc[0] == pytest.approx(0.625)
    assert w.table.rowCount() == len(gt) and w.table.horizontalHeaderItem(2).text() == "length_px"
    text = w.count_label.text()
    assert f"Automatic count: {count_interval(meta['count_inputs']).text()}" in text
    assert "straight (>= 0.85)" in text and f"Labels now: {len(gt)}" in text
    w.straight.setValue(0.0)  # every worm is straight at threshold 0
    assert "straight (>= 0.00)" in w.count_label.text() and "curved: 0 (0-0, 90%)" in w.count_label.text()
    # hovering a worm shows its measurements in the status bar
    y, x = np.argwhere(labels.data == 2)[0]
    status = str(labels.get_status((y, x), world=True))
    assert "length_px: " in status and "straightness" in status
    # export: the CSV is the features table
    path = w.export(tmp_path / "worms.csv")
    rows = list(csv.DictReader(open(path)))
    assert [int(r["label"]) for r in rows] == list(f["label"]) and "mean_intensity_w1" in rows[0]
    assert not errors(notes)


def test_channels_match_when_the_dock_is_opened_before_the_sample(make_napari_viewer, qtbot, tiny_checkpoint, notes):
    viewer = make_napari_viewer(show=True)
    w: InferenceWidget = open_dock(viewer, "Segment worms")  # the dock first (issue 16, item 1) ...
    viewer.open_sample("napari-probseg", "C10")  # ... then File > Open Sample > C10 (brightfield arrives first)
    assert [c.currentText() for c in w.layer_combos] == ["C10 fluorescence", "C10 brightfield"]
    assert w.channel_warning.isHidden()
    assert viewer.layers["C10 fluorescence"].metadata["probseg_channel"] == "fluorescence"

    # one layer in both boxes: a visible warning, and Run refuses with a message
    w.set_model(tiny_checkpoint)
    pick_layer(w.layer_combos[0], "C10 brightfield")
    assert not w.channel_warning.isHidden() and "both channels" in w.channel_warning.text()
    qtbot.mouseClick(w.run_button, Qt.LeftButton)
    assert w.worker is None and "'C10 brightfield' is chosen for both channels" in errors(notes)[-1]
    # the user's choice survives a new layer; putting fluorescence back clears the warning
    viewer.add_image(np.zeros((8, 8)), name="notes")
    assert w.layer_combos[0].currentText() == "C10 brightfield"
    pick_layer(w.layer_combos[0], "C10 fluorescence")
    assert w.channel_warning.isHidden()
    job = w._capture()
    np.testing.assert_array_equal(job.image[0], viewer.layers["C10 fluorescence"].data)
    np.testing.assert_array_equal(job.image[1], viewer.layers["C10 brightfield"].data)


def test_channels_match_when_a_session_is_reopened_with_the_dock_open(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer(show=True)
    w: InferenceWidget = open_dock(viewer, "Segment worms")
    s = S.Session.load(bars_session(tmp_path))
    s.channel_names = ["scan A", "scan B"]  # names that say nothing: only the recorded channel can tell
    viewer.open(str(s.save(tmp_path / "renamed.probseg.npz")), plugin="napari-probseg")
    assert [c.currentText() for c in w.layer_combos] == ["scan A", "scan B"] and w.channel_warning.isHidden()
    assert not errors(notes)
