"""Proofreading dock: walk the review list (suspected errors) and correct the labels there.

The list is a ``review_queue.ReviewQueue``: by default the review items at or above the
calibrated score, each with what is suspected and its suggested fix; a selector shows all
items or the paper's 4x4 entropy patches instead.

This module holds the list, navigation and binding to a session's layers; the corrections
(one-key fixes, click editing, undo) are in ``_proof_edit``, clicks reach them through
``_proof_clicks``, saving is in ``_proof_save``.  Shortcuts: one table in ``_keys``.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
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

from ..review_queue import MODES, ReviewQueue
from ..session import Session
from . import _common as C
from . import _keys as K
from . import _proof_clicks
from ._proof_edit import EditsMixin
from ._proof_save import SavingMixin

if TYPE_CHECKING:
    import napari

VIEW_PX = 128  # side of the field of view around a peak, in image pixels (a worm is ~100 px long)
COLOURS = {"open": (0.0, 1.0, 1.0, 1.0), "reviewed": (0.2, 1.0, 0.2, 1.0), "current": (1.0, 1.0, 0.0, 1.0),
           "unlisted": (0.0, 0.0, 0.0, 0.0)}


class ProofreadingWidget(EditsMixin, SavingMixin, QWidget):
    """Dock 'Proofreading': ranked review items (or patches) with one-key fixes, click editing, save."""

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
        self._detach_clicks: Any = None
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
        else:
            self._update_progress()  # 'no session', not an empty 'reviewed 0 / 100'

    # ---- UI -----------------------------------------------------------------------
    def _build(self) -> None:
        self.title = QLabel("No session: run 'Segment worms' or open a session file.")
        self.title.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setFormat("reviewed %v / %m")
        self.list_mode = QComboBox()
        for key, text in MODES.items():
            self.list_mode.addItem(text, key)
        self.list_mode.setToolTip("the default list holds the suspected errors; 'likely' only those the model puts at "
                                  "even odds or better (shorter, fewer false alarms, misses more); 'all' also the "
                                  "weaker review items; the 4x4 patches are the paper's uncertainty peaks")
        self.list_mode.currentIndexChanged.connect(lambda _: self.session is not None and self.show_list())
        self.peak_list = QListWidget()
        self.peak_list.setWordWrap(True)  # the whole row (kind and fix) stays readable in a narrow dock
        self.peak_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.peak_list.setResizeMode(QListWidget.ResizeMode.Adjust)
        # about six two-line rows whatever else the dock shows (napari scrolls a dock taller than its space)
        self.peak_list.setMinimumHeight(13 * self.peak_list.fontMetrics().lineSpacing())
        self.peak_list.currentRowChanged.connect(lambda r: r >= 0 and r != self.current and self.go_to(r))
        self.item_text = QLabel("")  # the current item: what is suspected, the fix, the key
        self.item_text.setWordWrap(True)
        self.selection = QLabel("")  # the selected worm: id, area, mean probability
        self.selection.setWordWrap(True)
        self.label_a = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.label_b = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.label_a.setToolTip("selected worm A (click a worm to select it): kept by merge, split / erased / replaced")
        self.label_b.setToolTip("worm B: merged into A (or Shift-click it on the image)")
        self.label_a.valueChanged.connect(self._show_selection)
        grid = QGridLayout()
        buttons = [
            ("< Previous (Shift-N)", self.previous_peak), ("Next (N) >", self.next_peak),
            ("Apply fix (Shift-F)", self.fix), ("Accept + next (Shift-R)", self.accept),
            ("Merge B into A", self.merge), ("Split A at seeds (Shift-S)", self.split),
            ("Erase A (Shift-E)", self.erase), ("Toggle reviewed", self.toggle_reviewed),
            ("Paint new instance", self.start_paint), ("Replace A by painted", self.replace),
            ("Undo (Ctrl+Z)", self.undo), ("Redo (Ctrl+Shift+Z)", self.redo),
            ("Save session...", self.save_dialog), ("Open session...", self.open_dialog),
        ]
        self.buttons = {}
        for i, (text, slot) in enumerate(buttons):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, s=slot: s())
            grid.addWidget(b, i // 2, i % 2)
            self.buttons[slot.__name__] = b
        self.buttons["fix"].setToolTip("apply the suggested fix of the current item of the review list")
        ab = QHBoxLayout()
        for text, w in (("A", self.label_a), ("B", self.label_b)):
            ab.addWidget(QLabel(text))
            ab.addWidget(w)
        self.autosave_label = QLabel("")
        self.autosave_label.setWordWrap(True)
        lay = QVBoxLayout(self)
        for w in (self.title, self.list_mode, self.bar, self.peak_list, self.item_text, self.selection):
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
        """Forget the session: its list, progress, selection and the click routing on its layer."""
        if self.labels_layer is not None:
            for ev in (self.labels_layer.events.paint, self.labels_layer.events.set_data):
                ev.disconnect(self._schedule_autosave)
        if self._detach_clicks is not None:
            self._detach_clicks()
            self._detach_clicks = None
        self.session, self.labels_layer, self.current, self.queue = None, None, None, None
        self.peak_list.clear()
        self.title.setText("No session: run 'Segment worms' or open a session file.")
        self.item_text.setText("")
        self.label_a.setValue(0)
        self.label_b.setValue(0)
        self._show_selection()
        self._update_progress()

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
        self._detach_clicks = _proof_clicks.attach(labels_layer, self)
        self.viewer.layers.selection.active = labels_layer  # clicks on the image reach the labels
        m = self.session.meta
        s = self.session
        self.title.setText(f"{s.image_name}: {len(s.default_items())} suspected errors ({len(s.items)} review items, "
                           f"{len(s.peaks)} patches) - model {Path(str(m.get('model', '?'))).name} "
                           f"(sha256 {str(m.get('sha256', ''))[:8]}), {m.get('draws', '?')} draws, "
                           f"binarised at {s.binarize:g}")
        self.show_list()
        self.select_worm(0)

    def show_list(self, mode: str | None = None) -> None:
        """List the suspected errors ('errors', default), the likely ones ('likely'), all review items ('all') or the
        4x4 patches ('patches')."""
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
        self._show_item()  # the last list's entry is not this list's
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
        if not self.queue.patches:  # rings and numbers of the listed items only (napari ignores Points.shown in 2D)
            colours[len(self.queue):] = COLOURS["unlisted"]
            items = self.queue.session.items[:len(pl.data)]
            numbers = [f"{r} {it.kind}" if r <= len(self.queue) else "" for r, it in enumerate(items, 1)]
            if list(pl.features["label"]) != numbers:
                pl.features = pl.features.assign(label=numbers)
        if n == len(pl.data):
            pl.border_color = colours

    def _update_progress(self) -> None:
        """'reviewed k / K' of the list shown; an empty bar saying so without a session."""
        q = self.queue
        self.bar.setFormat("reviewed %v / %m" if q is not None else "no session")
        self.bar.setRange(0, max(len(q), 1) if q is not None else 1)
        self.bar.setValue(int(q.reviewed.sum()) if q is not None else 0)

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
        self.select_worm(ids[0] if ids else 0)
        self.label_b.setValue(ids[1] if len(ids) > 1 else 0)
        self._show_item()
        self.viewer.layers.selection.active = self.labels_layer
        self._style_peaks()
        self.peak_list.blockSignals(True)
        self.peak_list.setCurrentRow(index)
        self.peak_list.blockSignals(False)
        self.viewer.status = f"{self.queue.record_name()} {index + 1}/{len(self.queue)}: instances {ids}"

    def _show_item(self) -> None:
        """The current item in words under the list, with the key that applies its fix."""
        q, i = self.queue, self.current
        if q is None or i is None or q.patches:
            self.item_text.setText("" if q is None or i is None else
                                   f"Patch #{i + 1}: click a worm to select it, Shift-click to merge, Ctrl-click to split.")
            return
        it = self.session.items[i]
        self.item_text.setText(f"Item #{i + 1}, {it.description}. Suggested fix: {q.fix_text(i)} "
                               "(Shift-F applies it; Ctrl+Z undoes).")

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

