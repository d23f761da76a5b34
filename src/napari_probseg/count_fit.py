"""Calibrating the count on labelled wells: choose the estimator and its rules, fit the bias
and the extra error, and score it by the 2-fold protocol (docs/measurements.md).

Every figure reported is held out: ``cross_fit`` chooses and calibrates on one fold of the
test wells and applies that to the other; ``choose_calibration`` on all wells gives what
``counts.DEFAULT_CALIBRATION`` ships (scripts/count_calibration.py prints it).  No Qt, no napari.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import product

import numpy as np

from .count_evidence import has_evidence
from .counts import (
    AREA_ESTIMATORS,
    DEFAULT_CALIBRATION,
    ESTIMATORS,
    MAX_MULTIPLICITIES,
    MERGE_RATIO,
    MERGE_RATIOS,
    Calibration,
    CountResult,
    count_interval,
    point_estimate,
)

# the evidence estimator's grid: area rule (0: off), end-branch rule (median widths; 0: off) and the
# least area for it, weight of sub-threshold instances, ragged rule (0: off)
EVIDENCE_RATIOS = (1.4, 1.5, 1.6, 0.0)
END_WIDTHS = (0.0, 1.2, 1.8, 3.0)
END_MIN_AREAS = (0.0, 1.1)
SUB_WEIGHTS = ("q", "one")
RAGGED = (0.75, 0.0)  # on first: where no well of the fold has a ragged instance the two tie (D11, docs)
# the end-branch rule only where this share of the instance's core was missed by some draw (0: always);
# tried after the plain grid, so that a tie keeps the rule ungated (issue 18, docs/measurements.md)
END_MIN_CORES = (0.02, 0.05, 0.1)


def fit_calibration(inputs: list[dict], truth: list[int], estimator: str | Calibration, level: float = 0.9,
                    merge_ratio: float = MERGE_RATIO, max_multiplicity: int = 0) -> Calibration:
    """``bias``: the median residual (truth - estimate) on these wells; ``sigma0``: the smallest
    extra error (0.05 steps) whose intervals hold the true count in at least ``conformal_share``
    of these wells when each well's bias is the median residual of the *other* wells
    (leave-one-out, so sigma0 also covers the uncertainty of the bias itself).  ``estimator``
    may be a whole Calibration (its rules kept, bias and sigma0 refitted)."""
    shape = replace(estimator, level=level) if isinstance(estimator, Calibration) else \
        Calibration(estimator, 0.0, 0.0, level, merge_ratio, max_multiplicity)
    need = conformal_share(len(inputs), level)
    grid = np.round(np.arange(0, 5.001, 0.05), 2)
    lo, hi = 0, len(grid) - 1  # coverage only grows with sigma0: bisect for the first grid value that covers
    while lo < hi:
        mid = (lo + hi) // 2
        if _coverage_of(_loo_results(inputs, truth, replace(shape, sigma0=float(grid[mid]))), truth) >= need:
            hi = mid
        else:
            lo = mid + 1
    est = np.array([point_estimate(i, shape.estimator, shape) for i in inputs])
    bias = round(float(np.median(np.asarray(truth) - est)), 2) if len(est) else 0.0
    return replace(shape, bias=bias, sigma0=round(float(grid[lo]), 2))


def conformal_share(n: int, level: float) -> float:
    """Share of ``n`` calibration wells the intervals must hold so that a new well's holds its
    count with probability ``level``: ceil((n + 1) level) / n (split-conformal finite-sample
    rule; 22 wells at 90%: 21 of 22).  Why: a sigma0 fitted to cover exactly 90% of 22-25 wells
    covered 79% of the other fold's (one fold's sigma0 came out 0, docs/measurements.md)."""
    return min(1.0, float(np.ceil((n + 1) * level)) / n) if n else level


def _loo_results(inputs: list[dict], truth: list[int], cal: Calibration) -> list[CountResult]:
    """Each well's interval under ``cal`` (its sigma0 and rules) with the bias fitted on the other wells."""
    resid = np.asarray(truth, float) - np.array([point_estimate(i, cal.estimator, cal) for i in inputs])
    out = []
    for k, inp in enumerate(inputs):
        others = np.delete(resid, k)
        bias = float(np.median(others)) if len(others) else 0.0
        out.append(count_interval(inp, replace(cal, bias=bias)))
    return out


def loo_error(inputs: list[dict], truth: list[int], shape: Calibration) -> float:
    """Leave-one-out MAE of the rounded count (bias: median residual of the other wells), plus
    1e-3 x the unrounded one, so that shapes tied on the rounded MAE are told apart."""
    t = np.asarray(truth, float)
    est = np.array([point_estimate(i, shape.estimator, shape) for i in inputs])
    resid = t - est
    bias = np.array([np.median(np.delete(resid, k)) if len(resid) > 1 else 0.0 for k in range(len(resid))])
    mean = np.maximum(est + bias, 0.0)
    return float(np.mean(np.abs(np.round(mean) - t)) + 1e-3 * np.mean(np.abs(mean - t))) if len(t) else 0.0


def count_errors(results: list[CountResult], truth: list[int]) -> dict:
    """MAE, bias (mean of predicted - true), exact share, coverage and mean interval width."""
    c = np.array([r.count for r in results], float)
    t = np.asarray(truth, float)
    if len(c) == 0:
        return {"mae": 0.0, "bias": 0.0, "exact": 0.0, "coverage": 0.0, "mean_width": 0.0, "wells": 0}
    return {"mae": float(np.abs(c - t).mean()), "bias": float((c - t).mean()), "exact": float((c == t).mean()),
            "coverage": _coverage_of(results, truth), "mean_width": float(np.mean([r.high - r.low for r in results])),
            "wells": len(c)}


def _coverage_of(results: list[CountResult], truth: list[int]) -> float:
    return float(np.mean([r.low <= t <= r.high for r, t in zip(results, truth)]))


def candidate_shapes(level: float = 0.9, evidence: bool = True) -> list[Calibration]:
    """Every estimator, the area ones with each merge ratio and cap, the evidence one with each
    combination of its rules (bias and sigma0 still to fit), then the evidence shapes with an
    end-branch rule again with each core gate (``END_MIN_CORES``); ``evidence`` False leaves the
    evidence estimator out (inputs saved before the evidence existed)."""
    out, gated = [], []
    for est in ESTIMATORS:
        if est in AREA_ESTIMATORS:
            out += [Calibration(est, 0.0, 0.0, level, r, m) for r, m in product(MERGE_RATIOS, MAX_MULTIPLICITIES)]
        elif est == "evidence":
            if not evidence:
                continue
            for r, e, a, s, g in product(EVIDENCE_RATIOS, END_WIDTHS, END_MIN_AREAS, SUB_WEIGHTS, RAGGED):
                if e == 0 and a > 0:
                    continue  # the least area only matters to the end-branch rule
                out.append(Calibration(est, 0.0, 0.0, level, r, 2, e, a, s, g))
                if e > 0:
                    gated += [replace(out[-1], end_min_core=c) for c in END_MIN_CORES]
        else:
            out.append(Calibration(est, 0.0, 0.0, level, MERGE_RATIO, 0))
    return out + gated


def choose_calibration(inputs: list[dict], truth: list[int], level: float = 0.9) -> Calibration:
    """The shape (estimator and its rules) with the lowest ``loo_error`` (ties: the first of
    ``candidate_shapes``), then its bias and sigma0 fitted (``fit_calibration``)."""
    shapes = candidate_shapes(level, evidence=all(has_evidence(i) for i in inputs))
    errors = [loo_error(inputs, truth, s) for s in shapes]
    return fit_calibration(inputs, truth, shapes[int(np.argmin(errors))], level)


def cross_fit(inputs: dict[str, dict], truth: dict[str, int], folds: list[list[str]], level: float = 0.9) -> dict:
    """The 2-fold protocol: on each fold choose the estimator and its rules and calibrate them;
    apply that to the other fold.  Returns per-well results (each from the calibration fitted
    on the other fold) and the calibrations."""
    out, chosen = {}, []
    for k, fit_wells in enumerate(folds):
        apply_wells = [w for f in folds[:k] + folds[k + 1:] for w in f]
        fit_wells = [w for w in fit_wells if w in inputs]
        cal = choose_calibration([inputs[w] for w in fit_wells], [truth[w] for w in fit_wells], level)
        chosen.append(cal.as_dict())
        for w in apply_wells:
            if w in inputs:
                out[w] = count_interval(inputs[w], cal)
    return {"results": out, "calibrations": chosen}


def evaluate_counts(inputs: dict[str, dict], truth: dict[str, int], folds: list[list[str]] | None,
                    cal: Calibration = DEFAULT_CALIBRATION) -> dict:
    """The ``counts`` section of metrics.json.

    Headline figures use the 2-fold protocol (each well's interval comes from the estimator
    and calibration chosen on the other fold); ``shipped`` scores ``cal`` on the same wells
    (in-sample wherever ``cal`` was chosen on them); ``binarised`` is the plain count of
    binarised instances, the count before this module.
    """
    wells = sorted(inputs)
    t = [truth[w] for w in wells]
    shipped = {w: count_interval(inputs[w], cal) for w in wells}
    raw = [CountResult(int(point_estimate(inputs[w], "binarised")), 0, 0, cal.level, 0.0) for w in wells]
    out = {"level": cal.level, "shipped_calibration": cal.as_dict(),
           "shipped": count_errors([shipped[w] for w in wells], t),
           "binarised": {k: v for k, v in count_errors(raw, t).items() if k in ("mae", "bias", "exact")}}
    usable = folds is not None and all(any(w in inputs for w in f) for f in folds)
    if usable:
        cv = cross_fit(inputs, truth, folds, cal.level)
        res = cv["results"]
        out.update(protocol="2-fold (test_fold1 / test_fold2): estimator and calibration chosen on one fold, "
                            "applied to the other", calibrations=cv["calibrations"])
    else:
        res = shipped
        out.update(protocol="shipped calibration (no fold files for these wells)", calibrations=[])
    scored = [w for w in wells if w in res]
    out.update(count_errors([res[w] for w in scored], [truth[w] for w in scored]))
    out["per_well"] = {w: {"count": res[w].count, "low": res[w].low, "high": res[w].high, "true": truth[w],
                           "mean": res[w].mean, "binarised": int(point_estimate(inputs[w], "binarised"))}
                       for w in scored}
    out["inputs"] = inputs
    return out
