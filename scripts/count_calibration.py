"""Refit the count calibration from an evaluation's metrics.json (no inference).

    .venv/bin/python scripts/count_calibration.py EVAL_DIR/metrics.json [--data DIR]

Prints, per estimator, the leave-one-out MAE on each fold; the 2-fold cross-fitted figures
(these must equal the run's headline ``counts``); and the calibration chosen on all wells of
the run, which is what ``counts.DEFAULT_CALIBRATION`` ships (its figures on the same wells
are in-sample, so the 2-fold ones are the honest estimate).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_probseg.counts import (
    AREA_ESTIMATORS,
    _loo_results,
    candidate_shapes,
    choose_calibration,
    count_errors,
    count_interval,
    cross_fit,
    fit_calibration,
)
from napari_probseg.data import default_data_dir, read_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    c = json.loads(Path(args.metrics).read_text())["counts"]
    inputs = c["inputs"]
    truth = {w: r["true"] for w, r in c["per_well"].items()}
    data = Path(args.data) if args.data else default_data_dir()
    folds = [[w for w in read_split(data, f) if w in inputs] for f in ("test_fold1", "test_fold2")]
    for k, fold in enumerate(folds, 1):
        ins, t = [inputs[w] for w in fold], [truth[w] for w in fold]
        for shape in candidate_shapes():
            cal = fit_calibration(ins, t, shape.estimator, shape.level, shape.merge_ratio, shape.max_multiplicity)
            loo = count_errors(_loo_results(ins, t, cal), t)
            area = f" ratio {cal.merge_ratio} cap {cal.max_multiplicity}" if cal.estimator in AREA_ESTIMATORS else ""
            print(f"fold {k} ({len(fold)} wells) {cal.estimator:15s}{area:18s} bias {cal.bias:+.2f} sigma0 "
                  f"{cal.sigma0:.2f} loo MAE {loo['mae']:.3f} coverage {loo['coverage']:.2f} width {loo['mean_width']:.2f}")
    cv = cross_fit(inputs, truth, folds)
    wells = sorted(cv["results"])
    print("2-fold:", cv["calibrations"], json.dumps(count_errors([cv["results"][w] for w in wells],
                                                                 [truth[w] for w in wells])))
    all_wells = sorted(inputs)
    cal = choose_calibration([inputs[w] for w in all_wells], [truth[w] for w in all_wells])
    ins = count_errors([count_interval(inputs[w], cal) for w in all_wells], [truth[w] for w in all_wells])
    print("all wells (ship):", cal, json.dumps(ins))


if __name__ == "__main__":
    main()
