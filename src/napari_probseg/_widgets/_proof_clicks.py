"""Click editing on the canvas: the Labels layer's own mouse and key callbacks, routed to the dock.

Why napari's layer callbacks (``mouse_drag_callbacks``, ``bind_key`` on the layer instance):
they run only while the session's Labels layer is the active layer, next to napari's own
modes, and go away with the layer; nothing is hooked into Qt.

- A press and release within ``CLICK_PX`` canvas pixels is a click; a longer drag is left to
  napari (it pans).  Clicks count only in the layer's pan/zoom mode: in paint, fill or erase
  mode a click belongs to the brush.
- The layer's Ctrl+Z / Ctrl+Shift+Z go through the dock, so the session log records "undo"
  and "redo" (napari's class binding would change the pixels silently and the debounced
  autosave would log the change as a brush stroke).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

CLICK_PX = 4  # canvas pixels a press may move and still be a click
UNDO_KEYS = {"Control-Z": "undo", "Control-Shift-Z": "redo"}  # napari maps Control to Cmd on macOS


def modifier_names(modifiers: Any) -> frozenset[str]:
    """'Shift', 'Control', 'Meta', 'Alt' from a napari mouse event's modifiers (vispy keys or strings)."""
    return frozenset(str(getattr(m, "name", m)) for m in modifiers or ())


def attach(layer: Any, dock: Any) -> Callable[[], None]:
    """Route clicks and undo keys of ``layer`` to ``dock.on_click`` / ``dock.undo`` / ``dock.redo``.

    Returns the function that removes them again (the dock calls it when it unbinds).
    Only a weak reference to the dock is held: a closed dock leaves a harmless no-op.
    """
    ref = weakref.ref(dock)

    def on_press(layer: Any, event: Any) -> Generator[None, None, None]:
        if layer.mode != "pan_zoom" or event.button in (2, 3):  # right / middle button: not ours
            return
        start = np.asarray(event.pos, float)
        position, mods = tuple(event.position), modifier_names(event.modifiers)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or float(np.abs(np.asarray(event.pos, float) - start).max()) > CLICK_PX
            yield
        w = ref()
        if not moved and w is not None:
            data = layer.world_to_data(position)
            w.on_click(int(round(data[-2])), int(round(data[-1])), mods)

    on_press.__name__ = "probseg_click"
    layer.mouse_drag_callbacks.append(on_press)
    keys = []
    for key, method in UNDO_KEYS.items():
        layer.bind_key(key, _forward(ref, method), overwrite=True)
        keys.append(key)

    def detach() -> None:
        if on_press in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(on_press)
        for key in keys:
            layer.bind_key(key, None)

    return detach


def _forward(ref: weakref.ref[Any], method: str) -> Callable[[Any], None]:
    """Undo/redo through the dock while it exists; napari's own layer undo once it is gone."""

    def callback(layer: Any) -> None:
        w = ref()
        try:
            if w is not None:
                return getattr(w, method)()
        except RuntimeError:  # the Qt widget was deleted
            pass
        getattr(layer, method)()

    callback.__name__ = f"probseg_{method}"
    return callback
