"""napari front end: thin Qt widgets over the headless core (inference, session, train).

The manifest (``napari.yaml``) points at the submodules directly so that napari can
list the plugin's contributions without importing Qt or torch.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "InferenceWidget": "._inference",
    "ProofreadingWidget": "._proofreading",
    "MeasureWidget": "._measure",
    "TrainingWidget": "._training",
    "get_reader": ".._reader",
    "read_session": ".._reader",
    "write_session": ".._writer",
    "session_layer_data": ".._layers",
    "sample_c04": ".._sample_data",
    "sample_c10": ".._sample_data",
    "sample_d21": ".._sample_data",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(name)
