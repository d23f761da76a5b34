"""Issue 12.2: an interrupt (Ctrl-C / SIGTERM) during training saves a resumable checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_probseg.checkpoint import read_checkpoint
from napari_probseg.data import Well
from napari_probseg.train import stop_on_signals, train

from .test_train_checkpoint import cfg, toy_wells


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_before_first_checkpoint_saves_last_step_and_resume_matches(tmp_path: Path, sig: int):
    """A signal at step 3 of 6 (periodic checkpoints every 1000): step 3 is saved, and
    resuming from it gives exactly the weights of an uninterrupted 6-step run."""
    def progress(step: int, terms: dict) -> None:
        if step == 3:
            os.kill(os.getpid(), sig)  # a real signal, delivered to this (main) thread

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        path = train(cfg(tmp_path / "part", 6), wells=toy_wells(), progress=progress, should_stop=stop.is_set)
    assert stop.signal_name == signal.Signals(sig).name
    header, _ = read_checkpoint(path)
    assert header["meta"]["step"] == 3
    resumed = train(cfg(tmp_path / "part", 6), wells=toy_wells(), resume=path)
    full = train(cfg(tmp_path / "full", 6), wells=toy_wells())
    a, b = read_checkpoint(full)[1], read_checkpoint(resumed)[1]
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))
    # the handlers are the ones before (default_int_handler, or SIG_IGN when the run was started in the background)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_fine_tuning_from_an_empty_label_image(tmp_path: Path):
    """Issue 12.1: a proofread field without worms (all instances erased) is valid training data."""
    img = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    path = train(cfg(tmp_path, 2), wells=[Well("empty", img, np.zeros((0, 64, 64), bool))])
    assert read_checkpoint(path)[0]["meta"]["step"] == 2


def test_cli_sigterm_saves_and_resume_continues(tmp_path: Path, data_dir: Path):
    """The real command: SIGTERM while training, exit 130 with a one-line hint, --resume auto continues."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "napari_probseg.cli", "train", "--out", str(out), "--data", str(data_dir),
            "--wells", "A01", "--crop", "32", "--batch", "1", "--checkpoint-every", "100000", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(base + ["--steps", "100000"], stderr=subprocess.PIPE, text=True, env=env)
    log = out / "log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    step = read_checkpoint(out / "last.safetensors")[0]["meta"]["step"]
    assert step >= 2
    r = subprocess.run(base + ["--steps", str(step + 2)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert read_checkpoint(out / "last.safetensors")[0]["meta"]["step"] == step + 2
    steps = [int(row.split(",")[0]) for row in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, step + 3))
