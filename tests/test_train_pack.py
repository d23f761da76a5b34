"""The GPU run's data pack and step-numbered exports (scripts/train_bbbc010.py, scripts/gpu_train.sh)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_probseg.data import available_wells, load_well

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_bbbc010.py"


def script():
    spec = importlib.util.spec_from_file_location("train_bbbc010", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory, data_dir) -> tuple[Path, list[str], set[str]]:
    """A pack of two train wells: every other train well is left out (as the held-out wells are)."""
    wells = available_wells(data_dir, "train")[0]
    keep, leave = wells[:2], set(wells[2:])
    dest = tmp_path_factory.mktemp("pack") / "pack.npz"
    script().make_pack(str(dest), leave)
    return dest, keep, leave


def test_pack_leaves_out_wells_and_keeps_the_rest_exactly(small_pack, data_dir):
    dest, keep, leave = small_pack
    mod = script()
    assert mod.pack_left_out(str(dest)) == leave
    packed = mod.load_pack(str(dest))
    assert [w.name for w in packed] == keep
    for w in packed:
        ref = load_well(data_dir, w.name)
        np.testing.assert_array_equal(w.image, ref.image)
        np.testing.assert_array_equal(w.masks, ref.masks)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_step_numbered_exports_and_held_out_wells_from_a_pack(small_pack, tmp_path):
    dest, keep, leave = small_pack
    held_out = sorted(leave)[0]  # left out of the pack: still a train well, so accepted
    res = run_script("concrete", "--device", "cpu", "--threads", "1", "--pack", str(dest), "--holdout", held_out,
                     "--out", str(tmp_path / "run"), "--export-to", str(tmp_path / "w-{step}.safetensors"),
                     "--set", "steps=4", "checkpoint_every=2", "base_filters=4", "levels=3", "crop=48", "batch=1",
                     "warmup=1", "fast_cpu=false")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.glob("w-*.safetensors")) == ["w-2.safetensors", "w-4.safetensors"]


def test_a_held_out_well_that_is_no_train_well_is_refused(small_pack, tmp_path):
    res = run_script("concrete", "--pack", str(small_pack[0]), "--holdout", "Z99", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "Z99" in res.stderr and "Traceback" not in res.stderr
