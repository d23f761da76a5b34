"""The Segment dock's worker on a field segmented by tiles (issue 17): results before the end.

Why apart from ``_segment_job``: a tiled field's previews are built another way.  The
untiled path's preview is a dense session ([N,H,W] probabilities, review items on them);
on a 2048x2048 field of ~150 worms that took 17 s of the worker (2.4 GiB of
probabilities; measured under load), longer than six draws.  A preview here is built from the box form
(``boxes.BoxPrediction``: labels, entropy, review items and the max probability on crops,
~0.3 s there), in the same layers the final result then fills in place.  The final (or
cancelled-and-kept) result is the dense session, as before.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _common as C
from ._segment_job import REFRESH_S, Job, Partial, finish, warm_up


def infer_tiled(job: Job, lm: Any, image: np.ndarray, scale: Any, mapped: Any, relay: C.Relay, run: dict,
                t0: float, updates: Iterator | None = None, latest: Any = None,
                shown_before: Callable[[], Any] | None = None):
    """Generator: ``tiled_progress.predict_tiled_progressive``'s updates of ``image`` (the network's
    view) as ``Partial``s (the first at once, later ones at most every ``REFRESH_S`` and never
    more than a third of the worker's time), then the ``Segmented`` result.  Cancel keeps the
    newest update.  ``updates``/``latest``: a run already started (``infer_tiled_auto``).
    ``shown_before``: the result to keep when Cancel comes before this run's first update (a
    quick pass at the image's own scale already on screen); without it, ``C.Cancelled``."""
    from ..inference import Cancelled
    from ..tiled_progress import predict_tiled_progressive

    if updates is None:
        updates = predict_tiled_progressive(lm.model, image, lm.postprocess, job.draws, **run)
    shown_at, cost = (-float("inf") if latest is None else time.perf_counter()), 0.0
    try:
        for u in () if latest is not None and latest.final else updates:
            latest = u
            relay.progress.emit(u.done, u.total)
            if u.final:
                break
            if time.perf_counter() - shown_at >= max(REFRESH_S, 2 * cost):
                warm_up()
                start = time.perf_counter()
                part = tiled_partial(job, u.prediction(), u)
                cost, shown_at = time.perf_counter() - start, time.perf_counter()
                yield part
        return kept(job, lm, latest, scale, mapped, t0)
    except Cancelled:
        if latest is None:
            return C.Cancelled() if shown_before is None else shown_before()
        return kept(job, lm, latest, scale, mapped, t0, True)


def infer_tiled_auto(job: Job, lm: Any, relay: C.Relay, stop: Any, run: dict, t0: float):
    """``infer_tiled`` with the worm width on 'auto': the first tile's quick pass at the image's
    own scale is shown while the width is estimated (~13 s on a 2048x2048 field: two passes on
    shrunk copies of all of it); when the estimate keeps that scale (BBBC010's case) the same
    run goes on, otherwise the resampled field is segmented anew (``_segment_job.infer``'s
    recipe for an untiled image), by tiles even if the resampling shrank it below
    ``AUTO_TILE_PX`` (the untiled dock path would cluster it whole; rare: not BBBC010's scale)."""
    from ..inference import Cancelled
    from ..scale import network_view
    from ..tiled_progress import predict_tiled_progressive
    from ._segment_job import OWN_SCALE, _same

    own = predict_tiled_progressive(lm.model, job.image, lm.postprocess, job.draws, **run)
    try:
        first = next(own)
    except Cancelled:
        return C.Cancelled()
    relay.progress.emit(first.done, first.total)
    warm_up()
    yield tiled_partial(job, first.prediction(), first, scale_pending=True)
    try:
        scale, image, mapped = network_view(lm.model, job.image, "auto", job.device, stop.is_set)
    except Cancelled:
        return kept(job, lm, first, OWN_SCALE, _same, t0, True)
    if scale.factor == 1.0:
        return (yield from infer_tiled(job, lm, image, scale, mapped, relay, run, t0, own, first))
    own.close()
    return (yield from infer_tiled(job, lm, image, scale, mapped, relay, run, t0,
                                   shown_before=lambda: kept(job, lm, first, OWN_SCALE, _same, t0, True)))


def kept(job: Job, lm: Any, u: Any, scale: Any, mapped: Any, t0: float, cancelled: bool = False) -> Any:
    """The ``Segmented`` result of update ``u`` (the final one, or the newest when cancelled): the
    dense session, if its per-instance arrays fit in memory (``TiledPrediction.check_dense``)."""
    pred = u.prediction()
    pred.check_dense()
    extra = {"tile_draws": list(u.tile_draws), "tiles_reached": u.reached} if cancelled else None
    own = scale.factor == 1.0  # not resampled: the box form is in the user's pixels
    return finish(job, lm, mapped(pred.to_prediction()), t0, scale, u.draws, cancelled, extra=extra,
                  boxes=pred.to_boxes() if own else None)


def describe(u: Any) -> str:
    """What a tiled update holds, for the status line."""
    if u.stage == "mean":
        where = f", tile {u.tile + 1} of {u.tiles}" if u.tiles > 1 else ""
        return f"mean network (no dropout){where}"
    if u.tiles == 1:
        return f"{u.tile_draws[0]} of {u.total_draws} draws"
    rest = f"; tiles {u.tile + 2}-{u.tiles}: mean network" if u.tile + 1 < u.tiles and not u.tile_draws[-1] else ""
    return f"tile {u.tile + 1} of {u.tiles}: {u.tile_draws[u.tile]} of {u.total_draws} draws{rest}"


def tiled_partial(job: Job, pred: Any, u: Any, scale_pending: bool = False) -> Partial:
    """A preview of a ``tiling.TiledPrediction`` (box form), in the user's pixels (a worm width that
    resampled the image: ``box_resample.boxes_to_shape``, crop by crop, as the result is mapped): the
    layers a dense session would give (``_segment_layers.prepare``), their arrays built from crops."""
    from ..box_resample import boxes_to_shape
    from ..boxes import paste_max
    from ..session import Session
    from ._segment_layers import prepare

    boxes, user = pred.to_boxes(), tuple(int(s) for s in job.image.shape[-2:])
    if boxes.shape != user:
        boxes = boxes_to_shape(boxes, user)
    h, w = user
    names = [g["name"] for g in job.layers]
    session = Session(job.image_name, np.zeros((0, h, w), np.float32), boxes.entropy, boxes.labels(),
                      list(boxes.peaks), binarize=float(boxes.binarize), image=job.image, image_source=job.source,
                      channel_names=names, items=boxes.review_items(show_all=True),
                      meta={"draws": u.draws, "tile_draws": list(u.tile_draws), "image_name": job.image_name,
                            "source_layers": job.layers})
    pmax = paste_max((h, w), boxes.crops)
    layers = [(pmax if kwargs["metadata"].get("probseg_role") == "probabilities" else data, kwargs, kind)
              for data, kwargs, kind in prepare(session, job, final=False)]
    return Partial(session, layers, boxes.n_instances, u.draws, u.total_draws, scale_pending,
                   what="" if scale_pending else describe(u))
