"""The Proofreading dock's keyboard shortcuts: one table for the viewer binding, the
dock's own QShortcuts and the help that lists them.

Why QShortcuts on the dock as well as ``viewer.bind_key``: napari's key map only sees
keys pressed while the canvas has focus.  Once a row of the review list was clicked,
the QListWidget took N as a keyboard search and the shortcut silently stopped.  A
``Qt.WidgetWithChildrenShortcut`` QShortcut fires while focus is anywhere in the dock,
before the focused child sees the key (text fields that take typed letters keep them).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QLabel, QPushButton, QShortcut, QVBoxLayout, QWidget

# napari key name: (dock method, what it does for the user)
KEYS: dict[str, tuple[str, str]] = {
    "n": ("next_peak", "next entry of the list"),
    "Shift-N": ("previous_peak", "previous entry of the list"),
    "Shift-R": ("accept", "mark the entry reviewed, go to the next open one"),
    "Shift-F": ("fix", "apply the suggested fix of the current item (e.g. add a missed worm)"),
    "Shift-S": ("split", "split the selected worm at the Ctrl-clicked seed points"),
    "Shift-E": ("erase", "erase the selected worm"),
}
# what clicks on the image do (the session's Labels layer selected, in pan/zoom mode: Z)
CLICKS: dict[str, str] = {
    "Click": "select the worm (its id, area and mean probability show in the dock)",
    "Shift+Click": "merge that worm into the selected one; on an empty spot: add the model's worm there",
    "Ctrl+Click": "place a split seed on the worm (one per part), then Shift+S",
    "Ctrl+Z / Ctrl+Shift+Z": "undo / redo the last correction (logged as undo / redo)",
}


def qt_sequence(key: str) -> QKeySequence:
    """napari's 'Shift-N' spelling as a Qt key sequence ('Shift+N')."""
    return QKeySequence("+".join(p.upper() if len(p) == 1 else p for p in key.split("-")))


def forward(ref: weakref.ref[Any], method: str) -> Callable[..., None]:
    """A key callback that forwards to the dock while it exists (no strong reference)."""

    def callback(*_: Any) -> None:
        w = ref()
        if w is not None:
            try:
                getattr(w, method)()
            except RuntimeError:  # the Qt widget was deleted
                pass

    callback.__name__ = f"probseg_{method}"
    return callback


def install(dock: QWidget, skip: list[str]) -> list[QShortcut]:
    """QShortcuts for KEYS (except ``skip``: keys the user bound to something else) on ``dock``."""
    ref = weakref.ref(dock)
    out = []
    for key, (method, _) in KEYS.items():
        if key in skip:
            continue
        sc = QShortcut(qt_sequence(key), dock)
        sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        sc.activated.connect(forward(ref, method))
        out.append(sc)
    return out


def help_html(skip: list[str] = ()) -> str:
    """The shortcut table shown by the dock's 'Shortcuts' button (and as its tooltip)."""
    rows = "".join(f"<tr><td><b>{qt_sequence(k).toString()}</b></td><td>{text}"
                   f"{' <i>(bound to something else: use the button)</i>' if k in skip else ''}</td></tr>"
                   for k, (_, text) in KEYS.items())
    clicks = "".join(f"<tr><td><b>{k}</b></td><td>{text}</td></tr>" for k, text in CLICKS.items())
    return ("<table cellspacing=4>" + rows + clicks + "</table>"
            "Keys work while the image or this dock has focus; clicks while the labels layer is selected "
            "in pan/zoom mode (Z); painting keys are napari's own.")


class ShortcutsHelp(QWidget):
    """A 'Shortcuts' button; a click shows or hides the table below it (hover shows it too)."""

    def __init__(self, skip: list[str] = ()):
        super().__init__()
        self.button = QPushButton("Shortcuts")
        self.button.setToolTip(help_html(skip))
        self.table = QLabel(help_html(skip), wordWrap=True, visible=False)
        self.button.clicked.connect(lambda: self.table.setVisible(not self.table.isVisible()))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.button)
        lay.addWidget(self.table)
