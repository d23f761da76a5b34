"""Refit the review list's ranking from the predictions an evaluation saved (no inference).

    PYTHONPATH=src .venv/bin/python scripts/review_fit.py EVAL_DIR [--data DIR] [--binarize 0.75]

The protocol of ``napari_probseg.review_fit`` (docs/review.md): on test fold 1 fit the
logistic weights and the default-list cut, score on fold 2, and vice versa; the held-out
figures are pooled.  Three rules are compared: the disputed mass (cut chosen the same way),
the logistic model over the disagreement/size features (``BASE_FEATURES``) and over all
features (with the shape ones).  Last, the rule with the better held-out objective (found by
top 5 + top 10 + top 5 on an error; on a tie the simpler), fitted on all wells: paste its values into ``review.SHIPPED_SCORING`` /
``SHIPPED_WEIGHTS`` / ``SHIPPED_INTERCEPT`` / ``SHIPPED_MIN_SCORE`` (its figures on
these same wells are in-sample; quote the 2-fold ones).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_probseg.data import default_data_dir, load_masks, read_split
from napari_probseg.review import ReviewConfig
from napari_probseg.review_features import BASE_FEATURES, FEATURES
from napari_probseg.review_fit import (
    cross_validate,
    fit_rule,
    objective,
    score_candidates_x,
    score_order,
    well_data,
)


def fmt(s: dict) -> str:
    f = s["found_fraction"]
    return (f"items/well {s['entries_per_well']:.1f}  found top1 {f['1']:.0%} top3 {f['3']:.0%} top5 {f['5']:.0%} "
            f"top10 {f['10']:.0%}  top5 on error {s['top_on_error_fraction']:.0%}  whole list {s['found_by_list']:.0%}  "
            f"({s['errors']} errors, "
            f"{s['wells']} wells)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--data", default=None)
    ap.add_argument("--binarize", type=float, default=0.75)
    ap.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic fit")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    data_dir = Path(args.data) if args.data else default_data_dir()
    pred_dir = Path(args.eval_dir) / "predictions"
    wells = sorted(p.stem for p in pred_dir.glob("*.npz"))
    base = ReviewConfig()
    data = {}
    for w in wells:
        with np.load(pred_dir / f"{w}.npz") as z:
            prob = z["all_probabilities"].astype(np.float32)
        data[w] = well_data(prob, args.binarize, load_masks(data_dir, w), base)
    folds = [[w for w in read_split(data_dir, f) if w in data] for f in ("test_fold1", "test_fold2")]
    out = {}
    every = [data[w] for w in wells]
    print(f"every candidate, unranked: {len(np.concatenate([d.positive for d in every]))} candidates, "
          f"{np.mean(np.concatenate([d.positive for d in every])):.0%} on an error; errors with a candidate near them: "
          f"{sum(int(d.hits.any(1).sum()) for d in every)} of {sum(len(d.hits) for d in every)}")
    # the rules compared: the disputed mass, the logistic model over the disagreement/size features, and over all
    rules = {"mass": (replace(base, scoring="mass"), None), "model": (replace(base, scoring="model"), BASE_FEATURES),
             "model+shape": (replace(base, scoring="model"), FEATURES)}
    for name, (cfg, use) in rules.items():
        cv = cross_validate(data, folds, cfg, c=args.c, use=use)
        print(f"2-fold {name:11s}: {fmt(cv['held_out'])}")
        for k, r in enumerate(cv["rules"], 1):
            print(f"   fitted on fold {k}: min_score {r.min_score}" +
                  (f", weights {dict(zip(FEATURES, r.weights))}, intercept {r.intercept}" if use else ""))
        out[name] = {"held_out": cv["held_out"], "cuts": [r.min_score for r in cv["rules"]]}
    # ship the rule with the better held-out objective (found by top 5 + top 10 + top 5 on an error); on a tie the
    # simpler one (the order above)
    best = max(rules, key=lambda n: (round(objective(out[n]["held_out"]), 9), -list(rules).index(n)))
    cfg, use = rules[best]
    rule = fit_rule(every, cfg, c=args.c, use=use)
    s = score_order(every, [score_candidates_x(d, rule) for d in every], rule.min_score, rule.spot_px)
    print(f"shipped rule {best!r}, fitted on all {len(wells)} wells (in-sample): {fmt(s)}")
    print(f"SHIPPED_SCORING = {rule.scoring!r}\nSHIPPED_WEIGHTS = {rule.weights}\nSHIPPED_INTERCEPT = {rule.intercept}\n"
          f"SHIPPED_MIN_SCORE = {rule.min_score}")
    out["shipped"] = {"rule": best, "scoring": rule.scoring, "weights": dict(zip(FEATURES, rule.weights)),
                      "intercept": rule.intercept, "min_score": rule.min_score, "in_sample": s}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
