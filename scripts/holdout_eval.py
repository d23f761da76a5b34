"""Held-out check of a training checkpoint with the shipped model's post-processing.

Training checkpoints carry the post-processing they were started with (e.g. cluster radius 4.5),
the released model the one its 2-fold tuning chose; to compare a checkpoint with the release on
the held-out train wells, both must cluster the same way.  Never run this on test wells: they
are for the release evaluation only.

    python scripts/holdout_eval.py runs/bbbc010-concrete-v4c/last.safetensors --out eval/holdout-v4c
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import napari_probseg.evaluate as evaluate
from napari_probseg.models import load_model

HOLDOUT = "A05,A12,A19,B06,B17"  # the train wells the v4 campaign leaves out (docs/training-bbbc010-concrete.md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--like", default="bbbc010-concrete", help="model whose post-processing to use")
    ap.add_argument("--wells", default=HOLDOUT)
    args = ap.parse_args()
    post = load_model(args.like).postprocess

    def with_post(name, device):
        lm = load_model(name, device)
        lm.postprocess = replace(post)
        return lm

    evaluate.load_model = with_post  # run_evaluation's own loader, so the protocol stays the same
    m = evaluate.run_evaluation(args.checkpoint, None, "train", args.out, wells=args.wells.split(","))
    print(json.dumps({k: round(m[k], 4) for k in evaluate.KEYS}))


if __name__ == "__main__":
    main()
