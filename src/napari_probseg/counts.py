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
- ``evidence``: each instance weighed by its own evidence (``count_evidence``): merges
  (``merge_ratio`` x the median area, or three or more long skeleton end branches) count 2, instances
  below the cut count q or 1, ragged strips (long, low mean probability) and one-draw
  fragments 0; which rules apply and their thresholds are part of the calibration.

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

ESTIMATORS = ("binarised", "binarised_area", "expected", "expected_area", "draws", "evidence")
AREA_ESTIMATORS = ("binarised_area", "expected_area")
MERGE_RATIO = 1.6  # an instance this many times the median area counts as several worms
MERGE_RATIOS = (1.4, 1.5, 1.6, 1.8)  # the choices choose_calibration tries for the area estimators
MAX_MULTIPLICITIES = (2, 3, 0)  # ... and the caps (0: none)
# An instance whose skeleton has this many end branches or more counts 0: a worm has 2, a crossing of two 3-4, and
# no instance that held a worm had more than 8 in the predictions of the 50 BBBC010 train wells (eval/train-v4b,
# scripts/count_blob_ends.py); the ragged blobs of debris and shadow along a well's rim have 9-26 (well D11).
BLOB_ENDS = 9


@dataclass(frozen=True)
class Calibration:
    estimator: str = "expected"
    bias: float = 0.0  # added to the point estimate
    sigma0: float = 0.0  # extra error (worms) added in quadrature
    level: float = 0.9
    merge_ratio: float = MERGE_RATIO  # area estimators: an instance this many times the median is a merge
    max_multiplicity: int = 0  # area estimators: at most this many worms per instance (0: no cap)
    # the evidence estimator (count_evidence.evidence_weights; merge_ratio 0 switches the area rule off there)
    end_widths: float = 0.0  # an end branch this many median worm widths long counts as a worm's end (0: off)
    end_min_area: float = 0.0  # ... three such ends make a merge from this many times the median area
    sub_weight: str = "q"  # an instance below the binarisation cut counts its q ("q") or 1 ("one")
    ragged_probability: float = 0.0  # long instances with a lower mean probability count 0 (0: off)
    # rules added for issue 18 (count_evidence.evidence_weights; each off at its default)
    merge_probability: float = 0.0  # a large instance with a lower mean probability counts 2 (0: off)
    merge_probability_area: float = 1.2  # ... from this many times the median area
    end_max_probability: float = 0.0  # the end-branch rule only below this mean probability (0: always)
    thin_width: float = 0.0  # long instances narrower than this x the median width count 0 (0: off)
    faint_weight: str = "zero"  # instances with no p >= 0.5 pixel count 0 ("zero") or their mass ("mass")
    end_min_core: float = 0.0  # the end-branch rule only from this core_uncertain share (0: always)
    # not a calibrated choice but a fixed shape prior, on for every shape (BLOB_ENDS says why)
    blob_ends: int = BLOB_ENDS  # instances with this many skeleton end branches count 0 (0: off)

    def as_dict(self) -> dict:
        return asdict(self)


# Shipped for bbbc010-concrete v5: count_fit.choose_calibration on all 47 test wells (scripts/count_calibration.py on
# eval/v5/metrics.json, the release run); in-sample MAE 0.45, coverage 93.6%, width 2.3.  By the 2-fold protocol (each
# fold's choice scored on the other) MAE 0.62, coverage 79%: one fold chose sigma0 0 (docs/measurements.md).
DEFAULT_CALIBRATION = Calibration("evidence", bias=0.0, sigma0=0.65, level=0.9, merge_ratio=1.6, max_multiplicity=2,
                                  end_widths=1.2, end_min_area=1.1, sub_weight="one", ragged_probability=0.75,
                                  end_min_core=0.02)


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
    """Per-image count ingredients from a Prediction's arrays (JSON-friendly lists): q, binarised,
    area and each draw's count, plus each instance's evidence (``count_evidence.instance_evidence``)."""
    from .count_evidence import instance_evidence

    n = len(probabilities)
    flat_p = probabilities.reshape(n, int(np.prod(probabilities.shape[1:])))
    flat_b = instances.reshape(n, int(np.prod(instances.shape[1:])))
    q = flat_p.max(1) if n else np.zeros(0)
    binarised = flat_b.any(1) if n else np.zeros(0, bool)
    # area of what the instance would be at p >= 0.5 (sub-threshold instances have no binarised mask)
    area = (flat_p >= 0.5).sum(1) if n else np.zeros(0)
    return {"q": [round(float(v), 4) for v in q], "binarised": [bool(v) for v in binarised],
            "area": [int(v) for v in area], "draw_counts": [int(v) for v in draw_counts],
            **instance_evidence(probabilities)}


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
    if estimator == "evidence":
        return float(instance_weights(inp, cal or Calibration("evidence")).sum())
    from .validation import OptionError

    raise OptionError(f"unknown count estimator {estimator!r}; choose one of {ESTIMATORS}")


def instance_weights(inp: dict, cal: Calibration) -> np.ndarray:
    """How many worms each instance adds to the ``evidence`` count under ``cal``'s rules."""
    from .count_evidence import evidence_weights

    if "weights" in inp:  # a subset of an image's instances (subset_inputs)
        return np.asarray(inp["weights"], float)
    return evidence_weights(inp, repeated(inp), cal.merge_ratio, cal.end_widths, cal.end_min_area,
                            cal.sub_weight, cal.ragged_probability, cal.merge_probability,
                            cal.merge_probability_area, cal.end_max_probability, cal.thin_width, cal.faint_weight,
                            cal.end_min_core, cal.blob_ends)


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


def subset_inputs(inp: dict, keep, cal: Calibration | None = None) -> dict:
    """The ingredients of some instances only (e.g. one phenotype); per-draw counts do not split.
    Under an ``evidence`` calibration the instances keep the weights they have in the whole image
    (their medians are the image's, not the subset's)."""
    keep = np.asarray(keep, bool)
    out = {k: [v for v, m in zip(inp[k], keep) if m] for k in ("binarised", "area")}
    if cal is not None and cal.estimator == "evidence":
        out["weights"] = [float(v) for v in instance_weights(inp, cal)[keep]]
    return {"q": [float(v) for v in repeated(inp)[keep]], **out, "draw_counts": []}


def phenotype_counts(inp: dict, is_first, names: tuple[str, str] = ("straight", "curved"),
                     cal: Calibration = DEFAULT_CALIBRATION) -> dict[str, CountResult]:
    """Counts with intervals of two classes of instances (``is_first``: one flag per instance).

    The per-draw spread cannot be split by class, so each class's interval uses its
    Poisson-binomial spread and the calibration's bias and extra error scaled by the
    class's share of the expected count (of the evidence count under an ``evidence``
    calibration; an approximation: not calibrated per class).
    """
    first = np.asarray(is_first, bool)
    q = repeated(inp) if cal.estimator != "evidence" else instance_weights(inp, cal)
    total = q.sum()
    est = cal.estimator if cal.estimator != "draws" else "expected"
    out = {}
    for name, keep in zip(names, (first, ~first)):
        share = float(q[keep].sum() / total) if total > 0 else 0.0
        sub = replace(cal, estimator=est, bias=cal.bias * share, sigma0=cal.sigma0 * float(np.sqrt(share)))
        out[name] = count_interval(subset_inputs(inp, keep, cal), sub)
    return out


def count_summary(pred, table: dict) -> dict:
    """A well's count with its interval and the medians of its worm table (a summary.csv row); ``pred``
    dense or in box form (both give ``count_inputs()``)."""
    from .measurements import summarise

    res = count_interval(pred.count_inputs())
    s = summarise(table)
    s.pop("worms")
    return {"count": res.count, "count_low": res.low, "count_high": res.high, "count_level": res.level, **s}
