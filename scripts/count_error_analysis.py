"""Why a well's worm count is wrong: run after ``probseg evaluate`` on its output folder.

    python scripts/count_error_analysis.py eval/bbbc010-concrete [--data DIR]

Each true worm is given to the instance whose p >= 0.5 mask covers most of it (at least a
quarter; else it is *unseen*: no instance of any draw holds it).  Per well this prints the
binarised count and the shipped evidence count against the truth, and each instance where
they differ from what it holds: *merges* (a binarised instance holding two worms), *below
the cut* (an instance under the binarisation cut that holds a worm, with its q), *extras*
(a binarised instance holding none: a fragment, debris, or a worm the annotation lacks), one
worm weighed wrong (counted 2 or 0 by the evidence), and the weight the evidence estimator gave it with the evidence it saw.  It reads
``predictions/*.npz`` and the ground truth; it runs no network.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from napari_probseg.counts import DEFAULT_CALIBRATION, count_inputs, instance_weights
from napari_probseg.data import default_data_dir, load_masks


def owners(probs: np.ndarray, gt: np.ndarray, at: float = 0.5, least: float = 0.25) -> np.ndarray:
    """How many true worms each instance holds (each worm to the instance covering most of it)."""
    held = np.zeros(len(probs), int)
    if len(probs) == 0:
        return held
    masks = (probs >= at).reshape(len(probs), -1)
    for g in gt.reshape(len(gt), -1):
        cover = (masks & g).sum(1) / max(int(g.sum()), 1)
        if cover.max() >= least:
            held[int(np.argmax(cover))] += 1
    return held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    thr = json.loads((args.eval_dir / "metrics.json").read_text())["binarize"]
    data = args.data or default_data_dir()
    tally, err_bin, err_ev = Counter(), [], []
    for f in sorted((args.eval_dir / "predictions").glob("*.npz")):
        with np.load(f) as z:
            probs, draws = z["all_probabilities"].astype(np.float32), [int(v) for v in z["draw_counts"]]
        gt = load_masks(data, f.stem)
        inp = count_inputs(probs, probs >= thr, draws)
        held, w = owners(probs, gt), instance_weights(inp, DEFAULT_CALIBRATION)
        kept = np.asarray(inp["binarised"])
        n_bin, n_ev = int(kept.sum()), round(float(w.sum()) + DEFAULT_CALIBRATION.bias)
        unseen = len(gt) - int(held.sum())
        err_bin.append(n_bin - len(gt)), err_ev.append(n_ev - len(gt))
        tally["unseen"] += unseen
        notes = []
        below = ~kept & (np.asarray(inp["area"]) > 0)
        for i in np.flatnonzero((held != kept) | (np.round(w) != held) | below):
            if kept[i]:
                kind = "merge" if held[i] >= 2 else "extra" if held[i] == 0 else "one worm weighed wrong"
            else:
                kind = "below the cut" if held[i] else "fragment" if inp["area"][i] else ""
            if not kind:
                continue
            tally[kind] += 1
            if kind != "one worm weighed wrong":
                tally[f"{kind}, weighed right"] += int(round(w[i]) == held[i])
            ends = sorted((round(b) for b in inp["ends"][i]), reverse=True)[:5]
            notes.append(f"{kind} #{i}: holds {held[i]}, weight {w[i]:.2f} (q {inp['q'][i]:.2f}, area "
                         f"{inp['area'][i]}, end branches {ends} px, mean p {inp['mean_p'][i]:.2f})")
        if n_bin != len(gt) or n_ev != len(gt):
            print(f"{f.stem}: true {len(gt)}, binarised {n_bin}, evidence {n_ev}, unseen {unseen}")
            for n in notes:
                print("   ", n)
    print(f"{len(err_bin)} wells; MAE binarised {np.mean(np.abs(err_bin)):.3f}, evidence (shipped, in-sample) "
          f"{np.mean(np.abs(err_ev)):.3f}; instances: {dict(tally)}")


if __name__ == "__main__":
    main()
