"""What a Segment run needs and what its worker thread does (no widgets here).

Why apart from ``_inference.py``: the dock stays about the controls; the worker body
runs off the GUI thread and touches no Qt widget, only the progress relay.  It is a
generator (issue 17): the mean network's segmentation and refinements as draws finish are
yielded as ``Partial`` results, the finished (or cancelled) result is returned.

Everything a result needs before it can be shown (the session, review items, label
colours, the layers' arrays, the worm table) is computed here, off the GUI thread; the
GUI thread only hands the prepared layer data to napari (``_segment_layers``), so it never
stalls for more than a layer update.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..scale import ScaleInfo
from . import _common as C

# at most this often (seconds) a refinement goes to the GUI thread: each costs the worker an
# agglomeration and the layers' data (~0.15 s on a BBBC010 well) and the GUI a layer update;
# the first result always goes
REFRESH_S = 0.5


@dataclass
class Job:
    """Everything a run needs, captured on the GUI thread when Run is pressed."""

    model: str
    image: np.ndarray  # [C,H,W] copy of the chosen layers
    image_name: str
    source: str
    layers: list[dict]  # name, unique id, scale, translate of each source layer
    device: str
    draws: int
    binarize: float  # probability at which an instance mask is cut
    seed: int
    min_size: int = 50  # pixels: smaller clusters are dropped
    worm_width: float | str = "off"  # px, "auto" (estimated) or "off": the image is resampled to the training width
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # tags this run's layers


@dataclass(frozen=True)
class Partial:
    """A result on the way: the mean network's (``done`` = 0) or after ``done`` of ``total`` draws,
    prepared for the GUI thread (session and layer data built in the worker)."""

    session: Any  # session.Session of this result (a preview: not bound for proofreading)
    layers: list  # _segment_layers.prepare's layer data, labels first
    n_instances: int
    done: int
    total: int
    scale_pending: bool = False  # the image's own scale while the worm width is being estimated
    what: str = ""  # what it holds, when "mean network" or "done of total draws" would not say (a tiled field)

    def status(self, image_name: str, device: str) -> str:
        """The Segment dock's status line while this preview is shown."""
        what = self.what or ("mean network at the image's own scale; estimating the worm width" if self.scale_pending
                             else "mean network (no dropout)" if self.done == 0 else f"{self.done} of {self.total} draws")
        return f"{image_name}: {self.n_instances} instances so far ({what}); refining on {device}..."


@dataclass(frozen=True)
class Segmented:
    """What a finished inference worker hands to the GUI thread."""

    prediction: Any  # inference.Prediction
    meta: dict
    table: dict  # measurements.measure_prediction's per-worm table
    cancelled: bool = False  # Cancel was pressed: this holds meta["draws"] of meta["draws_asked"] draws
    session: Any = None  # session.Session built from it (in the worker)
    layers: list = field(default_factory=list)  # its layer data (_segment_layers.prepare)

    def status(self, job: Job) -> str:
        """The Segment dock's status line for this final result."""
        from ..counts import count_interval

        pred, meta = self.prediction, self.meta
        held = cancel_text(meta, job.draws) if self.cancelled else ""
        return (f"{held}{job.image_name}: {pred.n_instances} instances, {count_interval(meta['count_inputs']).text()}, "
                f"{len(self.session.default_items())} suspected errors, {len(pred.peaks)} uncertainty peaks "
                f"({meta['seconds']:.1f} s, {meta['draws']} draws on {job.device}); {meta['scale_text']}")


# the kept result when Cancel comes while the worm width is being estimated (auto): the
# mean network at the image's own scale, no width known
OWN_SCALE = ScaleInfo(None, True, 1.0, "auto")
OWN_TEXT = "cancelled before the worm width was estimated: segmented at the image's own scale"

_warm = threading.Lock()
_warmed: list[bool] = []


def warm_up() -> None:
    """Import, off the GUI thread, what adding the first result's layers would import on it.

    Why: the first labels and points layers of a session make napari import pandas (their
    feature tables) and vispy build its line dash patterns (the labels layer's polygon
    tool), about 0.8 s of the GUI thread on the 2-core CPU; run here (when the dock opens
    and again, a no-op by then, before the first result is handed over), they are ready.
    """
    with _warm:
        if _warmed:
            return
        import networkx  # noqa: F401  (label colours)
        import pandas  # noqa: F401  (napari's layer features)

        try:  # an lru_cache filled by the first LineVisual; harmless if vispy changes it
            from vispy.visuals.line.dash_atlas import DashAtlas

            DashAtlas()
        except Exception:  # noqa: BLE001 - a speed-up only
            pass
        _warmed.append(True)


_frozen = threading.Lock()
_runs: list[int] = []  # one entry per run in progress (two viewers may run at once)


def gc_quiet(running: bool) -> None:
    """While a run is in progress, keep Python's cyclic garbage collector off the objects that
    existed before it (``gc.freeze``); the last run to end puts them back (``gc.unfreeze``).

    Why: a full collection walks every object of the process (~530,000 with napari, Qt and
    torch loaded) with the GIL held: 0.28 s of CPU on the 2-core machine, a GUI stall that
    one run triggered about once.  Frozen objects are still freed by reference counting;
    only their cycles wait for the end of the run.  Outside runs nothing changes.
    """
    import gc

    with _frozen:
        if running:
            if not _runs:
                gc.freeze()
            _runs.append(1)
        elif _runs:
            _runs.pop()
            if not _runs:
                gc.unfreeze()


def infer(job: Job, relay: C.Relay, stop: threading.Event) -> Generator[Partial, None, Segmented | C.Cancelled | C.Failed]:
    """Worker body: load, predict progressively, free the GPU cache; expected failures become a message.

    With the worm width on 'auto' the mean network first runs at the image's own scale and
    its result is shown while the width is estimated; when the estimate keeps that scale
    (within 10% of the training width, BBBC010's case) that pass is the run's mean pass
    and the draws follow, otherwise the image is resampled and segmented again.
    Cancel returns what has arrived (the last update, mean network included) as a
    ``Segmented`` with ``cancelled`` set; ``C.Cancelled`` only when nothing had arrived.
    """
    import torch

    from ..checkpoint import CheckpointError
    from ..data import InputError
    from ..inference import Cancelled, predict_progressive, tiles_image
    from ..models import load_model
    from ..scale import network_view

    t0 = time.perf_counter()
    last, lm, held = None, None, None  # held: (scale, mapping) of ``last``
    try:
        lm = load_model(job.model, job.device)
        lm.postprocess = replace(lm.postprocess, min_size=job.min_size)
        run = dict(binarize=job.binarize, device=job.device, seed=job.seed, should_stop=stop.is_set)
        first = True  # the run's mean pass is still to come
        if job.worm_width == "auto" and tiles_image(job.image.shape, None):
            from ._segment_tiled import infer_tiled_auto

            return (yield from infer_tiled_auto(job, lm, relay, stop, run, t0))
        if job.worm_width == "auto":  # untiled: a tiled field went to infer_tiled_auto above
            own = predict_progressive(lm.model, job.image, lm.postprocess, job.draws, **run)
            last, held = next(own), (OWN_SCALE, _same)
            own.close()
            warm_up()
            yield _partial(job, last.prediction(), 0, job.draws, scale_pending=True)
            scale, image, mapped = network_view(lm.model, job.image, "auto", job.device, stop.is_set)
            first = scale.factor != 1.0  # resampled: the pass above was at another scale
        else:
            scale, image, mapped = network_view(lm.model, job.image, job.worm_width, job.device, stop.is_set)
        if tiles_image(image.shape, None):
            # a field this large clustered whole can put distant worms in one cluster: the tiled
            # path clusters each blob alone (validation.AUTO_TILE_PX); progress counts forward passes
            from ._segment_tiled import infer_tiled

            own_pass = last  # the own-scale pass on screen, kept if Cancel comes before the first tile
            return (yield from infer_tiled(
                job, lm, image, scale, mapped, relay, run, t0,
                shown_before=None if own_pass is None else
                lambda: finish(job, lm, _same(own_pass.prediction()), t0, OWN_SCALE, own_pass.done, True)))
        shown = -float("inf") if first else time.perf_counter()
        for last in predict_progressive(lm.model, image, lm.postprocess, job.draws, first=first, **run):
            held = (scale, mapped)
            relay.progress.emit(last.done, last.total)
            if not last.final and (last.done == 0 or time.perf_counter() - shown >= REFRESH_S):
                warm_up()
                yield _partial(job, mapped(last.prediction()), last.done, last.total)
                shown = time.perf_counter()
        return finish(job, lm, mapped(last.prediction()), t0, scale, last.done)
    except Cancelled:
        if last is None:
            return C.Cancelled()
        return finish(job, lm, held[1](last.prediction()), t0, held[0], last.done, True)
    except (CheckpointError, InputError, ValueError, RuntimeError, OSError) as exc:
        C.log.exception("inference failed")
        return C.Failed(f"Inference failed: {exc}")
    finally:
        if job.device.startswith("cuda"):
            torch.cuda.empty_cache()


def cancel_text(meta: dict, asked: int) -> str:
    """What a cancelled-and-kept result holds, for the status line (a tiled field's tiles may
    hold different numbers of draws: ``meta["tile_draws"]``)."""
    per_tile = meta.get("tile_draws") or []
    reached = meta.get("tiles_reached", len(per_tile))
    which = "tile 1" if reached == 1 else f"tiles 1-{reached}"
    part = f" ({which} of {len(per_tile)}; the rest not segmented)" if reached < len(per_tile) else ""
    if len(set(per_tile)) > 1:
        return f"cancelled: kept the tiles' results of {'/'.join(map(str, per_tile))} of {asked} draws{part}. "
    return (f"cancelled: kept the result of {meta['draws']} of {asked} draws"
            + (" (mean network only, no uncertainty)" if meta["draws"] == 0 else "") + part + ". ")


def _same(pred: Any) -> Any:
    return pred


def session_of(job: Job, pred: Any, meta: dict) -> Any:
    """The proofreading session of a result (review items computed here, off the GUI thread)."""
    from ..session import Session

    names = [g["name"] for g in job.layers]
    return Session.from_prediction(pred, job.image_name, job.image, image_source=job.source, channel_names=names,
                                   meta={**meta, "image_name": job.image_name, "source_layers": job.layers})


def _partial(job: Job, pred: Any, done: int, total: int, scale_pending: bool = False) -> Partial:
    from ._segment_layers import prepare

    session = session_of(job, pred, {"draws": done})
    return Partial(session, prepare(session, job, final=False), pred.n_instances, done, total, scale_pending)


def finish(job: Job, lm: Any, pred: Any, t0: float, scale: Any, done: int, cancelled: bool = False,
           extra: dict | None = None, boxes: Any = None) -> Segmented:
    """``pred`` (in the user's pixels, after ``done`` draws) with its measurements, provenance
    (``extra``: more of it, e.g. a tiled run's draws per tile), session and layer data.

    ``boxes``: ``pred`` in box form (a tiled field at its own scale).  Its worm table, count
    inputs and review items are computed on crops (``box_measure``, ``box_review``: the dense
    values, equal by construction): on a 2048x2048 field of 148 worms the dense review list
    alone took 15.4 s, on crops 0.12 s (the table 7.2 s dense).
    """
    from ..measurements import input_tags, measure_prediction
    from ._segment_layers import prepare

    table = measure_prediction(pred if boxes is None else boxes, job.image,
                               input_tags(len(job.image), lm.model.cfg.in_channels))
    if boxes is not None:
        pred._items = boxes.review_items(show_all=True)
    counted = (pred if boxes is None else boxes).count_inputs()
    meta = {"model": job.model, "model_path": lm.path, "sha256": lm.sha256, "draws": done,
            "draws_asked": job.draws, "binarize": job.binarize, "seed": job.seed, "device": job.device,
            "dropout_rates": lm.model.dropout_rates(), "postprocess": dict(lm.postprocess.__dict__),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "count_inputs": counted,
            "seconds": time.perf_counter() - t0, **scale.as_meta(),
            "scale_text": OWN_TEXT if scale is OWN_SCALE else scale.describe("set Worm width to override"),
            **(extra or {})}
    session = session_of(job, pred, meta)
    return Segmented(pred, meta, table, cancelled, session, prepare(session, job, final=True, table=table))
