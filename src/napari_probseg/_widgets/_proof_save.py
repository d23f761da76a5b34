"""The Proofreading dock's saving: autosave after every correction, save / open dialogs.

Why apart: saving is the same whatever was edited; the dock and its edit actions only call
``autosave()``.  Brush strokes (which bypass the dock) are caught by a debounced check of
the labels and logged as "paint"; the dock's own edits and undo/redo save at once.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog

from ..autosave import autosave as autosave_session
from ..session_file import SUFFIX
from . import _common as C


class SavingMixin:
    """Save actions of ``ProofreadingWidget``."""

    def _schedule_autosave(self, *_: Any) -> None:
        self._debounce.start()

    def _autosave_if_changed(self) -> None:
        if self.session is not None and self.labels_layer is not None:
            if self._saved_labels is None or not np.array_equal(self._saved_labels, self.labels_layer.data):
                self.session.record("paint", self.current)
                self.autosave()

    def autosave(self) -> Path | None:
        """Write the session to its autosave slot; a failure is reported, never raised."""
        if self.session is None:
            return None
        self.session.labels = np.asarray(self.labels_layer.data)
        try:
            self.last_autosave = autosave_session(self.session, self.autosave_folder)
        except OSError as exc:
            C.error(f"Autosave failed ({exc}); save the session manually to keep your corrections.")
            return None
        self._saved_labels = self.session.labels.copy()
        self.autosave_label.setText(f"autosaved {time.strftime('%H:%M:%S')} to {self.last_autosave}")
        return self.last_autosave

    def save(self, path: str | Path) -> Path | None:
        if not self._ready():
            return None
        self.session.labels = np.asarray(self.labels_layer.data)
        try:
            return self.session.save(path)
        except OSError as exc:
            C.error(f"Could not save the session to {path}: {exc}")
            return None

    def save_dialog(self) -> None:
        if not self._ready():
            return
        default = str(Path.home() / f"{self.session.image_name}{SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, "Save proofreading session", default, "session (*.npz)")
        if path and self.save(path):
            C.info(f"Session saved to {path}")

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", "probseg session or probabilities (*.npz)")
        if path:
            self.open(path)

    def open(self, path: str | Path) -> list[Any]:
        """Open a session / probabilities file through the plugin's reader (errors -> notification)."""
        try:
            return self.viewer.open(str(path), plugin="napari-probseg")
        except Exception as exc:  # napari wraps reader errors in its own exception types
            C.error(f"Could not open {path}: {exc}")
            return []
