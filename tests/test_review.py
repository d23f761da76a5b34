"""The review list on synthetic draws: a half-seen worm, a merge, a clean and an empty well; its scoring."""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_probseg.inference import Prediction, agglomerate, bernoulli_entropy, uncertainty_peaks
from napari_probseg.outputs import write_prediction
from napari_probseg.review import (
    COUNT_FLAG_SCORE,
    LIKELY_SCORE,
    ReviewConfig,
    ReviewItem,
    fold_same_spot,
    read_review_csv,
    review_items,
    write_review_csv,
)
from napari_probseg.review_metrics import find_errors, score_list, simulate_items, summarise
from napari_probseg.review_queue import ReviewQueue
from napari_probseg.session import Session

H, W = 120, 160


def worm(y0: int, x0: int, y1: int, x1: int, width: int = 10) -> np.ndarray:
    """A straight thick 'worm' from (y0, x0) to (y1, x1)."""
    yy, xx = np.mgrid[:H, :W]
    d = np.array([y1 - y0, x1 - x0], float)
    t = np.clip(((yy - y0) * d[0] + (xx - x0) * d[1]) / (d @ d), 0, 1)
    return (yy - y0 - t * d[0]) ** 2 + (xx - x0 - t * d[1]) ** 2 <= (width / 2) ** 2


A, B, C = worm(20, 20, 20, 140), worm(60, 20, 60, 140), worm(95, 30, 100, 130)  # three apart
X, Y = worm(40, 40, 100, 60), worm(40, 100, 100, 80)  # two worms that touch at the bottom


def probs(draws: list[list[np.ndarray]]) -> np.ndarray:
    return agglomerate([np.stack(d) if d else np.zeros((0, H, W), bool) for d in draws])


def prediction(p: np.ndarray, threshold: float = 0.75) -> Prediction:
    ent = bernoulli_entropy(p).max(0).astype(np.float32) if len(p) else np.zeros((H, W), np.float32)
    return Prediction(p.astype(np.float32), p >= threshold, ent, uncertainty_peaks(ent, p), [], threshold)


def test_worm_seen_in_half_of_the_draws_is_one_missed_worm_item():
    p = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])
    b = int(np.argmax([(q > 0.4)[B].mean() for q in p]))
    items = review_items(p, 0.75)
    assert len(items) == 1, items
    it = items[0]
    assert it.kind == "missed" and it.fix == "add" and it.instances == [b] and B[it.y, it.x]
    assert it.description == "possible missed worm"
    # the paper's patches: many peaks on the same worm, one item
    assert len(uncertainty_peaks(bernoulli_entropy(p).max(0), p)) >= 1


def test_two_worms_merged_in_half_of_the_draws_is_one_merge_item():
    p = probs([[X, Y, A] if t % 2 else [X | Y, A] for t in range(8)])
    items = review_items(p, 0.75)
    assert len(items) == 1, items
    it = items[0]
    assert it.kind == "merge" and len(it.instances) == 2 and (X | Y)[it.y, it.x]
    assert it.fix in ("split", "merge")
    # the worm that the merged instance swallowed half of the time is the one to split off
    assert it.fix == "split"


def test_clean_well_and_worm_free_image_give_empty_lists(tmp_path: Path):
    clean = probs([[A, B, C]] * 8)
    assert review_items(clean, 0.75) == [] and review_items(clean, 0.75, show_all=True) == []
    empty = np.zeros((0, H, W), np.float32)
    assert review_items(empty, 0.75, show_all=True) == []
    # a worm-free image through the outputs: a header-only review CSV, no error
    files = write_prediction(prediction(empty), tmp_path, "empty", {})
    rows = list(csv.reader(open(files["review"])))
    assert rows[0][:6] == ["rank", "y", "x", "kind", "score", "instances"] and len(rows) == 1
    assert read_review_csv(files["review"]) == []
    s = Session.from_prediction(prediction(empty), "empty")
    assert s.items == [] and s.default_items() == [] and len(ReviewQueue(s)) == 0


def test_default_list_hides_weak_items_and_csv_round_trip(tmp_path: Path):
    small = worm(100, 140, 104, 150, width=8)  # a small blob seen in half of the draws
    p = probs([[A, B, small] if t % 2 else [A, B] for t in range(8)])
    all_items = review_items(p, 0.75, show_all=True)
    assert len(all_items) == 1 and all_items[0].kind == "missed"
    score = all_items[0].score
    assert review_items(p, 0.75, replace(ReviewConfig(), min_score=score + 1)) == []  # hidden behind "show all"
    assert review_items(p, 0.75, replace(ReviewConfig(), min_score=score + 1), show_all=True) == all_items
    assert review_items(p, 0.75, replace(ReviewConfig(), min_score=score)) == all_items
    p2 = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])
    items = review_items(p2, 0.75)
    path = write_review_csv(items, tmp_path / "r.csv")
    back = read_review_csv(path)
    assert [(i.y, i.x, i.kind, i.instances, i.fix) for i in back] == [(i.y, i.x, i.kind, i.instances, i.fix) for i in items]
    assert next(csv.DictReader(open(path)))["rank"] == "1"


def test_errors_found_and_simulation():
    gt = np.stack([A, B, X, Y])
    # prediction: A right, B missed, X and Y merged, C false
    pred = np.stack([A, X | Y, C])
    errs = find_errors(pred, gt)
    assert sorted(e.kind for e in errs) == ["false", "merged", "missed"]
    none = np.zeros((0, H, W), bool)
    assert [e.kind for e in find_errors(none, gt)] == ["missed"] * 4 and find_errors(none, none) == []
    assert [e.kind for e in find_errors(pred, none)] == ["false"] * 3
    imprecise = find_errors(np.stack([A & (np.arange(W) < 100)[None, :]]), np.stack([A]))
    assert [e.kind for e in imprecise] == ["imprecise"]  # IoU 0.67: matched, not precise
    # a point on B finds the missed worm, one on the merge finds it, a point on A finds nothing
    on_b, on_xy, on_a = (60, 80), (70, 50), (20, 80)
    s = score_list([on_a, on_b, on_xy], errs)
    assert s["errors"] == 3 and s["found"] == {"1": 0, "3": 2, "5": 2, "10": 2} and s["top_on_error"] == 2
    assert summarise({"w": s})["found_fraction"]["3"] == pytest.approx(2 / 3)
    assert score_list([], [])["found"]["5"] == 0 and score_list([on_a], [])["top_on_error"] == 0
    # correcting the merged instance (index 1) replaces it by its best gt worm: avAP rises
    prob = pred.astype(np.float32)
    rows = simulate_items({"w": pred}, {"w": prob}, {"w": [(100.0, [1]), (50.0, [2])]}, {"w": gt}, ks=(0, 1, 2))
    assert rows[0]["avAP"] < rows[1]["avAP"] < rows[2]["avAP"]
    pooled = simulate_items({"w": pred}, {"w": prob}, {"w": [(100.0, [1])]}, {"w": gt}, ks=(0, 1), pooled=True)
    assert pooled[1]["avAP"] == pytest.approx(rows[1]["avAP"])


def test_the_likely_view_lists_the_items_at_even_odds_or_better_and_shares_their_reviewed_flags():
    p = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])
    s = Session.from_prediction(prediction(p), "w")
    scores = [95.0, LIKELY_SCORE, LIKELY_SCORE - 0.5, 20.0, 1.0]  # best first, as the list keeps them
    s.items = [ReviewItem(sc, 10 * k, 10 * k, "border", [0], "repaint", 50) for k, sc in enumerate(scores)]
    s.items_reviewed = np.zeros(len(s.items), bool)
    likely, errors, every = ReviewQueue(s, "likely"), ReviewQueue(s), ReviewQueue(s, "all")
    assert len(likely) == 2 and len(errors) == 4 and len(every) == 5  # default cut: 12
    assert [likely.centre(i) for i in range(len(likely))] == [errors.centre(i) for i in range(2)]
    likely.reviewed[1] = True  # the same item in every item view
    assert errors.reviewed.tolist() == [False, True, False, False] and likely.next_open() == 0


def test_queue_views_and_session_round_trip(tmp_path: Path):
    p = probs([[A, B, C] if t % 2 else [A, C] for t in range(8)])
    s = Session.from_prediction(prediction(p), "w")
    errors, patches = ReviewQueue(s), ReviewQueue(s, "patches")
    assert len(errors) == 1 and len(patches) == len(s.peaks) and len(ReviewQueue(s, "all")) == len(s.items)
    assert "possible missed worm: add the model's worm" in errors.text(0)
    errors.reviewed[0] = True  # marks the session's item, not the patches
    assert s.items_reviewed[0] and not s.reviewed.any() and errors.next_open() is None
    assert s.item_labels(0) == []  # a missed worm has no label id yet (never a neighbour's)
    t = Session.load(s.save(tmp_path / "w.probseg.npz"))
    assert [(i.y, i.x, i.kind, i.instances) for i in t.items] == [(i.y, i.x, i.kind, i.instances) for i in s.items]
    assert t.items_reviewed.tolist() == s.items_reviewed.tolist()
    with pytest.raises(ValueError):
        ReviewQueue(s, "nonsense")
    # a session file from before the review list: items are recomputed from the probabilities
    with np.load(tmp_path / "w.probseg.npz") as z:
        old = {k: z[k] for k in z.files if not k.startswith("item")}
    np.savez(tmp_path / "old.probseg.npz", **old)
    o = Session.load(tmp_path / "old.probseg.npz")
    assert [(i.y, i.x, i.kind) for i in o.items] == [(i.y, i.x, i.kind) for i in s.items] and not o.items_reviewed.any()


def test_items_at_one_spot_are_one_item_naming_all_their_worms(tmp_path):
    ranked = [ReviewItem(80.0, 100, 100, "border", [7], "repaint", 40),
              ReviewItem(60.0, 300, 40, "border", [2], "repaint", 30),
              ReviewItem(50.0, 103, 96, "false", [3], "erase", 25),  # 5 px from the first
              ReviewItem(40.0, 96, 104, "border", [8], "repaint", 10),  # and another outline there
              ReviewItem(20.0, 100, 125, "missed", [4], "add", 60)]  # 25 px away: its own spot
    folded = fold_same_spot(ranked, 20.0)
    assert [(it.y, it.x) for it in folded] == [(100, 100), (300, 40), (100, 125)]
    first = folded[0]
    assert first.score == 80.0 and first.area == 75
    # the more specific suspicion decides what the fix touches; the outlines' worms are only named
    assert (first.kind, first.fix, first.instances, first.nearby) == ("false", "erase", [3], [7, 8])
    assert first.named == [3, 7, 8]
    assert ranked[0].instances == [7] and ranked[0].kind == "border"  # the input is not changed
    assert len(fold_same_spot(ranked, 0)) == 5
    back = read_review_csv(write_review_csv(folded, tmp_path / "r.csv"))
    assert [(it.instances, it.nearby) for it in back] == [(it.instances, it.nearby) for it in folded]


def test_an_item_on_a_shape_the_count_calls_no_worm_is_a_possible_false_worm_near_the_top():
    from .test_count_rules import comb, worms

    blob = comb(teeth=8)  # 10 skeleton ends: the count weighs it 0
    blob[189, 20:140] = 0.5  # the draws dispute its top edge: an outline item
    probs = np.stack(worms(6) + [blob]).astype(np.float32)
    probs[0, 17, 10:110] = 0.5  # and an ordinary worm's edge
    plain = {it.instances[0]: it for it in review_items(probs, 0.75, replace(ReviewConfig(), count_flags=False),
                                                       show_all=True)}
    flagged = {it.instances[0]: it for it in review_items(probs, 0.75, show_all=True)}
    assert plain[6].kind == "border" and plain[6].score < COUNT_FLAG_SCORE
    assert (flagged[6].kind, flagged[6].fix) == ("false", "erase") and flagged[6].score == COUNT_FLAG_SCORE
    assert (flagged[0].kind, flagged[0].score) == (plain[0].kind, plain[0].score)  # a worm's item is not touched
