"""The Segment dock's result layers: added at a run's first result, updated in place after.

Why apart from ``_inference.py``: the dock stays about its controls.  A run's layers carry
its ``probseg_run`` id.  While draws arrive they are a preview: no session on the labels
layer (the Proofreading dock does not bind to it) and the labels are not editable; the
final (or cancelled-and-kept) result makes them a session in place.

Why in two halves (issue 17, the GUI never blocked longer than 0.2 s): ``prepare`` builds
the layer data (arrays, label colours, marker tables) in the worker thread; ``RunLayers``
on the GUI thread only assigns it.  Adding a napari layer costs the GUI thread 0.05-0.15 s
(its Qt controls and vispy visuals, on the 2-core CPU), so a run's five layers are added a
turn of the event loop apart, the labels first; later results update them in place.
"""
from __future__ import annotations

import time
from typing import Any

from . import _common as C

ROLES = ("probabilities", "entropy", "labels", "peaks", "items")  # bottom to top, as _layers stacks them
ADD_ORDER = ("labels", "items", "probabilities", "entropy", "peaks")  # what the user sees first
# GUI-thread seconds one event-loop turn may spend writing layers before it lets the loop run:
# an update takes ~0.01-0.03 s, adding a layer 0.05-0.15 s (one per turn), and Qt then redraws
# the window (~0.1 s under Xvfb's software OpenGL) before the next turn
TURN_S = 0.04


def prepare(session: Any, job: Any, final: bool, table: dict | None = None) -> list[tuple[Any, dict, str]]:
    """This run's layer data of ``session`` (worker thread: no napari objects), labels first.

    A preview's labels carry no session and the ``probseg_preview`` flag; the final labels
    carry the session and, with ``table``, the worm table as features (hover shows it).
    """
    from .._layers import session_layer_data

    geo = {"scale": job.layers[0]["scale"], "translate": job.layers[0]["translate"]}
    out = []
    for data, kwargs, kind in session_layer_data(session, images=False, **geo):
        md = {**kwargs["metadata"], "probseg_run": job.run_id}
        if not final:
            md.pop("probseg_session", None)
            md["probseg_preview"] = True
        kwargs["metadata"] = md
        if kind == "labels" and final and table is not None:
            kwargs["features"] = {"index": list(table["label"]), **table}  # as _measure.set_layer_features
        out.append((data, kwargs, kind))
    return sorted(out, key=lambda d: ADD_ORDER.index(d[1]["metadata"]["probseg_role"]))


def marker_text_chars() -> str:
    """The characters the review-item and peak markers are labelled with (``_layers``), and those
    vispy measures every text's height with."""
    from ..review import KINDS

    return "0123456789 " + "".join(KINDS) + "ÅÉÑŐjgpqy"


def run_layers(viewer: Any, run_id: str) -> dict[str, Any]:
    """This run's layers by role (probabilities, entropy, labels, peaks, items)."""
    return {l.metadata.get("probseg_role"): l for l in C.layers_with(viewer, "probseg_run", run_id)}


def retire_earlier(viewer: Any, image_name: str) -> None:
    """Drop earlier untouched results of the same image, keep edited ones (hidden, renamed with
    their time) so a re-run never discards corrections; leftover previews go too."""
    stamp = time.strftime("%H:%M:%S")
    for layer in list(C.layers_with(viewer, "probseg_image_name", image_name)):
        sid = layer.metadata.get("probseg_session_id")
        old = next((l.metadata["probseg_session"] for l in C.session_labels_layers(viewer)
                    if l.metadata.get("probseg_session_id") == sid), None)
        if sid and (old is None or not (old.history or old.n_reviewed)):
            viewer.layers.remove(layer)
        elif sid:
            layer.visible = False
            if "(before " not in layer.name:
                layer.name = f"{layer.name} (before {stamp})"


class RunLayers:
    """One run's layers on the GUI thread, written a few at a time, one event-loop turn apart.

    A result's labels are written at once, its other layers on the following turns (the
    first result's are added, later ones update them in place; ``TURN_S``); while draws arrive, hidden
    layers keep their newest data aside until shown or until the final result.  In place:
    a layer's data, metadata and markers change, its name, visibility, contrast and (once
    the user changed them) label colours stay.
    """

    def __init__(self, viewer: Any, run_id: str, image_name: str):
        from qtpy.QtCore import QTimer

        self.viewer, self.run_id, self.image_name = viewer, run_id, image_name
        self.pending: dict[str, tuple[Any, dict, str]] = {}  # role -> data still to write
        self.aside: dict[str, tuple[Any, dict, str]] = {}  # role -> newest data of a hidden layer
        self.final = False
        self._then: list[Any] = []  # called once everything is written (the final result)
        self._glyphs = list(dict.fromkeys(marker_text_chars()))  # rendered ahead, a few per turn
        self._font = None
        self._colormaps: dict[int, Any] = {}  # labels colour map this run set, by layer id
        self._timer = QTimer(singleShot=True, interval=0)
        self._timer.timeout.connect(self._tick)

    def show(self, layers: list[tuple[Any, dict, str]], final: bool, then: Any = None) -> Any:
        """Write one result's prepared layer data (labels now, the rest on the next turns);
        ``then()`` runs on the turn after all of it is written.  Returns the labels layer."""
        if not run_layers(self.viewer, self.run_id) and not self.pending:
            retire_earlier(self.viewer, self.image_name)
        self.final = self.final or final
        if self.final:
            self.pending.update({r: d for r, d in self.aside.items() if r not in self.pending})
            self.aside.clear()
        self.pending.update({kwargs["metadata"]["probseg_role"]: (data, kwargs, kind) for data, kwargs, kind in layers})
        if then is not None:
            self._then.append(then)
        if "labels" in self.pending:
            self._write("labels")
        self._schedule()
        return run_layers(self.viewer, self.run_id).get("labels")

    def remove(self) -> None:
        """Remove this run's layers, shown or waiting (a failed run)."""
        self._timer.stop()
        self.pending.clear()
        self.aside.clear()
        self._then.clear()
        for layer in run_layers(self.viewer, self.run_id).values():
            self.viewer.layers.remove(layer)

    def _schedule(self) -> None:
        """The next step on the next turn (the event loop runs in between)."""
        if (self._glyphs or self.pending or self._then) and not self._timer.isActive():
            self._timer.start()

    def start(self) -> None:
        """Run pressed: render the marker texts' glyphs while the first result is computed."""
        self._schedule()

    def _tick(self) -> None:
        """One turn: render glyphs, write waiting layers (then call ``then``) until ``TURN_S`` is spent."""
        start = time.perf_counter()
        while self._glyphs or self.pending or self._then:
            if self._glyphs:
                self._render_glyph(self._glyphs.pop(0))
            elif self.pending:
                self._write(next(r for r in ADD_ORDER if r in self.pending))
            else:
                self._then.pop(0)()
            if time.perf_counter() - start > TURN_S:
                break
        self._schedule()

    def _render_glyph(self, char: str) -> None:
        """Render one character of the marker texts into the canvas's font atlas.

        Why: napari renders a text glyph (a 256-point signed-distance field, on the CPU) the
        first time a canvas draws it, 10-15 ms each; the review items' texts need ~20 at their
        first draw, a 0.2-0.3 s stall.  Done here one turn at a time while the GUI waits for
        the first result.  Reaches into napari's canvas (``font_info``): if that changes, the
        glyphs are simply rendered at the first draw, as before.
        """
        try:
            if self._font is None:
                info = self.viewer.window._qt_viewer.canvas.font_info()
                self._font = info.font_manager.get_font(info.face)
            self._font[char]
        except Exception:  # noqa: BLE001 - a speed-up only
            self._glyphs.clear()

    def _write(self, role: str) -> None:
        data, kwargs, kind = self.pending.pop(role)
        layer = run_layers(self.viewer, self.run_id).get(role)
        if layer is None:
            self._add(role, data, kwargs, kind)
        elif not layer.visible and not self.final:
            self.aside[role] = (data, kwargs, kind)  # written when shown (or with the final result)
        else:
            self._update(layer, data, kwargs, kind)
        if kind == "labels":
            run_layers(self.viewer, self.run_id)["labels"].editable = self.final

    def _add(self, role: str, data: Any, kwargs: dict, kind: str) -> None:
        """Add a layer at its place in the run's stack (``ROLES``, bottom to top)."""
        from napari.layers import Layer

        layer = Layer.create(data, kwargs, kind)
        layers = self.viewer.layers
        above = [layers.index(l) for r, l in run_layers(self.viewer, self.run_id).items()
                 if r in ROLES and ROLES.index(r) > ROLES.index(role)]
        # napari makes an inserted layer the active one, and Qt then draws its controls for the
        # first time (~0.1 s); the labels stay active instead (a private flag: without it, as before)
        quiet = role != "labels" and getattr(layers, "_activate_on_insert", None) is True
        if quiet:
            layers._activate_on_insert = False
        try:
            layers.insert(min(above) if above else len(layers), layer)
        finally:
            if quiet:
                layers._activate_on_insert = True
        layer.events.visible.connect(lambda _e, role=role: self._shown(role))
        if kind == "labels":
            self._colormaps[id(layer)] = layer.colormap

    def _shown(self, role: str) -> None:
        """A hidden layer was made visible: its data set aside is written now."""
        if role in self.aside:
            self.pending[role] = self.aside.pop(role)
            self._write(role)

    def _update(self, layer: Any, data: Any, kwargs: dict, kind: str) -> None:
        layer.data = data
        if kind == "points":
            layer.features = kwargs["features"]  # napari refreshes the marker texts from them
        elif kind == "labels":
            if self._colormaps.get(id(layer)) is layer.colormap:  # still ours: neighbours of the new labels differ
                layer.colormap = kwargs["colormap"]
                self._colormaps[id(layer)] = layer.colormap
            if "features" in kwargs:
                layer.features = kwargs["features"]
        layer.metadata = kwargs["metadata"]
