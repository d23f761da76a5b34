"""Held-out check of the review list's count flags (``review.count_flags``) on an evaluation.

    PYTHONPATH=src .venv/bin/python scripts/count_flag_check.py EVAL_DIR [--data DIR]

Why: the flags use the shipped count calibration, which was fitted on the same 47 test wells.  Here
each well's flags come from the calibration its *other* fold chose (``metrics.json["counts"]
["calibrations"]``, the 2-fold protocol of ``count_fit.cross_fit``).  Prints how often the items
naming a flagged worm lie on a real error, against the other items, and the default list's scores
(``review_metrics``) with those held-out flags.  Reads EVAL_DIR/predictions (no inference).

``--cuts 12 20 30`` also prints the same list cut at each ``min_score``: what a shorter default list
trades (items per well, found by the top 5 / 10, top 5 on an error).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_probseg.counts import Calibration
from napari_probseg.data import default_data_dir, load_masks, read_split
from napari_probseg.evaluate import saved_prediction
from napari_probseg.masks import nonempty
from napari_probseg.review import ReviewConfig, count_flags, count_inputs_of, ranked_items
from napari_probseg.review_candidates import candidates
from napari_probseg.review_metrics import RADIUS, find_errors, score_list, summarise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--data", default=None)
    ap.add_argument("--cuts", type=float, nargs="*", default=[], help="also score the list cut at these min_scores")
    args = ap.parse_args()
    folder, data = Path(args.eval_dir), Path(args.data) if args.data else default_data_dir()
    cals = [Calibration(**c) for c in json.loads((folder / "metrics.json").read_text())["counts"]["calibrations"]]
    other = {w: cals[1 - k] for k, f in enumerate(("test_fold1", "test_fold2")) for w in read_split(data, f)}
    cfg, cut, on, off, per = ReviewConfig(), 0.75, [], [], {}  # 0.75: the shipped binarisation cut
    per_cut: dict[float, dict] = {c: {} for c in args.cuts}
    for f in sorted((folder / "predictions").glob("*.npz")):
        w = f.stem
        prob = saved_prediction(folder, w, cut).probabilities
        inst = prob >= cut
        flags = count_flags(count_inputs_of(prob, cut), other[w])
        errors = find_errors(inst[nonempty(inst)], load_masks(data, w).astype(bool))
        near = [e.near(RADIUS) for e in errors]
        cands = candidates(prob, cut, cfg) if len(prob) else []
        for c in cands:  # before ranking: every candidate once
            (on if any(i in flags for i in c.instances) else off).append(any(nr[c.y, c.x] for nr in near))
        every = ranked_items(cands, cfg, True, flags)
        per[w] = score_list([(it.y, it.x) for it in every if it.score >= cfg.min_score], errors)
        for c, scores in per_cut.items():
            scores[w] = score_list([(it.y, it.x) for it in every if it.score >= c], errors)
    print(f"candidates naming a worm the other fold's count weighs 0 or 2: {len(on)}, on an error {np.mean(on):.0%}; "
          f"the other {len(off)}: {np.mean(off):.0%}")
    s = summarise(per)
    f5 = s["found_fraction"]
    print(f"default list with these flags: {s['entries_per_well']:.1f} items/well, found by top 5 {f5['5']:.1%}, "
          f"top 10 {f5['10']:.1%}, top 5 on an error {s['top_on_error_fraction']:.1%} ({s['errors']} errors)")
    for c, scores in per_cut.items():
        s = summarise(scores)
        print(f"  cut at {c:g}: {s['entries_per_well']:.1f} items/well, top 5 {s['found_fraction']['5']:.1%}, "
              f"top 10 {s['found_fraction']['10']:.1%}, top 5 on an error {s['top_on_error_fraction']:.1%}")


if __name__ == "__main__":
    main()
