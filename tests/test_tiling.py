"""Tiled inference (issue 17): a mosaic of four real BBBC010 wells, cut into tiles whose borders
cross worms, gives the instances of each well segmented alone.

Tolerance: the same number of instances and every Hungarian-matched IoU >= 0.9 (measured: 57 =
57, min IoU 0.96; against one window over the whole mosaic 57 = 57, min IoU 1.0).  Each well alone is
segmented by ``predict``'s own path from its part of the mosaic's normalised input: the mosaic
is normalised as a whole (as any image is), and four wells' joint percentiles change instances
in every well, tiled or not; this test is about tiling and stitching.  The mean network (one
draw: no dropout) keeps the comparison deterministic and the test short.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from scipy.optimize import linear_sum_assignment

from napari_probseg.cli import main
from napari_probseg.data import InputError, available_wells, load_image
from napari_probseg.inference import agglomerate, forward_draws, prepare_input, updates_from_input
from napari_probseg.masks import mask_iou
from napari_probseg.models import load_model
from napari_probseg.postprocess import cluster_draw
from napari_probseg.sparse import agglomerate_boxes, cluster_blobs
from napari_probseg.tiling import check_memory, estimate_bytes, predict_tiled, tile_grid
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def bundled():
    return load_model("bbbc010-concrete")


def test_mosaic_of_four_wells_gives_each_wells_instances(bundled, data_dir):
    wells = available_wells(data_dir, "test")[0][:4]
    # each well cut to 512x688 (multiples of the U-Net's cell): its pooling grid is then the mosaic's
    imgs = [load_image(data_dir, w)[:, :512, :688] for w in wells]
    h, w = imgs[0].shape[1:]
    mosaic = np.concatenate([np.concatenate(imgs[:2], 2), np.concatenate(imgs[2:], 2)], 1)
    # cores of ~341x459 px: every tile border runs through wells; margins of MARGIN (224 px)
    tiled = predict_tiled(bundled.model, mosaic, bundled.postprocess, draws=1, tile=480)
    assert tiled.tiles == 9 and tiled.truncated == 0
    got = tiled.to_prediction().binary_instances()
    assert len(got) >= 20
    # each well alone (predict's own path, mean network) gives the same instances
    x = prepare_input(mosaic, bundled.model)  # the tiles' input, normalised as a whole
    post, alone = bundled.postprocess, []
    for k in range(4):
        rows, cols = slice((k // 2) * h, (k // 2 + 1) * h), slice((k % 2) * w, (k % 2 + 1) * w)
        inst = next(updates_from_input(bundled.model, x[:, rows, cols], post, 1, post.binarize)).mean
        placed = np.zeros((len(inst), 2 * h, 2 * w), bool)
        placed[:, rows, cols] = inst
        alone.append(placed)
    _assert_same_instances(np.concatenate(alone), got)
    # worms crossing tile borders are whole: some matched worm has pixels on both sides of a core border
    grid = tile_grid(2 * h, 2 * w, 480)
    ys, xs = {c[0].start for c, _ in grid} - {0}, {c[1].start for c, _ in grid} - {0}
    assert any(any(m[b - 1].any() and m[b].any() for b in ys) or any(m[:, b - 1].any() and m[:, b].any() for b in xs)
               for m in got)
    lab = tiled.labels()
    assert lab.shape == (2 * h, 2 * w) and lab.max() == len(tiled.instances)


def _assert_same_instances(ref: np.ndarray, got: np.ndarray) -> None:
    """The tolerance: as many instances, every Hungarian-matched IoU >= 0.9."""
    assert len(got) == len(ref)
    iou = mask_iou(ref, got)
    r, c = linear_sum_assignment(-iou)
    assert iou[r, c].min() >= 0.9


def test_sparse_result_matches_its_dense_prediction():
    img = np.random.default_rng(0).integers(0, 1000, (2, 150, 170)).astype(np.uint16)
    from napari_probseg.checkpoint import PostprocessConfig

    tiled = predict_tiled(tiny_model(), img, PostprocessConfig(min_size=1), draws=3, tile=64, margin=24)
    dense = tiled.to_prediction()
    assert tiled.tiles == 9 and len(tiled.draw_counts) == 3
    assert [(p.y, p.x, p.instances) for p in tiled.peaks] == [(p.y, p.x, p.instances) for p in dense.peaks]
    np.testing.assert_array_equal(tiled.labels(), dense.labels())
    assert tiled.n_instances == dense.n_instances
    assert dense.draw_counts == tiled.draw_counts and dense.tiles == 9
    assert tiled.instances  # per-instance outputs that would not fit: one line before they are built
    with pytest.raises(InputError, match=r"found \d+ instances; their per-instance outputs need about"):
        tiled.check_dense(available=1)


def test_outputs_that_do_not_fit_are_refused_before_any_compute():
    assert estimate_bytes(4096, 4096, 2) < 4 * 2**30  # the 4096x4096 target fits in 4 GB
    with pytest.raises(InputError, match=r"needs about .* GiB for its outputs, more than the 1\.0 GiB"):
        check_memory(60000, 60000, 2, available=2**30)
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint16), (2, 10**6, 10**6), (0, 0, 0))  # no memory
    with pytest.raises(InputError, match="crop or downscale"):
        predict_tiled(tiny_model(), huge, draws=1)


def test_tile_grid_covers_the_image_once():
    grid = tile_grid(1040, 1392, 512, 160)
    cover = np.zeros((1040, 1392), int)
    for core, win in grid:
        cover[core] += 1
        assert win[0].start == max(core[0].start - 160, 0) and win[1].stop == min(core[1].stop + 160, 1392)
    assert (cover == 1).all() and len(grid) == 9


def test_windows_start_on_the_networks_cell():
    for core, win in tile_grid(1040, 1392, 480, 224, align=16):
        assert win[0].start % 16 == 0 and win[1].start % 16 == 0
        assert win[0].start <= core[0].start - 224 or win[0].start == 0


def test_blobs_are_clustered_apart_even_with_one_embedding():
    """Two distant worms whose embeddings coincide (the network only keeps worms of one 384-px
    crop apart): clustered as a whole they are one cluster and the overlap heuristic keeps one."""
    emb = torch.zeros(2, 120, 200)
    logits = torch.zeros(3, 120, 200)
    logits[0] = 1.0  # background
    for x0 in (10, 150):
        logits[1, 40:60, x0:x0 + 30] = 5.0  # foreground, same embedding (0, 0)
    whole = cluster_draw(emb, logits, 1.0, 3.0, min_size=50)[0]
    blobs = cluster_blobs(emb, logits, 1.0, 3.0, min_size=50)
    assert len(whole) == 1
    assert sorted((b.y, b.x, b.a.shape, int(b.a.sum())) for b in blobs) == [(40, 10, (20, 30), 600), (40, 150, (20, 30), 600)]


def test_box_agglomeration_is_predicts_agglomeration(bundled, data_dir):
    x = prepare_input(load_image(data_dir, "C10")[:, :256, :320], bundled.model)
    post = bundled.postprocess
    stacks = [cluster_blobs(e, lg, post.bandwidth, post.cluster_radius, post.min_size, seed=i)
              for i, (e, lg) in enumerate(forward_draws(bundled.model, x, 3))]
    assert len({len(s) for s in stacks}) > 1 or len(stacks[0]) >= 2  # something to match
    dense = [np.stack([b.placed(0, 0, 256, 320) for b in s]) if s else np.zeros((0, 256, 320), bool) for s in stacks]
    boxes = agglomerate_boxes(stacks)
    np.testing.assert_array_equal(np.stack([b.placed(0, 0, 256, 320) for b in boxes]), agglomerate(dense))


def test_cli_tiles_a_well_and_gives_the_untiled_instances(tmp_path, data_dir, capsys):
    """``probseg predict --tile 384`` cuts a 520x696 well into 2x2 tiles: same instances as ``--tile 0``
    (tolerance as above; the bundled model's mean network: tiles run their draws one at a time,
    so their dropout masks differ from the untiled run's batches of 4, as another seed's would)."""
    tifffile.imwrite(tmp_path / "C10.tif", load_image(data_dir, "C10"))
    labels, metas = {}, {}
    for tile in ("0", "384"):
        out = tmp_path / f"t{tile}"
        rc = main(["predict", str(tmp_path / "C10.tif"), "--out", str(out), "--draws", "1", "--worm-width", "off",
                   "--tile", tile, "--device", "cpu"])
        assert rc == 0, capsys.readouterr().err
        labels[tile] = tifffile.imread(out / "C10_labels.tif")
        with np.load(out / "C10_probabilities.npz") as z:
            metas[tile] = json.loads(str(z["meta"]))
    assert metas["384"]["tiles"] == 4 and "tiles" not in metas["0"]
    assert metas["384"]["draws"] == 1 and metas["384"]["draw_counts"] == metas["0"]["draw_counts"]
    ref, got = (np.stack([lab == i for i in np.unique(lab) if i]) for lab in (labels["0"], labels["384"]))
    assert len(ref) >= 10
    _assert_same_instances(ref, got)


@pytest.mark.parametrize("tile", ["8", "-1"])
def test_cli_refuses_a_tile_the_model_cannot_take(tmp_path, data_dir, capsys, tile):
    tifffile.imwrite(tmp_path / "C10.tif", load_image(data_dir, "C10"))
    rc = main(["predict", str(tmp_path / "C10.tif"), "--out", str(tmp_path / "o"), "--tile", tile])
    err = capsys.readouterr().err
    assert rc == 2 and "--tile" in err and "Traceback" not in err and not (tmp_path / "o" / "C10_labels.tif").exists()


def test_a_field_of_four_wells_is_tiled_by_default_and_keeps_every_wells_worms(bundled, data_dir):
    """A 1040x1392 field is above ``AUTO_TILE_PX``: ``predict``'s default clusters each blob alone.
    Clustered as a whole the same field lost 15 of 57 worms (distant worms shared a cluster;
    docs/benchmarks.md), so the default must not fall back to whole-image clustering here."""
    from napari_probseg.inference import predict
    from napari_probseg.validation import AUTO_TILE_PX

    wells = available_wells(data_dir, "test")[0][4:8]
    imgs = [load_image(data_dir, w) for w in wells]
    field = np.concatenate([np.concatenate(imgs[:2], 2), np.concatenate(imgs[2:], 2)], 1)
    assert field.shape[1] * field.shape[2] > AUTO_TILE_PX
    post = bundled.postprocess
    alone = sum(predict(bundled.model, im, post, draws=1).n_instances for im in imgs)
    assert abs(predict(bundled.model, field, post, draws=1).n_instances - alone) <= 1
