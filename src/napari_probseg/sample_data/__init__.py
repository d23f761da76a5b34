"""Three bundled BBBC010 wells (see README.md here for attribution), so demos need no download."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_DIR = Path(__file__).parent
SAMPLE_WELLS = ("C04", "C10", "D21")


def sample_path(well: str = "C10") -> Path:
    return SAMPLE_DIR / f"{well}.tif"


def load_sample(well: str = "C10") -> np.ndarray:
    """Raw [2,H,W] uint16 image of a bundled well (fluorescence, brightfield)."""
    import tifffile

    if well not in SAMPLE_WELLS:
        raise ValueError(f"no bundled sample well {well!r}; choose one of {SAMPLE_WELLS}")
    return tifffile.imread(str(sample_path(well)))
