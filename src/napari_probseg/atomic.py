"""The one way the core writes a file that must never look complete while half-written."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def partial_path(path: Path) -> Path:
    """``.<name>.partial`` beside ``path``: hidden, and recognisable as a leftover of a killed write."""
    return path.with_name(f".{path.name}.partial")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)``, then rename over ``path``: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: object, indent: int | None = 1) -> Path:
    """JSON text, atomically (markers, metadata)."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=indent)))
