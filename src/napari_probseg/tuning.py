"""Mean-shift bandwidth, cluster radius and minimum instance size by grid search with 2-fold CV (section 2.2).

As in the paper, the search runs on the two folds of the *test* wells: parameters chosen
on one fold are scored on the other.  To keep it cheap, each well is passed once through
the network without dropout (the mean network) and its embeddings are cached; mean-shift
runs once per bandwidth, only the assignment is repeated per radius, and the minimum
size only filters the instances of the smallest (``instances_by_min_size``).

Why the minimum size is tuned: the paper drops nothing, but half-worm fragments (a worm
cut where it crosses another, or a tail whose embeddings stray) are false positives at
every IoU threshold; the smallest whole worm in the train wells has 605 pixels.

Why the objective is the mean of avAP and DSB avAP: the published avAP is a precision
(TP / (TP + FP)), so searched alone it rewards dropping every worm the model is unsure
of: on the v3.1 model it chose bandwidth 3, threshold 1.5, min size 800 (avAP 0.729 but
Recall@0.8 0.25 with 8 draws).  DSB avAP (TP / (TP + FP + FN)) charges each missed worm;
the mean rewards neither dropping worms nor keeping fragments.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import available_wells, load_image, load_masks, read_split
from .inference import prepare_input
from .mc_draws import forward_draws
from .metrics import aggregate, image_scores
from .model import UNet
from .postprocess import FOREGROUND, OVERLAP, assign_clusters, instances_by_min_size, mean_shift

BANDWIDTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
RADII = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)  # delta_d = 4: centres are >= 8 apart when trained
MIN_SIZES = (50, 200, 400, 600, 800, 1000)  # pixels; BBBC010 train worms have 605-3,000


@dataclass
class TuneResult:
    bandwidth: float
    cluster_radius: float
    min_size: int
    table: dict  # "bw,radius,min_size" -> {fold: {"avAP": .., "avAP_dsb": .., "objective": ..}}
    cv: dict  # fold -> {"chosen": (bw, radius, min_size), "scored_on_other_fold": {same three}}


def instances_from_cache(pts: torch.Tensor, centres: torch.Tensor, fg_idx: np.ndarray, overlap: np.ndarray,
                         radius: float, min_sizes: tuple[int, ...], shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """Instances per minimum size for one cluster radius from cached embeddings and mean-shift centres."""
    labels = assign_clusters(pts, centres, radius).numpy()
    return instances_by_min_size(labels, fg_idx, len(centres), overlap, min_sizes, shape)


@torch.no_grad()
def grid_search(model: UNet, data_dir: Path, min_sizes=MIN_SIZES, bandwidths=BANDWIDTHS, radii=RADII,
                progress: Callable[[str], None] | None = None, wells: list[str] | None = None) -> TuneResult:
    """Best (bandwidth, cluster radius, min size) on the test folds; ``wells`` limits the wells used."""
    test_wells = available_wells(data_dir, "test")[0]
    usable = set(test_wells) & set(wells or test_wells)
    folds = {f: [w for w in read_split(data_dir, f"test_fold{f}") if w in usable] for f in (1, 2)}
    if not folds[1] or not folds[2]:
        from .validation import InputError

        raise InputError(f"the grid search needs test wells in both folds; got {folds}")
    model.eval()
    min_sizes = tuple(min_sizes)
    grid = list(itertools.product(bandwidths, radii, min_sizes))
    scores: dict[tuple, dict[int, list]] = {k: {1: [], 2: []} for k in grid}
    for fold, wells in folds.items():
        for well in wells:
            if progress:
                progress(f"fold {fold} {well}")
            x = prepare_input(load_image(data_dir, well), model)
            emb, logits = next(forward_draws(model, x, 1))  # the mean network (no dropout)
            cls = logits.argmax(0)
            fg = (cls == FOREGROUND).numpy()
            pts = emb.permute(1, 2, 0)[cls == FOREGROUND]
            overlap = (cls == OVERLAP).numpy()
            gt = load_masks(data_dir, well)
            for b in bandwidths:
                centres = mean_shift(pts, b)
                for t in radii:
                    by_size = instances_from_cache(pts, centres, np.flatnonzero(fg), overlap, t, min_sizes, fg.shape)
                    for m, inst in by_size.items():
                        scores[(b, t, m)][fold].append(image_scores(inst, gt))
    table = {_key(k): {f: _fold_scores(v[f]) for f in (1, 2)} for k, v in scores.items()}
    cv = {}
    for f, other in ((1, 2), (2, 1)):
        best = max(grid, key=lambda k: table[_key(k)][f]["objective"])  # ties: the first, the smallest values
        cv[f] = {"chosen": best, "scored_on_other_fold": table[_key(best)][other]}
    n1, n2 = len(folds[1]), len(folds[2])
    overall = max(grid, key=lambda k: table[_key(k)][1]["objective"] * n1 + table[_key(k)][2]["objective"] * n2)
    return TuneResult(float(overall[0]), float(overall[1]), int(overall[2]), table, cv)


def _fold_scores(per_image: list[dict]) -> dict[str, float]:
    agg = aggregate(per_image)
    return {"avAP": agg["avAP"], "avAP_dsb": agg["avAP_dsb"], "objective": (agg["avAP"] + agg["avAP_dsb"]) / 2}


def _key(k: tuple) -> str:
    return ",".join(f"{v:g}" for v in k)
