"""napari writer: a labels layer as a proofreading session file."""
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
