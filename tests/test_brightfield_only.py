"""Issue 19: a model trained with the fluorescence channel blanked segments brightfield alone.

Real tiny models saved with (and without) the header entry; real sample wells; no mocks.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import tifffile
import torch

from napari_probseg.channels import NEEDS_BOTH, allows_brightfield_only, channel_meta
from napari_probseg.checkpoint import CheckpointError, PostprocessConfig, load_checkpoint, save_checkpoint
from napari_probseg.cli import main
from napari_probseg.data import InputError
from napari_probseg.inference import predict, prepare_input
from napari_probseg.sample_data import load_sample
from napari_probseg.train import blank_fluorescence, train

from .conftest import tiny_model

CROP = (slice(None), slice(100, 164), slice(200, 280))


@pytest.fixture
def bf_checkpoint(tmp_path: Path) -> Path:
    """A tiny model whose header says it was trained with fluorescence blanked (as train.py writes it)."""
    meta = {"note": "test", **channel_meta(0.25)}
    return save_checkpoint(tmp_path / "bf.safetensors", tiny_model(), PostprocessConfig(min_size=5, mc_draws=2), meta)


def test_header_says_which_channels_the_model_needs(bf_checkpoint: Path, tiny_checkpoint: Path):
    assert channel_meta(0.0) == {"channels": ["w1 fluorescence", "w2 brightfield"]}
    assert channel_meta(0.25)["optional_channels"] == ["w1"]
    assert load_checkpoint(bf_checkpoint).model.brightfield_only
    old = load_checkpoint(tiny_checkpoint)  # no entry: both channels required
    assert not allows_brightfield_only(old.meta) and not old.model.brightfield_only


@pytest.mark.parametrize("bad", [["w2"], "w1", [1]])
def test_a_hand_edited_channel_entry_is_refused(tmp_path: Path, bad):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), meta={"optional_channels": bad})
    with pytest.raises(CheckpointError, match="optional_channels"):
        load_checkpoint(path)


def test_the_zero_plane_is_exactly_what_training_blanking_feeds(bf_checkpoint: Path):
    model = load_checkpoint(bf_checkpoint).model
    both = load_sample("C10")[CROP]
    alone = prepare_input(both[1], model)
    blanked = blank_fluorescence(prepare_input(both, model)[None], 1.0, torch.Generator().manual_seed(0))[0]
    assert alone.shape == blanked.shape == (2, 64, 80)
    assert torch.equal(alone, blanked) and not alone[0].any()
    assert torch.equal(prepare_input(both[1:], model), alone)  # [1,H,W] too


def test_a_model_needing_both_channels_says_what_to_give(tiny_checkpoint: Path):
    model = load_checkpoint(tiny_checkpoint).model
    with pytest.raises(InputError, match="give both, or use a model trained for brightfield alone"):
        prepare_input(load_sample("C10")[CROP][1], model)


def test_a_constant_fluorescence_channel_is_still_refused_in_two_channel_input(bf_checkpoint: Path):
    image = load_sample("C10")[CROP].copy()
    image[0] = 7
    with pytest.raises(InputError, match="channel 0 of the image is empty or constant"):
        prepare_input(image, load_checkpoint(bf_checkpoint).model)


def test_predict_on_brightfield_alone(bf_checkpoint: Path):
    lm = load_checkpoint(bf_checkpoint)
    pred = predict(lm.model, load_sample("C10")[CROP][1], lm.postprocess, draws=2)
    assert pred.entropy.shape == (64, 80)


def test_cli_predict_single_tiff(tmp_path: Path, capsys, bf_checkpoint: Path, tiny_checkpoint: Path):
    tifffile.imwrite(tmp_path / "single.tif", load_sample("C10")[CROP][1])
    rc = main(["predict", str(tmp_path / "single.tif"), "--model", str(bf_checkpoint), "--out", str(tmp_path / "o"),
               "--draws", "2"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "single_labels.tif").exists()
    header = (tmp_path / "o" / "single_worms.csv").read_text().splitlines()[0]
    assert "mean_intensity_w2" in header and "_w1" not in header  # brightfield columns, not fluorescence
    capsys.readouterr()
    rc = main(["predict", str(tmp_path / "single.tif"), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and NEEDS_BOTH in err, err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_train_writes_the_entry_when_fluorescence_is_dropped(tmp_path: Path):
    from dataclasses import replace

    from tests.test_train_checkpoint import cfg, toy_wells

    blanked = train(replace(cfg(tmp_path / "a", 1), drop_fluorescence=0.25), wells=toy_wells())
    plain = train(cfg(tmp_path / "b", 1), wells=toy_wells())
    assert load_checkpoint(blanked).meta["optional_channels"] == ["w1"] and load_checkpoint(blanked).model.brightfield_only
    assert load_checkpoint(plain).meta["channels"] == ["w1 fluorescence", "w2 brightfield"]
    assert not load_checkpoint(plain).model.brightfield_only

def test_evaluate_brightfield_only_records_the_flag(tmp_path: Path, capsys, bf_checkpoint: Path, tiny_checkpoint: Path,
                                                   data_dir: Path):
    out = tmp_path / "ev"
    rc = main(["evaluate", "--model", str(bf_checkpoint), "--data", str(data_dir), "--wells", "C04",
               "--out", str(out), "--draws", "1", "--brightfield-only"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["brightfield_only"] is True
    assert "brightfield (w2) alone" in (out / "report.md").read_text()
    capsys.readouterr()
    rc = main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C04",
               "--out", str(tmp_path / "ev2"), "--brightfield-only"])
    err = capsys.readouterr().err
    assert rc == 2 and NEEDS_BOTH in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ev2" / "metrics.json").exists()


def test_batch_runs_a_well_without_its_fluorescence_file(tmp_path: Path, bf_checkpoint: Path, tiny_checkpoint: Path):
    from napari_probseg.batch import run_batch

    inp = tmp_path / "in"
    inp.mkdir()
    for w in ("C04", "C10"):
        img = load_sample(w)
        for c, tag in enumerate(("w1", "w2")):
            if not (w == "C10" and tag == "w1"):  # C10's fluorescence file is absent
                tifffile.imwrite(inp / f"sample_{w}_{tag}_crop.tif", img[c, 200:264, 250:330])
    r = run_batch(inp, tmp_path / "out", bf_checkpoint, draws=2, workers=1, progress=False)
    rows = {row["well"]: row for row in r.rows}
    assert rows["C10"]["status"] == "ok" and rows["C04"]["status"] == "ok", rows
    assert (tmp_path / "out" / "C10_labels.tif").exists()
    assert "mean_intensity_w2" in (tmp_path / "out" / "C10_worms.csv").read_text().splitlines()[0]
    r = run_batch(inp, tmp_path / "out2", tiny_checkpoint, draws=2, workers=1, progress=False)
    rows = {row["well"]: row for row in r.rows}
    assert rows["C10"]["status"] == "error" and NEEDS_BOTH in rows["C10"]["error"] and rows["C04"]["status"] == "ok"


def test_a_file_trained_before_the_entry_gets_it_from_its_own_train_config(tmp_path: Path):
    from dataclasses import asdict

    from napari_probseg.checkpoint import record_channels
    from napari_probseg.train import TrainConfig

    old = save_checkpoint(tmp_path / "old.safetensors", tiny_model(),
                          meta={"train_config": asdict(TrainConfig(drop_fluorescence=0.25))})
    plain = save_checkpoint(tmp_path / "plain.safetensors", tiny_model(), meta={"train_config": asdict(TrainConfig())})
    assert not load_checkpoint(old).model.brightfield_only  # no entry: both needed
    assert record_channels(old) and load_checkpoint(old).model.brightfield_only
    assert not record_channels(plain) and load_checkpoint(plain).meta["channels"] == ["w1 fluorescence", "w2 brightfield"]
