"""``probseg predict`` of a tiled mosaic of real wells written from boxes, opened in napari.

The box form is chosen by the real rule (``boxes.wants_boxes``) with its limit set to 0 bytes,
so a 384x512 mosaic of four BBBC010 wells' centres (2x2 tiles of 192x256) takes the path a plate scan takes.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import tifffile

from napari_probseg import box_file, boxes
from napari_probseg.box_review import review_items_boxes
from napari_probseg.cli import main
from napari_probseg.data import available_wells, load_image
from napari_probseg.masks import labels_from_instances
from napari_probseg.measurements import BASE_COLUMNS
from napari_probseg.review import read_review_csv


@pytest.fixture(scope="module")
def mosaic_outputs(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("boxcli")
    imgs = [load_image(data_dir, w)[:, 64:256, 96:352] for w in available_wells(data_dir, "test")[0][:4]]
    tifffile.imwrite(tmp / "plate.tif", np.concatenate([np.concatenate(imgs[:2], 2), np.concatenate(imgs[2:], 2)], 1))
    out, printed = tmp / "out", io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(boxes, "DENSE_LIMIT_BYTES", 0)
        rc = main(["predict", str(tmp / "plate.tif"), "--out", str(out), "--draws", "2", "--worm-width", "off",
                   "--tile", "256", "--device", "cpu"])
    assert rc == 0
    return out, printed.getvalue()


def test_cli_writes_every_output_of_a_tiled_mosaic_from_boxes(mosaic_outputs):
    out, printed = mosaic_outputs
    assert "box layout" in printed
    npz = out / "plate_probabilities.npz"
    assert box_file.is_box_file(npz)
    pred, inst, meta = box_file.load(npz)
    assert meta["tiles"] == 4 and len(meta["draw_counts"]) == 2 and pred.shape == (384, 512)
    assert pred.n_instances >= 5 and len(pred.crops) > pred.n_instances  # sub-threshold ones kept too
    _, masks = box_file.dense_arrays(pred, inst)
    labels = tifffile.imread(out / "plate_labels.tif")
    np.testing.assert_array_equal(labels, labels_from_instances(masks))
    assert tifffile.imread(out / "plate_entropy.tif").shape == (384, 512)
    worms = (out / "plate_worms.csv").read_text().splitlines()
    assert worms[0].split(",")[:len(BASE_COLUMNS)] == BASE_COLUMNS
    assert [int(r.split(",")[0]) for r in worms[1:]] == [int(k) + 1 for k in np.flatnonzero(pred.nonempty())]
    assert f"{pred.n_instances} instances" in printed
    assert read_review_csv(out / "plate_review.csv") == review_items_boxes(pred.crops, pred.shape, pred.binarize)
    assert len((out / "plate_peaks.csv").read_text().splitlines()) > 1


def test_napari_opens_the_box_file_as_a_session_or_as_layers_when_too_large(mosaic_outputs, make_napari_viewer,
                                                                             monkeypatch):
    out, _ = mosaic_outputs
    labels = tifffile.imread(out / "plate_labels.tif")
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(out / "plate_probabilities.npz"), plugin="napari-probseg")
    assert [la.metadata.get("probseg_role") for la in layers] == ["probabilities", "entropy", "labels", "peaks", "items"]
    np.testing.assert_array_equal(viewer.layers["plate labels"].data, labels)
    assert viewer.layers["plate labels"].metadata["probseg_session"].items  # the Proofreading dock's list
    viewer.layers.clear()
    monkeypatch.setattr(box_file, "SESSION_LIMIT_BYTES", 0)  # a plate scan: no [N,H,W] session
    layers = viewer.open(str(out / "plate_probabilities.npz"), plugin="napari-probseg")
    assert [la.metadata.get("probseg_role") for la in layers] == ["entropy", "labels"]
    np.testing.assert_array_equal(viewer.layers["plate labels"].data, labels)


def test_batch_writes_a_well_from_boxes_at_another_scale(tmp_path, data_dir, monkeypatch):
    """``probseg batch``'s worker on the box path, with the worm width given as 1.25x the
    training width: the well is segmented at 0.8x, tiled, and its boxes mapped back."""
    from napari_probseg.batch import WellInput, process_well
    from napari_probseg.batch_markers import BatchSettings
    from napari_probseg.models import load_model
    from napari_probseg.scale import TRAINING_WORM_WIDTH

    lm = load_model("bbbc010-concrete")
    img = load_image(data_dir, "C10")[:, 100:356, 150:470]
    files = []
    for c, tag in enumerate(("w1", "w2")):
        tifffile.imwrite(tmp_path / f"p_C10_{tag}_.tif", img[c])
        files.append(str(tmp_path / f"p_C10_{tag}_.tif"))
    monkeypatch.setattr(boxes, "DENSE_LIMIT_BYTES", 0)
    settings = BatchSettings(lm.sha256, 2, 0.75, 0, TRAINING_WORM_WIDTH / 0.8, tile=128)
    row = process_well(WellInput("C10", tuple(files), ("_w1_", "_w2_")), str(tmp_path / "out"), lm.path, lm.sha256,
                       settings)
    assert row["status"] == "ok" and row["scale_factor"] == pytest.approx(0.8), row
    npz = tmp_path / "out" / "C10_probabilities.npz"
    pred, inst, meta = box_file.load(npz)
    assert pred.shape == (256, 320) and pred.n_instances >= 2 and meta["scale_factor"] == pytest.approx(0.8)
    labels = labels_from_instances(box_file.dense_arrays(pred, inst)[1])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "C10_labels.tif"), labels)
    assert row["instances"] == pred.n_instances and {"count", "count_low", "count_high"} <= set(row)
