"""The Segment dock's layer writer (issue 17): what reaches napari, and when.

A real viewer under Xvfb and real sessions built from predictions of three bar-shaped
"worms"; results are written the way a run writes them (``prepare`` in place of the
worker, ``RunLayers`` on the GUI thread), without a network.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_probseg._widgets._segment_job import Job, session_of  # noqa: E402
from napari_probseg._widgets._segment_layers import ROLES, RunLayers, prepare  # noqa: E402
from napari_probseg.inference import Prediction, bernoulli_entropy, uncertainty_peaks  # noqa: E402

pytestmark = pytest.mark.gui


def bars(n: int, sure: float) -> Prediction:
    """``n`` horizontal bars (instances) on a 64x96 image; the middle of each at probability ``sure``."""
    p = np.zeros((n, 64, 96), np.float32)
    for i in range(n):
        p[i, 6 + 12 * i: 12 + 12 * i, 8:88] = 1.0
        p[i, 6 + 12 * i: 12 + 12 * i, 40:48] = sure
    ent = bernoulli_entropy(p).max(0)
    return Prediction(p, p >= 0.5, ent, uncertainty_peaks(ent, p), [], 0.5)


def job() -> Job:
    image = np.full((2, 64, 96), 100, np.uint16)
    geo = [{"name": f"bars {c}", "id": str(c), "scale": (1.0, 1.0), "translate": (0.0, 0.0)} for c in "ab"]
    return Job("toy", image, "bars", "", geo, "cpu", 4, 0.5, 0)


def result(j: Job, pred: Prediction, final: bool) -> list:
    return prepare(session_of(j, pred, {"draws": 4 if final else 0}), j, final=final)


def test_layers_written_a_turn_apart_labels_first_then_updated_in_place(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 96)), name="bars a")
    j = job()
    run = RunLayers(viewer, j.run_id, "bars")
    labels = run.show(result(j, bars(2, 1.0), final=False), final=False)
    # the labels are on screen at once, the other layers follow on later turns of the event loop
    assert labels is not None and labels.name == "bars labels" and labels.data.max() == 2
    assert len(viewer.layers) == 2 and labels.metadata["probseg_preview"] and not labels.editable
    qtbot.waitUntil(lambda: not run.pending, timeout=10000)
    ours = [l.metadata.get("probseg_role") for l in viewer.layers if "probseg_run" in l.metadata]
    assert ours == list(ROLES)  # stacked as a session's layers, whatever the order they were added in
    assert viewer.layers.selection.active is labels  # adding hidden layers did not take it from the labels
    entropy, items = viewer.layers["bars uncertainty (entropy)"], viewer.layers["bars review items"]
    assert not entropy.visible and entropy.data.max() == 0  # the first result: no uncertainty yet

    # a refinement: the same layers change in place; the hidden entropy waits until it is shown
    run.show(result(j, bars(3, 0.6), final=False), final=False)
    assert viewer.layers["bars labels"] is labels and labels.data.max() == 3
    qtbot.waitUntil(lambda: not run.pending, timeout=10000)
    assert entropy.data.max() == 0 and "entropy" in run.aside
    assert len(items.data) > 0  # visible: written
    entropy.visible = True
    assert entropy.data.max() > 0.5 and "entropy" not in run.aside  # p = 0.6: 0.67 nats

    # the final result: a session on the labels, bound once everything is written
    done = []
    run.show(result(j, bars(3, 0.6), final=True), final=True, then=lambda: done.append(len(run.pending)))
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert done == [0] and labels.editable and "probseg_preview" not in labels.metadata
    assert labels.metadata["probseg_session"].meta["draws"] == 4
    assert len([l for l in viewer.layers if "probseg_run" in l.metadata]) == len(ROLES)


def test_final_result_writes_hidden_layers_and_a_failed_run_leaves_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    j = job()
    run = RunLayers(viewer, j.run_id, "bars")
    run.show(result(j, bars(2, 1.0), final=False), final=False)
    qtbot.waitUntil(lambda: not run.pending, timeout=10000)
    run.show(result(j, bars(2, 0.6), final=False), final=False)
    qtbot.waitUntil(lambda: not run.pending, timeout=10000)
    probs = viewer.layers["bars probability (max)"]
    assert "probabilities" in run.aside and probs.data[8, 44] == 1.0  # hidden: the first result's, the new one waits
    done = []
    run.show(result(j, bars(2, 0.6), final=True), final=True, then=lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert not run.aside and np.isclose(probs.data[8, 44], 0.6)  # written with the final result though hidden

    other = job()
    failed = RunLayers(viewer, other.run_id, "other")
    failed.show(result(other, bars(1, 1.0), final=False), final=False)
    failed.remove()  # at once, before the rest was written
    qtbot.wait(50)
    assert not [l for l in viewer.layers if l.metadata.get("probseg_run") == other.run_id]
