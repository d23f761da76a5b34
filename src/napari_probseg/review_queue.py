"""What the proofreading dock lists, headless: the review items (default) or the paper's patches.

Four views of one session:

- ``errors``: the default review list, the suspected errors at or above the calibrated score
  (``review.ReviewConfig.min_score``); the items are sorted by score, so this is a prefix of
  ``all``;
- ``likely``: the short list, the items at even odds or better of lying on a real error
  (``review.LIKELY_SCORE``): about 2 per BBBC010 well, 3 of 4 on an error, for a proofreader
  who has many wells and time for the likeliest errors only;
- ``all``: every review item ("show all");
- ``patches``: the 4x4 uncertainty peaks of the paper (section 3.1, Table 2).

Each view gives the point to look at, a one-line text (for items: what is suspected and
the suggested fix in plain words, which ``edits.fix_item`` applies), the label ids to select
and the reviewed flags (items and patches keep separate flags in the session).
"""
from __future__ import annotations

import numpy as np

from .peaks import PATCH
from .review import LIKELY_SCORE
from .session import Session

MODES = {"errors": "Suspected errors (default)", "likely": f"Likely errors only (score >= {LIKELY_SCORE:.0f})",
         "all": "All review items", "patches": "4x4 entropy patches (paper)"}


class ReviewQueue:
    def __init__(self, session: Session, mode: str = "errors"):
        if mode not in MODES:
            raise ValueError(f"unknown list {mode!r}; choose one of {list(MODES)}")
        self.session, self.mode = session, mode

    @property
    def patches(self) -> bool:
        return self.mode == "patches"

    def __len__(self) -> int:
        s = self.session
        if self.patches:
            return len(s.peaks)
        if self.mode == "errors":
            return len(s.default_items())
        return len(s.items_scoring(LIKELY_SCORE)) if self.mode == "likely" else len(s.items)

    @property
    def reviewed(self) -> np.ndarray:
        """The session's flags for this view (a view of the array: setting it marks the session)."""
        s = self.session
        return s.reviewed if self.patches else s.items_reviewed[:len(self)]

    def centre(self, i: int) -> tuple[float, float]:
        if self.patches:
            pk = self.session.peaks[i]
            return pk.y + PATCH / 2, pk.x + PATCH / 2
        it = self.session.items[i]
        return float(it.y), float(it.x)

    def labels_at(self, i: int, labels: np.ndarray | None = None) -> list[int]:
        return self.session.peak_labels(i, labels) if self.patches else self.session.item_labels(i, labels)

    def text(self, i: int) -> str:
        mark = "[x]" if self.reviewed[i] else "[ ]"
        if self.patches:
            pk = self.session.peaks[i]
            worms = ", ".join(str(k + 1) for k in pk.instances) or "-"
            return f"{mark} #{i + 1}  H={pk.score:.3f}  ({pk.y},{pk.x})  instances {worms}"
        it = self.session.items[i]
        return f"{mark} #{i + 1}  {it.description}: {self.fix_text(i)}  (score {it.score:.0f})"

    def fix_text(self, i: int) -> str:
        """The suggested fix of item ``i`` in plain words (model instances numbered from 1, as
        the label ids they get when binarised), and the other worms at the same spot."""
        s = self.session
        it = s.items[i]
        below = [k + 1 for k in it.instances if s.probabilities[k].max() < s.binarize]
        kept = [k + 1 for k in it.instances if k + 1 not in below]
        text = _fix_words(it.fix, kept, below)
        if it.nearby:
            text += f"; also here: {_worms([k + 1 for k in it.nearby])}"
        return text

    def next_open(self, start: int = 0) -> int | None:
        """First unreviewed entry at or after ``start`` (wrapping), None when all are done."""
        n, rev = len(self), self.reviewed
        for k in range(n):
            j = (start + k) % n
            if not rev[j]:
                return j
        return None

    def record_name(self) -> str:
        return "peak" if self.patches else "item"


def _worms(ids: list[int]) -> str:
    """'worm 3' or 'worms 3, 7' ('-' for none)."""
    return f"worm{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids)) or '-'}"


def _fix_words(fix: str, kept: list[int], below: list[int]) -> str:
    if fix == "add":
        return f"add the model's {_worms(below or kept)}"
    if fix == "split":
        return f"split {_worms(below)} off {_worms(kept)}" if below else f"split {_worms(kept)}"
    if fix == "merge":
        return f"merge worms {' + '.join(map(str, kept))}"
    if fix == "erase":
        return f"erase {_worms(kept)}"
    return f"repaint the outline of {_worms(kept)} by hand"

