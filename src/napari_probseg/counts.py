"""Worm counts with a credible interval, from the MC draws of one image.

Ingredients (``count_inputs``): every agglomerated instance's existence probability
(its highest pixel probability: the share of draws that put it there), whether it
survives binarisation, its area, and each draw's instance count.  Point estimates:

- ``binarised``: the number of binarised instances (what the label image shows);
- ``binarised_area``: the same, but an instance at least ``merge_ratio`` times the
  image's median instance area counts as round(area / median) worms (merged worms), at
  most ``max_multiplicity`` (0: no cap); both are part of the calibration, chosen on
  labelled wells with the estimator (one 10,000 px blob of debris must not count as 9 worms);
- ``expected``: the sum of existence probabilities (the mean of a Poisson-binomial) of the
  instances seen in at least two draws (an instance of one draw only is mostly a fragment
  of a draw that shattered a worm);
- ``expected_area``: ``expected`` with the area multiplicity of ``binarised_area``;
- ``draws``: the median of the per-draw instance counts.

The interval is Gaussian around the bias-corrected point estimate with variance
``sum q(1-q)`` (Poisson-binomial) + the robust variance of the per-draw counts
((1.4826 MAD)^2: one draw that shatters a worm into fragments does not blow it up) + ``sigma0**2``,
an extra error term; ``bias`` and ``sigma0`` are calibrated on labelled wells
(``fit_calibration``; the shipped values and how they were chosen: docs/measurements.md).
The interval holds the integers within ``z * sd`` of the corrected estimate.
No Qt, no napari.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.stats import norm

ESTIMATORS = ("binarised", "binarised_area", "expected", "expected_area", "draws")
AREA_ESTIMATORS = ("binarised_area", "expected_area")
MERGE_RATIO = 1.6  # an instance this many times the median area counts as several worms
MERGE_RATIOS = (1.4, 1.5, 1.6, 1.8)  # the choices choose_calibration tries for the area estimators
MAX_MULTIPLICITIES = (2, 3, 0)  # ... and the caps (0: none)


@dataclass(frozen=True)
class Calibration:
    estimator: str = "expected"
    bias: float = 0.0  # added to the point estimate
    sigma0: float = 0.0  # extra error (worms) added in quadrature
    level: float = 0.9
    merge_ratio: float = MERGE_RATIO  # area estimators: an instance this many times the median is a merge
    max_multiplicity: int = 0  # area estimators: at most this many worms per instance (0: no cap)

    def as_dict(self) -> dict:
        return asdict(self)


# Shipped for bbbc010-concrete v4: choose_calibration on all 47 test wells (scripts/count_calibration.py on
# eval/bbbc010-concrete/metrics.json); the folds chose expected_area (ratio 1.5, cap 2, bias +0.38, sigma0 0.40)
# and binarised (ratio 1.6, no cap, bias 0, sigma0 0.75): 2-fold MAE 0.98, coverage 87%, width 2.2 (docs/measurements.md).
DEFAULT_CALIBRATION = Calibration("expected_area", bias=0.25, sigma0=0.9, level=0.9, merge_ratio=1.5, max_multiplicity=2)


@dataclass
class CountResult:
    count: int
    low: int
    high: int
    level: float
    mean: float  # the corrected real-valued estimate

    def text(self, what: str = "worms") -> str:
        return f"{self.count} {what} ({self.low}-{self.high}, {round(100 * self.level)}%)"


def count_inputs(probabilities: np.ndarray, instances: np.ndarray, draw_counts) -> dict:
    """Per-image count ingredients from a Prediction's arrays (JSON-friendly lists)."""
    n = len(probabilities)
    flat_p = probabilities.reshape(n, int(np.prod(probabilities.shape[1:])))
    flat_b = instances.reshape(n, int(np.prod(instances.shape[1:])))
    q = flat_p.max(1) if n else np.zeros(0)
    binarised = flat_b.any(1) if n else np.zeros(0, bool)
    # area of what the instance would be at p >= 0.5 (sub-threshold instances have no binarised mask)
    area = (flat_p >= 0.5).sum(1) if n else np.zeros(0)
    return {"q": [round(float(v), 4) for v in q], "binarised": [bool(v) for v in binarised],
            "area": [int(v) for v in area], "draw_counts": [int(v) for v in draw_counts]}


def worm_multiplicity(area, binarised, merge_ratio: float = MERGE_RATIO, max_multiplicity: int = 0) -> np.ndarray:
    """How many worms each instance stands for: round(area / median binarised area), at least 2,
    from ``merge_ratio`` on (else 1), capped at ``max_multiplicity`` (0: no cap)."""
    area = np.asarray(area, dtype=float)
    ref = area[np.asarray(binarised, bool)]
    if len(ref) == 0 or np.median(ref) <= 0:
        return np.ones(len(area))
    ratio = area / np.median(ref)
    mult = np.where(ratio >= merge_ratio, np.maximum(np.round(ratio), 2), 1.0)
    return np.minimum(mult, max_multiplicity) if max_multiplicity > 0 else mult


def repeated(inp: dict) -> np.ndarray:
    """Existence probabilities, with those of instances seen in one draw only set to 0."""
    q = np.asarray(inp["q"], dtype=float)
    t = max(len(inp["draw_counts"]), 1)
    return np.where(q > 1.5 / t, q, 0.0) if t > 1 else q


def point_estimate(inp: dict, estimator: str, cal: Calibration | None = None) -> float:
    """The uncorrected count by ``estimator``; ``cal`` gives the area estimators' merge ratio and cap."""
    q = repeated(inp)
    ratio, cap = (cal.merge_ratio, cal.max_multiplicity) if cal is not None else (MERGE_RATIO, 0)
    if estimator == "binarised":
        return float(np.sum(inp["binarised"]))
    if estimator == "expected":
        return float(q.sum())
    if estimator == "binarised_area":
        mult = worm_multiplicity(inp["area"], inp["binarised"], ratio, cap)
        return float(mult[np.asarray(inp["binarised"], bool)].sum())
    if estimator == "expected_area":
        return float((q * worm_multiplicity(inp["area"], inp["binarised"], ratio, cap)).sum())
    if estimator == "draws":
        return float(np.median(inp["draw_counts"])) if len(inp["draw_counts"]) else 0.0
    from .validation import OptionError

    raise OptionError(f"unknown count estimator {estimator!r}; choose one of {ESTIMATORS}")


def spread(inp: dict) -> float:
    """Standard deviation of the count from the draws alone (Poisson-binomial + per-draw counts)."""
    q = repeated(inp)
    draws = np.asarray(inp["draw_counts"], dtype=float)
    mad = float(np.median(np.abs(draws - np.median(draws)))) if len(draws) else 0.0
    var = float((q * (1 - q)).sum()) + (1.4826 * mad) ** 2
    return float(np.sqrt(var))


def count_interval(inp: dict, cal: Calibration = DEFAULT_CALIBRATION) -> CountResult:
    """Count with its ``cal.level`` credible interval; zero instances give 0 (0-k)."""
    mean = max(point_estimate(inp, cal.estimator, cal) + cal.bias, 0.0)
    sd = float(np.hypot(spread(inp), cal.sigma0))
    z = float(norm.ppf(0.5 + cal.level / 2))
    count = int(round(mean))
    low = max(int(np.ceil(mean - z * sd - 1e-9)), 0)
    high = int(np.floor(mean + z * sd + 1e-9))
    return CountResult(count, min(low, count), max(high, count), cal.level, round(mean, 3))


def fit_calibration(inputs: list[dict], truth: list[int], estimator: str, level: float = 0.9,
                    merge_ratio: float = MERGE_RATIO, max_multiplicity: int = 0) -> Calibration:
    """``bias``: the median residual (truth - estimate) on these wells; ``sigma0``: the smallest
    extra error (0.05 steps) whose intervals hold the true count in at least ``level`` of these
    wells when each well's bias is the median residual of the *other* wells (leave-one-out,
    so sigma0 also covers the uncertainty of the bias itself)."""
    shape = Calibration(estimator, 0.0, 0.0, level, merge_ratio, max_multiplicity)
    grid = np.round(np.arange(0, 5.001, 0.05), 2)
    lo, hi = 0, len(grid) - 1  # coverage only grows with sigma0: bisect for the first grid value that covers
    while lo < hi:
        mid = (lo + hi) // 2
        if _coverage_of(_loo_results(inputs, truth, replace(shape, sigma0=float(grid[mid]))), truth) >= level:
            hi = mid
        else:
            lo = mid + 1
    s0 = grid[lo]
    est = np.array([point_estimate(i, estimator, shape) for i in inputs])
    bias = round(float(np.median(np.asarray(truth) - est)), 2) if len(est) else 0.0
    return replace(shape, bias=bias, sigma0=round(float(s0), 2))


def _loo_results(inputs: list[dict], truth: list[int], cal: Calibration) -> list[CountResult]:
    """Each well's interval under ``cal`` (its sigma0, ratio, cap) with the bias fitted on the other wells."""
    resid = np.asarray(truth, float) - np.array([point_estimate(i, cal.estimator, cal) for i in inputs])
    out = []
    for k, inp in enumerate(inputs):
        others = np.delete(resid, k)
        bias = float(np.median(others)) if len(others) else 0.0
        out.append(count_interval(inp, replace(cal, bias=bias)))
    return out


def _coverage(inputs: list[dict], truth: list[int], cal: Calibration) -> float:
    hits = [r.low <= t <= r.high for r, t in zip((count_interval(i, cal) for i in inputs), truth)]
    return float(np.mean(hits)) if hits else 0.0


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


def cross_fit(inputs: dict[str, dict], truth: dict[str, int], folds: list[list[str]], level: float = 0.9) -> dict:
    """The 2-fold protocol: on each fold choose the estimator (lowest MAE after its bias
    correction) and calibrate it; apply that to the other fold.  Returns per-well results
    (each from the calibration fitted on the other fold) and the calibrations."""
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


def candidate_shapes(level: float = 0.9) -> list[Calibration]:
    """Every estimator, the area ones with each merge ratio and cap (bias and sigma0 still to fit)."""
    out = []
    for est in ESTIMATORS:
        grid = [(r, m) for r in MERGE_RATIOS for m in MAX_MULTIPLICITIES] if est in AREA_ESTIMATORS else \
            [(MERGE_RATIO, 0)]
        out += [Calibration(est, 0.0, 0.0, level, r, m) for r, m in grid]
    return out


def choose_calibration(inputs: list[dict], truth: list[int], level: float = 0.9) -> Calibration:
    """The estimator (and, for the area ones, merge ratio and cap) with the lowest leave-one-out
    MAE (bias fitted on the other wells; ties: the first of ``candidate_shapes``), calibrated."""
    best = None
    for shape in candidate_shapes(level):
        cal = fit_calibration(inputs, truth, shape.estimator, level, shape.merge_ratio, shape.max_multiplicity)
        mae = count_errors(_loo_results(inputs, truth, cal), truth)["mae"]
        if best is None or mae < best[0] - 1e-9:
            best = (mae, cal)
    return best[1]


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


def subset_inputs(inp: dict, keep) -> dict:
    """The ingredients of some instances only (e.g. one phenotype); per-draw counts do not split."""
    keep = np.asarray(keep, bool)
    out = {k: [v for v, m in zip(inp[k], keep) if m] for k in ("binarised", "area")}
    return {"q": [float(v) for v in repeated(inp)[keep]], **out, "draw_counts": []}


def phenotype_counts(inp: dict, is_first, names: tuple[str, str] = ("straight", "curved"),
                     cal: Calibration = DEFAULT_CALIBRATION) -> dict[str, CountResult]:
    """Counts with intervals of two classes of instances (``is_first``: one flag per instance).

    The per-draw spread cannot be split by class, so each class's interval uses its
    Poisson-binomial spread and the calibration's bias and extra error scaled by the
    class's share of the expected count (an approximation: not calibrated per class).
    """
    first = np.asarray(is_first, bool)
    q = repeated(inp)
    total = q.sum()
    est = cal.estimator if cal.estimator != "draws" else "expected"
    out = {}
    for name, keep in zip(names, (first, ~first)):
        share = float(q[keep].sum() / total) if total > 0 else 0.0
        sub = replace(cal, estimator=est, bias=cal.bias * share, sigma0=cal.sigma0 * float(np.sqrt(share)))
        out[name] = count_interval(subset_inputs(inp, keep), sub)
    return out


def count_summary(pred, table: dict) -> dict:
    """A well's count with its interval and the medians of its worm table (a summary.csv row)."""
    from .measurements import summarise

    res = count_interval(count_inputs(pred.probabilities, pred.instances, pred.draw_counts))
    s = summarise(table)
    s.pop("worms")
    return {"count": res.count, "count_low": res.low, "count_high": res.high, "count_level": res.level, **s}
