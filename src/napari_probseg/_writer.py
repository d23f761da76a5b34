"""napari writers: a proofreading session file from a labels layer, or from a session's layers.

Why two: napari's builtin labels writer also takes ``.npz`` (and writes only ``arr_0``).
``File > Save All Layers`` of a session's layers lists the multi-layer writer first, so the
full session is the default there; for one selected labels layer the ``.probseg.npz``
extension picks this plugin (npe2 prefers the longest matching extension).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .session import Session, SessionError
from .session_file import SUFFIX


def write_session(path: str, data: Any, meta: dict) -> list[str]:
    """napari writer hook for a labels layer: the full session when the layer has one,
    else a labels-only session so a plain label image can be proofread later."""
    md = meta.get("metadata") or {}
    session = md.get("probseg_session")
    labels = np.asarray(data, dtype=np.int32)
    if labels.ndim != 2:
        raise SessionError(f"a proofreading session holds one 2-D label image; this layer has shape {labels.shape}")
    if session is None:
        session = Session(meta.get("name", "labels"), np.zeros((0, *labels.shape), np.float32),
                          np.zeros(labels.shape, np.float32), labels, [])
    session.labels = labels
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + SUFFIX)
    return [str(session.save(p))]


def write_session_layers(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """napari writer hook for several layers (labels + images [+ points]): the session of
    the one labels layer; the other layers are parts of that session, saved with it."""
    labels = [(data, meta) for data, meta, kind in layer_data if kind == "labels"]
    if len(labels) != 1:
        raise SessionError(f"a proofreading session holds one labels layer; {len(labels)} were given")
    return write_session(path, *labels[0])
