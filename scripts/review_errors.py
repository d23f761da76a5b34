"""Where the review list misses errors: per error, its rank in the shipped list and what the outputs show.

    python scripts/error_analysis.py EVAL_DIR --review   (or: python scripts/review_errors.py EVAL_DIR)

Why: a list misses an error either because no candidate points at it (nothing to rank) or
because it is ranked below the top 5 / 10; the two need different fixes (new candidates, or
features that rank it up).  Per error (``review_metrics.find_errors``) this prints its kind,
size, the entropy and the highest instance probability over its pixels, the rank of the first
item of the shipped list within 10 px (``-`` unlisted, ``none`` no candidate at all), and a
table of kind x outcome.  Reads ``predictions/*.npz`` and the ground truth; no network.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from napari_probseg.data import default_data_dir, load_masks
from napari_probseg.masks import nonempty
from napari_probseg.review import ReviewConfig, score_candidates
from napari_probseg.review_candidates import candidates
from napari_probseg.review_metrics import RADIUS, find_errors


def outcome(rank: int | None, any_candidate: bool) -> str:
    if not any_candidate:
        return "no candidate"
    if rank is None:
        return "below the cut"
    return "top 5" if rank < 5 else ("top 10" if rank < 10 else "rank > 10")


def well_rows(prob: np.ndarray, entropy: np.ndarray, gt: np.ndarray, cfg: ReviewConfig, threshold: float) -> list[dict]:
    """One row per error of a well (see the module text)."""
    cands = candidates(prob, threshold, cfg) if len(prob) else []
    scores = score_candidates(cands, cfg)
    shown = [cands[i] for i in np.argsort(-scores, kind="stable") if scores[i] >= cfg.min_score]
    inst = prob >= threshold
    rows = []
    for e in find_errors(inst[nonempty(inst)], gt):
        near = e.near(RADIUS)
        rank = next((r for r, c in enumerate(shown) if near[c.y, c.x]), None)
        pmax = prob[:, e.mask].max(0) if len(prob) else np.zeros(int(e.mask.sum()))
        rows.append({"kind": e.kind, "area": int(e.mask.sum()), "entropy": float(entropy[e.mask].mean()),
                     "p_max": float(pmax.mean()), "rank": rank,
                     "outcome": outcome(rank, any(near[c.y, c.x] for c in cands))})
    return rows


def main(eval_dir: Path, data: Path | None = None, threshold: float = 0.75) -> None:
    files = sorted((Path(eval_dir) / "predictions").glob("*.npz"))
    if not files:
        raise SystemExit(f"no predictions/*.npz under {eval_dir}: run probseg evaluate --out {eval_dir} first")
    data = data or default_data_dir()
    cfg, table = ReviewConfig(), collections.Counter()
    print("well  kind       area  entropy  p_max  rank  outcome")
    for f in files:
        with np.load(f) as z:
            prob, ent = z["all_probabilities"].astype(np.float32), z["entropy"].astype(np.float32)
        for r in well_rows(prob, ent, load_masks(data, f.stem), cfg, threshold):
            table[(r["kind"], r["outcome"])] += 1
            if r["outcome"] != "top 5":
                print(f"{f.stem}  {r['kind']:9s} {r['area']:5d}  {r['entropy']:.3f}    {r['p_max']:.2f}  "
                      f"{'-' if r['rank'] is None else r['rank'] + 1:>4}  {r['outcome']}")
    outcomes = ("top 5", "top 10", "rank > 10", "below the cut", "no candidate")
    print("\nkind       " + "  ".join(f"{o:>13s}" for o in outcomes))
    for kind in ("missed", "false", "merged", "imprecise"):
        print(f"{kind:10s} " + "  ".join(f"{table[(kind, o)]:13d}" for o in outcomes))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    a = ap.parse_args()
    main(a.eval_dir, a.data)
