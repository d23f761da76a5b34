"""The Segment dock's result layers: added at a run's first result, updated in place after.

Why apart from ``_inference.py``: the dock stays about its controls.  A run's layers carry
its ``probseg_run`` id.  While draws arrive they are a preview: no session on the labels
layer (the Proofreading dock does not bind to it) and the labels are not editable; the
final (or cancelled-and-kept) result makes them a session in place.
"""
from __future__ import annotations

import time
from typing import Any

from . import _common as C
from ._measure import set_layer_features


def run_layers(viewer: Any, run_id: str) -> dict[str, Any]:
    """This run's layers by role (probabilities, entropy, labels, peaks, items)."""
    return {l.metadata.get("probseg_role"): l for l in C.layers_with(viewer, "probseg_run", run_id)}


def retire_earlier(viewer: Any, image_name: str) -> None:
    """Drop earlier untouched results of the same image, keep edited ones (hidden, renamed with
    their time) so a re-run never discards corrections; leftover previews go too."""
    stamp = time.strftime("%H:%M:%S")
    for layer in list(C.layers_with(viewer, "probseg_image_name", image_name)):
        sid = layer.metadata.get("probseg_session_id")
        old = next((l.metadata["probseg_session"] for l in C.session_labels_layers(viewer)
                    if l.metadata.get("probseg_session_id") == sid), None)
        if sid and (old is None or not (old.history or old.n_reviewed)):
            viewer.layers.remove(layer)
        elif sid:
            layer.visible = False
            if "(before " not in layer.name:
                layer.name = f"{layer.name} (before {stamp})"


def show(viewer: Any, session: Any, job: Any, final: bool, table: dict | None = None) -> Any:
    """Add or update this run's layers from ``session``; returns the labels layer.

    In place: a layer's data, metadata and markers change, its name, colours, visibility and
    contrast (which the user may have changed meanwhile) stay.
    """
    from .._layers import session_layer_data

    existing = run_layers(viewer, job.run_id)
    if not existing:
        retire_earlier(viewer, job.image_name)
    geo = {"scale": job.layers[0]["scale"], "translate": job.layers[0]["translate"]}
    labels = None
    for data, kwargs, kind in session_layer_data(session, images=False, **geo):
        md = {**kwargs["metadata"], "probseg_run": job.run_id}
        if not final:
            md.pop("probseg_session", None)
            md["probseg_preview"] = True
        kwargs["metadata"] = md
        layer = existing.get(md["probseg_role"])
        if layer is None:
            layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
        else:
            _update(layer, data, kwargs, kind)
        if kind == "labels":
            labels = layer
            layer.editable = final
            if final and table is not None:
                set_layer_features(layer, table)  # hover shows the worm's measurements
    return labels


def _update(layer: Any, data: Any, kwargs: dict, kind: str) -> None:
    if kind == "points":
        layer.data = data
        layer.features = kwargs["features"]
        layer.text = kwargs["text"]
    else:
        layer.data = data
    layer.metadata = kwargs["metadata"]


def remove_run(viewer: Any, run_id: str) -> None:
    """Remove this run's preview layers (a failed run)."""
    for layer in run_layers(viewer, run_id).values():
        viewer.layers.remove(layer)
