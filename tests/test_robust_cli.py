"""Issue 12: the CLI as a careless or hostile user meets it.

Every bad input: exit code 2, a one-line message on stderr, no traceback, and nothing
half-written in the output folder.  Table-driven over options, output folders, inputs
and hand-edited model files; hypothesis drives the option parser with arbitrary text.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_probseg.cli import build_parser, main
from napari_probseg.sample_data import load_sample
from napari_probseg.validation import RANGES


@pytest.fixture
def image_spec(tmp_path: Path) -> str:
    img = load_sample("C10")[:, 100:164, 200:280]
    for c in range(2):
        tifffile.imwrite(tmp_path / f"img_w{c + 1}.tif", img[c])
    return f"{tmp_path / 'img_w1.tif'},{tmp_path / 'img_w2.tif'}"


def run(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


def assert_nothing_written(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*")] if folder.exists() else []
    assert left == [], left


# ---------------------------------------------------------------- options out of range
OPTION_CASES = [
    ("predict", ["--draws", "0"], "--draws"),
    ("predict", ["--draws", "100000"], "<= 256"),
    ("predict", ["--draws", "2.5"], "integer"),
    ("predict", ["--binarize", "nan"], "--binarize"),
    ("predict", ["--binarize", "1.5"], "<= 1"),
    ("predict", ["--binarize", "0"], "> 0"),
    ("predict", ["--binarize", "inf"], "--binarize"),
    ("predict", ["--threshold", "inf"], "--threshold"),  # the deprecated alias names itself
    ("predict", ["--min-size", "0"], "--min-size"),
    ("predict", ["--seed", "-1"], "--seed"),
    ("train", ["--steps", "0"], "--steps"),
    ("train", ["--steps", "-5"], "--steps"),
    ("train", ["--batch", "0"], "--batch"),
    ("train", ["--crop", "0"], "--crop"),
    ("train", ["--checkpoint-every", "0"], "--checkpoint-every"),
    ("train", ["--lr", "0"], "--lr"),
    ("train", ["--lr", "nan"], "--lr"),
    ("evaluate", ["--draws", "0"], "--draws"),
    ("evaluate", ["--binarize", "-0.1"], "--binarize"),
    ("batch", ["--workers", "0"], "--workers"),
    ("batch", ["--max-wells", "-1"], "--max-wells"),
    ("batch", ["--draws", "0"], "--draws"),
    ("batch", ["--binarize", "nan"], "--binarize"),
]


@pytest.mark.parametrize("command, extra, needle", OPTION_CASES)
def test_option_out_of_range_is_refused(tmp_path: Path, capsys, command: str, extra: list[str], needle: str):
    out = tmp_path / "out"
    head = {"predict": ["predict", "x.tif"], "train": ["train"], "evaluate": ["evaluate"],
            "batch": ["batch", str(tmp_path)]}[command]
    rc = main(head + ["--out", str(out)] + extra)
    assert_refused(rc, capsys.readouterr().err, needle, "must be")
    assert not out.exists()


NUMERIC = {"--draws": "draws", "--binarize": "binarize", "--min-size": "min_size", "--seed": "seed"}


@settings(max_examples=150, deadline=None)
@given(flag=st.sampled_from(sorted(NUMERIC)),
       text=st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(repr),
                      st.text(min_size=1, max_size=8).filter(lambda t: not t.startswith("-"))))
def test_any_option_text_parses_in_range_or_exits_2_with_one_line(flag: str, text: str):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(["predict", "x.tif", "--out", "o", flag, text])
        except SystemExit as exc:
            assert exc.code == 2
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1 and flag in lines[0], err.getvalue()
            return
    value = getattr(args, flag[2:].replace("-", "_"))
    assert RANGES[NUMERIC[flag]].ok(value) and math.isfinite(value)


# ---------------------------------------------------------------- outputs that cannot be written
def _unwritable_outs(tmp_path: Path) -> list[tuple[Path, str]]:
    afile = tmp_path / "afile"
    afile.write_text("x")
    return [(afile, "is a file"), (afile / "sub", "not writable")]


@pytest.mark.parametrize("command", ["predict", "train", "evaluate", "batch"])
def test_unwritable_output_is_refused_before_compute(tmp_path: Path, capsys, image_spec: str,
                                                     tiny_checkpoint: Path, command: str):
    for out, needle in _unwritable_outs(tmp_path):
        head = {"predict": ["predict", image_spec, "--model", str(tiny_checkpoint)],
                "train": ["train", "--steps", "1"], "evaluate": ["evaluate", "--model", str(tiny_checkpoint)],
                "batch": ["batch", str(tmp_path), "--model", str(tiny_checkpoint)]}[command]
        rc, err = run(head + ["--out", str(out)], capsys)
        assert_refused(rc, err, str(out), needle)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_folder(tmp_path: Path, capsys, image_spec: str, tiny_checkpoint: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, err = run(["predict", image_spec, "--model", str(tiny_checkpoint), "--out", str(ro)], capsys)
        assert_refused(rc, err, str(ro), "not writable")
    finally:
        ro.chmod(0o700)


def test_output_name_taken_by_a_folder(tmp_path: Path, capsys, image_spec: str, tiny_checkpoint: Path):
    out = tmp_path / "out"
    (out / "img_w1_labels.tif").mkdir(parents=True)
    rc, err = run(["predict", image_spec, "--model", str(tiny_checkpoint), "--out", str(out), "--draws", "1"], capsys)
    assert_refused(rc, err, "img_w1_labels.tif", "not a file")


# ---------------------------------------------------------------- inputs
def test_channels_of_different_shapes_name_the_shapes(tmp_path: Path, capsys, tiny_checkpoint: Path):
    tifffile.imwrite(tmp_path / "a_w1.tif", np.ones((64, 80), np.uint16))
    tifffile.imwrite(tmp_path / "a_w2.tif", np.ones((60, 80), np.uint16))
    rc, err = run(["predict", f"{tmp_path / 'a_w1.tif'},{tmp_path / 'a_w2.tif'}", "--model", str(tiny_checkpoint),
                   "--out", str(tmp_path / "out")], capsys)
    assert_refused(rc, err, "a_w1.tif (64, 80)", "a_w2.tif (60, 80)")
    assert_nothing_written(tmp_path / "out")


def test_same_file_names_from_two_folders_are_refused(tmp_path: Path, capsys, tiny_checkpoint: Path):
    img = load_sample("C10")[:, :64, :64]
    specs = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for c in range(2):
            tifffile.imwrite(tmp_path / d / f"well_w{c + 1}.tif", img[c])
        specs.append(f"{tmp_path / d / 'well_w1.tif'},{tmp_path / d / 'well_w2.tif'}")
    rc, err = run(["predict", *specs, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "out")], capsys)
    assert_refused(rc, err, "would both write well_w1_*")
    assert_nothing_written(tmp_path / "out")


def test_a_bad_second_input_stops_before_the_first_is_computed(tmp_path: Path, capsys, image_spec: str,
                                                                tiny_checkpoint: Path):
    rc, err = run(["predict", image_spec, str(tmp_path / "missing.tif"), "--model", str(tiny_checkpoint),
                   "--out", str(tmp_path / "out")], capsys)
    assert_refused(rc, err, "missing.tif")
    assert_nothing_written(tmp_path / "out")


def test_evaluate_unknown_well(tmp_path: Path, capsys, data_dir: Path, tiny_checkpoint: Path):
    rc, err = run(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C10,Z99",
                   "--out", str(tmp_path / "ev")], capsys)
    assert_refused(rc, err, "Z99", "not in split 'test'", "C03")


# ---------------------------------------------------------------- hand-edited model files
def _edited(src: Path, dst: Path, header_edit=None, tensor_edit=None) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        header = json.loads(f.metadata()["probseg"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if header_edit:
        header = header_edit(header)
    if tensor_edit:
        tensor_edit(tensors)
    save_file(tensors, str(dst), metadata={"probseg": json.dumps(header)})
    return dst


def _set(section: str, key: str, value):
    def edit(h):
        h[section][key] = value
        return h
    return edit


def _nan_weight(t: dict) -> None:
    k = next(k for k in t if k.startswith("model.") and t[k].ndim == 4)
    t[k][0, 0, 0, 0] = float("nan")


MODEL_CASES = [
    ("in_channels as text", _set("model", "in_channels", "2"), None, "model.in_channels"),
    ("in_channels true", _set("model", "in_channels", True), None, "model.in_channels"),
    ("terabyte network", _set("model", "base_filters", 1_000_000), None, "model.base_filters"),
    ("too many levels", _set("model", "levels", 40), None, "model.levels"),
    ("big but in range", lambda h: {**h, "model": {**h["model"], "base_filters": 128, "levels": 8}}, None,
     "parameters"),
    ("five classes", _set("model", "n_classes", 5), None, "model.n_classes"),
    ("unknown variant", _set("model", "variant", "transformer"), None, "variant"),
    ("zero bandwidth", _set("postprocess", "bandwidth", 0), None, "postprocess.bandwidth"),
    ("binarize 5", _set("postprocess", "binarize", 5), None, "postprocess.binarize"),
    ("zero draws", _set("postprocess", "mc_draws", 0), None, "postprocess.mc_draws"),
    ("min size as text", _set("postprocess", "min_size", "50"), None, "postprocess.min_size"),
    ("header a list", lambda h: [h], None, "expected"),
    ("model not an object", lambda h: {**h, "model": [1, 2]}, None, "'model'"),
    ("meta a string", lambda h: {**h, "meta": "x"}, None, "'meta'"),
    ("NaN weight", None, _nan_weight, "NaN"),
]


@pytest.mark.parametrize("name, header_edit, tensor_edit, needle", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_hand_edited_model_is_refused(tmp_path: Path, capsys, image_spec: str, tiny_checkpoint: Path,
                                      name, header_edit, tensor_edit, needle):
    bad = _edited(tiny_checkpoint, tmp_path / "bad.safetensors", header_edit, tensor_edit)
    rc, err = run(["predict", image_spec, "--model", str(bad), "--out", str(tmp_path / "out")], capsys)
    assert_refused(rc, err, "bad.safetensors", needle)
    assert_nothing_written(tmp_path / "out")


def test_resume_from_a_weights_only_file_is_refused(tmp_path: Path, capsys, tiny_checkpoint: Path, data_dir: Path):
    rc, err = run(["train", "--out", str(tmp_path / "run"), "--data", str(data_dir), "--wells", "A01",
                   "--resume", str(tiny_checkpoint), "--steps", "2"], capsys)
    assert_refused(rc, err, "not a resume checkpoint", "--init")


def test_subprocess_never_prints_a_traceback(tmp_path: Path, image_spec: str, tiny_checkpoint: Path):
    """The installed entry point too (argparse and import-time errors included)."""
    import subprocess
    import sys

    bad = _edited(tiny_checkpoint, tmp_path / "bad.safetensors", _set("postprocess", "bandwidth", 0))
    for argv in (["predict", image_spec, "--model", str(bad), "--out", str(tmp_path / "o")],
                 ["predict", image_spec, "--draws", "0", "--out", str(tmp_path / "o")]):
        p = subprocess.run([sys.executable, "-m", "napari_probseg.cli", *argv], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_library_refuses_bad_options_too(tiny_checkpoint: Path):
    """Scripts calling the library get the same range checks as the CLI."""
    from napari_probseg.inference import predict
    from napari_probseg.models import load_model
    from napari_probseg.train import TrainConfig
    from napari_probseg.validation import OptionError

    lm = load_model(tiny_checkpoint)
    img = load_sample("C10")[:, :64, :64]
    for kw in ({"draws": 0}, {"binarize": float("nan")}, {"binarize": 2.0}):
        with pytest.raises(OptionError):
            predict(lm.model, img, lm.postprocess, **kw)
    for kw in ({"steps": 0}, {"batch": 0}, {"crop": 0}, {"checkpoint_every": 0}, {"lr": -1.0}):
        with pytest.raises(OptionError):
            TrainConfig(**kw)
    assert torch.isfinite(next(lm.model.parameters())).all()


def test_deprecated_threshold_flag_says_so_in_one_line(capsys):
    from napari_probseg.cli import build_parser

    args = build_parser().parse_args(["predict", "x.tif", "--out", "o", "--threshold", "0.6"])
    err = capsys.readouterr().err
    assert args.binarize == 0.6 and err.count("\n") == 1 and "--binarize" in err
    assert "--threshold" not in build_parser()._subparsers._group_actions[0].choices["predict"].format_help()


def test_only_domain_errors_are_reported_as_bad_input(capsys):
    """Bad input -> exit 2 with one line; any other exception (ValueError too) is a bug -> exit 1."""
    from napari_probseg.checkpoint import CheckpointError
    from napari_probseg.cli import _report
    from napari_probseg.validation import InputError, OptionError

    for exc in (InputError("bad image"), OptionError("bad option"), CheckpointError("bad model"),
                FileNotFoundError(2, "No such file", "x.tif")):
        assert _report(exc, False) == 2
        assert capsys.readouterr().err.startswith("probseg: error:")
    for exc in (ValueError("shapes do not match"), KeyError("k"), IndexError("i")):
        assert _report(exc, False) == 1
        assert "internal error" in capsys.readouterr().err


def test_default_data_dir_from_env_or_found_above_the_working_directory(tmp_path, monkeypatch):
    from napari_probseg.data import default_data_dir

    monkeypatch.setenv("PROBSEG_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("PROBSEG_DATA")
    (tmp_path / "shared" / "data" / "bbbc010").mkdir(parents=True)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert default_data_dir() == tmp_path / "shared" / "data" / "bbbc010"


def test_unknown_postprocess_key_is_refused_with_its_name():
    from napari_probseg.checkpoint import CheckpointError, PostprocessConfig

    with pytest.raises(CheckpointError, match="bandwith"):
        PostprocessConfig.from_dict({"bandwith": 2.0})
    assert PostprocessConfig.from_dict({"threshold": 3.0}).cluster_radius == 3.0
