"""Headless: the one-key fixes of review items and the edits made from the model's own instances.

The real case is well C10 (issue 16, item 2): ground-truth worm 0 crosses worm 13; the model
saw worm 0 in 3 of 8 draws (p = 0.375, below the 0.75 cut), so the labels miss it and its
review item sits next to the good worm 13.  The fix must add worm 0 and leave worm 13 whole.
"""
from __future__ import annotations

import numpy as np
import pytest

from napari_probseg import edits as E
from napari_probseg import session as S
from napari_probseg.inference import Prediction, bernoulli_entropy, uncertainty_peaks
from napari_probseg.review_queue import ReviewQueue


def session_of(p: np.ndarray, cut: float = 0.75, name: str = "t") -> S.Session:
    ent = bernoulli_entropy(p).max(0).astype(np.float32)
    return S.Session.from_prediction(Prediction(p, p >= cut, ent, uncertainty_peaks(ent, p), [], cut), name, None)


@pytest.fixture(scope="module")
def c10(data_dir) -> tuple[S.Session, np.ndarray]:
    from napari_probseg.data import load_masks

    gt = load_masks(data_dir, "C10")
    p = gt.astype(np.float32)
    p[0] *= 0.375  # seen in 3 of 8 draws
    return session_of(p, name="C10"), gt


def test_missed_worm_in_c10_is_added_without_touching_the_worm_it_crosses(c10):
    s, gt = c10
    assert (gt[0] & gt[13]).sum() == 181  # the crossing
    i = next(k for k, it in enumerate(s.items) if it.kind == "missed")
    it = s.items[i]
    assert it.instances == [0] and it.fix == "add" and i in s.default_items()
    assert s.item_labels(i) == []  # no neighbour offered as "A"
    q = ReviewQueue(s, "all")
    assert "possible missed worm: add the model's worm 1" in q.text(i)

    lab = s.labels.copy()
    edit = E.fix_item(s, i, lab)
    edit.apply(lab)
    new = edit.label
    assert new == 16 and edit.description == "add the model's worm 1 (p >= 0.19) as worm 16"
    assert (lab == new).sum() == int((gt[0] & ~gt[13]).sum()) == 1052 - 181
    np.testing.assert_array_equal(lab == 14, s.labels == 14)  # worm 13 keeps every pixel
    assert ((lab != s.labels) == (gt[0] & ~gt[13])).all()  # nothing else changed
    with pytest.raises(S.SessionError, match="labelled already, mostly as worm 16"):
        E.fix_item(s, i, lab)  # pressing the key twice adds nothing


def test_worm_info_and_instance_at(c10):
    s, gt = c10
    info = s.worm_info(14)
    assert info.area == int((s.labels == 14).sum()) and info.instance == 13 and info.mean_probability == 1.0
    assert "worm 14" in info.text() and "mean probability 1.00" in info.text()
    y, x = np.argwhere(gt[0] & ~gt[13])[0]
    assert s.instance_at(y, x) == 0 and s.worm_info(99) is None
    assert s.instance_at(0, 0) is None and s.instance_at(-1, 5) is None
    lab = s.labels.copy()
    E.fix_item(s, next(k for k, it in enumerate(s.items) if it.kind == "missed"), lab).apply(lab)
    added = s.worm_info(16, lab)
    assert added.instance == 0 and added.mean_probability == pytest.approx(0.375)


def test_instance_mask_cuts_at_the_session_cut_or_half_its_peak():
    p = np.zeros((20, 30), np.float32)
    p[2:8, 2:20] = 0.9
    p[2:8, 20:25] = 0.5
    m, level = E.instance_mask(p, 0.75)
    assert level == 0.75 and m.sum() == 6 * 18
    q = p * 0.4  # peak 0.36: never reaches the cut
    q[15, 25] = 0.3  # a speck apart from the worm
    m, level = E.instance_mask(q, 0.75)
    assert level == pytest.approx(0.18) and m.sum() == 6 * 23 and not m[15, 25]  # largest piece only
    assert not E.instance_mask(np.zeros((4, 4)), 0.5)[0].any()


def test_add_instance_takes_background_and_only_the_worms_it_may():
    lab = np.zeros((10, 20), np.int32)
    lab[2:5, 2:18] = 1
    mask = np.zeros_like(lab, bool)
    mask[3:8, 8:12] = True  # 8 px over worm 1, 12 on background
    e = E.add_instance(lab, mask)
    assert e.label == 2 and len(e.values) == 12 and (lab[e.indices] == 0).all()
    e = E.add_instance(lab, mask, take_from=(1,))
    assert len(e.values) == 20 and "taking pixels of worm 1" in e.description
    with pytest.raises(S.SessionError, match="remove worm 1 entirely"):
        E.add_instance(lab, lab == 1, take_from=(1,))
    over = np.zeros_like(mask)
    over[2:5, 4:10] = True
    with pytest.raises(S.SessionError, match="labelled already, mostly as worm 1"):
        E.add_instance(lab, over)
    with pytest.raises(S.SessionError, match="no pixels"):
        E.add_instance(lab, np.zeros_like(mask))


def toy() -> S.Session:
    """Worms 1 and 2 each in 8/8 draws but one worm in half of them (merge), 3 half-seen (false),
    4 hidden in 5 (split), 6 sure with a doubtful outline; 30 px apart, so each is its own spot."""
    p = np.zeros((6, 110, 80), np.float32)
    p[0, 5:11, 5:30] = 1.0
    p[1, 5:11, 30:60] = 1.0
    p[0, 5:11, 28:40] = 0.5  # 1 and 2 dispute the seam: a merge item with both binarised
    p[1, 5:11, 18:30] = 0.5
    p[2, 35:41, 5:40] = 0.8
    p[2, 35:41, 5:30] = 0.5  # mostly disputed: a possible false worm
    p[4, 65:71, 5:70] = 1.0
    p[3, 65:71, 40:70] = 0.375  # hidden in 5's right half
    p[4, 65:71, 40:70] = 0.625
    p[5, 95:101, 5:60] = 1.0
    p[5, 94, 5:60] = 0.4  # a doubtful outline row (below 0.5: the count sees a worm of ordinary size)
    p[5, 101, 5:60] = 0.4
    return session_of(p)


def test_each_kind_of_fix_applies_to_the_instances_that_exist():
    s = toy()
    by_fix = {it.fix: k for k, it in reversed(list(enumerate(s.items)))}  # the first item of each fix
    by_fix["repaint"] = next(k for k, it in enumerate(s.items) if it.fix == "repaint" and it.instances == [5])
    assert {"merge", "erase", "split", "repaint"} <= set(by_fix), [(it.kind, it.fix, it.instances) for it in s.items]
    lab = s.labels.copy()

    m = E.fix_item(s, by_fix["merge"], lab)
    assert m.description == "merge 2 into 1" and m.label == 1
    sp = E.fix_item(s, by_fix["split"], lab)
    out = lab.copy()
    sp.apply(out)
    assert sp.label == 7 and (out == 7).sum() == 6 * 30 and (out == 5).sum() == 6 * 35  # 4 taken out of 5
    er = E.fix_item(s, by_fix["erase"], lab)
    assert er.description == "erase 3"

    with pytest.raises(E.NoAutomaticFix, match="no automatic fix") as exc:
        E.fix_item(s, by_fix["repaint"], lab)
    assert exc.value.label == 6
    # worms erased or merged before: the message says so instead of touching another worm
    gone = lab.copy()
    gone[gone == 3] = 0
    with pytest.raises(S.SessionError, match="worm 3 is not in the Labels layer"):
        E.fix_item(s, by_fix["erase"], gone)
    gone[gone == 2] = 1
    with pytest.raises(S.SessionError, match="only worm 1 of this item"):
        E.fix_item(s, by_fix["merge"], gone)
    q = ReviewQueue(s, "all")
    texts = {f: q.fix_text(k) for f, k in by_fix.items()}
    assert texts["split"] == "split worm 4 off worm 5" and texts["merge"] == "merge worms 1 + 2"
    assert texts["erase"] == "erase worm 3" and texts["repaint"] == "repaint the outline of worm 6 by hand"


def test_a_folded_item_fixes_its_own_worm_and_names_its_neighbours(tmp_path):
    from dataclasses import replace as copy_with

    from napari_probseg import session_file as F
    from napari_probseg.review import ReviewItem

    s = toy()
    # the false worm 3 and the sure worm 6 at one spot: their items were folded into one (fold_same_spot)
    s = copy_with(s, items=[ReviewItem(70.0, 38, 20, "false", [2], "erase", 50, nearby=[5])],
                  items_reviewed=np.zeros(1, bool))
    lab = s.labels.copy()
    out = lab.copy()
    E.fix_item(s, 0, lab).apply(out)
    assert not (out == 3).any() and (out == 6).sum() == (lab == 6).sum()  # the neighbour is not touched
    assert ReviewQueue(s, "all").fix_text(0) == "erase worm 3; also here: worm 6"
    back = F.load(F.save(s, tmp_path / "s.probseg"))
    assert back.items[0].instances == [2] and back.items[0].nearby == [5]
    bad = copy_with(s, items=[ReviewItem(70.0, 38, 20, "false", [2], "erase", 50, nearby=[8])])
    with pytest.raises(S.SessionError, match="names the model's worm 9, but the session holds 6"):
        F.load(F.save(bad, tmp_path / "bad.probseg"))  # a session file is untrusted input
