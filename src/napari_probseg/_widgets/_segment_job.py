"""What a Segment run needs and what its worker thread does (no widgets here).

Why apart from ``_inference.py``: the dock stays about the controls; the worker body
runs off the GUI thread and touches no Qt widget, only the progress relay.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _common as C


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


@dataclass(frozen=True)
class Segmented:
    """What a finished inference worker hands to the GUI thread."""

    prediction: Any  # inference.Prediction
    meta: dict
    table: dict  # measurements.measure_prediction's per-worm table


def infer(job: Job, relay: C.Relay, stop: threading.Event) -> Segmented | C.Cancelled | C.Failed:
    """Worker body: load, predict, free the GPU cache; expected failures become a message."""
    import torch

    from ..checkpoint import CheckpointError
    from ..data import InputError
    from ..inference import Cancelled, predict
    from ..models import load_model

    t0 = time.perf_counter()
    try:
        lm = load_model(job.model, job.device)
        lm.postprocess = replace(lm.postprocess, min_size=job.min_size)
        pred = predict(lm.model, job.image, lm.postprocess, job.draws, binarize=job.binarize, device=job.device,
                       seed=job.seed,
                       progress=relay.progress.emit, should_stop=stop.is_set)
        from ..counts import count_inputs
        from ..measurements import input_tags, measure_prediction

        table = measure_prediction(pred, job.image, input_tags(len(job.image), lm.model.cfg.in_channels))
        meta = {"model": job.model, "model_path": lm.path, "sha256": lm.sha256, "draws": job.draws,
                "binarize": job.binarize, "seed": job.seed, "device": job.device,
                "dropout_rates": lm.model.dropout_rates(), "postprocess": dict(lm.postprocess.__dict__),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.perf_counter() - t0,
                "count_inputs": count_inputs(pred.probabilities, pred.instances, pred.draw_counts)}
        return Segmented(pred, meta, table)
    except Cancelled:
        return C.Cancelled()
    except (CheckpointError, InputError, ValueError, RuntimeError, OSError) as exc:
        C.log.exception("inference failed")
        return C.Failed(f"Inference failed: {exc}")
    finally:
        if job.device.startswith("cuda"):
            torch.cuda.empty_cache()
