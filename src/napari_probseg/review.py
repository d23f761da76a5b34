"""The review list: a short ranked list of suspected errors instead of hundreds of entropy patches.

Why: the paper's 4x4 uncertainty peaks (``inference.uncertainty_peaks``) put one entry on
every local entropy maximum, so one uncertain worm fills many entries and a typical BBBC010
well lists ~200 of them for ~4 real errors.  Here the uncertainty is grouped into *review
items*, one per suspected error (``review_candidates``: worm-wide disputed regions, disputed
outlines, merged when they name the same instance; one per worm in a clump of more than
``max_group``), and each item is scored either by its disputed mass (``scoring="mass"``,
~pixels in full dispute) or by a small logistic model over its features (``scoring="model"``,
``review_features``: disputed mass, size, skeleton and expected IoU against the typical worm,
contact, existence probability...; the score is then the estimated chance in percent of lying on a
real error).  Which scoring, its weights and the default-list cut are chosen by the 2-fold
protocol of docs/review.md (``review_fit``, ``scripts/review_fit.py``); items with
``score >= min_score`` form the default list, the rest stay available ("show all").

The kind (what is suspected) and the suggested fix follow from the instances involved; see
``KINDS`` and docs/review.md.  Everything here is numpy/scipy only (no Qt, no napari).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .review_candidates import FEATURES, KIND_ORDER, Candidate, candidates
from .review_features import SKELETON_FEATURES

if TYPE_CHECKING:
    from .counts import Calibration

# kind -> (what the proofreader reads, default suggested fix)
KINDS = {
    "missed": ("possible missed worm", "add"),
    "merge": ("possible merge / split", "split"),
    "false": ("possible false worm", "erase"),
    "border": ("uncertain outline", "repaint"),
}
CSV_FIELDS = ["rank", "y", "x", "kind", "score", "instances", "fix", "area", "description", "nearby"]

# The ranking scripts/review_fit.py ships for the bundled model (v4): the rule with the best 2-fold held-out
# objective on the 47 BBBC010 test wells of `probseg evaluate --model bbbc010-concrete --split test --out
# eval/bbbc010-concrete`: the logistic model over review_features.BASE_FEATURES (75% / 90% of errors in the top
# 5 / 10 held out; over all features with the shape ones 74% / 90%; the disputed mass 73% / 84%), refitted on
# all 47 wells (docs/review.md).  The shape features get weight 0: they did not help on held-out wells.
SHIPPED_SCORING = "model"
SHIPPED_WEIGHTS: tuple[float, ...] = (0.07144, 0.6018, 3.78881, -0.64835, 3.57562, 10.07633, 0.07529, -1.50182,
                                       7.69602, 0.0, -1.99251, 4.26239, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
SHIPPED_INTERCEPT = -11.47227
SHIPPED_MIN_SCORE = 12.0
# An item on a labelled worm that the count does not count as one worm (counts.instance_weights 0: not worm-shaped,
# ragged; 2: two worms) scores at least this.  Such items lay on a real error 83% of the time on the 47 test wells
# when the count's rules came from the other fold (29 items; 26 items, 88% with the shipped rules), against 26% for
# the other items: the list and the count then agree on what to look at (docs/review.md, seventh session).
COUNT_FLAG_SCORE = 80.0
# The dock's short list ("Likely errors only"): items that the score puts at even odds or better of lying on a real
# error.  Not fitted: the score is a chance in percent.  On v5's 47 test wells it keeps 2.0 items per well, of which
# 75% lie on an error; they find 59% of the errors, against 83% for the default list's top 5 (docs/review.md).
LIKELY_SCORE = 50.0


@dataclass(frozen=True)
class ReviewConfig:
    """The grouping and the ranking rule (see docs/review.md for how each value was chosen).

    ``scoring="mass"``: the item's disputed mass; ``scoring="model"`` (shipped): score =
    100 / (1 + exp(-(intercept + weights . features))), the estimated chance in percent that
    the item lies on a real error (weights from ``review_fit``).
    """

    weight: str = "minority"  # per-pixel uncertainty: "minority" 2 min(p, 1-p), or "entropy" H(p) / ln 2
    p_lo: float = 0.2  # a pixel is disputed when p_lo <= p <= 1 - p_lo (ghosts seen in 1 of 8 draws are not)
    open_radius: int = 2  # px: disputed bands thinner than ~2r+1 (along outlines) are not regions
    min_area: int = 30  # px: smaller disputed pieces are dropped
    join_px: int = 3  # regions of different instances this close form one item
    outline_weight: float = 1.0  # weight of the outline mass against the regions'
    outline_window: int = 15  # px: an outline points at the densest window of this side
    merge_parts: bool = True  # parts that name the same instance are one item
    max_group: int = 3  # a region group of more instances gives one part per instance (a clump of worms)
    scoring: str = SHIPPED_SCORING  # "model" (logistic over FEATURES) or "mass"
    weights: tuple[float, ...] = SHIPPED_WEIGHTS
    intercept: float = SHIPPED_INTERCEPT
    min_score: float = SHIPPED_MIN_SCORE  # default list: items with at least this score
    # an item whose point lies closer than this (px) to a higher-ranked item's point joins it (0: off): at the
    # dock's zoom both show the same spot, and one visit there sees both (docs/review.md, seventh session)
    spot_px: float = 20.0
    # items on a worm the count weighs other than 1 (count_flags) get at least COUNT_FLAG_SCORE (False: off)
    count_flags: bool = True

    @property
    def needs_skeletons(self) -> bool:
        """Whether the scoring weighs a skeleton feature (else ``instance_stats`` skips the skeletons)."""
        return self.scoring == "model" and any(w != 0 for f, w in zip(FEATURES, self.weights) if f in SKELETON_FEATURES)


@dataclass
class ReviewItem:
    """One suspected error: what, where, which instances (0-based), and the fix that fits."""

    score: float  # chance in percent that it is a real error (or the disputed mass, scoring="mass")
    y: int  # the pixel to look at
    x: int
    kind: str  # a key of KINDS
    instances: list[int] = field(default_factory=list)  # indices into the probability stack
    fix: str = ""
    area: int = 0  # uncertain pixels of the item (union of its regions)
    # worms of lesser items at the same spot, folded into this one (fold_same_spot): shown to the proofreader,
    # never touched by the fix, which acts on ``instances`` alone
    nearby: list[int] = field(default_factory=list)

    @property
    def description(self) -> str:
        return KINDS[self.kind][0]

    @property
    def named(self) -> list[int]:
        """Every worm the item names: its own, then those folded in from the same spot."""
        return self.instances + [i for i in self.nearby if i not in self.instances]


def feature_matrix(cands: list[Candidate]) -> np.ndarray:
    """Candidates' features as rows [n, len(FEATURES)] in ``FEATURES`` order."""
    return np.array([[c.features[f] for f in FEATURES] for c in cands], float).reshape(len(cands), len(FEATURES))


def score_candidates(cands: list[Candidate], cfg: ReviewConfig) -> np.ndarray:
    """Each candidate's score under ``cfg`` (see ``ReviewConfig``)."""
    if cfg.scoring == "mass":
        return np.array([c.mass for c in cands], float)
    z = cfg.intercept + feature_matrix(cands) @ np.asarray(cfg.weights, float)
    return 100.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def review_items(probabilities: np.ndarray, threshold: float = 0.75, cfg: ReviewConfig | None = None,
                 show_all: bool = False, counted: dict | None = None) -> list[ReviewItem]:
    """Ranked review items (highest score first) of one prediction's probabilities [N,H,W].

    ``show_all`` also returns the items below ``cfg.min_score`` (the default list hides them).
    ``counted``: the prediction's ``counts.count_inputs`` when the caller has them (computed here otherwise).
    No instance, or no disagreement between the draws, gives an empty list.
    """
    cfg = cfg or ReviewConfig()
    prob = np.asarray(probabilities, dtype=np.float32)
    if prob.ndim != 3 or len(prob) == 0:
        return []
    cands = candidates(prob, threshold, cfg, skeletons=cfg.needs_skeletons)
    if cfg.count_flags and cands:
        flags = count_flags(counted if counted is not None else count_inputs_of(prob, threshold))
    else:
        flags = {}
    return ranked_items(cands, cfg, show_all, flags)


def count_inputs_of(prob: np.ndarray, threshold: float) -> dict:
    """The count's per-instance inputs (no per-draw counts: ``count_flags`` does not need them)."""
    from .counts import count_inputs

    return count_inputs(prob, prob >= threshold, [])


def count_flags(inputs: dict, cal: Calibration | None = None) -> dict[int, float]:
    """Binarised instances that the count weighs other than 1 (index -> weight): 0 for a shape
    that is no worm (ragged rim strip, blob), 2 for one that looks like two worms.  ``cal``: the
    count's ``counts.Calibration`` (the shipped one when None; a held-out check passes another)."""
    from .counts import DEFAULT_CALIBRATION, instance_weights

    weights = instance_weights({"draw_counts": [], **inputs}, DEFAULT_CALIBRATION if cal is None else cal)
    binarised = np.asarray(inputs["binarised"], bool)
    return {int(i): float(weights[i]) for i in np.flatnonzero(binarised & (weights != 1.0))}


def flag_counted_otherwise(items: list[ReviewItem], flags: dict[int, float]) -> None:
    """Raise to ``COUNT_FLAG_SCORE`` the items on a worm of ``flags`` (``count_flags``); a one-worm
    outline or false-worm item takes the count's reading: "possible merge / split" (weight 2) or
    "possible false worm" (0)."""
    for it in items:
        hit = [flags[i] for i in it.instances if i in flags]
        if not hit:
            continue
        it.score = max(it.score, COUNT_FLAG_SCORE)
        if len(it.instances) == 1 and it.kind in ("border", "false"):
            it.kind, it.fix = ("merge", "split") if hit[0] > 1 else ("false", "erase")


def ranked_items(cands: list[Candidate], cfg: ReviewConfig, show_all: bool = False,
                 flags: dict[int, float] | None = None) -> list[ReviewItem]:
    """Candidates scored, raised where the count disagrees (``flags``), sorted best first, folded by
    spot (``fold_same_spot``) and cut at ``cfg.min_score``."""
    scores = score_candidates(cands, cfg)
    items = [ReviewItem(round(float(s), 2), c.y, c.x, c.kind, c.instances, c.fix, c.area) for s, c in zip(scores, cands)]
    flag_counted_otherwise(items, flags or {})
    items.sort(key=lambda it: (-it.score, it.y, it.x))
    items = fold_same_spot(items, cfg.spot_px)
    return items if show_all else [it for it in items if it.score >= cfg.min_score]


def fold_same_spot(items: list[ReviewItem], spot_px: float) -> list[ReviewItem]:
    """``items`` (best first) with each item whose point lies within ``spot_px`` of a better item's
    point joined to that item, which keeps its point and score.  The more specific suspicion
    (``KIND_ORDER``) decides the joined item's kind, fix and ``instances``; the other item's worms
    become ``nearby`` (named, not touched by the fix: erasing a false worm must not erase its
    neighbour); the areas add up.

    Why: two touching worms each get an outline item at their contact, often 1-5 px apart (well
    D23: ranks 1 and 3), so a proofreader visited the same spot twice and a second place fell out
    of the top 5."""
    kept: list[ReviewItem] = []
    for it in items:
        at = spot_of((it.y, it.x), [(k.y, k.x) for k in kept], spot_px)
        host = None if at is None else kept[at]
        if host is None:
            kept.append(ReviewItem(it.score, it.y, it.x, it.kind, list(it.instances), it.fix, it.area, list(it.nearby)))
            continue
        if KIND_ORDER.index(it.kind) < KIND_ORDER.index(host.kind):
            host.nearby = host.named
            host.kind, host.fix, host.instances = it.kind, it.fix, list(it.instances)
        host.nearby = list(dict.fromkeys(i for i in host.nearby + it.named if i not in host.instances))
        host.area += it.area
    return kept


def spot_of(point: tuple[float, float], kept: list[tuple[float, float]], spot_px: float) -> int | None:
    """Index of the first of ``kept`` (points, best first) closer than ``spot_px`` to ``point``, or
    None: the one test behind ``fold_same_spot`` and the fit's folding (``review_fit``)."""
    if spot_px <= 0:
        return None
    return next((i for i, (y, x) in enumerate(kept) if np.hypot(y - point[0], x - point[1]) < spot_px), None)


def write_review_csv(items: list[ReviewItem], path: str | Path) -> Path:
    """``rank,y,x,kind,score,instances,...`` (instances 1-based, as the label image); header only when empty."""
    from .atomic import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_FIELDS)
            for r, it in enumerate(items, 1):
                w.writerow([r, it.y, it.x, it.kind, f"{it.score:.2f}", " ".join(str(i + 1) for i in it.instances),
                            it.fix, it.area, it.description, " ".join(str(i + 1) for i in it.nearby)])

    return atomic_write(path, write)


def read_review_csv(path: str | Path) -> list[ReviewItem]:
    """Items as ``write_review_csv`` wrote them (instances back to 0-based; files without ``nearby`` read too)."""
    with open(path, newline="") as f:
        return [ReviewItem(float(r["score"]), int(r["y"]), int(r["x"]), r["kind"],
                           [int(i) - 1 for i in r["instances"].split()], r["fix"], int(r["area"]),
                           [int(i) - 1 for i in (r.get("nearby") or "").split()])
                for r in csv.DictReader(f)]


def items_to_arrays(items: list[ReviewItem]) -> dict[str, np.ndarray]:
    """Items as plain arrays (no pickle) for a session file; ``items_from_arrays`` reads them back."""
    return {
        "items": np.array([[it.score, it.y, it.x, it.area] for it in items], np.float64).reshape(-1, 4),
        "item_kinds": np.array(json.dumps([[it.kind, it.fix] for it in items])),
        "item_instances": np.array([i for it in items for i in it.instances], np.int32),
        "item_offsets": np.cumsum([0] + [len(it.instances) for it in items]).astype(np.int64),
        "item_nearby": np.array([i for it in items for i in it.nearby], np.int32),
        "item_nearby_offsets": np.cumsum([0] + [len(it.nearby) for it in items]).astype(np.int64),
    }


def items_from_arrays(z) -> list[ReviewItem]:
    a, kinds = z["items"].reshape(-1, 4), json.loads(str(z["item_kinds"]))
    inst, off = z["item_instances"], z["item_offsets"]
    if "item_nearby" in z.files:
        near, near_off = z["item_nearby"], z["item_nearby_offsets"]
    else:  # sessions saved before items were folded by spot
        near, near_off = np.zeros(0, np.int32), np.zeros(len(a) + 1, np.int64)
    return [ReviewItem(float(s), int(y), int(x), kinds[i][0], inst[off[i]:off[i + 1]].tolist(), kinds[i][1], int(ar),
                       near[near_off[i]:near_off[i + 1]].tolist())
            for i, (s, y, x, ar) in enumerate(a)]
