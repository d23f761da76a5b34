"""The proofreading dock in a real viewer (Xvfb): the lists, one-key fixes, undo, save and reopen, keys.

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
from napari_probseg._widgets import ProofreadingWidget, TrainingWidget  # noqa: E402
from napari_probseg._widgets._common import camera, docked  # noqa: E402
from napari_probseg.review import LIKELY_SCORE  # noqa: E402

from .gui_helpers import bars_session, errors, open_dock  # noqa: E402

pytestmark = pytest.mark.gui


def test_proofread_queue_edits_undo_save_reopen(make_napari_viewer, qtbot, tmp_path, autosave_dir, notes):
    path = bars_session(tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin="napari-probseg")  # the reader adds layers only
    dock: ProofreadingWidget = open_dock(viewer, "Proofreading")  # as the Plugins menu does; binds to them
    assert dock is not None and dock.session is not None and "bars fl" in viewer.layers
    labels = dock.labels_layer
    s = dock.session
    peaks = s.peaks

    # the default list: the suspected errors, the missed worm first, then the paper's patches on request
    assert dock.queue.mode == "errors" and 1 <= dock.peak_list.count() == len(s.default_items()) <= 3
    assert "possible missed worm: add the model's worm 4" in dock.peak_list.item(0).text()
    assert dock.peaks_layer().visible and not dock.peaks_layer("peaks").visible
    dock.accept()  # marks the first item and moves on to the next open one (or stays on the only one)
    shown = s.items[s.default_items()[1] if len(s.default_items()) > 1 else 0]
    np.testing.assert_allclose(camera(viewer).center[-2:], (shown.y, shown.x))
    assert s.items_reviewed[0] and dock.bar.value() == 1 and not s.reviewed.any()
    dock.list_mode.setCurrentIndex(dock.list_mode.findData("likely"))  # the user picks the short list
    likely = [i for i, it in enumerate(s.items) if it.score >= LIKELY_SCORE]
    assert 1 <= len(likely) and dock.queue.mode == "likely" and dock.peak_list.count() == len(likely) <= len(s.default_items())
    assert dock.bar.maximum() == len(likely) and dock.bar.value() == int(s.items_reviewed[:len(likely)].sum())
    assert dock.current is None and dock.item_text.text() == ""  # no entry of the other list is described
    rings = dock.peaks_layer("items")  # the rings and numbers of the listed items only
    assert (rings.border_color[:, 3] > 0).tolist() == [i in likely for i in range(len(s.items))]
    assert [t for t in rings.features["label"] if t] == [f"{i + 1} {s.items[i].kind}" for i in likely]
    dock.show_list("all")
    assert (rings.border_color[:, 3] > 0).all() and all(rings.features["label"]) and dock.peak_list.count() == len(s.items)
    dock.show_list("patches")
    assert dock.peak_list.count() == len(peaks) and dock.bar.value() == 0 and dock.peaks_layer("peaks").visible

    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key_N)
    assert dock.current == 0
    np.testing.assert_allclose(camera(viewer).center[-2:], (peaks[0].y + 2, peaks[0].x + 2))
    assert labels.selected_label == s.peak_labels(0)[0]
    qtbot.keyClick(canvas, Qt.Key_N)
    assert dock.current == 1
    qtbot.keyClick(canvas, Qt.Key_N, Qt.ShiftModifier)
    assert dock.current == 0
    qtbot.keyClick(canvas, Qt.Key_R, Qt.ShiftModifier)  # accept: reviewed, on to the next open peak
    assert s.reviewed[0] and dock.current == 1 and dock.bar.value() == 1
    colours = dock.peaks_layer().border_color
    np.testing.assert_allclose(colours[0][:3], (0.2, 1, 0.2))  # reviewed: green
    np.testing.assert_allclose(colours[1][:3], (1, 1, 0))  # current: yellow

    # merge 2 into 1 (one undoable step, autosaved at once)
    before = np.array(labels.data)
    dock.label_a.setValue(1)
    dock.label_b.setValue(2)
    qtbot.mouseClick(dock.buttons["merge"], Qt.LeftButton)
    assert 2 not in labels.data and (labels.data[10:16, 10:70] == 1).all()
    auto = autosave_dir / "bars.probseg.npz"
    np.testing.assert_array_equal(S.Session.load(auto).labels, labels.data)
    dock.undo()
    np.testing.assert_array_equal(labels.data, before)

    # split the long instance 3 from two seed points
    dock.label_a.setValue(3)
    assert dock.split() is False  # first press: creates the seed layer and asks for points
    seeds = viewer.layers["bars split seeds"]
    seeds.data = np.array([[43, 12], [43, 84]])
    assert dock.split()
    assert labels.data[43, 12] == 3 and labels.data[43, 84] == 4 and len(seeds.data) == 0
    labels.undo()  # Ctrl+Z path: no dock involvement, the debounced autosave catches it
    np.testing.assert_array_equal(labels.data, before)
    qtbot.waitUntil(lambda: np.array_equal(S.Session.load(auto).labels, before), timeout=5000)

    # erase and replace-by-painting, then save, close and reopen
    dock.label_a.setValue(2)
    assert dock.erase() and 2 not in labels.data
    dock.start_paint()
    paint = viewer.layers["bars paint"]
    paint.data[50:60, 20:30] = 1
    dock.label_a.setValue(0)
    assert dock.replace() and (labels.data[50:60, 20:30] == 4).all()
    final = np.array(labels.data)
    saved = dock.save(tmp_path / "done.probseg.npz")
    viewer.close()

    viewer2 = make_napari_viewer(show=True)
    _, dock2 = viewer2.window.add_plugin_dock_widget("napari-probseg", "Proofreading")  # dock first, then the file
    viewer2.open(str(saved), plugin="napari-probseg")
    np.testing.assert_array_equal(dock2.labels_layer.data, final)
    assert dock2.session.items_reviewed[0] and dock2.bar.value() == 1  # the default list again
    dock2.show_list("patches")
    assert dock2.session.reviewed[0] and dock2.bar.value() == 1
    assert [h["action"] for h in dock2.session.history][:4] == ["reviewed", "reviewed", "merge", "undo"]
    assert not errors(notes)


def test_docks_find_each_other_through_napari_not_a_registry(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    assert docked(viewer, TrainingWidget) is None
    t = open_dock(viewer, "Fine-tune")
    assert docked(viewer, TrainingWidget) is t and docked(viewer, ProofreadingWidget) is None
    viewer.window.remove_dock_widget(t)  # closed by the user: no longer found
    assert docked(viewer, TrainingWidget) is None
    other = make_napari_viewer(show=True)
    assert docked(other, TrainingWidget) is None  # per viewer


def test_dock_keys_leave_a_users_binding_alone(make_napari_viewer, qtbot, tmp_path, autosave_dir, notes):
    viewer = make_napari_viewer(show=True)
    pressed = []

    @viewer.bind_key("n")
    def my_next(v):  # the user's own binding, made before the dock opens
        pressed.append("mine")

    viewer.open(str(bars_session(tmp_path)), plugin="napari-probseg")
    dock = open_dock(viewer, "Proofreading")
    assert dock.keys_left_alone == ["n"]
    assert any("left as they are" in str(n.message) for n in notes)
    dock.show_list("patches")
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key_N)
    assert pressed == ["mine"] and dock.current is None  # the user's key still does the user's thing
    qtbot.keyClick(canvas, Qt.Key_R, Qt.ShiftModifier)  # a free key is the dock's
    assert dock.current is not None and dock.bar.value() == 1
    assert not errors(notes)


def test_shortcuts_work_after_clicking_a_row_and_are_listed(make_napari_viewer, qtbot, tmp_path, notes):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(bars_session(tmp_path)), plugin="napari-probseg")
    dock: ProofreadingWidget = open_dock(viewer, "Proofreading")
    dock.show_list("patches")
    lst = dock.peak_list
    assert lst.count() >= 2
    window = viewer.window._qt_window
    window.activateWindow()  # as after a click on the window (no window manager under Xvfb)
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.mouseClick(lst.viewport(), Qt.LeftButton, pos=lst.visualItemRect(lst.item(0)).center())
    assert dock.current == 0 and lst.hasFocus()  # the list has the keyboard now
    qtbot.keyClick(lst, Qt.Key_N)
    assert dock.current == 1 and lst.currentRow() == 1
    qtbot.keyClick(lst, Qt.Key_N, Qt.ShiftModifier)
    assert dock.current == 0
    qtbot.keyClick(lst, Qt.Key_R, Qt.ShiftModifier)
    assert dock.bar.value() == 1 and dock.current == 1
    dock.buttons["merge"].setFocus()  # any widget of the dock
    qtbot.keyClick(dock.buttons["merge"], Qt.Key_N)
    assert dock.current == min(2, lst.count() - 1)
    # the help lists the shortcuts: a click shows the table (hovering shows it as a tooltip)
    from napari_probseg._widgets._keys import ShortcutsHelp

    helper = dock.findChild(ShortcutsHelp)
    assert helper.table.isHidden()
    qtbot.mouseClick(helper.button, Qt.LeftButton)
    text = helper.table.text()
    assert not helper.table.isHidden() and all(k in text for k in ("<b>N</b>", "Shift+N", "Shift+R"))
    assert helper.button.toolTip() == text and not errors(notes)
