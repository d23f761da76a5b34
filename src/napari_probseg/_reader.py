"""napari reader: session files and ``probseg predict``'s ``*_probabilities.npz``.

Why so small: napari imports a reader whenever a file is dropped on the window, so it
imports neither Qt nor torch nor ``inference`` (``tests/test_reader_imports.py`` checks),
and it only returns layers: the Proofreading dock finds the session on the labels layer
when the dock is opened or the layer selected.  A box-layout file (issue 17) too large for a
session ([N,H,W] probabilities) opens as its labels and uncertainty, without a session.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import box_file
from ._layers import LayerData, box_layer_data, session_layer_data
from .session import Session
from .session_file import file_kind

PLUGIN = "napari-probseg"
# names only this plugin writes: predict's probabilities and the dock's session files
OUR_PATTERNS = ("*_probabilities.npz", "*.probseg.npz")


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
    if kind == "probabilities" and box_file.is_box_file(path):
        pred, _, meta = box_file.load(path)
        if box_file.too_large_for_session(pred):
            return box_layer_data(pred, _stem(path), meta)
    session = Session.from_probabilities_file(path) if kind == "probabilities" else Session.load(path)
    return session_layer_data(session, images=True)


def _stem(path: Path) -> str:
    return path.name[: -len("_probabilities.npz")] if path.name.endswith("_probabilities.npz") else path.stem


def claim_our_files(_context: Any = None) -> list[str]:
    """npe2 ``on_activate``: napari's reader preferences name this plugin for ``OUR_PATTERNS``.

    Why: npe2 has no reader priority.  napari's builtin reader claims every ``*.npz`` too, so
    without a preference ``napari C10_probabilities.npz`` asks which reader to use (builtin
    preselected: one grey layer, no session).  A preference is napari's own answer (the same
    one the dialog's "Remember this choice" writes; Preferences > Plugins lists it).  Patterns
    the user has already given a reader keep theirs.  Returns the patterns added."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    prefs = dict(plugins.extension2reader)
    added = [p for p in OUR_PATTERNS if p not in prefs]
    if added:
        try:  # napari saves its settings file on change; the preference holds for this session either way
            plugins.extension2reader = {**prefs, **dict.fromkeys(added, PLUGIN)}
        except OSError as exc:  # never let activation (and with it every command of the plugin) fail
            logging.getLogger(__name__).warning("napari settings not saved: %s", exc)
    return added
