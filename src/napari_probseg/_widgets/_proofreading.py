"""Proofreading dock: walk the review list (suspected errors) and correct the labels there.

The list is a ``review_queue.ReviewQueue``: by default the review items at or above the
calibrated score; a selector shows all items or the paper's 4x4 entropy patches instead.

Edits are computed by ``session`` (pure functions) and applied with
``Labels.data_setitem`` inside ``block_history`` so each is one Ctrl+Z step.  The
session is autosaved after every edit (and, debounced, after brush strokes and undo).
Shortcuts (``_keys``): N next entry, Shift-N previous, Shift-R mark reviewed and go on.
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import edits as E
from ..autosave import autosave as autosave_session
from ..review_queue import MODES, ReviewQueue
from ..session import Session, SessionError
from ..session_file import SUFFIX
from . import _common as C
from . import _keys as K

if TYPE_CHECKING:
    import napari

VIEW_PX = 128  # side of the field of view around a peak, in image pixels (a worm is ~100 px long)
COLOURS = {"open": (0.0, 1.0, 1.0, 1.0), "reviewed": (0.2, 1.0, 0.2, 1.0), "current": (1.0, 1.0, 0.0, 1.0)}


class ProofreadingWidget(QWidget):
    """Dock 'Proofreading': ranked review items (or patches), navigation, merge/split/erase/replace, save."""

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session: Session | None = None
        self.labels_layer = None
        self.current: int | None = None
        self.queue: ReviewQueue | None = None
        self.autosave_folder: Path | None = None  # None: autosave.autosave_dir()
        self.last_autosave: Path | None = None
        self._saved_labels: np.ndarray | None = None
        self._debounce = QTimer(self, singleShot=True, interval=400)
        self._debounce.timeout.connect(self._autosave_if_changed)
        self._build()
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        napari_viewer.layers.events.removed.connect(self._on_removed)
        ref = weakref.ref(self)
        self.keys_left_alone = C.bind_keys(napari_viewer, {key: K.forward(ref, m) for key, (m, _) in K.KEYS.items()})
        self.shortcuts = K.install(self, self.keys_left_alone)  # also while the list or a button has focus
        self.layout().addWidget(K.ShortcutsHelp(self.keys_left_alone))
        layers = C.session_labels_layers(napari_viewer)
        if layers:
            self.bind(layers[0])

    # ---- UI -----------------------------------------------------------------------
    def _build(self) -> None:
        self.title = QLabel("No session: run 'Segment worms' or open a session file.")
        self.title.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setFormat("reviewed %v / %m")
        self.list_mode = QComboBox()
        for key, text in MODES.items():
            self.list_mode.addItem(text, key)
        self.list_mode.setToolTip("the default list holds the suspected errors; 'all' also the weaker review items; "
                                  "the 4x4 patches are the paper's uncertainty peaks")
        self.list_mode.currentIndexChanged.connect(lambda _: self.session is not None and self.show_list())
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
        for w in (self.title, self.list_mode, self.bar, self.peak_list):
            lay.addWidget(w)
        lay.addLayout(ab)
        lay.addLayout(grid)
        lay.addWidget(self.autosave_label)

    # ---- binding --------------------------------------------------------------------
    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer.metadata.get("probseg_session"), Session) and layer._type_string == "labels":
            self.bind(layer)

    def _on_removed(self, event: Any) -> None:
        if event.value is self.labels_layer:
            self._autosave_if_changed()
            self.unbind()

    def unbind(self) -> None:
        if self.labels_layer is not None:
            for ev in (self.labels_layer.events.paint, self.labels_layer.events.set_data):
                ev.disconnect(self._schedule_autosave)
        self.session, self.labels_layer, self.current, self.queue = None, None, None, None
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
        s = self.session
        self.title.setText(f"{s.image_name}: {len(s.default_items())} suspected errors ({len(s.items)} review items, "
                           f"{len(s.peaks)} patches) - model {Path(str(m.get('model', '?'))).name} "
                           f"(sha256 {str(m.get('sha256', ''))[:8]}), {m.get('draws', '?')} draws, "
                           f"binarised at {s.binarize:g}")
        self.show_list()

    def show_list(self, mode: str | None = None) -> None:
        """List the suspected errors ('errors', default), all review items ('all') or the 4x4 patches ('patches')."""
        if mode is not None:
            self.list_mode.blockSignals(True)
            self.list_mode.setCurrentIndex(list(MODES).index(mode))
            self.list_mode.blockSignals(False)
        self.queue = ReviewQueue(self.session, self.list_mode.currentData())
        self.peak_list.blockSignals(True)
        self.peak_list.clear()
        self.peak_list.addItems([self.queue.text(i) for i in range(len(self.queue))])
        self.peak_list.blockSignals(False)
        self.current = None
        for role in ("items", "peaks"):  # show the markers of the list being walked
            layer = self.peaks_layer(role)
            if layer is not None:
                layer.visible = (role == "peaks") == self.queue.patches
        self._update_progress()
        self._style_peaks()

    def peaks_layer(self, role: str | None = None) -> Any | None:
        """The marker layer of the current list: 'items' or 'peaks'."""
        role = role or ("peaks" if self.queue is None or self.queue.patches else "items")
        sid = self.session.session_id if self.session else None
        return next((l for l in C.layers_with(self.viewer, "probseg_session_id", sid)
                     if l.metadata.get("probseg_role") == role), None)

    def _style_peaks(self) -> None:
        """Markers of the current list: yellow = current, green = reviewed, cyan = still to review."""
        pl = self.peaks_layer()
        if pl is None or not len(pl.data) or self.queue is None:
            return
        rev = self.queue.session.reviewed if self.queue.patches else self.queue.session.items_reviewed
        n = min(len(pl.data), len(rev))
        colours = np.array([COLOURS["reviewed" if r else "open"] for r in rev[:n]]).reshape(-1, 4)
        if self.current is not None and self.current < n:
            colours[self.current] = COLOURS["current"]
        if n == len(pl.data):
            pl.border_color = colours

    def _update_progress(self) -> None:
        q = self.queue
        self.bar.setRange(0, max(len(q), 1) if q else 1)
        self.bar.setValue(int(q.reviewed.sum()) if q else 0)

    # ---- navigation -------------------------------------------------------------------
    def go_to(self, index: int) -> None:
        """Centre and zoom on an entry of the list and select the instances it names."""
        if not self._ready(need_peaks=True):
            return
        index = int(np.clip(index, 0, len(self.queue) - 1))
        self.current = index
        centre = self.labels_layer.data_to_world(self.queue.centre(index))
        cam = C.camera(self.viewer)
        cam.center = tuple(centre[-2:])
        cam.zoom = min(C.canvas_size(self.viewer)) / (VIEW_PX * float(self.labels_layer.scale[-1]))
        ids = self.queue.labels_at(index)
        self.label_a.setValue(ids[0] if ids else 0)
        self.label_b.setValue(ids[1] if len(ids) > 1 else 0)
        if ids:
            self.labels_layer.selected_label = ids[0]
        self._style_peaks()
        self.peak_list.blockSignals(True)
        self.peak_list.setCurrentRow(index)
        self.peak_list.blockSignals(False)
        self.viewer.status = f"{self.queue.record_name()} {index + 1}/{len(self.queue)}: instances {ids}"

    def next_peak(self) -> None:
        self.go_to(0 if self.current is None else self.current + 1)

    def previous_peak(self) -> None:
        self.go_to(0 if self.current is None else self.current - 1)

    def toggle_reviewed(self, value: bool | None = None) -> None:
        if not self._ready(need_peak=True):
            return
        i, rev = self.current, self.queue.reviewed
        rev[i] = not rev[i] if value is None else value
        self.session.record("reviewed" if rev[i] else "unreviewed", i, list=self.queue.mode)
        self.peak_list.item(i).setText(self.queue.text(i))
        self._update_progress()
        self._style_peaks()
        self.autosave()

    def accept(self) -> None:
        """The segmentation here is right (or now corrected): mark it, go to the next open entry."""
        if not self._ready(need_peak=True):
            return
        self.toggle_reviewed(True)
        nxt = self.queue.next_open(self.current + 1)
        if nxt is not None:
            self.go_to(nxt)

    def _ready(self, need_peaks: bool = False, need_peak: bool = False) -> bool:
        if self.session is None or self.labels_layer is None:
            C.info("No proofreading session: run 'Segment worms' or open a session file first.")
            return False
        if (need_peaks or need_peak) and not len(self.queue):
            C.info("Nothing to review in this list." if self.queue.patches else
                   "No suspected errors in this list; choose 'All review items' or the 4x4 patches to see more.")
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
        except SessionError as exc:
            C.error(str(exc))
            return False
        with self.labels_layer.block_history():
            self.labels_layer.data_setitem(edit.indices, edit.values)
        self.session.record(action, self.current, description=edit.description, **details)
        self.autosave()
        return True

    def merge(self) -> bool:
        a, b = self.label_a.value(), self.label_b.value()
        return self.apply(lambda lab: E.merge(lab, a, b), "merge", a=a, b=b)

    def erase(self) -> bool:
        a = self.label_a.value()
        return self.apply(lambda lab: E.erase(lab, a), "erase", a=a)

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
        if self.apply(lambda lab: E.split(lab, a, pts), "split", a=a, seeds=pts.tolist()):
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
        if self.apply(lambda lab: E.replace(lab, a, mask), "replace", a=a):
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

