"""Damaged and hostile session / probabilities files: always SessionError, never a big allocation."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_probseg import autosave as A
from napari_probseg import session as S
from napari_probseg import session_file as F
from napari_probseg import targets as T
from napari_probseg.inference import Prediction

from .test_session import toy_session


def _rewrite_member(src: Path, dst: Path, name: str, payload: bytes) -> None:
    """Copy a zip, replacing one member's bytes (stored uncompressed)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, payload if info.filename == name else zin.read(info))


def _npy_header(shape: tuple, descr: str = "<i4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_flipped_bits_give_the_session_error(tmp_path: Path):
    """A bit flipped anywhere (header, compressed data, directory): SessionError or a clean load."""
    good = toy_session().save(tmp_path / "g.probseg.npz").read_bytes()
    bad = tmp_path / "b.probseg.npz"
    errors = 0
    for off in range(7, len(good), max(1, len(good) // 60)):
        data = bytearray(good)
        data[off] ^= 0x10
        bad.write_bytes(bytes(data))
        try:
            S.Session.load(bad)
        except S.SessionError as exc:
            errors += 1
            assert "b.probseg.npz" in str(exc)
    assert errors > 30  # most flips are detected (CRC, deflate, header checks)


def test_member_with_an_unbalanced_header_gives_the_session_error(tmp_path: Path):
    """A flipped bit that opens a bracket in a member's .npy header: numpy's parser raises
    tokenize.TokenError (seen once in the flipped-bits test above, whose offsets move with the file)."""
    good = toy_session().save(tmp_path / "g.probseg.npz")
    bad = tmp_path / "brace.probseg.npz"
    header = _npy_header((32, 48), "<f4").replace(b"'shape': (", b"'shape': ((")
    _rewrite_member(good, bad, "entropy.npy", header + bytes(32 * 48 * 4))
    with pytest.raises(S.SessionError, match="brace.probseg.npz.*damaged header"):
        S.Session.load(bad)


def test_member_claiming_a_huge_array_is_refused_before_allocating(tmp_path: Path):
    good = toy_session().save(tmp_path / "g.probseg.npz")
    bad = tmp_path / "huge.probseg.npz"
    # 10^12 int32 = 4 TB claimed, 64 bytes present
    _rewrite_member(good, bad, "labels.npy", _npy_header((1_000_000, 1_000_000)) + bytes(64))
    with pytest.raises(S.SessionError, match="huge.probseg.npz.*claims shape"):
        S.Session.load(bad)


def test_member_shorter_than_its_header_says(tmp_path: Path):
    good = toy_session().save(tmp_path / "g.probseg.npz")
    bad = tmp_path / "short.probseg.npz"
    _rewrite_member(good, bad, "entropy.npy", _npy_header((32, 48), "<f4") + bytes(100))
    with pytest.raises(S.SessionError, match="short.probseg.npz"):
        S.Session.load(bad)


def test_probabilities_file_with_huge_member(tmp_path: Path):
    probs = np.zeros((1, 16, 16), np.float16)
    path = tmp_path / "x_probabilities.npz"
    np.savez_compressed(path, probabilities=probs, instances=probs > 0, entropy=np.zeros((16, 16), np.float16),
                        threshold=np.float32(0.75))
    bad = tmp_path / "y_probabilities.npz"
    _rewrite_member(path, bad, "probabilities.npy", _npy_header((10**7, 10**7), "<f2"))
    with pytest.raises(S.SessionError, match="y_probabilities.npz"):
        S.Session.from_probabilities_file(bad)


def test_empty_session_round_trip(tmp_path: Path):
    """Zero instances and zero peaks (an empty well) save, load and navigate."""
    shape = (32, 48)
    pred = Prediction(np.zeros((0, *shape), np.float32), np.zeros((0, *shape), bool), np.zeros(shape, np.float32),
                      [], [], 0.75)
    s = S.Session.from_prediction(pred, "empty", np.ones((2, *shape), np.uint16))
    assert s.next_unreviewed() is None and s.n_reviewed == 0
    t = S.Session.load(s.save(tmp_path / "e.probseg.npz"))
    assert t.probabilities.shape == (0, *shape) and t.peaks == [] and not t.labels.any()
    assert T.label_masks(t.labels).shape == (0, *shape)


def test_stale_partials_of_dead_writers_are_removed(tmp_path: Path):
    dead = tmp_path / f".a{F.SUFFIX}.999999999.partial"  # no such pid
    mine = tmp_path / f".b{F.SUFFIX}.{os.getpid()}.partial"
    other = tmp_path / ".notes.txt.partial"
    for f in (dead, mine, other):
        f.write_bytes(b"x")
    A.autosave(toy_session(), tmp_path)
    assert not dead.exists() and mine.exists() and other.exists()
