"""The headless core must load without Qt or napari (CLI, batch workers, servers)."""
import subprocess
import sys
from pathlib import Path

import napari_probseg

# every public module of the package (the ones with a leading underscore are the napari side)
CORE = tuple(sorted(p.stem for p in Path(napari_probseg.__file__).parent.glob("*.py") if not p.stem.startswith("_")))


def test_core_modules_import_neither_qt_nor_napari():
    code = ("import sys\n" + "".join(f"import napari_probseg.{m}\n" for m in CORE)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui'))\nprint(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
