"""napari reader: session files and ``probseg predict``'s ``*_probabilities.npz``.

Why so small: napari imports a reader whenever a file is dropped on the window, so it
imports neither Qt nor torch nor ``inference`` (``tests/test_reader_imports.py`` checks),
and it only returns layers: the Proofreading dock finds the session on the labels layer
when the dock is opened or the layer selected.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ._layers import LayerData, session_layer_data
from .session import Session
from .session_file import file_kind


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """napari reader hook: our session files and ``*_probabilities.npz``, nothing else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_session if file_kind(path) else None


def read_session(path: str | list[str]) -> list[LayerData]:
    """Layers of a session (or predict output) file: its images, probabilities, entropy,
    corrected labels, peaks and review items.  Nothing else happens: the Proofreading
    dock binds to the new labels layer when it is open or opened."""
    path = Path(path[0] if isinstance(path, list) else path)
    kind = file_kind(path)
    session = Session.from_probabilities_file(path) if kind == "probabilities" else Session.load(path)
    return session_layer_data(session, images=True)
