"""Headless proofreading session: round-trip, autosave, edits, damaged files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_probseg import autosave as A
from napari_probseg import edits as E
from napari_probseg import peaks as P
from napari_probseg import session as S
from napari_probseg import session_file as F
from napari_probseg import targets as T
from napari_probseg.inference import Peak, Prediction, bernoulli_entropy, uncertainty_peaks
from napari_probseg.outputs import write_prediction


def toy_prediction() -> Prediction:
    """Two bar 'worms', the second uncertain at its right end."""
    p = np.zeros((2, 32, 48), np.float32)
    p[0, 4:10, 4:40] = 1.0
    p[1, 16:22, 4:30] = 1.0
    p[1, 16:22, 30:40] = 0.5
    ent = bernoulli_entropy(p).max(0)
    return Prediction(p, p >= 0.75, ent, uncertainty_peaks(ent, p), [], 0.75)


def toy_session(**kw) -> S.Session:
    image = np.arange(2 * 32 * 48, dtype=np.uint16).reshape(2, 32, 48)
    return S.Session.from_prediction(toy_prediction(), "well A01", image, image_source="sample:A01",
                                     channel_names=["fl", "bf"], meta={"model": "tiny", "draws": 2}, **kw)


def test_round_trip_keeps_everything(tmp_path: Path):
    s = toy_session()
    assert s.peaks and s.peaks[0].instances == [1]
    s.labels[0, 0] = 7
    s.reviewed[0] = True
    s.record("accept", 0)
    path = s.save(tmp_path / "a.probseg.npz")
    t = S.Session.load(path)
    assert t.session_id == s.session_id and t.image_name == "well A01" and t.image_source == "sample:A01"
    np.testing.assert_array_equal(t.labels, s.labels)
    np.testing.assert_array_equal(t.image, s.image)
    np.testing.assert_allclose(t.probabilities, s.probabilities, atol=1e-3)
    np.testing.assert_array_equal(t.reviewed, s.reviewed)
    assert [(p.y, p.x, p.instances) for p in t.peaks] == [(p.y, p.x, p.instances) for p in s.peaks]
    assert t.meta == s.meta and t.history[0]["action"] == "accept" and t.channel_names == ["fl", "bf"]
    assert F.file_kind(path) == "session"
    assert not list(tmp_path.glob(".*partial"))  # the temporary file is gone


def test_probabilities_file_from_predict(tmp_path: Path):
    pred = toy_prediction()
    paths = write_prediction(pred, tmp_path, "C10", {"model": "m", "seed": 3})
    assert F.file_kind(paths["probabilities"]) == "probabilities"
    s = S.Session.from_probabilities_file(paths["probabilities"])
    assert s.image_name == "C10" and s.meta["seed"] == 3 and s.image is None
    np.testing.assert_array_equal(s.labels, pred.labels())
    assert [(p.y, p.x, p.instances) for p in s.peaks] == [(p.y, p.x, p.instances) for p in pred.peaks]


def test_autosave_uses_env_dir_and_keeps_other_sessions(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(A.AUTOSAVE_ENV, str(tmp_path))
    a = toy_session()
    path = A.autosave(a)
    assert path == tmp_path / "well_A01.probseg.npz"
    a.labels[1, 1] = 3
    A.autosave(a)  # same session: overwritten in place
    assert S.Session.load(path).labels[1, 1] == 3 and len(list(tmp_path.iterdir())) == 1
    b = toy_session()  # a new session for the same image must not destroy a's corrections
    A.autosave(b)
    kept = tmp_path / f"well_A01.{a.session_id[:8]}.probseg.npz"
    assert S.Session.load(kept).session_id == a.session_id
    assert S.Session.load(path).session_id == b.session_id


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_corrupt_session_file_gives_clear_error(tmp_path: Path, content: bytes):
    path = tmp_path / "x.probseg.npz"
    path.write_bytes(content)
    with pytest.raises(S.SessionError, match="x.probseg.npz"):
        S.Session.load(path)


def test_truncated_and_foreign_npz(tmp_path: Path):
    good = toy_session().save(tmp_path / "g.probseg.npz")
    bad = tmp_path / "t.probseg.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(S.SessionError, match="t.probseg.npz"):
        S.Session.load(bad)
    foreign = tmp_path / "f.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(S.SessionError, match="not a napari-probseg session"):
        S.Session.load(foreign)
    with pytest.raises(S.SessionError, match="does not exist"):
        S.Session.load(tmp_path / "missing.npz")
    assert F.file_kind(foreign) is None


def test_pickled_object_is_refused(tmp_path: Path):
    good = toy_session().save(tmp_path / "g.probseg.npz")
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"] = np.array([{"evil": 1}], dtype=object)  # would need unpickling
    path = tmp_path / "p.probseg.npz"
    np.savez(path, **arrays)
    with pytest.raises(S.SessionError, match="p.probseg.npz.*Object arrays cannot be loaded"):
        S.Session.load(path)


def test_edits():
    lab = np.zeros((20, 30), np.int32)
    lab[2:6, 2:28] = 1
    lab[10:14, 2:12] = 2
    lab[10:14, 12:28] = 3
    m = E.merge(lab, 2, 3)
    out = lab.copy(); m.apply(out)
    assert set(np.unique(out)) == {0, 1, 2} and (out[10:14, 2:28] == 2).all()
    sp = E.split(out, 2, np.array([[12, 3], [12, 27]]))
    out2 = out.copy(); sp.apply(out2)
    assert set(np.unique(out2)) == {0, 1, 2, 3}
    assert out2[12, 3] == 2 and out2[12, 27] == 3 and (out2 > 0).sum() == (out > 0).sum()
    e = E.erase(out2, 1); e.apply(out2)
    assert 1 not in out2
    paint = np.zeros_like(lab, bool); paint[16:19, 5:9] = True
    r = E.replace(out2, 3, paint); r.apply(out2)
    assert (out2[16:19, 5:9] == 3).all() and (out2 == 3).sum() == 12
    with pytest.raises(S.SessionError, match="not in the label image"):
        E.merge(lab, 1, 9)
    with pytest.raises(S.SessionError, match="at least two"):
        E.split(lab, 1, np.array([[3, 3]]))
    with pytest.raises(S.SessionError, match="not on instance"):
        E.split(lab, 1, np.array([[3, 3], [18, 20]]))


def test_peak_labels_masks_and_progress():
    lab = np.zeros((20, 20), np.int32)
    lab[0:3, :] = 1  # ends one pixel above the patch at y=4: only the grown window sees it
    lab[5:7, 5:7] = 2  # inside the patch at (4, 4)
    lab[15:18, 15:18] = 3  # far away, but listed by the model at the second peak
    ent = np.zeros((20, 20), np.float32)
    ent[4:8, 4:8] = 0.5
    ent[10:14, 0:4] = 0.25
    peaks = [Peak(0.5, 3, 4, []), Peak(0.25, 10, 0, [2, 0]), Peak(0.1, 8, 12, [1])]
    s = S.Session("t", np.zeros((3, 20, 20), np.float32), ent, lab, peaks)
    assert s.peak_labels(0) == [1, 2]  # rows 2..7: label 1 at row 2 is in the patch grown by one pixel
    assert S.Session("t", s.probabilities, ent, lab, [Peak(0.5, 4, 4, [])]).peak_labels(0) == [2]  # row 2 is 2 px away
    assert s.peak_labels(1) == [3, 1]  # nothing in the window: the model's instances, in its order
    erased = lab.copy()
    erased[erased == 2] = 0
    assert s.peak_labels(2) == [2] and s.peak_labels(2, erased) == []  # an erased worm is not offered
    masks = T.label_masks(lab)
    assert masks.shape == (3, 20, 20) and [int(m.sum()) for m in masks] == [60, 4, 9]
    assert (masks.argmax(0) + 1)[masks.any(0)].tolist() == lab[lab > 0].tolist()
    assert s.next_unreviewed() == 0
    s.reviewed[[0, 2]] = True
    assert s.next_unreviewed() == 1 and s.next_unreviewed(2) == 1 and s.n_reviewed == 2  # wraps around
    s.reviewed[1] = True
    assert s.next_unreviewed() is None
    assert P.mean_peak_entropy(ent, peaks[:2]) == pytest.approx((ent[3:7, 4:8].mean() + 0.25) / 2)
    assert np.isnan(P.mean_peak_entropy(ent, []))


def crossing_session() -> S.Session:
    """Two bar worms crossing at right angles: the model's instances overlap at the crossing."""
    p = np.zeros((3, 40, 40), np.float32)
    p[0, 18:22, 2:38] = 0.95  # horizontal worm
    p[1, 2:38, 18:22] = 0.95  # vertical worm, painted over the crossing in the label image
    p[2, 30:34, 2:10] = 0.9  # a third worm, apart
    ent = bernoulli_entropy(p).max(0)
    pred = Prediction(p, p >= 0.75, ent, uncertainty_peaks(ent, p), [], 0.75)
    return S.Session.from_prediction(pred, "cross", None)


def test_training_target_keeps_the_model_overlaps():
    s = crossing_session()
    crossing = (slice(18, 22), slice(18, 22))
    assert (s.labels[crossing] == 2).all()  # the Labels layer shows one worm there
    m = T.training_masks(s.labels, s.probabilities, s.binarize)
    assert m.shape == (3, 40, 40)
    assert (m.sum(0)[crossing] == 2).all() and (m.sum(0) == 2).sum() == 16  # overlap class present, only there
    np.testing.assert_array_equal(m[0], s.probabilities[0] >= 0.75)  # the hidden worm is whole again
    assert (T.label_masks(s.labels).sum(0) <= 1).all()  # what the old target was: disjoint


def test_training_target_follows_the_corrections():
    s = crossing_session()
    merged = s.labels.copy()
    E.merge(merged, 1, 3).apply(merged)  # the apart worm joins worm 1: its pixels (none hidden) carry 1
    m = T.training_masks(merged, s.probabilities, s.binarize)
    assert len(m) == 2 and (m.sum(0) == 2).sum() == 16
    erased = s.labels.copy()
    E.erase(erased, 1).apply(erased)  # the hidden worm erased: no overlap left to learn
    m = T.training_masks(erased, s.probabilities, s.binarize)
    assert len(m) == 2 and m.sum(0).max() == 1
    np.testing.assert_array_equal(m.sum(0) > 0, erased > 0)
    vertical_gone = s.labels.copy()
    E.erase(vertical_gone, 2).apply(vertical_gone)  # the occluder erased: the crossing is background now
    m = T.training_masks(vertical_gone, s.probabilities, s.binarize)
    assert m.sum(0).max() == 1 and not m[:, 18:22, 18:22].any()
    split = s.labels.copy()
    E.split(split, 1, np.array([[20, 3], [20, 36]])).apply(split)  # worm 1 split: ambiguous, labels rule
    m = T.training_masks(split, s.probabilities, s.binarize)
    assert m.sum(0).max() == 1


def test_binarisation_cut_is_stored_as_binarize_and_old_files_are_read(tmp_path: Path):
    s = toy_session()
    s.binarize = 0.6
    path = s.save(tmp_path / "new.probseg.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert "binarize" in arrays and "threshold" not in arrays
    arrays["threshold"] = arrays.pop("binarize")  # a file written before the rename
    old = tmp_path / "old.probseg.npz"
    np.savez(old, **arrays)
    assert S.Session.load(old).binarize == pytest.approx(0.6)
    assert S.Session.load(path).binarize == pytest.approx(0.6)


def test_probabilities_file_meta_json_and_old_literal(tmp_path: Path):
    assert F.parse_meta('{"model": "m", "draw_counts": [3, 4]}') == {"model": "m", "draw_counts": [3, 4]}
    assert F.parse_meta("{'model': 'm', 'draw_counts': [3, 4]}") == {"model": "m", "draw_counts": [3, 4]}
    assert F.parse_meta("__import__('os')") == {"raw": "__import__('os')"}  # never evaluated


def test_split_seeds_off_the_worm_are_snapped_when_near_and_refused_when_far():
    lab = np.zeros((30, 40), np.int32)
    lab[10:14, 2:38] = 1  # a horizontal worm, 4 px thick
    near = E.split(lab, 1, np.array([[8, 4], [16, 35]]))  # 2-3 px above / below it: snapped on
    out = lab.copy()
    near.apply(out)
    assert set(np.unique(out)) == {0, 1, 2} and (out > 0).sum() == (lab > 0).sum()
    assert out[12, 3] == 1 and out[12, 36] == 2  # the region of the first seed keeps the id
    with pytest.raises(S.SessionError, match=r"seed point \(25, 20\) is not on instance 1; place it on the worm"):
        E.split(lab, 1, np.array([[12, 4], [25, 20]]))  # 11 px below it
    with pytest.raises(S.SessionError, match="not on instance 1"):
        E.split(lab, 1, np.array([[12, 4], [12, 45]]))  # outside the image
    with pytest.raises(S.SessionError, match="same pixel"):
        E.split(lab, 1, np.array([[8, 4], [9, 4]]))  # both snap onto (10, 4)
    np.testing.assert_array_equal(lab[10:14, 2:38], 1)  # refused splits change nothing


def test_autosave_over_damaged_files_keeps_each_aside(tmp_path: Path):
    slot = A.autosave_path("well A01", tmp_path)
    slot.write_bytes(b"PK\x03\x04 first damaged autosave")
    s = toy_session()
    assert A.autosave(s, tmp_path) == slot and S.Session.load(slot).session_id == s.session_id
    aside = tmp_path / "well_A01.damaged.probseg.npz"
    assert aside.read_bytes() == b"PK\x03\x04 first damaged autosave"  # kept, byte for byte
    slot.write_bytes(b"second damaged autosave")  # damaged again (e.g. a full disk)
    A.autosave(s, tmp_path)
    assert aside.read_bytes() == b"PK\x03\x04 first damaged autosave"  # the first one is not replaced
    assert (tmp_path / "well_A01.damaged-2.probseg.npz").read_bytes() == b"second damaged autosave"
    assert S.Session.load(slot).session_id == s.session_id
