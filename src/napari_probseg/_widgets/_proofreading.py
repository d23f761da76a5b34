"""Proofreading dock: walk the ranked uncertainty peaks and correct the labels there.

Edits are computed by ``session`` (pure functions) and applied with
``Labels.data_setitem`` inside ``block_history`` so each is one Ctrl+Z step.  The
session is autosaved after every edit (and, debounced, after brush strokes and undo).
Shortcuts on the viewer: N next peak, Shift-N previous, Shift-R mark reviewed and go on.
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QFileDialog, QGridLayout, QHBoxLayout, QLabel, QListWidget, QProgressBar, QPushButton,
                            QSpinBox, QVBoxLayout, QWidget)

from .. import session as S
from . import _common as C

if TYPE_CHECKING:
    import napari

KEYS = {"n": "next_peak", "Shift-N": "previous_peak", "Shift-R": "accept"}
VIEW_PX = 128  # side of the field of view around a peak, in image pixels (a worm is ~100 px long)
COLOURS = {"open": (0.0, 1.0, 1.0, 1.0), "reviewed": (0.2, 1.0, 0.2, 1.0), "current": (1.0, 1.0, 0.0, 1.0)}


class ProofreadingWidget(QWidget):
    """Dock 'Proofreading': ranked peaks, navigation, merge/split/erase/replace, save."""

    def __init__(self, napari_viewer: "napari.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.session: S.Session | None = None
        self.labels_layer = None
        self.current: int | None = None
        self.autosave_folder: Path | None = None  # None: session.autosave_dir()
        self.last_autosave: Path | None = None
        self._saved_labels: np.ndarray | None = None
        self._debounce = QTimer(self, singleShot=True, interval=400)
        self._debounce.timeout.connect(self._autosave_if_changed)
        self._build()
        C.register(napari_viewer, "proofreading", self)
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        napari_viewer.layers.events.removed.connect(self._on_removed)
        ref = weakref.ref(self)
        for key, method in KEYS.items():
            napari_viewer.bind_key(key, _forward(ref, method), overwrite=True)
        layers = C.session_labels_layers(napari_viewer)
        if layers:
            self.bind(layers[0])

    # ---- UI -----------------------------------------------------------------------
    def _build(self) -> None:
        self.title = QLabel("No session: run 'Segment worms' or open a session file.")
        self.title.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setFormat("reviewed %v / %m")
        self.peak_list = QListWidget()
        self.peak_list.currentRowChanged.connect(lambda r: r >= 0 and r != self.current and self.go_to(r))
        self.label_a = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.label_b = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.label_a.setToolTip("instance A: kept by merge, split / erased / replaced")
        self.label_b.setToolTip("instance B: merged into A")
        grid = QGridLayout()
        buttons = [
            ("< Previous (Shift-N)", self.previous_peak), ("Next (N) >", self.next_peak),
            ("Accept + next (Shift-R)", self.accept), ("Toggle reviewed", self.toggle_reviewed),
            ("Merge B into A", self.merge), ("Split A (seed points)", self.split),
            ("Erase A", self.erase), ("Paint new instance", self.start_paint),
            ("Replace A by painted", self.replace), ("Undo", self.undo),
            ("Save session...", self.save_dialog), ("Open session...", self.open_dialog),
        ]
        self.buttons = {}
        for i, (text, slot) in enumerate(buttons):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, s=slot: s())
            grid.addWidget(b, i // 2, i % 2)
            self.buttons[slot.__name__] = b
        ab = QHBoxLayout()
        for text, w in (("A", self.label_a), ("B", self.label_b)):
            ab.addWidget(QLabel(text))
            ab.addWidget(w)
        self.autosave_label = QLabel("")
        self.autosave_label.setWordWrap(True)
        lay = QVBoxLayout(self)
        for w in (self.title, self.bar, self.peak_list):
            lay.addWidget(w)
        lay.addLayout(ab)
        lay.addLayout(grid)
        lay.addWidget(self.autosave_label)

    # ---- binding --------------------------------------------------------------------
    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer.metadata.get("probseg_session"), S.Session) and layer._type_string == "labels":
            self.bind(layer)

    def _on_removed(self, event: Any) -> None:
        if event.value is self.labels_layer:
            self._autosave_if_changed()
            self.unbind()

    def unbind(self) -> None:
        if self.labels_layer is not None:
            for ev in (self.labels_layer.events.paint, self.labels_layer.events.set_data):
                ev.disconnect(self._schedule_autosave)
        self.session, self.labels_layer, self.current = None, None, None
        self.peak_list.clear()
        self.title.setText("No session.")

    def bind(self, labels_layer: Any) -> None:
        """Proofread the session stored on this labels layer."""
        if self.labels_layer is not None:
            self._autosave_if_changed()
            self.unbind()
        self.labels_layer = labels_layer
        self.session = labels_layer.metadata["probseg_session"]
        self.session.labels = np.asarray(labels_layer.data)
        self._saved_labels = self.session.labels.copy()
        labels_layer.events.paint.connect(self._schedule_autosave)
        labels_layer.events.set_data.connect(self._schedule_autosave)
        m = self.session.meta
        self.title.setText(f"{self.session.image_name}: {len(self.session.peaks)} peaks - model "
                           f"{Path(str(m.get('model', '?'))).name} (sha256 {str(m.get('sha256', ''))[:8]}), "
                           f"{m.get('draws', '?')} draws, threshold {self.session.threshold:g}")
        self.peak_list.blockSignals(True)
        self.peak_list.clear()
        self.peak_list.addItems([self._peak_text(i) for i in range(len(self.session.peaks))])
        self.peak_list.blockSignals(False)
        self.current = None
        self._update_progress()
        self._style_peaks()

    def peaks_layer(self) -> Any | None:
        sid = self.session.session_id if self.session else None
        return next((l for l in C.layers_with(self.viewer, "probseg_session_id", sid)
                     if l.metadata.get("probseg_role") == "peaks"), None)

    def _peak_text(self, i: int) -> str:
        pk = self.session.peaks[i]
        mark = "[x]" if self.session.reviewed[i] else "[ ]"
        worms = ", ".join(str(k + 1) for k in pk.instances) or "-"
        return f"{mark} #{i + 1}  H={pk.score:.3f}  ({pk.y},{pk.x})  instances {worms}"

    def _style_peaks(self) -> None:
        """Peak markers: yellow = current, green = reviewed, cyan = still to review."""
        pl = self.peaks_layer()
        if pl is None or not len(pl.data):
            return
        n = len(pl.data)
        colours = np.array([COLOURS["reviewed" if r else "open"] for r in self.session.reviewed[:n]])
        if self.current is not None and self.current < n:
            colours[self.current] = COLOURS["current"]
        pl.border_color = colours

    def _update_progress(self) -> None:
        s = self.session
        self.bar.setRange(0, max(len(s.peaks), 1) if s else 1)
        self.bar.setValue(s.n_reviewed if s else 0)

    # ---- navigation -------------------------------------------------------------------
    def go_to(self, index: int) -> None:
        """Centre and zoom on a peak and select the instances it touches."""
        if not self._ready(need_peaks=True):
            return
        index = int(np.clip(index, 0, len(self.session.peaks) - 1))
        self.current = index
        pk = self.session.peaks[index]
        centre = self.labels_layer.data_to_world((pk.y + S.PATCH / 2, pk.x + S.PATCH / 2))
        cam = C.camera(self.viewer)
        cam.center = tuple(centre[-2:])
        cam.zoom = min(C.canvas_size(self.viewer)) / (VIEW_PX * float(self.labels_layer.scale[-1]))
        ids = self.session.peak_labels(index)
        self.label_a.setValue(ids[0] if ids else 0)
        self.label_b.setValue(ids[1] if len(ids) > 1 else 0)
        if ids:
            self.labels_layer.selected_label = ids[0]
        self._style_peaks()
        self.peak_list.blockSignals(True)
        self.peak_list.setCurrentRow(index)
        self.peak_list.blockSignals(False)
        self.viewer.status = f"peak {index + 1}/{len(self.session.peaks)}: instances {ids}"

    def next_peak(self) -> None:
        self.go_to(0 if self.current is None else self.current + 1)

    def previous_peak(self) -> None:
        self.go_to(0 if self.current is None else self.current - 1)

    def toggle_reviewed(self, value: bool | None = None) -> None:
        if not self._ready(need_peak=True):
            return
        i = self.current
        self.session.reviewed[i] = not self.session.reviewed[i] if value is None else value
        self.session.record("reviewed" if self.session.reviewed[i] else "unreviewed", i)
        self.peak_list.item(i).setText(self._peak_text(i))
        self._update_progress()
        self._style_peaks()
        self.autosave()

    def accept(self) -> None:
        """The segmentation at this peak is right (or now corrected): mark it, go to the next open one."""
        if not self._ready(need_peak=True):
            return
        self.toggle_reviewed(True)
        nxt = self.session.next_unreviewed(self.current + 1)
        if nxt is not None:
            self.go_to(nxt)

    def _ready(self, need_peaks: bool = False, need_peak: bool = False) -> bool:
        if self.session is None or self.labels_layer is None:
            C.info("No proofreading session: run 'Segment worms' or open a session file first.")
            return False
        if (need_peaks or need_peak) and not self.session.peaks:
            C.info("This session has no uncertainty peaks.")
            return False
        if need_peak and self.current is None:
            self.go_to(0)
        return True

    # ---- edits -------------------------------------------------------------------------
    def apply(self, make_edit: Any, action: str, **details: Any) -> bool:
        """Compute an edit on the current labels and apply it as one undoable step."""
        if not self._ready():
            return False
        try:
            edit = make_edit(np.asarray(self.labels_layer.data))
        except S.SessionError as exc:
            C.error(str(exc))
            return False
        with self.labels_layer.block_history():
            self.labels_layer.data_setitem(edit.indices, edit.values)
        self.session.record(action, self.current, description=edit.description, **details)
        self.autosave()
        return True

    def merge(self) -> bool:
        a, b = self.label_a.value(), self.label_b.value()
        return self.apply(lambda lab: S.merge(lab, a, b), "merge", a=a, b=b)

    def erase(self) -> bool:
        a = self.label_a.value()
        return self.apply(lambda lab: S.erase(lab, a), "erase", a=a)

    def split(self) -> bool:
        """Split A by watershed from the points of the 'split seeds' layer (created on first use)."""
        seeds = self._scratch("split seeds", "points")
        if len(seeds.data) < 2:
            self.viewer.layers.selection.active = seeds
            seeds.mode = "add"
            C.info("Click two or more seed points on the instance (one per part), then press Split again.")
            return False
        a = self.label_a.value()
        pts = np.array([self.labels_layer.world_to_data(seeds.data_to_world(p))[-2:] for p in seeds.data])
        if self.apply(lambda lab: S.split(lab, a, pts), "split", a=a, seeds=pts.tolist()):
            seeds.data = np.zeros((0, 2))
            self.viewer.layers.selection.active = self.labels_layer
            return True
        return False

    def start_paint(self) -> None:
        paint = self._scratch("paint", "labels")
        self.viewer.layers.selection.active = paint
        paint.selected_label = 1
        paint.mode = "paint"
        C.info("Paint the instance, then press 'Replace A by painted' (A = 0 adds it as a new instance).")

    def replace(self) -> bool:
        paint = self._scratch("paint", "labels")
        mask = np.asarray(paint.data) > 0
        a = self.label_a.value()
        if self.apply(lambda lab: S.replace(lab, a, mask), "replace", a=a):
            paint.data = np.zeros_like(paint.data)
            self.viewer.layers.selection.active = self.labels_layer
            return True
        return False

    def undo(self) -> None:
        if self._ready():
            self.labels_layer.undo()
            self.session.record("undo", self.current)
            self.autosave()

    def _scratch(self, what: str, kind: str) -> Any:
        """A helper layer (seed points / paint) aligned with the labels layer, reused if present."""
        name = f"{self.session.image_name if self.session else 'probseg'} {what}"
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        geo = {"scale": self.labels_layer.scale, "translate": self.labels_layer.translate} if self.labels_layer else {}
        if kind == "points":
            return self.viewer.add_points(np.zeros((0, 2)), name=name, size=6, face_color="yellow", **geo)
        shape = self.labels_layer.data.shape if self.labels_layer is not None else (1, 1)
        return self.viewer.add_labels(np.zeros(shape, np.int32), name=name, **geo)

    # ---- saving ------------------------------------------------------------------------
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
            self.last_autosave = S.autosave(self.session, self.autosave_folder)
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
        default = str(Path.home() / f"{self.session.image_name}{S.SUFFIX}")
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


def _forward(ref: "weakref.ref[ProofreadingWidget]", method: str) -> Any:
    """A key callback that forwards to the dock while it exists (no strong reference)."""

    def callback(viewer: Any) -> None:
        w = ref()
        if w is not None:
            try:
                getattr(w, method)()
            except RuntimeError:  # the Qt widget was deleted
                pass

    callback.__name__ = f"probseg_{method}"
    return callback
