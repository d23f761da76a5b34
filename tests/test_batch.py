"""``probseg batch``: discovery, restart without loss or duplicates, bad wells, CLI errors.

Wells are 64x80 crops of the bundled sample wells (BBBC010 only for the tests on bad
wells and discovery) and the model is the tiny U-Net, so the
whole file runs in well under two minutes on two busy cores.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_probseg.batch import OUTPUT_KEYS, discover_wells, run_batch
from napari_probseg.cli import main
from napari_probseg.data import channel_files

WELLS = ("C04", "C10", "D21")  # the bundled sample wells: the restart tests need no BBBC010
DRAWS = 2


def crop_well(data_dir: Path, well: str, dest: Path, channels=("w1", "w2")) -> list[Path]:
    """Write 64x80 crops of a well's channel files under their original names."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for c, f in channel_files(data_dir, well).items():
        if c in channels:
            tifffile.imwrite(dest / f.name, tifffile.imread(f)[200:264, 250:330])
            out.append(dest / f.name)
    return out


@pytest.fixture
def wells_dir(tmp_path: Path) -> Path:
    """64x80 crops of the bundled sample wells, one TIFF per channel as BBBC010 names them."""
    from napari_probseg.sample_data import load_sample

    dest = tmp_path / "in"
    dest.mkdir()
    for w in WELLS:
        img = load_sample(w)
        for c, tag in enumerate(("w1", "w2")):
            tifffile.imwrite(dest / f"sample_{w}_{tag}_crop.tif", img[c, 200:264, 250:330])
    return dest


@pytest.fixture(scope="module")
def scheduler():
    """One single-process worker shared by the tests (starting a cluster costs seconds)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_complete(out: Path, wells) -> None:
    rows = summary(out)
    assert sorted(r["well"] for r in rows) == sorted(wells)  # each well exactly once
    assert all(r["status"] == "ok" for r in rows), rows
    assert sorted(int(r["review_rank"]) for r in rows) == list(range(1, len(wells) + 1))
    scores = [float(r["review_score"]) for r in sorted(rows, key=lambda r: int(r["review_rank"]))]
    assert scores == sorted(scores, reverse=True)  # rank 1 = most uncertain
    for r in rows:  # the rank uses the review items: the score sums the well's _review.csv
        with open(out / f"{r['well']}_review.csv", newline="") as f:
            listed = list(csv.DictReader(f))
        assert int(r["review_items"]) == len(listed)
        assert float(r["review_score"]) == pytest.approx(sum(float(i["score"]) for i in listed), abs=0.05)
    for w in wells:
        for suffix in ("_labels.tif", "_probabilities.npz", "_entropy.tif", "_peaks.csv", "_review.csv", "_worms.csv"):
            assert (out / f"{w}{suffix}").is_file()
        row = next(r for r in rows if r["well"] == w)
        worms = list(csv.DictReader(open(out / f"{w}_worms.csv", newline="")))
        with np.load(out / f"{w}_probabilities.npz") as z:  # rows are label values: instance index + 1
            kept = np.flatnonzero(z["instances"].reshape(len(z["instances"]), -1).any(1)) + 1
        assert [int(r["label"]) for r in worms] == kept.tolist()
        assert len(worms) == int(row["instances"]) and "mean_intensity_w2" in (worms[0] if worms else {"mean_intensity_w2": 0})
        assert int(row["count_low"]) <= int(row["count"]) <= int(row["count_high"]) and row["count_level"] == "0.9"
        assert len(list(out.glob(f"{w}_*"))) == len(OUTPUT_KEYS)  # write_prediction's layout, nothing else
        assert tifffile.imread(out / f"{w}_labels.tif").shape == (64, 80)
        with np.load(out / f"{w}_probabilities.npz") as z:
            assert z["probabilities"].shape[1:] == (64, 80)
    assert not list(out.glob(".*.partial"))


def test_discover_bbbc010(data_dir: Path):
    wells = {w.name: w for w in discover_wells(data_dir / "images")}
    assert len(wells) == 98  # 100 wells, C13 and C14 have no files at all
    assert wells["A01"].files[0].endswith(".tif") and "_A01_w1_" in wells["A01"].files[0]
    assert "_A01_w2_" in wells["A01"].files[1]
    assert wells["D24"].files[1] is None  # D24 w2 is missing: reported when run


def test_discover_csv(tmp_path: Path):
    (tmp_path / "a1.tif").touch()
    (tmp_path / "a2.tif").touch()
    (tmp_path / "wells.csv").write_text("well,fluorescence,brightfield\nX1,a1.tif,a2.tif\nX2,a1.tif,\n")
    w = discover_wells(tmp_path / "wells.csv")
    assert [x.name for x in w] == ["X1", "X2"]
    assert w[0].files == (str(tmp_path / "a1.tif"), str(tmp_path / "a2.tif"))
    assert w[1].files[1] is None and w[1].channels == ("fluorescence", "brightfield")


def test_restart_loses_and_duplicates_nothing(wells_dir: Path, tiny_checkpoint: Path, scheduler: str, tmp_path: Path):
    out = tmp_path / "out"
    r = run_batch(wells_dir, out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, max_wells=1, progress=False)
    assert (r.processed, r.skipped, r.pending) == (1, 0, 2) and len(r.rows) == 1
    r = run_batch(wells_dir, out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, max_wells=1, progress=False)
    assert (r.processed, r.skipped, r.pending) == (1, 1, 1)
    first = (out / "C04.done.json").stat().st_mtime_ns
    # a crash while C10 was rewritten: a truncated output and a stray temp file must not count as done
    npz = out / "C10_probabilities.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    (out / ".C10_labels.tif.partial").write_bytes(b"half")
    r = run_batch(wells_dir, out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, progress=False)
    assert (r.processed, r.skipped, r.pending) == (2, 1, 0)
    assert (out / "C04.done.json").stat().st_mtime_ns == first  # complete wells are not redone
    assert_complete(out, WELLS)  # the stray temp file was overwritten and renamed
    # other settings (more draws) make the old outputs stale: everything is redone
    r = run_batch(wells_dir, out, tiny_checkpoint, draws=DRAWS + 1, scheduler=scheduler, max_wells=0, progress=False)
    assert (r.processed, r.skipped, r.pending) == (0, 0, 3)


def test_cli_killed_and_resumed(wells_dir: Path, tiny_checkpoint: Path, scheduler: str, tmp_path: Path, capsys):
    """Kill a CLI batch (local cluster) after its first well, then finish it on another cluster."""
    out = tmp_path / "out"
    args = ["batch", str(wells_dir / "*_w?_*.tif"), "--out", str(out), "--model", str(tiny_checkpoint), "--draws", str(DRAWS)]
    proc = subprocess.Popen([sys.executable, "-m", "napari_probseg.cli", *args, "--workers", "1"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # seconds on an idle machine; minutes behind a training run
        while not list(out.glob("*.done.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its scheduler and its worker process
        proc.wait()
    done_before = len(list(out.glob("*.done.json")))
    assert done_before, "the batch finished no well before it was killed"
    assert main([*args, "--scheduler", scheduler]) == 0
    assert f"{len(WELLS) - done_before} wells run, {done_before} already done" in capsys.readouterr().out
    assert_complete(out, WELLS)


def test_bad_wells_are_reported_and_retried(tmp_path: Path, data_dir: Path, tiny_checkpoint: Path, scheduler: str):
    inp, out = tmp_path / "in", tmp_path / "out"
    crop_well(data_dir, "C03", inp)
    w1 = crop_well(data_dir, "C06", inp)[0]
    w1.write_bytes(w1.read_bytes()[:5000])  # truncated fluorescence file (an interrupted copy)
    w1 = crop_well(data_dir, "C09", inp)[0]
    w1.write_bytes(b"II*\x00 not a TIFF")  # garbage that tifffile reads as an empty array
    crop_well(data_dir, "C07", inp, channels=("w1",))  # brightfield missing
    small = crop_well(data_dir, "C08", inp)[1]
    tifffile.imwrite(small, tifffile.imread(small)[:32, :40])  # channels of different shapes
    run_batch(inp, out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, progress=False)
    rows = {r["well"]: r for r in summary(out)}
    assert len(rows) == 5 and rows["C03"]["status"] == "ok" and rows["C03"]["review_rank"] == "1"
    for w in ("C06", "C09"):
        assert rows[w]["status"] == "error" and "cannot read image" in rows[w]["error"]
    assert rows["C07"]["status"] == "error" and "missing for '_w2_'" in rows["C07"]["error"]
    assert rows["C08"]["status"] == "error" and "different shapes" in rows["C08"]["error"]
    assert not (out / "C06_labels.tif").exists() and (out / "C06.error.json").exists()
    crop_well(data_dir, "C07", inp, channels=("w2",))  # fix one: failed wells are retried
    r = run_batch(inp, out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, progress=False)
    assert (r.processed, r.skipped) == (4, 1)
    rows = {r["well"]: r for r in summary(out)}
    assert len(rows) == 5 and rows["C07"]["status"] == "ok" and not (out / "C07.error.json").exists()


def test_cli_clear_errors(tmp_path: Path, tiny_checkpoint: Path, capsys):
    assert main(["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--model", str(tiny_checkpoint)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--model", str(tiny_checkpoint)]) == 2
    assert "no image files in folder" in capsys.readouterr().err
    (tmp_path / "empty" / "x_w3_.tif").touch()
    assert main(["batch", str(tmp_path / "empty" / "x_w3_.tif"), "--out", str(tmp_path / "o")]) == 2
    assert "is one file" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "channel patterns" in capsys.readouterr().err


def test_same_names_from_another_folder_are_refused(tmp_path: Path, data_dir: Path, tiny_checkpoint: Path,
                                                     scheduler: str, capsys):
    """Issue 12.8: wells of the same name from another input folder must not overwrite or be skipped."""
    out = tmp_path / "out"
    crop_well(data_dir, "C03", tmp_path / "a")
    crop_well(data_dir, "C03", tmp_path / "b")
    run_batch(tmp_path / "a", out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, progress=False)
    before = (out / "C03.done.json").read_text()
    args = ["batch", str(tmp_path / "b"), "--out", str(out), "--model", str(tiny_checkpoint), "--draws", "2",
            "--scheduler", scheduler]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "C03" in err and "other input files" in err and str(tmp_path / "a") in err
    assert (out / "C03.done.json").read_text() == before


def test_summary_lists_only_wells_of_the_current_settings(wells_dir: Path, tmp_path: Path, tiny_checkpoint: Path,
                                                          scheduler: str):
    out = tmp_path / "out"
    run_batch(wells_dir, out, tiny_checkpoint, draws=DRAWS, scheduler=scheduler, progress=False)
    r = run_batch(wells_dir, out, tiny_checkpoint, draws=1, max_wells=1, scheduler=scheduler, progress=False)
    assert r.processed == 1 and r.pending == 2 and r.other_settings == 2
    assert [row["well"] for row in summary(out)] == [r.rows[0]["well"]]


def test_well_without_worms_is_ok(tmp_path: Path, tiny_checkpoint: Path, scheduler: str):
    """Issue 12.1: a field outside the well (background only) is a valid, empty result."""
    from napari_probseg.sample_data import load_sample

    inp = tmp_path / "in"
    inp.mkdir()
    img = load_sample("C10")  # bundled: the corner of C10 is outside the well
    for c, tag in enumerate(("w1", "w2")):
        tifffile.imwrite(inp / f"sample_C10_{tag}_corner.tif", img[c, :64, :64])
    r = run_batch(inp, tmp_path / "out", "bbbc010-concrete", draws=DRAWS, scheduler=scheduler, progress=False)
    assert r.rows[0]["status"] == "ok", r.rows[0]
    (row,) = summary(tmp_path / "out")
    assert row["status"] == "ok" and row["error"] == "" and row["instances"] == "0" and row["peaks"] == "0"


def test_markers_of_the_old_format_count_for_the_same_settings(tmp_path: Path):
    """Markers written before the rename hold 'threshold'; they still mean these settings."""
    import json

    from napari_probseg.batch import BatchSettings, WellInput
    from napari_probseg.batch_markers import _mark, is_complete

    out = tmp_path / "out"
    out.mkdir()
    well = WellInput("X1", ("a.tif", "b.tif"))
    s = BatchSettings("abc", 2, 0.75, 0, "off")  # old markers: segmented at the image's own scale
    (out / "X1_labels.tif").write_bytes(b"12")
    outputs = {k: ["X1_labels.tif", 2] for k in OUTPUT_KEYS}
    _mark(out, well, {"status": "ok"}, s, outputs)
    assert is_complete(out, well, s) and not is_complete(out, well, BatchSettings("abc", 3, 0.75, 0))
    rec = json.loads((out / "X1.done.json").read_text())
    rec["config"] = {"model_sha256": "abc", "draws": 2, "threshold": 0.75, "seed": 0}
    (out / "X1.done.json").write_text(json.dumps(rec))
    assert is_complete(out, well, s) and not is_complete(out, well, BatchSettings("abc", 2, 0.75, 0, "auto"))
