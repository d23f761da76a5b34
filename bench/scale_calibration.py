"""Recompute scale.TRAINING_WORM_WIDTH and measure a model's width bias on training wells (issue 19).

TRAINING_WORM_WIDTH is the median over the train wells of ``scale.worm_width`` of the union of
their ground-truth worms.  The estimator measures the *network's* foreground, so its bias is
measured too: ``scale.estimate_worm_width`` (uncorrected) / ground-truth width on the same wells at
their own scale.  ``--write MODEL_FILE`` stores that median in the file (``ModelConfig.worm_width_bias``),
which the estimator then divides by.

    python bench/scale_calibration.py [--data DIR] [--network-wells 50] [--model M] [--write FILE]
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from dataclasses import replace

    from napari_probseg.data import default_data_dir, load_image, load_masks, read_split
    from napari_probseg.models import load_model
    from napari_probseg.scale import TRAINING_WORM_WIDTH, estimate_worm_width, foreground, worm_width

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--model", default="bbbc010-concrete")
    ap.add_argument("--network-wells", type=int, default=50, help="train wells (evenly spread) for the bias (default: all 50)")
    ap.add_argument("--write", metavar="FILE", help="store the estimator's median bias in this model file")
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
    images = {w: load_image(data, w) for w in picked}  # both measures below read the same images
    ratios = [worm_width(foreground(lm.model, images[w])) / gt[w] for w in picked]
    print(f"network / ground-truth width on {len(picked)} train wells ({', '.join(picked)}): "
          f"median {np.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    stored = lm.model.cfg.worm_width_bias
    lm.model.cfg = replace(lm.model.cfg, worm_width_bias=1.0)  # the raw estimate
    est = [estimate_worm_width(lm.model, images[w]) / gt[w] for w in picked]
    bias = float(np.median(est))
    print(f"estimate_worm_width (uncorrected) / ground-truth width, same wells: median {bias:.3f}, "
          f"range {min(est):.3f}-{max(est):.3f}; the model file stores {stored}")
    if args.write:
        from napari_probseg.checkpoint import set_worm_width_bias

        set_worm_width_bias(args.write, bias)
        print(f"wrote worm_width_bias = {bias:.3f} into {args.write}")


if __name__ == "__main__":
    main()
