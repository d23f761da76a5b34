"""Refit the count calibration from an evaluation's metrics.json (no inference).

    .venv/bin/python scripts/count_calibration.py EVAL_DIR/metrics.json [--data DIR]

Prints, per estimator, the best shapes (estimator and its rules) by leave-one-out MAE on each
fold; the 2-fold cross-fitted figures (held out: chosen on one fold, scored on the other) with
the wells each misses; and the calibration chosen on all wells of the run, as the line to paste
in ``counts.DEFAULT_CALIBRATION`` (its figures on the same wells are in-sample).  Count inputs
saved before the per-instance evidence existed are recomputed from ``EVAL_DIR/predictions/*.npz``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_probseg.count_evidence import has_evidence
from napari_probseg.count_fit import candidate_shapes, choose_calibration, count_errors, cross_fit, loo_error
from napari_probseg.counts import count_inputs, count_interval
from napari_probseg.data import default_data_dir, read_split


def recomputed_inputs(metrics: dict, folder: Path) -> dict[str, dict]:
    """Each well's count inputs from its saved probabilities (binarised at the run's cut)."""
    out = {}
    for w in metrics["counts"]["inputs"]:
        with np.load(folder / "predictions" / f"{w}.npz") as z:
            probs = z["all_probabilities"].astype(np.float32)
            draws = [int(v) for v in z["draw_counts"]] if "draw_counts" in z.files else []  # older runs lack them
            out[w] = count_inputs(probs, probs >= metrics["binarize"], draws)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    m = json.loads(Path(args.metrics).read_text())
    c = m["counts"]
    inputs = c["inputs"]
    if not all(has_evidence(i) and "core_uncertain" in i for i in inputs.values()):
        print("recomputing the count inputs (with the per-instance evidence) from predictions/*.npz")
        inputs = recomputed_inputs(m, Path(args.metrics).parent)
    truth = {w: r["true"] for w, r in c["per_well"].items()}
    data = Path(args.data) if args.data else default_data_dir()
    folds = [[w for w in read_split(data, f) if w in inputs] for f in ("test_fold1", "test_fold2")]
    for k, fold in enumerate(folds, 1):
        ins, t = [inputs[w] for w in fold], [truth[w] for w in fold]
        scored = sorted((loo_error(ins, t, s), i, s) for i, s in enumerate(candidate_shapes()))
        for est in dict.fromkeys(s.estimator for s in candidate_shapes()):
            best = [(e, s) for e, _, s in scored if s.estimator == est][:2]
            for e, s in best:
                print(f"fold {k} ({len(fold)} wells) loo MAE {e:.3f}  {s}")
    cv = cross_fit(inputs, truth, folds)
    wells = sorted(cv["results"])
    res = [cv["results"][w] for w in wells]
    print("2-fold calibrations:", *cv["calibrations"], sep="\n  ")
    print("2-fold:", json.dumps({k: round(v, 4) for k, v in count_errors(res, [truth[w] for w in wells]).items()}))
    print("  wrong:", ", ".join(f"{w} {r.count} ({r.low}-{r.high}) true {truth[w]}" for w, r in zip(wells, res)
                                if r.count != truth[w]))
    all_wells = sorted(inputs)
    cal = choose_calibration([inputs[w] for w in all_wells], [truth[w] for w in all_wells])
    ins = count_errors([count_interval(inputs[w], cal) for w in all_wells], [truth[w] for w in all_wells])
    print("all wells, in-sample:", json.dumps({k: round(v, 4) for k, v in ins.items()}))
    print("ship: DEFAULT_CALIBRATION =", cal)


if __name__ == "__main__":
    main()
