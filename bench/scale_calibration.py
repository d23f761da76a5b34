"""Recompute scale.TRAINING_WORM_WIDTH and check the estimator's bias on training wells (issue 19).

TRAINING_WORM_WIDTH is the median over the train wells of ``scale.worm_width`` of the union of
their ground-truth worms.  The estimator measures the *network's* foreground, so its bias is
reported too: network width / ground-truth width on the same wells at their own scale (a
bias far from 1 would need a correction in ``scale.estimate_worm_width``).

    python bench/scale_calibration.py [--data DIR] [--network-wells 10]
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from napari_probseg.data import default_data_dir, load_image, load_masks, read_split
    from napari_probseg.models import load_model
    from napari_probseg.scale import TRAINING_WORM_WIDTH, foreground, worm_width

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--model", default="bbbc010-concrete")
    ap.add_argument("--network-wells", type=int, default=10, help="train wells (evenly spread) for the bias check")
    args = ap.parse_args()
    data = default_data_dir() if args.data is None else args.data
    wells = read_split(data, "train")
    gt = {w: worm_width(load_masks(data, w).any(0)) for w in wells}
    med = float(np.median(list(gt.values())))
    print(f"ground-truth worm width over {len(wells)} train wells: median {med:.2f} px "
          f"(IQR {np.percentile(list(gt.values()), 25):.2f}-{np.percentile(list(gt.values()), 75):.2f}); "
          f"scale.TRAINING_WORM_WIDTH = {TRAINING_WORM_WIDTH}")
    lm = load_model(args.model)
    picked = wells[:: max(1, len(wells) // args.network_wells)][: args.network_wells]
    ratios = [worm_width(foreground(lm.model, load_image(data, w))) / gt[w] for w in picked]
    print(f"network / ground-truth width on {len(picked)} train wells ({', '.join(picked)}): "
          f"median {np.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
