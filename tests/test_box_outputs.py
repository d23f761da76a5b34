"""The box form (issue 17): outputs written from boxes + crops equal the dense path's on a real well.

Tolerance: none.  Labels, entropy, peaks, review list and worm table written from a
``BoxPrediction`` are byte-for-byte the files written from the dense ``Prediction`` of the same
run, and the box-layout ``_probabilities.npz`` reads back to the dense layout's arrays (both hold
float16 probabilities).  Measured on the 47 saved test-well predictions of
eval/bbbc010-concrete-final as well: same review items (skeleton-weighted scoring too), same worm
tables, same count inputs, same resampled instances.
"""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_probseg import box_file
from napari_probseg.batch import well_stats
from napari_probseg.box_resample import boxes_to_shape
from napari_probseg.boxes import BoxPrediction
from napari_probseg.counts import count_summary
from napari_probseg.data import load_image
from napari_probseg.inference import predict
from napari_probseg.measurements import measure_prediction
from napari_probseg.models import load_model
from napari_probseg.outputs import write_prediction
from napari_probseg.scale import prediction_to_shape
from napari_probseg.session import Session, SessionError
from napari_probseg.tiling import predict_tiled


@pytest.fixture(scope="module")
def c10_runs(data_dir):
    """C10 by the bundled model, 2 MC draws: a tiled run (2x2 tiles) and an untiled one."""
    lm = load_model("bbbc010-concrete")
    image = load_image(data_dir, "C10")
    tiled = predict_tiled(lm.model, image, lm.postprocess, draws=2, tile=384)
    dense = predict(lm.model, image, lm.postprocess, 2, tile=0)
    return image, {"tiled": (tiled.to_prediction(), tiled.to_boxes()), "untiled": (dense, BoxPrediction.from_dense(dense))}


@pytest.mark.parametrize("run", ["tiled", "untiled"])
def test_box_form_writes_the_dense_paths_files(c10_runs, tmp_path, run):
    image, runs = c10_runs
    dense, boxes = runs[run]
    assert dense.n_instances >= 10 and boxes.n_instances == dense.n_instances
    assert len(dense.review_items()) >= 3  # something to compare
    paths = {}
    for name, pred in (("dense", dense), ("boxes", boxes)):
        paths[name] = write_prediction(pred, tmp_path / name, "C10", {"run": run}, image=image)
    for key in ("labels", "entropy"):
        np.testing.assert_array_equal(tifffile.imread(paths["boxes"][key]), tifffile.imread(paths["dense"][key]))
    for key in ("peaks", "review", "worms"):
        assert paths["boxes"][key].read_text() == paths["dense"][key].read_text(), key
    assert box_file.is_box_file(paths["boxes"]["probabilities"])
    assert not box_file.is_box_file(paths["dense"]["probabilities"])
    a, b = (Session.from_probabilities_file(paths[n]["probabilities"]) for n in ("dense", "boxes"))
    np.testing.assert_array_equal(b.probabilities, a.probabilities)
    np.testing.assert_array_equal(b.labels, a.labels)
    assert b.items == a.items and b.peaks == a.peaks and b.meta["draw_counts"] == a.meta["draw_counts"]
    # what the CLI prints and the batch's summary row
    assert boxes.count_inputs() == dense.count_inputs()
    table = measure_prediction(dense, image, ("w1", "w2"))
    assert count_summary(boxes, table) == count_summary(dense, table)
    assert well_stats(boxes) == well_stats(dense)


def test_box_form_resamples_as_the_dense_form(c10_runs):
    """A large image segmented at another worm width: each crop mapped back as the whole map would be."""
    _, runs = c10_runs
    dense, boxes = runs["untiled"]
    for shape in ((416, 557), (676, 905)):  # 0.8x and 1.3x
        ref, got = prediction_to_shape(dense, shape), boxes_to_shape(boxes, shape)
        np.testing.assert_array_equal(got.to_dense(), ref.probabilities)
        np.testing.assert_array_equal(got.entropy, ref.entropy)
        assert got.peaks == ref.peaks and got.review_items() == ref.review_items()


def _write_box_file(folder, **change):
    crops = np.zeros((2, 20, 30), np.float32)
    crops[0, 2:8, 3:20] = 0.9
    crops[1, 10:18, 5:25] = 0.5
    pred = BoxPrediction.from_dense(type("P", (), {"probabilities": crops, "entropy": np.zeros((20, 30), np.float32),
                                                    "peaks": [], "binarize": 0.75, "bf16": False, "device": "cpu",
                                                    "draw_counts": [2, 2]})())
    members = {**box_file.box_members(pred, "{}"), **change}
    path = folder / "W_probabilities.npz"
    np.savez_compressed(path, **members)
    return path


@pytest.mark.parametrize("change, says", [
    (dict(boxes=np.array([[2, 3, 6, 17], [10, 5, 8, 40]])), "outside the 20x30 image"),
    (dict(boxes=np.array([[2, 3, 6, 17], [10, 5, 8, 19]])), "the boxes hold"),
    (dict(layout=np.int64(3)), "layout"),
    (dict(shape=np.array([20, 30, 1])), "'shape'"),
    (dict(entropy=np.zeros((20, 31), np.float16)), "entropy"),
    (dict(crop_probabilities=np.full(102 + 160, 2.0, np.float16)), "outside [0, 1]"),
])
def test_a_damaged_box_file_is_refused_in_one_line(tmp_path, change, says):
    assert Session.from_probabilities_file(_write_box_file(tmp_path)).labels.max() == 1  # the intact file reads
    path = _write_box_file(tmp_path, **change)
    with pytest.raises(SessionError, match="W_probabilities.npz") as exc:
        Session.from_probabilities_file(path)
    assert says in str(exc.value) and "\n" not in str(exc.value)
