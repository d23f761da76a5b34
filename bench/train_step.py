"""Seconds per training step (batch 4 of 256x256 crops, full-size Concrete Dropout U-Net).

    python bench/train_step.py [--steps 20] [--no-fast]

Times the same step as ``train.train`` (augmentation, forward, loss, backward, Adam) with and
without channels_last + bf16 autocast; reports the median step after warm-up and peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import torch

from napari_probseg.data import default_data_dir, load_well
from napari_probseg.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--variant", default="concrete")
    args = ap.parse_args()
    wells = [load_well(default_data_dir(), w) for w in ("A01", "A02", "B01", "B02")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| setting | median s/step | steps timed |\n|---|---|---|")
    for fast in (True, False):
        stamps: list[float] = []
        cfg = TrainConfig(out_dir=tempfile.mkdtemp(), steps=args.steps, batch=4, crop=256, variant=args.variant,
                          fast_cpu=fast, checkpoint_every=10**9, device="cpu")
        train(cfg, wells=wells, progress=lambda s, t: stamps.append(time.perf_counter()))
        steps = [b - a for a, b in zip(stamps[3:], stamps[4:])]
        name = "channels_last + bf16 autocast" if fast else "float32, contiguous"
        print(f"| {name} | {statistics.median(steps):.3f} | {len(steps)} |")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
