"""Paired comparison of two evaluations of the same wells: avAP difference with a bootstrap over wells.

Why: two models' avAP on 47 wells differ by a few thousandths; resampling the wells (both models
together) says whether such a difference is more than which wells happen to be in the test set.

    python scripts/compare_evals.py eval/v3.2-r eval/bbbc010-concrete
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_probseg.data import default_data_dir, load_masks
from napari_probseg.metrics import aggregate, image_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="evaluation folder (with predictions/*.npz)")
    ap.add_argument("b", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    data = args.data or default_data_dir()
    wells = sorted(p.stem for p in (args.a / "predictions").glob("*.npz")
                   if (args.b / "predictions" / p.name).is_file())
    if not wells:
        print(f"compare_evals: error: {args.a} and {args.b} share no saved predictions (predictions/*.npz); "
              "give two `probseg evaluate` output folders", file=sys.stderr)
        raise SystemExit(2)
    sa, sb = [], []
    for w in wells:
        gt = load_masks(data, w)
        sa.append(image_scores(np.load(args.a / "predictions" / f"{w}.npz")["instances"], gt))
        sb.append(image_scores(np.load(args.b / "predictions" / f"{w}.npz")["instances"], gt))
    a, b = aggregate(sa)["avAP"], aggregate(sb)["avAP"]
    rng = np.random.default_rng(0)
    diffs = np.array([aggregate([sa[j] for j in idx])["avAP"] - aggregate([sb[j] for j in idx])["avAP"]
                      for idx in (rng.integers(0, len(wells), len(wells)) for _ in range(args.resamples))])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print(f"{len(wells)} wells: avAP a {a:.4f}, b {b:.4f}, a - b {a - b:+.4f} "
          f"(95% bootstrap over wells {lo:+.4f} to {hi:+.4f}; share of resamples with a - b <= 0: {np.mean(diffs <= 0):.3f})")


if __name__ == "__main__":
    main()
