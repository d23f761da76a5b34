"""Where a model's BBBC010 precision goes: run after ``probseg evaluate`` on its output folder.

    python scripts/error_analysis.py eval/bbbc010-concrete
    python scripts/error_analysis.py eval/bbbc010-concrete --review

Why: avAP averages precision over IoU 0.5-0.95, so it falls either through false positives
(fragments, merges) or through borders too loose for the high thresholds.  This prints the
precision per IoU threshold, how matched worms miss (true pixels not predicted) or add
pixels, how many of those lie on the one-pixel ring at the true border, and avAP for other
binarisation cuts of the saved probabilities.  ``--review``: the review list's errors
instead (``review_errors``): per error, whether a candidate points at it and at which rank of
the shipped list, with what the saved outputs show there.  It reads ``predictions/*.npz`` (written by
the evaluation) and the ground truth from the data folder; it runs no network.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from napari_probseg.data import default_data_dir, load_masks
from napari_probseg.metrics import aggregate, image_scores, iou_matrix

CUTS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)


def matched_pixel_errors(pred: np.ndarray, gt: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """Per matched pair (Hungarian on IoU, IoU >= min_iou): missed, added, missed on ring, added on ring."""
    iou = iou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(-iou)
    out = []
    for i, j in zip(rows, cols):
        if iou[i, j] < min_iou:
            continue
        p, g = pred[i], gt[j]
        ring = ndi.binary_dilation(g) & ~ndi.binary_erosion(g)
        missed, added = g & ~p, p & ~g
        out.append((missed.sum(), added.sum(), (missed & ring).sum(), (added & ring).sum()))
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir", type=Path, help="output folder of probseg evaluate (holds predictions/)")
    ap.add_argument("--data", type=Path, default=None, help="BBBC010 folder (default: the shared data)")
    ap.add_argument("--review", action="store_true", help="where the review list misses errors (issue 15)")
    args = ap.parse_args()
    if args.review:
        from review_errors import main as review_main

        return review_main(args.eval_dir, args.data)
    files = sorted((args.eval_dir / "predictions").glob("*.npz"))
    if not files:
        raise SystemExit(f"no predictions/*.npz under {args.eval_dir}: run probseg evaluate --out {args.eval_dir} first")
    data = args.data or default_data_dir()
    errors, by_cut = [], {c: [] for c in CUTS}
    for f in files:
        saved = np.load(f)
        probs, gt = saved["probabilities"].astype(np.float32), load_masks(data, f.stem)
        errors.append(matched_pixel_errors(saved["instances"], gt))
        for c in CUTS:
            masks = probs >= c
            by_cut[c].append(image_scores(masks[masks.reshape(len(masks), -1).any(1)], gt))
    e = np.concatenate(errors)
    shipped = aggregate(by_cut[0.75])
    print(f"{len(files)} wells; precision per IoU threshold (binarised at 0.75):")
    print("  " + "  ".join(f"{t:.2f}:{p:.3f}" for t, p in zip(shipped["iou_thresholds"], shipped["precision"])))
    wrong = e[:, 0].sum() + e[:, 1].sum()
    print(f"{len(e)} matched worms: {e[:, 0].mean():.0f} true pixels missed and {e[:, 1].mean():.0f} added per worm; "
          f"{(e[:, 2].sum() + e[:, 3].sum()) / max(wrong, 1):.0%} of these lie on the one-pixel ring at the true border")
    for c in CUTS:
        a = aggregate(by_cut[c])
        print(f"  binarised at {c:.2f}: avAP {a['avAP']:.3f}  AP75 {a['AP75']:.3f}  Recall@0.8 {a['recall80']:.3f}  "
              f"DSB {a['avAP_dsb']:.3f}")


if __name__ == "__main__":
    main()
