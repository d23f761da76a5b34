"""Range checks for every user-settable option, shared by the CLI, the widgets and the library.

Why one table: a value the CLI refuses must also be refused by the widget and by a
script calling the library, with the same message naming the allowed range.  Nothing
here imports Qt, napari or torch, so ``probseg --help`` stays fast.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class InputError(ValueError):
    """Bad user input, with a message that says what is wrong and what to do (``data.InputError``)."""

MAX_DRAWS = 256  # 8 is the default; beyond a few hundred the estimate does not change and a run takes hours


class OptionError(InputError):
    """An option outside its allowed range; the message names the option and the range."""


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric option (``lo_open``: the lower bound itself is excluded)."""

    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    what: str = ""

    def text(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = f"> {self.lo:g}" if self.lo_open else f">= {self.lo:g}"
        return f"{kind} {lo} and <= {self.hi:g}" + (f" ({self.what})" if self.what else "")

    def ok(self, v: float) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.integer and v != int(v):
            return False
        return (v > self.lo if self.lo_open else v >= self.lo) and v <= self.hi


# inference.predict(tile=None) and --tile's default tile images of more pixels.  Not only for memory: the
# embeddings keep worms of one 384-px training crop apart, so a field much larger than a BBBC010 well
# clustered as a whole can put distant worms in one cluster (a 1040x1392 field of 4 test wells: 42
# instances against 57 for the wells alone); the tiled path clusters each blob alone (57).  Wells
# (520x696) and their network views at any magnification stay below it, untiled as measured.
AUTO_TILE_PX = 1024 * 1024
AUTO_TILE_CORE = 2048  # ... with cores of this side (tiling.TILE): at 4096x4096 the windows cover 1.23x the image (1024: 1.76x)

RANGES: dict[str, Range] = {
    "draws": Range(1, MAX_DRAWS, True, what="Monte-Carlo draws; each costs one forward pass"),
    "binarize": Range(0, 1, False, True, "probability at which a pixel belongs to an instance"),
    "min_size": Range(1, 10_000_000, True, what="pixels"),
    "seed": Range(0, 2**32 - 1, True),
    "steps": Range(1, 10_000_000, True),
    "batch": Range(1, 256, True, what="crops per step"),
    "crop": Range(16, 4096, True, what="crop side in pixels"),
    "lr": Range(0, 1, False, True, "Adam learning rate"),
    "checkpoint_every": Range(1, 10_000_000, True, what="steps"),
    "workers": Range(1, 256, True),
    "tile": Range(0, 1_000_000, True, what="core side of the tiles in pixels; 0: never tile"),
    "max_wells": Range(0, 10_000_000, True),
    "bandwidth": Range(0, 100, False, True, "mean-shift bandwidth, embedding units"),
    "cluster_radius": Range(0, 100, False, True, "cluster radius, embedding units"),
}


def check(name: str, value, flag: str | None = None):
    """``value`` if it lies in ``RANGES[name]``, else OptionError naming ``flag`` and the range."""
    r = RANGES[name]
    if not r.ok(value):
        raise OptionError(f"{flag or name} must be {r.text()}, got {value!r}")
    return int(value) if r.integer else float(value)


def check_tile(tile: int | None, cell: int) -> None:
    """A ``--tile`` the model can take (0, None or at least two network cells), checked before any compute."""
    if tile and tile < 2 * cell:
        raise OptionError(f"--tile must be 0 (never tile) or at least {2 * cell} pixels for this model, got {tile}")


def check_optional(name: str, value, flag: str | None = None):
    """``check`` that lets None (= "use the model's value") through."""
    return None if value is None else check(name, value, flag)


def argparse_type(name: str, flag: str):
    """An argparse ``type=``: parses the text and range-checks it (argparse reports the message)."""
    import argparse

    r = RANGES[name]

    def parse(text: str):
        try:
            v = float(text)
        except ValueError:
            v = None
        if v is not None and r.integer and math.isfinite(v) and v == int(v):
            v = int(v)
        if v is None or not r.ok(v):
            raise argparse.ArgumentTypeError(f"must be {r.text()}, got {text!r}")
        return v

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def check_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create ``path`` if needed and prove a file can be written there, before any compute.

    Why: a result computed for minutes and then lost to a read-only folder is lost work.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p} is a file, not a folder; give a folder for the results")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".probseg-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{flag} {p} is not writable ({exc.strerror or exc}); choose a folder you can write to") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p} is not writable; choose a folder you can write to")
    return p


def check_output_files(paths: list[Path]) -> None:
    """Refuse planned output files whose name is taken by a folder (the write would fail late)."""
    for p in paths:
        if p.exists() and not p.is_file():
            raise InputError(f"output {p} exists and is not a file; move it away or choose another --out")
