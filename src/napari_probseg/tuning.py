"""Mean-shift bandwidth / clustering threshold by grid search with 2-fold CV (section 2.2).

As in the paper, the search runs on the two folds of the *test* wells: parameters chosen
on one fold are scored on the other.  To keep it cheap, each well is passed once through
the network without dropout (the mean network) and its embeddings are cached; mean-shift
runs once per bandwidth, and only the assignment is repeated per threshold.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .data import available_wells, load_masks, load_image, read_split
from .inference import forward_draws, prepare_input
from .metrics import aggregate, image_scores
from .model import UNet
from .postprocess import FOREGROUND, OVERLAP, assign_clusters, clusters_to_instances, mean_shift

BANDWIDTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
THRESHOLDS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)  # delta_d = 4: centres are >= 8 apart when trained


@dataclass
class TuneResult:
    bandwidth: float
    threshold: float
    table: dict  # "bw,thr" -> {fold: avAP}
    cv: dict  # fold -> {"chosen": (bw, thr), "scored_on_other_fold": avAP}


def instances_from_cache(pts: torch.Tensor, centres: torch.Tensor, fg_idx: np.ndarray, overlap: np.ndarray,
                         threshold: float, min_size: int, shape: tuple[int, int]) -> np.ndarray:
    """Instances for one threshold from cached embeddings and mean-shift centres."""
    labels = assign_clusters(pts, centres, threshold).numpy()
    return clusters_to_instances(labels, fg_idx, len(centres), overlap, min_size, shape)


@torch.no_grad()
def grid_search(model: UNet, data_dir: Path, min_size: int = 50, bandwidths=BANDWIDTHS, thresholds=THRESHOLDS,
                progress: Callable[[str], None] | None = None) -> TuneResult:
    folds = {f: [w for w in read_split(data_dir, f"test_fold{f}") if w in set(available_wells(data_dir, "test")[0])]
             for f in (1, 2)}
    model.eval()
    scores: dict[tuple, dict[int, list]] = {(b, t): {1: [], 2: []} for b, t in itertools.product(bandwidths, thresholds)}
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
                for t in thresholds:
                    inst = instances_from_cache(pts, centres, np.flatnonzero(fg), overlap, t, min_size, fg.shape)
                    scores[(b, t)][fold].append(image_scores(inst, gt))
    table = {f"{b},{t}": {f: aggregate(v[f])["avAP"] for f in (1, 2)} for (b, t), v in scores.items()}
    cv = {}
    for f, other in ((1, 2), (2, 1)):
        best = max(scores, key=lambda k: table[f"{k[0]},{k[1]}"][f])
        cv[f] = {"chosen": best, "scored_on_other_fold": table[f"{best[0]},{best[1]}"][other]}
    n1, n2 = len(folds[1]), len(folds[2])
    overall = max(scores, key=lambda k: (table[f"{k[0]},{k[1]}"][1] * n1 + table[f"{k[0]},{k[1]}"][2] * n2))
    return TuneResult(float(overall[0]), float(overall[1]), table, cv)
