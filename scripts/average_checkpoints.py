"""Average the weights of several checkpoints of one training run (weight averaging, as in SWA).

Why: checkpoints taken along one run at a low learning rate sit in the same basin; their mean is
often a little more accurate than any of them and costs no training.  The U-Net has no batch
statistics, so averaging the tensors (Concrete Dropout logits included) is the whole job.  The
result carries the first file's header (post-processing, channels) and lists its sources in
``meta.averaged_from``; resume state (optimizer) is dropped.

    python scripts/average_checkpoints.py runs/v4b-final.safetensors runs/v4c-step750.safetensors \
        runs/v4c-final.safetensors --out runs/avg-v4bc.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from napari_probseg.atomic import atomic_write
from napari_probseg.checkpoint import CheckpointError, build_model, read_checkpoint


def average(paths: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """Header of the first file and the mean of every file's model tensors (shapes checked by build_model)."""
    header, _ = read_checkpoint(paths[0])
    sums: dict[str, torch.Tensor] = {}
    for path in paths:
        h, tensors = read_checkpoint(path)
        if h["model"] != header["model"]:
            raise CheckpointError(f"{path}: a different network config from {paths[0]}; cannot average")
        build_model(h, tensors, path)  # validates shapes and finiteness
        for k, v in tensors.items():
            if k.startswith("model."):
                sums[k] = sums.get(k, 0) + v.double()
    mean = {k: (v / len(paths)).float().contiguous() for k, v in sums.items()}
    header.setdefault("meta", {})["averaged_from"] = [Path(p).name for p in paths]
    return header, mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        header, tensors = average(args.checkpoints)
    except CheckpointError as exc:  # model files are untrusted input: one line, nothing written
        print(f"average_checkpoints: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(args.out)
    atomic_write(out, lambda tmp: save_file(tensors, str(tmp), metadata={"probseg": json.dumps(header)}))
    print(f"wrote {out} (mean of {len(args.checkpoints)} checkpoints)")


if __name__ == "__main__":
    main()
