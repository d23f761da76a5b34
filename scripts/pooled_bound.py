"""How far any ordering of the review items could take the pooled proofreading simulation.

    PYTHONPATH=src .venv/bin/python scripts/pooled_bound.py EVAL_DIR

Why: issue 15 asks that correcting the top 5 items pooled over all wells gains as much avAP as
the top 20 patches (Table 2's protocol).  This prints (1) the bound: each default-list item
corrected alone, and the sum of the five largest such gains (an ordering that knew the answers);
(2) the pooled gains at k = 5, 10, 20 with the items ordered by score (what ``probseg evaluate``
reports) and by score per worm of the well (a fix weighs more in a well of few worms); (3) the
20 patches' gain.  Reads EVAL_DIR/predictions (no inference); about 30 s on 47 wells.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from napari_probseg.data import default_data_dir, load_masks
from napari_probseg.evaluate import saved_prediction
from napari_probseg.review_metrics import simulate_items
from napari_probseg.uncertainty_metrics import simulate_proofreading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    folder, data = Path(args.eval_dir), Path(args.data) if args.data else default_data_dir()
    preds, probs, gts, items, peaks, worms = {}, {}, {}, {}, {}, {}
    for f in sorted((folder / "predictions").glob("*.npz")):
        w, pred = f.stem, saved_prediction(folder, f.stem, 0.75)
        preds[w], probs[w], gts[w] = pred.instances, pred.probabilities, load_masks(data, w).astype(bool)
        items[w] = [(it.score, it.named) for it in pred.review_items()]
        peaks[w] = [(p.score, p.y, p.x) for p in pred.peaks]
        worms[w] = max(int(pred.instances.reshape(len(pred.instances), -1).any(1).sum()), 1)
    n = len(preds)
    alone = []  # (avAP gain over all wells, well, score) of each item corrected alone
    for w in preds:
        for it in items[w]:
            r = simulate_items({w: preds[w]}, {w: probs[w]}, {w: [it]}, {w: gts[w]}, ks=(0, 1))
            alone.append(((r[1]["avAP"] - r[0]["avAP"]) / n, w, it[0]))
    alone.sort(key=lambda a: -a[0])
    print(f"{len(alone)} items; the 5 largest gains of one item alone sum to {sum(a[0] for a in alone[:5]):+.4f} "
          f"({', '.join(f'{w} {g:+.4f}' for g, w, _ in alone[:5])})")
    for name, weigh in (("by score", lambda w: 1.0), ("by score per worm of the well", lambda w: 1.0 / worms[w])):
        order = {w: [(s * weigh(w), named) for s, named in items[w]] for w in preds}
        rows = simulate_items(preds, probs, order, gts, ks=(0, 5, 10, 20), pooled=True)
        print(f"items pooled {name}: " + ", ".join(f"k={r['k']} {r['avAP'] - rows[0]['avAP']:+.4f}" for r in rows[1:]))
    sim = simulate_proofreading(preds, probs, peaks, gts, ks=(0, 20))
    print(f"20 patches pooled (Table 2): {sim[1]['avAP'] - sim[0]['avAP']:+.4f}")


if __name__ == "__main__":
    main()
