"""The Proofreading dock's corrections: one-key fixes, click editing, the typed-id buttons, undo.

Why a mixin apart from the dock: the dock file holds the list and navigation; this holds
what changes pixels.  Every edit is computed by ``edits`` (pure functions, tested headless)
and applied here with ``Labels.data_setitem`` inside ``block_history``: one Ctrl+Z step,
logged in the session under its own name, autosaved at once.

Clicks (routed by ``_proof_clicks`` while the Labels layer is active and in pan/zoom mode):
click a worm to select it (A); Shift-click a second worm to merge it into A, or an empty
spot to add the model's worm there; Ctrl-click seed points on a worm, then Split (Shift-S).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import edits as E
from ..session import SessionError
from . import _common as C


class EditsMixin:
    """Edit actions of ``ProofreadingWidget`` (which provides the layers, session and fields used here)."""

    # ---- applying ------------------------------------------------------------------------
    def apply(self, make_edit: Any, action: str, **details: Any) -> bool:
        """Compute an edit on the current labels and apply it as one undoable step."""
        if not self._ready():
            return False
        try:
            edit = make_edit(np.asarray(self.labels_layer.data))
        except SessionError as exc:
            C.error(str(exc))
            return False
        self._commit(edit, action, **details)
        return True

    def _commit(self, edit: E.Edit, action: str, **details: Any) -> None:
        with self.labels_layer.block_history():
            self.labels_layer.data_setitem(edit.indices, edit.values)
        self.session.record(action, self.current, description=edit.description, **details)
        self.viewer.status = edit.description
        self.autosave()
        self.select_worm(edit.label if edit.label and (self.labels_layer.data == edit.label).any() else 0)

    # ---- the suggested fix of the current item (Shift-F) -----------------------------------
    def fix(self) -> bool:
        """Apply the current review item's suggested fix; say why when it cannot apply.

        With no current item, the first one is shown instead: a fix is applied only to an
        item the user has seen.
        """
        if not self._ready(need_peaks=True):
            return False
        if self.current is None:
            self.go_to(0)
            C.info("This is the first item of the list; press Shift-F again to apply its fix.")
            return False
        if self.queue.patches:
            C.info("The 4x4 patches carry no suggested fix: edit by clicking the worms, or choose the review list.")
            return False
        i, lab = self.current, np.asarray(self.labels_layer.data)
        it = self.session.items[i]
        try:
            edit = E.fix_item(self.session, i, lab)
        except E.NoAutomaticFix as exc:
            if exc.label:
                self.select_worm(exc.label)
                self.labels_layer.mode = "paint"
            C.info(str(exc))
            return False
        except SessionError as exc:
            C.warning(f"The suggested fix of item #{i + 1} cannot apply: {exc}")
            return False
        self._commit(edit, "fix", item=i, kind=it.kind, fix=it.fix)
        self.toggle_reviewed(True)
        self.item_text.setText(f"Item #{i + 1}: fixed ({edit.description}). Adjust it with the brush (P), "
                               "Ctrl+Z undoes the fix, N goes on.")
        return True

    # ---- clicks ------------------------------------------------------------------------------
    def on_click(self, y: int, x: int, modifiers: frozenset[str] = frozenset()) -> None:
        """A click on the canvas at data pixel (y, x): select, merge, add or place a split seed."""
        if self.session is None or self.labels_layer is None:
            return
        lab = np.asarray(self.labels_layer.data)
        inside = 0 <= y < lab.shape[0] and 0 <= x < lab.shape[1]
        hit = int(lab[y, x]) if inside else 0
        selected = self.label_a.value()
        if modifiers & {"Control", "Meta"}:
            self.add_seed(y, x, hit)
        elif "Shift" in modifiers and hit == 0:
            self.add_model_worm(y, x)
        elif "Shift" in modifiers and selected and hit != selected and (lab == selected).any():
            self.label_b.setValue(hit)
            self.apply(lambda l: E.merge(l, selected, hit), "merge", a=selected, b=hit, by="click")
        else:
            self.select_worm(hit, (y, x) if inside else None)

    def select_worm(self, label: int, at: tuple[int, int] | None = None) -> None:
        """Make ``label`` the selected worm (A, the brush's label); 0 clears the selection."""
        if label != self.label_a.value():
            self._clear_seeds()
        self.label_a.blockSignals(True)  # one refresh of the selection line, below
        self.label_a.setValue(label)
        self.label_a.blockSignals(False)
        self._show_selection()
        if label:
            self.labels_layer.selected_label = label
        elif at is not None:
            i = self.session.instance_at(*at)
            if i is not None and self.session.probabilities[i].max() < self.session.binarize:
                p = float(self.session.probabilities[i][at])
                self.selection.setText(f"No worm here. The model saw worm {i + 1} here in {p:.0%} of the draws "
                                       "(below the cut): Shift-click adds it.")

    def _show_selection(self, *_: Any) -> None:
        a = self.label_a.value()
        info = self.session.worm_info(a, np.asarray(self.labels_layer.data)) if self.session and a else None
        seeds = len(self._seeds().data) if self.session and a and self._has_seeds() else 0
        if info is None:
            self.selection.setText("No worm selected: click a worm on the image." if self.session else "")
        else:
            more = f"; {seeds} split seed{'s' if seeds != 1 else ''}" if seeds else ""
            self.selection.setText(f"Selected {info.text()}{more}")

    def add_model_worm(self, y: int, x: int) -> bool:
        """Add the model's instance under (y, x) as a new worm (background pixels only)."""
        i = self.session.instance_at(y, x)
        if i is None:
            C.info("The model saw no worm here: paint it instead ('Paint new instance').")
            return False
        cut = self.session.binarize

        def make(lab: np.ndarray) -> E.Edit:
            mask, level = E.instance_mask(self.session.probabilities[i], cut)
            return E.add_instance(lab, mask, name=f"the model's worm {i + 1} (p >= {level:.2f})")

        return self.apply(make, "add", instance=i, at=[y, x], by="click")

    # ---- typed ids (fallback) and seeds ---------------------------------------------------------
    def merge(self) -> bool:
        a, b = self.label_a.value(), self.label_b.value()
        return self.apply(lambda lab: E.merge(lab, a, b), "merge", a=a, b=b)

    def erase(self) -> bool:
        a = self.label_a.value()
        if not a:
            C.info("Select a worm first: click it on the image (or type its id in A).")
            return False
        return self.apply(lambda lab: E.erase(lab, a), "erase", a=a)

    def add_seed(self, y: int, x: int, hit: int) -> None:
        """A split seed at (y, x) on the selected worm (a Ctrl-click on another worm selects it first)."""
        if hit and hit != self.label_a.value():
            self.select_worm(hit)
        if not self.label_a.value():
            C.info("Ctrl-click on a worm: the seed points of a split go on the worm to split.")
            return
        seeds = self._seeds()
        pt = np.asarray(self.labels_layer.data_to_world((y, x)))
        seeds.data = np.vstack([np.asarray(seeds.data).reshape(-1, 2), seeds.world_to_data(pt)[-2:]])
        self.viewer.layers.selection.active = self.labels_layer  # further clicks still reach the labels
        self._show_selection()

    def split(self) -> bool:
        """Split A by watershed from the seed points (Ctrl-clicks or points of the 'split seeds' layer)."""
        if not self._ready():
            return False
        seeds = self._seeds()
        a = self.label_a.value()
        if len(seeds.data) < 2 or not a:
            C.info("Ctrl-click two or more seed points on the worm to split (one per part), then press Split (Shift-S).")
            return False
        pts = np.array([self.labels_layer.world_to_data(seeds.data_to_world(p))[-2:] for p in seeds.data])
        if self.apply(lambda lab: E.split(lab, a, pts), "split", a=a, seeds=pts.tolist()):
            self._clear_seeds()
            self.viewer.layers.selection.active = self.labels_layer
            self._show_selection()
            return True
        return False

    def _has_seeds(self) -> bool:
        return self._scratch_name("split seeds") in self.viewer.layers

    def _seeds(self) -> Any:
        return self._scratch("split seeds", "points")

    def _clear_seeds(self) -> None:
        if self.session is not None and self._has_seeds():
            self._seeds().data = np.zeros((0, 2))

    # ---- painting ---------------------------------------------------------------------------------
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

    # ---- undo / redo (buttons and the layer's Ctrl+Z, Ctrl+Shift+Z) --------------------------------
    def undo(self) -> None:
        self._history_step("undo")

    def redo(self) -> None:
        self._history_step("redo")

    def _history_step(self, action: str) -> None:
        if not self._ready():
            return
        layer = self.labels_layer
        steps = getattr(layer, "_undo_history" if action == "undo" else "_redo_history", [None])  # no public API
        if not steps:
            C.info(f"Nothing to {action}.")
            return
        getattr(layer, action)()
        self.session.record(action, self.current)
        self.autosave()
        a = self.label_a.value()
        self.select_worm(a if a and (layer.data == a).any() else 0)

    def _scratch_name(self, what: str) -> str:
        return f"{self.session.image_name if self.session else 'probseg'} {what}"

    def _scratch(self, what: str, kind: str) -> Any:
        """A helper layer (seed points / paint) aligned with the labels layer, reused if present."""
        name = self._scratch_name(what)
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        active = self.viewer.layers.selection.active
        geo = {"scale": self.labels_layer.scale, "translate": self.labels_layer.translate} if self.labels_layer else {}
        if kind == "points":
            layer = self.viewer.add_points(np.zeros((0, 2)), name=name, size=6, face_color="yellow", **geo)
            self.viewer.layers.selection.active = active  # adding it must not take the clicks away
            return layer
        shape = self.labels_layer.data.shape if self.labels_layer is not None else (1, 1)
        return self.viewer.add_labels(np.zeros(shape, np.int32), name=name, **geo)
