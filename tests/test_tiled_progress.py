"""Progressive tiled prediction (issue 17): a large field's worms on screen before it is done.

A tiny untrained U-Net (with concrete dropout: the draws differ) on a random 2-channel image
cut into 9 tiles, min_size 1 so that its clusters are kept: the stitching and ordering are
what is tested, not the segmentation.
"""
from __future__ import annotations

import numpy as np
import pytest

from napari_probseg.checkpoint import PostprocessConfig
from napari_probseg.inference import Cancelled, forward_draws, prepare_input
from napari_probseg.sparse import agglomerate_boxes, cluster_blobs
from napari_probseg.tiled_progress import predict_tiled_progressive
from napari_probseg.tiling import predict_tiled
from tests.conftest import tiny_model

POST = PostprocessConfig(min_size=1)
KW = dict(tile=64, margin=24)  # 150x170 -> 3x3 tiles


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 1000, (2, 150, 170)).astype(np.uint16)


def _same(a, b) -> None:
    assert len(a.instances) == len(b.instances)
    for i, j in zip(a.instances, b.instances):
        assert (i.y, i.x, i.tile) == (j.y, j.x, j.tile)
        assert np.array_equal(i.probabilities, j.probabilities)
    assert np.array_equal(a.entropy, b.entropy)
    assert a.peaks == b.peaks and a.draw_counts == b.draw_counts
    assert (a.tiles, a.truncated) == (b.tiles, b.truncated)


def test_updates_come_tile_by_tile_and_the_last_is_predict_tileds_result(image):
    model = tiny_model()
    updates = list(predict_tiled_progressive(model, image, POST, draws=3, **KW))
    final = updates[-1]
    assert final.final and final.tiles == 9 and final.tile_draws == (3,) * 9 and final.draws == 3
    # the quick pass first (one update per tile), then one per draw of each tile
    assert [u.stage for u in updates] == ["mean"] * 9 + ["draws"] * 27
    assert [u.done for u in updates] == list(range(1, 37)) and final.total == 36
    assert not any(u.final for u in updates[:-1])
    first = updates[0].prediction()
    assert first.instances and first.draw_counts == [] and first.peaks == []  # a segmentation, no uncertainty yet
    assert all(set(np.unique(i.probabilities)) <= {0.0, 1.0} for i in first.instances)
    assert {i.tile for i in first.instances} == {0} and updates[0].reached == 1  # only the first tile so far
    assert [u.reached for u in updates] == list(range(1, 10)) + [9] * 27
    assert {i.tile for i in updates[8].prediction().instances} == set(range(9))  # the whole field after the quick pass
    _same(final.prediction(), predict_tiled(model, image, POST, draws=3, **KW))


def test_a_tile_in_progress_shows_its_draws_so_far(image):
    model = tiny_model()
    updates = list(predict_tiled_progressive(model, image, POST, draws=3, **KW))
    mid = updates[9 + 3]  # tile 1 after its first draw; tile 0 finished, tiles 2-8 quick pass
    assert mid.tile == 1 and mid.tile_draws == (3, 1) + (0,) * 7 and mid.draws == 0 and mid.tiles_done == 1
    pred = mid.prediction()
    final = updates[-1].prediction()
    tile0 = [i for i in final.instances if i.tile == 0]
    assert [i.probabilities.tolist() for i in pred.instances if i.tile == 0] == \
        [i.probabilities.tolist() for i in tile0]  # a finished tile is final
    assert any(i.tile == 1 for i in pred.instances) and pred.peaks  # draws bring uncertainty peaks


def test_one_window_equals_its_draws_agglomerated():
    """An image within one tile: the result is its window's draws clustered blob by blob and
    agglomerated (the path written out here), with nothing lost or added by the stitching."""
    model = tiny_model()
    img = np.random.default_rng(1).integers(0, 1000, (2, 64, 80)).astype(np.uint16)
    final = list(predict_tiled_progressive(model, img, POST, draws=4, tile=96, margin=24))[-1]
    x = prepare_input(img, model)
    stacks = [cluster_blobs(e, lg, POST.bandwidth, POST.cluster_radius, 1, seed=i, roi=(slice(0, 64), slice(0, 80)))
              for i, (e, lg) in enumerate(forward_draws(model, x, 4, batch=1, seed=0))]
    ref = [b for b in agglomerate_boxes(stacks) if b.centre() is not None]
    got = final.prediction().instances
    assert final.tiles == 1 and len(got) == len(ref) > 0
    for i, b in zip(got, ref):
        assert (i.y, i.x) == (b.y, b.x) and np.array_equal(i.probabilities, b.a)


def test_cancel_keeps_the_last_update_usable(image):
    model = tiny_model()
    stop = []
    gen = predict_tiled_progressive(model, image, POST, draws=3, should_stop=lambda: bool(stop), **KW)
    first = next(gen)
    stop.append(True)  # Cancel pressed while the first result is on screen
    with pytest.raises(Cancelled):
        next(gen)
    pred = first.prediction()
    assert first.draws == 0 and pred.instances and pred.labels().shape == image.shape[1:]
    assert pred.to_prediction().n_instances == pred.n_instances > 0


def test_cancel_in_the_draws_keeps_finished_tiles_and_the_rest_of_the_quick_pass(image):
    model = tiny_model()
    seen = []
    gen = predict_tiled_progressive(model, image, POST, draws=3, should_stop=lambda: len(seen) == 13, **KW)
    with pytest.raises(Cancelled):
        for u in gen:
            seen.append(u)
    last = seen[-1]
    assert last.tile_draws == (3, 1) + (0,) * 7 and last.draws == 0
    pred = last.prediction()
    assert {i.tile for i in pred.instances} == set(range(9)) and pred.draw_counts == []
    assert pred.labels().max() == len(pred.instances)


def test_no_dropout_or_one_draw_has_no_quick_pass(image):
    model = tiny_model(variant="baseline")
    updates = list(predict_tiled_progressive(model, image, POST, draws=3, **KW))
    assert [u.stage for u in updates] == ["draws"] * 9 and updates[-1].tile_draws == (3,) * 9
    assert [u.tiles_done for u in updates] == [u.reached for u in updates] == list(range(1, 10))
    _same(updates[-1].prediction(), predict_tiled(model, image, POST, draws=3, **KW))
    assert len(list(predict_tiled_progressive(tiny_model(), image, POST, draws=1, **KW))) == 9
