"""Issue 19, scale: --worm-width in predict and batch, --resample/--worm-width in evaluate.

Real bundled model on a real sample well for the user-pixel checks; the tiny model for the
evaluate and batch plumbing; BBBC010 for the evaluation.  No mocks.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_probseg.cli import main
from napari_probseg.sample_data import load_sample
from napari_probseg.scale import TRAINING_WORM_WIDTH, resample_image
from napari_probseg.scale_eval import resample_masks


@pytest.mark.parametrize("command, extra, needle", [
    ("predict", ["--worm-width", "-3"], "--worm-width"),
    ("predict", ["--worm-width", "wide"], "--worm-width"),
    ("batch", ["--worm-width", "0"], "--worm-width"),
    ("evaluate", ["--worm-width", "1e9"], "--worm-width"),
    ("evaluate", ["--resample", "0"], "--resample"),
    ("evaluate", ["--resample", "x2"], "--resample"),
    ("evaluate", ["--resample", "nan"], "--resample"),
])
def test_bad_scale_options_give_one_line_and_exit_2(tmp_path: Path, capsys, command, extra, needle):
    head = {"predict": ["predict", "x.tif"], "evaluate": ["evaluate"], "batch": ["batch", str(tmp_path)]}[command]
    rc = main(head + ["--out", str(tmp_path / "out")] + extra)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and needle in err and "must be" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def _median_length(path: Path) -> float:
    with open(path, newline="") as f:
        return float(np.median([float(r["length_px"]) for r in csv.DictReader(f)]))


def test_predict_at_another_magnification_answers_in_the_users_pixels(tmp_path: Path, capsys):
    """A well shrunk to 0.6x, default options: the width is estimated and said, every output has the
    input's shape, and worm lengths are the 1x lengths times 0.6 (the user's pixels, not the model's)."""
    well = load_sample("C10")[:, 60:460, 80:600]
    small = resample_image(well, 0.6)
    tifffile.imwrite(tmp_path / "one.tif", well)
    tifffile.imwrite(tmp_path / "small.tif", small)
    rc = main(["predict", str(tmp_path / "one.tif"), "--out", str(tmp_path / "o"), "--draws", "2", "--worm-width", "off"])
    assert rc == 0, capsys.readouterr().err
    assert "worm width" not in capsys.readouterr().out
    rc = main(["predict", str(tmp_path / "small.tif"), "--out", str(tmp_path / "o"), "--draws", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "px (estimated; give --worm-width to override); image resampled x" in out, out
    shape = small.shape[1:]
    assert tifffile.imread(tmp_path / "o" / "small_labels.tif").shape == shape
    assert tifffile.imread(tmp_path / "o" / "small_entropy.tif").shape == shape
    with np.load(tmp_path / "o" / "small_probabilities.npz") as z:
        assert z["probabilities"].shape[1:] == shape
        meta = json.loads(str(z["meta"]))
    assert meta["worm_width_mode"] == "auto" and meta["scale_factor"] > 1.3
    assert meta["worm_width"] == pytest.approx(0.6 * TRAINING_WORM_WIDTH, rel=0.2)
    with open(tmp_path / "o" / "small_review.csv", newline="") as f:
        assert all(0 <= float(r["y"]) < shape[0] and 0 <= float(r["x"]) < shape[1] for r in csv.DictReader(f))
    ratio = _median_length(tmp_path / "o" / "small_worms.csv") / _median_length(tmp_path / "o" / "one_worms.csv")
    assert ratio == pytest.approx(0.6, rel=0.2), ratio


def test_resampled_masks_match_the_resampled_image():
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 30:90, 50:60] = True
    masks[1, 10:20, 10:150] = True
    for f in (0.6, 1.6):
        out = resample_masks(masks, f)
        assert out.shape[1:] == resample_image(np.zeros((1, 120, 160)), f).shape[1:]
        assert out.sum(axis=(1, 2)) == pytest.approx(masks.sum(axis=(1, 2)) * f * f, rel=0.15)


def test_evaluate_resampled_records_the_scale(tmp_path: Path, capsys, tiny_checkpoint: Path, data_dir: Path):
    out = tmp_path / "ev"
    rc = main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C04",
               "--out", str(out), "--draws", "1", "--resample", "0.5", "--worm-width", str(TRAINING_WORM_WIDTH / 2)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["scale"]["resample"] == 0.5 and m["scale"]["per_well"]["C04"]["scale_factor"] == pytest.approx(2.0)
    with np.load(out / "predictions" / "C04.npz") as z:
        assert z["all_probabilities"].shape[1:] == (260, 348)  # 520 x 696 halved: scored at the resampled size
    assert "resampled x0.5" in (out / "report.md").read_text()
    capsys.readouterr()
    rc = main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C04",
               "--out", str(tmp_path / "ev2"), "--draws", "1", "--reuse", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--resample 0.5" in err and len(err.strip().splitlines()) == 1, err


def test_batch_records_the_width_and_reruns_when_it_changes(tmp_path: Path, tiny_checkpoint: Path):
    from napari_probseg.batch import WellInput, process_well
    from napari_probseg.batch_markers import BatchSettings, is_complete
    from napari_probseg.checkpoint import load_checkpoint

    img = load_sample("C10")[:, 200:264, 250:330]
    files = []
    for c, tag in enumerate(("w1", "w2")):
        tifffile.imwrite(tmp_path / f"s_C10_{tag}_.tif", img[c])
        files.append(str(tmp_path / f"s_C10_{tag}_.tif"))
    well = WellInput("C10", tuple(files), ("_w1_", "_w2_"))
    sha = load_checkpoint(tiny_checkpoint).sha256
    given = BatchSettings(sha, 2, 0.75, 0, TRAINING_WORM_WIDTH / 2)
    row = process_well(well, str(tmp_path / "out"), str(tiny_checkpoint), sha, given)
    assert row["status"] == "ok" and row["scale_factor"] == pytest.approx(2.0), row
    assert tifffile.imread(tmp_path / "out" / "C10_labels.tif").shape == (64, 80)
    assert is_complete(tmp_path / "out", well, given)
    assert not is_complete(tmp_path / "out", well, BatchSettings(sha, 2, 0.75, 0, "auto"))
