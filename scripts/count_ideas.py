"""Held-out figures of each count rule tried for issue 18, and why the 2-fold count is still wrong.

    python scripts/count_ideas.py EVAL_DIR [--data DIR] [--ideas NAME ...]

For each idea, the evidence grid of ``count_fit.candidate_shapes`` (without its core gate) is
extended by that idea's settings, and the 2-fold protocol (``count_fit.cross_fit``: choose the
shape and calibrate on one fold, score the other) gives MAE, bias, exact share, coverage and
width; the last run offers every idea's shapes at once, so the choice among the ideas is made
inside each fold (nested) and its figure is held out.
Then, for the shipped grid's 2-fold result, each wrong well's error is split by cause: each
true worm goes to the instance whose p >= 0.5 mask covers most of it (``count_error_analysis.owners``).
Reads ``predictions/*.npz`` and the ground truth; runs no network.
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
from count_error_analysis import owners

from napari_probseg import count_fit
from napari_probseg.counts import Calibration, count_inputs, instance_weights
from napari_probseg.data import default_data_dir, load_masks, read_split

IDEAS = {  # name: the settings added to each evidence shape (all off = the plain grid)
    "A: large and uncertain = two (mean p < 0.85 / 0.9 from 1.2 x the area)": {"merge_probability": (0.85, 0.9)},
    "B: end rule only below a mean p (0.90-0.99)": {"end_max_probability": (0.9, 0.93, 0.95, 0.97, 0.98, 0.99)},
    "C: long and thin = rim (width < 0.8 x median)": {"thin_width": (0.8,)},
    "D: instances no draw majority found count their mass": {"faint_weight": ("mass",)},
    "E: end rule only from a core share missed by a draw (shipped)": {"end_min_core": count_fit.END_MIN_CORES},
}


def plain_grid() -> list[Calibration]:
    return [s for s in count_fit.candidate_shapes() if s.end_min_core == 0]


def grid_with(options: dict) -> list[Calibration]:
    """The plain grid, then every evidence shape with each combination of ``options`` (not all off)."""
    base = plain_grid()
    keys, out = list(options), list(base)
    for s in (s for s in base if s.estimator == "evidence"):
        for vals in product(*[(0.0 if k != "faint_weight" else "zero", *options[k]) for k in keys]):
            if any(v not in (0.0, "zero") for v in vals):
                out.append(replace(s, **dict(zip(keys, vals))))
    return out


def held_out(inputs, truth, folds, shapes) -> dict:
    """``cross_fit`` with the candidate shapes replaced by ``shapes``."""
    original = count_fit.candidate_shapes
    count_fit.candidate_shapes = lambda level=0.9, evidence=True: [replace(s, level=level) for s in shapes]
    try:
        return count_fit.cross_fit(inputs, truth, folds)
    finally:
        count_fit.candidate_shapes = original


def causes(inp: dict, gt: np.ndarray, probs: np.ndarray, cal: Calibration) -> Counter:
    """How far each kind of instance moves this well's count from the truth (worms, signed)."""
    held, w = owners(probs, gt), np.round(instance_weights(inp, cal))
    out = Counter(unseen=-(len(gt) - int(held.sum())))
    for i in np.flatnonzero(w != held):
        kind = ("merge counted once" if held[i] >= 2 else "one worm counted twice" if held[i] == 1
                else "no worm (debris, rim, a worm the annotation lacks)")
        out[kind] += int(w[i] - held[i])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--ideas", nargs="*", default=None, help="letters of the ideas to score (default: all)")
    args = ap.parse_args()
    data = args.data or default_data_dir()
    thr = __import__("json").loads((args.eval_dir / "metrics.json").read_text())["binarize"]
    inputs, truth, probs = {}, {}, {}
    for f in sorted((args.eval_dir / "predictions").glob("*.npz")):
        with np.load(f) as z:
            probs[f.stem] = z["all_probabilities"].astype(np.float32)
            inputs[f.stem] = count_inputs(probs[f.stem], probs[f.stem] >= thr, [int(v) for v in z["draw_counts"]])
        truth[f.stem] = len(load_masks(data, f.stem))
    folds = [[w for w in read_split(data, f) if w in inputs] for f in ("test_fold1", "test_fold2")]
    chosen = {k: v for k, v in IDEAS.items() if args.ideas is None or k[0] in args.ideas}
    runs = {"plain grid (before issue 18's rules)": plain_grid(),
            "median of the per-draw counts alone": [s for s in plain_grid() if s.estimator == "draws"],
            **{k: grid_with(v) for k, v in chosen.items()}}
    if args.ideas is None:  # one idea at a time (not their combinations), so the choice among them is per fold
        runs["A-E offered together, chosen inside each fold"] = plain_grid() + [
            s for v in IDEAS.values() for s in grid_with(v)[len(plain_grid()):]]
    for name, shapes in runs.items():
        cv = held_out(inputs, truth, folds, shapes)
        wells = sorted(cv["results"])
        e = count_fit.count_errors([cv["results"][w] for w in wells], [truth[w] for w in wells])
        print(f"{name} ({len(shapes)} shapes): MAE {e['mae']:.3f}, bias {e['bias']:+.3f}, exact {e['exact']:.2f}, "
              f"coverage {e['coverage']:.3f}, width {e['mean_width']:.2f}", flush=True)
    cv = count_fit.cross_fit(inputs, truth, folds)  # the shipped grid
    cals = [Calibration(**c) for c in cv["calibrations"]]
    total = Counter()
    for w in sorted(cv["results"]):
        r = cv["results"][w]
        if r.count == truth[w]:
            continue
        cal = cals[0] if w not in folds[0] else cals[1]  # a well is scored with the other fold's calibration
        c = causes(inputs[w], load_masks(data, w), probs[w], cal)
        total.update({k: abs(v) for k, v in c.items()})
        print(f"{w}: {r.count} ({r.low}-{r.high}) true {truth[w]}:",
              ", ".join(f"{k} {v:+d}" for k, v in c.items() if v))
    print("worms of error by cause over the wrong wells:", dict(total))


if __name__ == "__main__":
    main()
