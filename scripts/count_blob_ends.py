"""How many skeleton end branches the instances of an evaluation have, by how many worms they hold.

    .venv/bin/python scripts/count_blob_ends.py EVAL_DIR [--data DIR]

Why: ``counts.BLOB_ENDS`` (instances with that many end branches count 0 worms) must lie above
what any real worm's instance has.  Run on an evaluation of the train wells (e.g. ``probseg
evaluate --split train --out eval/train-v4b``), it prints a table of (end branches, gt worms held)
-> instances and the most end branches of an instance that held a worm; the threshold is chosen
there, not on the test wells it is scored on.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from napari_probseg.count_evidence import instance_evidence
from napari_probseg.data import default_data_dir, load_masks
from napari_probseg.evaluate import saved_prediction


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    data = Path(args.data) if args.data else default_data_dir()
    table: Counter = Counter()
    most_real = 0
    for f in sorted((Path(args.eval_dir) / "predictions").glob("*.npz")):
        prob = saved_prediction(Path(args.eval_dir), f.stem, 0.75).probabilities
        gt = load_masks(data, f.stem)
        gt = gt[gt.reshape(len(gt), -1).any(1)]
        half = (prob >= 0.5).reshape(len(prob), -1).astype(np.float32)
        flat_gt = gt.reshape(len(gt), -1).astype(np.float32)
        held = ((half @ flat_gt.T) / np.maximum(flat_gt.sum(1), 1) >= 0.5).sum(1)  # gt worms at least half inside
        for ends, n in zip(instance_evidence(prob)["ends"], held):
            table[(len(ends), int(n))] += 1
            if n:
                most_real = max(most_real, len(ends))
    print("end branches  gt worms held  instances")
    for (ends, n), k in sorted(table.items()):
        print(f"{ends:12d}  {n:13d}  {k:9d}")
    print(f"most end branches of an instance that held a worm: {most_real}")


if __name__ == "__main__":
    main()
