"""Fitting the review list's ranking (``review.ReviewConfig`` weights and default-list cut) by 2-fold CV.

Why a protocol and not hand-picked numbers: the ranking must be refitted whenever the model
changes, and figures must come from wells the rule was not fitted on.  The protocol
(``scripts/review_fit.py`` runs it on the predictions saved by ``probseg evaluate``):

1. per well, the candidates (``review_candidates``) and the ground-truth errors
   (``review_metrics.find_errors``); a candidate is *positive* when its point lies within
   ``review_metrics.RADIUS`` px of an error (what "on an error" means in the scores);
2. on one fold: a logistic regression (scikit-learn, L2, standardised features) of
   positive against features (all of them, or only the disagreement/size ones of
   ``review_features.BASE_FEATURES``: ``scripts/review_fit.py`` compares both), then the
   default-list cut ``min_score``: the one that maximises found by top 5 + found by top 10 + share of the top 5 on an error on that
   fold, with at most ``max_items`` items per well on average;
3. that rule scored on the other fold; both ways; the held-out counts are pooled.

The shipped weights are the same fit on both folds together (its figures there are in-sample).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .masks import nonempty
from .review import ReviewConfig, feature_matrix, spot_of
from .review_candidates import candidates
from .review_features import FEATURES
from .review_metrics import ON_ERROR_K, RADIUS, TOP_KS, find_errors

CUTS = tuple(float(c) for c in range(0, 100, 2))


@dataclass
class WellData:
    """One well's candidates as numbers: features [C,F], hits [E,C] (candidate c near error e)."""

    X: np.ndarray
    hits: np.ndarray
    mass: np.ndarray  # the candidates' disputed mass (the old ranking)
    points: np.ndarray | None = None  # [C,2] y, x: what folding by spot needs (None: no folding)

    @property
    def positive(self) -> np.ndarray:
        return self.hits.any(0)


def well_data(prob: np.ndarray, threshold: float, gt: np.ndarray, cfg: ReviewConfig | None = None) -> WellData:
    """Candidates and errors of one well: probabilities [N,H,W] of every instance, gt [M,H,W]."""
    cfg = cfg or ReviewConfig()
    prob = np.asarray(prob, np.float32)
    cands = candidates(prob, threshold, cfg) if len(prob) else []
    inst = prob >= threshold
    errors = find_errors(inst[nonempty(inst)], np.asarray(gt, bool))
    near = [e.near(RADIUS) for e in errors]
    hits = np.array([[nr[c.y, c.x] for c in cands] for nr in near], bool).reshape(len(errors), len(cands))
    points = np.array([(c.y, c.x) for c in cands], float).reshape(len(cands), 2)
    return WellData(feature_matrix(cands), hits, np.array([c.mass for c in cands], float), points)


def _fold(order: np.ndarray, points: np.ndarray | None, spot_px: float) -> np.ndarray:
    """``order`` without the candidates within ``spot_px`` of a better one (``review.fold_same_spot``:
    the better item keeps its point, so for finding errors a folded candidate is simply gone)."""
    if spot_px <= 0 or points is None:
        return order
    kept: list[int] = []
    for i in order:
        if spot_of(tuple(points[i]), [tuple(points[k]) for k in kept], spot_px) is None:
            kept.append(int(i))
    return np.array(kept, int)


def score_order(data: list[WellData], scores: list[np.ndarray], min_score: float, spot_px: float = 0.0) -> dict:
    """The list scores of ``review_metrics.summarise`` for candidates ranked by ``scores``, cut at
    ``min_score`` and folded by spot (``spot_px``, as ``review.ranked_items``)."""
    n_err = found = n_top = on_err = entries = 0
    found_k = {k: 0 for k in TOP_KS}
    for d, s in zip(data, scores):
        order = np.argsort(-s, kind="stable")
        order = _fold(order[s[order] >= min_score], d.points, spot_px)
        h = d.hits[:, order]
        first = np.where(h.any(1), h.argmax(1) if h.size else 0, np.iinfo(np.int64).max)
        for k in TOP_KS:
            found_k[k] += int((first < k).sum())
        n_err += len(d.hits)
        top = h[:, :ON_ERROR_K].any(0)
        n_top += len(top)
        on_err += int(top.sum())
        entries += len(order)
        found += int(h.any(1).sum())
    return {"wells": len(data), "errors": n_err, "entries_per_well": entries / max(len(data), 1),
            "found_fraction": {str(k): v / n_err if n_err else float("nan") for k, v in found_k.items()},
            "top_on_error_fraction": on_err / n_top if n_top else float("nan"),
            "found_by_list": found / n_err if n_err else float("nan")}


def objective(s: dict) -> float:
    return s["found_fraction"]["5"] + s["found_fraction"]["10"] + s["top_on_error_fraction"]


def fit_weights(data: list[WellData], c: float = 1.0,
                use: tuple[str, ...] | None = None) -> tuple[tuple[float, ...], float]:
    """Logistic weights (raw feature units) and intercept for positive-vs-negative candidates.

    ``use``: the features the fit may weigh (default all of ``FEATURES``); the others get weight 0.
    """
    from sklearn.linear_model import LogisticRegression

    cols = np.array([f in (use or FEATURES) for f in FEATURES])
    X = np.concatenate([d.X for d in data])[:, cols]
    y = np.concatenate([d.positive for d in data])
    if len(np.unique(y)) < 2:
        raise ValueError("the fit needs candidates both on and off errors")
    mu, sd = X.mean(0), X.std(0)
    sd[sd == 0] = 1.0
    lr = LogisticRegression(C=c, max_iter=2000).fit((X - mu) / sd, y)
    w = np.zeros(len(FEATURES))
    w[cols] = lr.coef_[0] / sd
    return tuple(round(float(v), 5) for v in w), round(float(lr.intercept_[0] - (w[cols] * mu).sum()), 5)


def choose_cut(data: list[WellData], cfg: ReviewConfig, max_items: float = 12.0) -> float:
    """The ``min_score`` with the best ``objective`` on these wells, at most ``max_items`` per well."""
    scores = [score_candidates_x(d, cfg) for d in data]
    best = None
    for cut in CUTS:
        s = score_order(data, scores, cut, cfg.spot_px)
        if s["entries_per_well"] <= max_items and (best is None or objective(s) > best[0] + 1e-12):
            best = (objective(s), cut)
    return best[1] if best else CUTS[-1]


def score_candidates_x(d: WellData, cfg: ReviewConfig) -> np.ndarray:
    """``review.score_candidates`` from the stored features (no geometry recomputed)."""
    if cfg.scoring == "mass":
        return d.mass
    z = cfg.intercept + d.X @ np.asarray(cfg.weights, float)
    return 100.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_rule(data: list[WellData], base: ReviewConfig | None = None, c: float = 1.0,
             max_items: float = 12.0, use: tuple[str, ...] | None = None) -> ReviewConfig:
    """Weights (over the features ``use``) and cut fitted on these wells (steps 2 of the module text)."""
    base = base or ReviewConfig()
    if base.scoring == "model":
        w, b = fit_weights(data, c, use)
        base = replace(base, weights=w, intercept=b)
    return replace(base, min_score=choose_cut(data, base, max_items))


def cross_validate(data: dict[str, WellData], folds: list[list[str]], base: ReviewConfig | None = None,
                   c: float = 1.0, max_items: float = 12.0, use: tuple[str, ...] | None = None) -> dict:
    """Fit on each fold, score on the other; the held-out wells pooled, and each fold's rule."""
    held, scores, cuts, rules = [], [], [], []
    for k, fit_wells in enumerate(folds):
        rule = fit_rule([data[w] for w in fit_wells if w in data], base, c, max_items, use)
        rules.append(rule)
        for w in (w for other in folds[:k] + folds[k + 1:] for w in other if w in data):
            held.append(data[w])
            scores.append(score_candidates_x(data[w], rule))
            cuts.append(rule.min_score)
    return {"held_out": _pooled(held, scores, cuts, (base or ReviewConfig()).spot_px), "rules": rules}


def _pooled(data: list[WellData], scores: list[np.ndarray], cuts: list[float], spot_px: float = 0.0) -> dict:
    """``score_order`` with a cut per well (pooled held-out figures)."""
    masked = [np.where(s >= c, s, -np.inf) for s, c in zip(scores, cuts)]
    return score_order(data, masked, -1e300, spot_px)
