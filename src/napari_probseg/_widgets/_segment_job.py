"""What a Segment run needs and what its worker thread does (no widgets here).

Why apart from ``_inference.py``: the dock stays about the controls; the worker body
runs off the GUI thread and touches no Qt widget, only the progress relay.  It is a
generator (issue 17): the mean network's segmentation and refinements as draws finish are
yielded as ``Partial`` results, the finished (or cancelled) result is returned.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import _common as C

# at most this often (seconds) a refinement goes to the GUI thread: each costs the worker an
# agglomeration (~0.1 s on a BBBC010 well) and the GUI a layer update; the first result always goes
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
    """A result on the way: the mean network's (``done`` = 0) or after ``done`` of ``total`` draws."""

    prediction: Any  # inference.Prediction, review items already computed (off the GUI thread)
    done: int
    total: int


@dataclass(frozen=True)
class Segmented:
    """What a finished inference worker hands to the GUI thread."""

    prediction: Any  # inference.Prediction
    meta: dict
    table: dict  # measurements.measure_prediction's per-worm table
    cancelled: bool = False  # Cancel was pressed: this holds meta["draws"] of meta["draws_asked"] draws


def infer(job: Job, relay: C.Relay, stop: threading.Event) -> Generator[Partial, None, Segmented | C.Cancelled | C.Failed]:
    """Worker body: load, predict progressively, free the GPU cache; expected failures become a message.

    Cancel returns what has arrived (the last update, mean network included) as a
    ``Segmented`` with ``cancelled`` set; ``C.Cancelled`` only when nothing had arrived.
    """
    import torch

    from ..checkpoint import CheckpointError
    from ..data import InputError
    from ..inference import Cancelled, predict_progressive
    from ..models import load_model
    from ..scale import network_view

    t0 = time.perf_counter()
    last, lm = None, None
    try:
        lm = load_model(job.model, job.device)
        lm.postprocess = replace(lm.postprocess, min_size=job.min_size)
        scale, image, mapped = network_view(lm.model, job.image, job.worm_width, job.device, stop.is_set)
        shown = -float("inf")
        for last in predict_progressive(lm.model, image, lm.postprocess, job.draws, binarize=job.binarize,
                                        device=job.device, seed=job.seed, should_stop=stop.is_set):
            relay.progress.emit(last.done, last.total)
            if not last.final and (last.done == 0 or time.perf_counter() - shown >= REFRESH_S):
                pred = mapped(last.prediction())
                pred.review_items(show_all=True)  # cached on the prediction: the GUI thread only reads it
                yield Partial(pred, last.done, last.total)
                shown = time.perf_counter()
        return finish(job, lm, mapped(last.prediction()), t0, scale, last.done)
    except Cancelled:
        return C.Cancelled() if last is None else finish(job, lm, mapped(last.prediction()), t0, scale, last.done, True)
    except (CheckpointError, InputError, ValueError, RuntimeError, OSError) as exc:
        C.log.exception("inference failed")
        return C.Failed(f"Inference failed: {exc}")
    finally:
        if job.device.startswith("cuda"):
            torch.cuda.empty_cache()


def finish(job: Job, lm: Any, pred: Any, t0: float, scale: Any, done: int, cancelled: bool = False) -> Segmented:
    """``pred`` (in the user's pixels, after ``done`` draws) with its measurements and provenance."""
    from ..counts import count_inputs
    from ..measurements import input_tags, measure_prediction

    table = measure_prediction(pred, job.image, input_tags(len(job.image), lm.model.cfg.in_channels))
    meta = {"model": job.model, "model_path": lm.path, "sha256": lm.sha256, "draws": done,
            "draws_asked": job.draws, "binarize": job.binarize, "seed": job.seed, "device": job.device,
            "dropout_rates": lm.model.dropout_rates(), "postprocess": dict(lm.postprocess.__dict__),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.perf_counter() - t0,
            "count_inputs": count_inputs(pred.probabilities, pred.instances, pred.draw_counts),
            **scale.as_meta(), "scale_text": scale.describe("set Worm width to override")}
    return Segmented(pred, meta, table, cancelled)
