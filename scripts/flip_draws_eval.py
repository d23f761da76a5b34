"""Experiment: ``probseg evaluate`` with every Monte-Carlo draw also under a flip of the image.

    PYTHONPATH=src .venv/bin/python scripts/flip_draws_eval.py evaluate --model bbbc010-concrete --split test --out eval/flips

Why: the 8 draws differ only in their dropout masks.  Here draw k also sees the image flipped
(none, left-right, up-down, both; k mod 4) and its outputs are flipped back, so the draws mix
dropout and test-time augmentation at the same cost (still 8 forward passes).  This measures what
that does to the segmentation and to the review list before anyone builds it into the engine
(docs/review.md, eighth session: avAP up, review list down, not shipped).  It swaps the forward
pass that ``mc_draws`` calls, so it runs draws one at a time (the CPU default) and exits otherwise.
"""
from __future__ import annotations

import itertools
import sys

import torch

import napari_probseg.mc_draws as mc_draws
from napari_probseg.cli import main

FLIPS: list[tuple[int, ...]] = [(), (-1,), (-2,), (-2, -1)]
_draw_index = itertools.count()
_forward = mc_draws.run_model


def flipped_forward(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's forward pass on the next flip of ``x`` (one draw), flipped back."""
    if x.shape[0] != 1:
        raise SystemExit("flip_draws_eval: one draw per forward pass only (run on a CPU)")
    dims = FLIPS[next(_draw_index) % len(FLIPS)]
    if not dims:
        return _forward(model, x)
    emb, logits = _forward(model, torch.flip(x, dims))
    return torch.flip(emb, dims), torch.flip(logits, dims)


if __name__ == "__main__":
    mc_draws.run_model = flipped_forward
    sys.exit(main(sys.argv[1:]))
