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
