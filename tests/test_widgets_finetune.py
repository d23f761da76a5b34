"""The Fine-tune dock states the expected time before Start and the measured pace while running (issue 16, item 8)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_probseg import session as S  # noqa: E402
from napari_probseg._widgets import TrainingWidget  # noqa: E402
from napari_probseg.sample_data import load_sample  # noqa: E402

pytestmark = pytest.mark.gui
CROP = (slice(100, 380), slice(150, 450))  # 280 x 300 pixels of C10: the default 256 px crop fits



def test_expected_time_before_start_and_pace_while_running(make_napari_viewer, qtbot, tiny_checkpoint, tmp_path,
                                                           data_dir):
    from napari_probseg.data import load_masks
    from napari_probseg.masks import labels_from_instances

    masks = load_masks(data_dir, "C10")[(slice(None), *CROP)]
    masks = masks[masks.any((1, 2))]
    lab = labels_from_instances(masks)
    s = S.Session("C10", masks.astype(np.float32), np.zeros(lab.shape, np.float32), lab, [],
                  image=load_sample("C10")[(slice(None), *CROP)], items=[], meta={"model_path": str(tiny_checkpoint)})
    viewer = make_napari_viewer(show=True)
    viewer.open(str(s.save(tmp_path / "C10.probseg.npz")), plugin="napari-probseg")
    t = TrainingWidget(viewer)
    viewer.window.add_dock_widget(t, name="Fine-tune")
    assert (t.steps.value(), t.batch.value(), t.crop.value()) == (300, 2, 256)
    qtbot.waitUntil(t.estimate.isVisible, timeout=5000)  # shown on the dock, next to the Steps box
    assert t.steps.isVisible()
    assert t.estimate.text().startswith("300 steps of 2 x 256 x 256 px: about 5 min on a 2-core CPU")
    t.steps.setValue(60)
    assert t.estimate.text().startswith("60 steps of 2 x 256 x 256 px: about 60 s")
    t.crop.setValue(1024)  # capped at the image, as the run will cap it
    assert t.estimate.text().startswith("60 steps of 2 x 280 x 280 px")
    t.device.setCurrentText("cuda")
    assert "no stored estimate for a GPU" in t.estimate.text()

    t.device.setCurrentText("cpu")
    t.fast_cpu = False
    t.steps.setValue(4)
    t.batch.setValue(1)
    t.crop.setValue(64)
    t.out_edit.setText(str(tmp_path / "ft"))
    shown: list[str] = []
    t.relay.train_step.connect(lambda *_: shown.append(t.status.text()))  # after the dock's own slot
    assert t.start() is not None
    qtbot.waitUntil(lambda: t.worker is None, timeout=120000)
    assert t.checkpoint is not None and len(shown) == 4
    assert shown[0].startswith("step 1 / 4: loss") and "per step" not in shown[0]
    assert "s per step, about" in shown[-1] and shown[-1].endswith("left")
