"""The U-Net's forward pass whole against by row strips (strips.py), per input size (issue 17).

    python bench/strips.py [--sizes 544,1024,2272] [--rows 64,128,256]

Prints, per square input, seconds per forward pass and microseconds per pixel, bf16 autocast
with MC dropout masks set (as ``forward_draws`` on a CPU), and the largest difference
between the two paths' outputs.  Not a test: no timing asserts anywhere.
"""
from __future__ import annotations

import argparse
import time

import torch

from napari_probseg import strips
from napari_probseg.inference import _inference_state
from napari_probseg.models import load_model


def per_pass(fn, repeats: int = 2) -> float:
    fn()  # warm-up at this size
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bbbc010-concrete")
    ap.add_argument("--sizes", default="544,1024,2272")
    ap.add_argument("--rows", default="64,128,256")
    args = ap.parse_args()
    model = load_model(args.model).model
    gen = torch.Generator().manual_seed(0)
    print("| input | path | s per pass | us per pixel | max difference |\n|---|---|---|---|---|")
    with _inference_state(model, True, gen), torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for layer, u in model.dropout_noise(1, gen).items():
            layer.noise = u
        for s in (int(v) for v in args.sizes.split(",")):
            x = torch.randn(1, model.cfg.in_channels, s, s).contiguous(memory_format=torch.channels_last)
            ref = model(x)
            sec = per_pass(lambda: model(x))
            print(f"| {s}x{s} | whole | {sec:.3f} | {sec / s / s * 1e6:.3f} | |")
            for r in (int(v) for v in args.rows.split(",")):
                diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(ref, strips.forward(model, x, r)))
                sec = per_pass(lambda r=r: strips.forward(model, x, r))
                print(f"| {s}x{s} | strips of {r} rows | {sec:.3f} | {sec / s / s * 1e6:.3f} | {diff:.2g} |", flush=True)


if __name__ == "__main__":
    main()
