"""The Segment dock's worker on a field larger than ``AUTO_TILE_PX`` takes predict's tiled path.

Why: clustered whole, a 1040x1392 field of four test wells lost worms (distant worms shared a
cluster; docs/benchmarks.md); the CLI tiles such fields, and the dock must give the same worms.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_probseg._widgets import _common as C  # noqa: E402
from napari_probseg._widgets._segment_job import Job, Segmented, infer  # noqa: E402
from napari_probseg.data import available_wells, load_image  # noqa: E402
from napari_probseg.inference import predict  # noqa: E402
from napari_probseg.models import load_model  # noqa: E402
from napari_probseg.validation import AUTO_TILE_PX  # noqa: E402


def _run(job: Job):
    gen = infer(job, C.Relay(), threading.Event())
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


def test_dock_worker_keeps_every_wells_worms_in_a_large_field(qtbot, data_dir):
    wells = available_wells(data_dir, "test")[0][4:8]
    imgs = [load_image(data_dir, w) for w in wells]
    field = np.concatenate([np.concatenate(imgs[:2], 2), np.concatenate(imgs[2:], 2)], 1)
    assert field.shape[1] * field.shape[2] > AUTO_TILE_PX
    lm = load_model("bbbc010-concrete")
    alone = sum(predict(lm.model, im, lm.postprocess, draws=1).n_instances for im in imgs)
    job = Job(model="bbbc010-concrete", image=field, image_name="field", source="test", device="cpu",
              layers=[{"name": "field", "id": "0", "scale": (1.0, 1.0), "translate": (0.0, 0.0)}],
              draws=1, binarize=0.75, seed=0, min_size=lm.postprocess.min_size, worm_width="off")
    result = _run(job)
    assert isinstance(result, Segmented), result
    assert abs(result.prediction.n_instances - alone) <= 1
    assert result.prediction.labels().shape == field.shape[1:]
