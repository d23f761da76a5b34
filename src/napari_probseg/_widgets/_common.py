"""Small helpers the widgets share: notifications, typed worker results, key binding, dock and layer lookup."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal

if TYPE_CHECKING:
    import napari

log = logging.getLogger("napari_probseg")

def docked(viewer: napari.Viewer, kind: type) -> Any | None:
    """The dock of class ``kind`` open in this viewer's window, if any.

    Why napari's own list (``Window.dock_widgets``) and not a registry of ours: a dock
    closed by the user or deleted by Qt disappears from it, and nothing is kept alive.
    """
    window = getattr(viewer, "window", None)
    for widget in list(getattr(window, "dock_widgets", {}).values()):
        try:
            if isinstance(widget, kind):
                widget.objectName()  # raises RuntimeError once Qt deleted the C++ object
                return widget
        except RuntimeError:
            continue
    return None


def int_box(name: str, value: int, maximum: int | None = None, **kw: Any) -> Any:
    """A QSpinBox limited to ``validation.RANGES[name]`` (``maximum`` may only narrow it)."""
    from qtpy.QtWidgets import QSpinBox

    from ..validation import RANGES

    r = RANGES[name]
    lo = int(r.lo) + (1 if r.lo_open else 0)
    hi = min(int(r.hi), 2**31 - 1, maximum if maximum is not None else 2**31 - 1)
    return QSpinBox(minimum=lo, maximum=hi, value=value, **kw)


def error(message: str) -> None:
    """A readable notification instead of a traceback (the console log keeps details)."""
    log.warning(message)
    show_error(message)


info, warning = show_info, show_warning


@dataclass(frozen=True)
class Cancelled:
    """A worker's result when the user stopped it: nothing to add, nothing went wrong."""


@dataclass(frozen=True)
class Failed:
    """A worker's result for an expected failure (bad input, unreadable model, full disk):
    the message for the user; unexpected exceptions still reach ``worker.errored``."""

    message: str


def bind_keys(viewer: napari.Viewer, callbacks: dict[str, Any]) -> list[str]:
    """Bind the dock's keys on the viewer without replacing anyone else's binding.

    Why: ``bind_key(..., overwrite=True)`` silently took over keys a user (or another
    plugin) had bound.  A key already bound to one of our callbacks (``probseg_*``, from
    an earlier dock on this viewer) is rebound; a key bound to anything else is left
    alone, reported by a notice and returned - the dock's buttons still do the same.
    """
    from napari.utils.key_bindings import coerce_keybinding

    taken = []
    for key, callback in callbacks.items():
        current = viewer.keymap.get(coerce_keybinding(key))
        if current is not None and not getattr(current, "__name__", "").startswith("probseg_"):
            taken.append(key)
            continue
        viewer.bind_key(key, None)  # unbinds our own earlier callback, if any
        viewer.bind_key(key, callback)
    if taken:
        info(f"Keys {', '.join(taken)} are bound already and were left as they are; "
             "use the Proofreading buttons instead.")
    return taken


class Relay(QObject):
    """Carries progress from a worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int)
    train_step = Signal(int, object)


def layers_with(viewer: napari.Viewer, key: str, value: Any = None) -> Iterator[Any]:
    """Layers whose metadata has ``key`` (equal to ``value`` when given), newest first."""
    for layer in reversed(list(viewer.layers)):
        md = layer.metadata or {}
        if key in md and (value is None or md[key] == value):
            yield layer


def session_labels_layers(viewer: napari.Viewer) -> list[Any]:
    """Labels layers that carry a proofreading session, newest first."""
    return [l for l in layers_with(viewer, "probseg_session") if l._type_string == "labels"]


def camera(viewer: napari.Viewer) -> Any:
    """The camera model (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer: napari.Viewer) -> tuple[int, int]:
    canvas = getattr(viewer, "canvas", None)
    size = canvas.size if canvas is not None else getattr(viewer, "_canvas_size", (600, 800))
    return tuple(int(v) for v in size)  # type: ignore[return-value]


def open_dock(viewer: napari.Viewer, name: str) -> Any | None:
    """Open (or reveal) one of this plugin's dock widgets; None when the plugin is not registered."""
    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-probseg", name)
        return widget
    except Exception as exc:  # e.g. the package is not installed, only importable
        log.info("could not open dock %s: %s", name, exc)
        return None
