"""The napari reader stays light: opening a session imports neither torch nor inference.

Why a subprocess: this test process has imported torch already (other tests), so only a
fresh interpreter can show what the reader itself pulls in.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from napari_probseg.session import Session


def _write_session(path: Path) -> None:
    p = np.zeros((2, 24, 32), np.float32)
    p[0, 2:8, 2:30] = 1
    p[1, 12:18, 2:30] = 0.6
    ent = np.full((24, 32), 0.1, np.float32)
    lab = (p[0] >= 0.75).astype(np.int32)
    Session("w", p, ent, lab, [], image=np.zeros((2, 24, 32), np.uint16), channel_names=["fl", "bf"]).save(path)


def test_reader_imports_neither_torch_nor_inference(tmp_path: Path):
    path = tmp_path / "w.probseg.npz"
    _write_session(path)
    code = textwrap.dedent(f"""
        import sys
        from napari_probseg._reader import get_reader
        layers = get_reader({str(path)!r})({str(path)!r})
        kinds = sorted({{kind for _, _, kind in layers}})
        heavy = [m for m in ("torch", "napari_probseg.inference", "qtpy", "napari") if m in sys.modules]
        print(len(layers), kinds, heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "7"  # 2 images, max probability, entropy, labels, peaks, items
    assert out.stdout.strip().endswith("[]"), f"the reader imported {out.stdout}"
