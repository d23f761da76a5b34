"""The headless core must load without Qt or napari (CLI, batch workers, servers)."""
import subprocess
import sys

CORE = ("atomic", "batch", "batch_markers", "checkpoint", "cli", "counts", "data", "devices", "evaluate", "inference",
        "losses", "masks", "measurements", "metrics", "model", "models", "outputs", "postprocess", "review",
        "review_metrics", "scale", "train", "tuning", "uncertainty_metrics", "validation", "wellbank")


def test_core_modules_import_neither_qt_nor_napari():
    code = ("import sys\n" + "".join(f"import napari_probseg.{m}\n" for m in CORE)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui'))\nprint(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
