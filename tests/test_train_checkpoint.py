import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_probseg.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from napari_probseg.data import Well
from napari_probseg.train import TrainConfig, export_weights, train
from tests.conftest import tiny_model


def toy_wells() -> list[Well]:
    rng = np.random.default_rng(0)
    img = rng.random((2, 96, 96)).astype(np.float32)
    masks = np.zeros((3, 96, 96), bool)
    masks[0, 10:30, 10:80] = masks[1, 50:70, 10:80] = masks[2, 10:80, 40:50] = True
    img[:, masks.any(0)] += 1.0
    return [Well("toy", img, masks)]


def cfg(tmp: Path, steps: int) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp), steps=steps, batch=2, crop=48, base_filters=4, levels=3, warmup=2,
                       checkpoint_every=1000, fast_cpu=False, device="cpu")


def tiny_train(tmp: Path, steps: int, **kw) -> Path:
    return train(cfg(tmp, steps), wells=toy_wells(), **kw)


def test_resume_continues_identically(tmp_path):
    full = tiny_train(tmp_path / "full", 4)
    tiny_train(tmp_path / "part", 2)
    resumed = tiny_train(tmp_path / "part", 4, resume=tmp_path / "part" / "last.safetensors")
    a, b = read_checkpoint(full)[1], read_checkpoint(resumed)[1]
    for k in a:
        if k.startswith("model."):
            assert torch.equal(a[k], b[k]), k
    rows = (tmp_path / "part" / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_dihedral_phase_trains_and_records_it(tmp_path):
    c = cfg(tmp_path, 3)
    c.augment = "dihedral"
    seen = []
    header, _ = read_checkpoint(train(c, wells=toy_wells(), progress=lambda s, t: seen.append(t["total"])))
    assert header["meta"]["step"] == 3 and header["meta"]["train_config"]["augment"] == "dihedral"
    assert len(seen) == 3 and all(np.isfinite(seen))
    with pytest.raises(ValueError, match="unknown augment 'rotate': choose one of warp, dihedral"):
        TrainConfig(augment="rotate")


def test_fine_tuning_on_sparse_labels_survives_crops_without_worms(tmp_path):
    # a user who corrected one small worm: most 24-px crops of this image hold no worm at all
    img = np.random.default_rng(1).random((2, 96, 96)).astype(np.float32)
    masks = np.zeros((1, 96, 96), bool)
    masks[0, 80:90, 80:94] = True
    c = cfg(tmp_path, 6)
    c.crop, c.augment = 24, "dihedral"
    seen = []
    train(c, wells=[Well("sparse", img, masks)], progress=lambda s, t: seen.append(t))
    assert len(seen) == 6 and all(np.isfinite(t["total"]) for t in seen)
    assert any(t["var"] == 0.0 and t["reg"] == 0.0 for t in seen)  # a batch without any worm was trained on


def test_stop_saves_checkpoint_and_reports_progress(tmp_path):
    seen = []
    path = tiny_train(tmp_path, 50, progress=lambda s, t: seen.append((s, t["total"])), should_stop=lambda: len(seen) >= 3)
    header, _ = read_checkpoint(path)
    assert header["meta"]["step"] == 3 and len(seen) == 3
    assert set(header["meta"]["dropout_rates"]) and all(np.isfinite(v) for _, v in seen)


def test_export_strips_resume_state(tmp_path):
    path = tiny_train(tmp_path, 1)
    out = export_weights(path, tmp_path / "ship.safetensors")
    keys = read_checkpoint(out)[1].keys()
    assert not any(k.startswith("extra.") for k in keys)
    lm = load_checkpoint(out)
    assert lm.model.cfg.base_filters == 4 and len(lm.sha256) == 64


def test_roundtrip_keeps_weights_and_config(tmp_path):
    m = tiny_model()
    p = save_checkpoint(tmp_path / "m.safetensors", m, meta={"who": "test"})
    lm = load_checkpoint(p)
    x = torch.rand(1, 2, 32, 32)
    assert torch.allclose(m.eval()(x)[0], lm.model(x)[0])
    assert lm.meta == {"who": "test"} and lm.postprocess.binarize == 0.75


def test_pickle_file_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.safetensors"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="evil.safetensors"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_truncated_and_missing_files(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    data = p.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(tmp_path / "cut.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_config_weight_mismatch_named(tmp_path):
    from safetensors.torch import load_file, save_file

    p = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    header, tensors = read_checkpoint(p)
    header["model"]["in_channels"] = 1
    save_file(tensors, str(tmp_path / "mis.safetensors"), metadata={"probseg": json.dumps(header)})
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "mis.safetensors")
    save_file(load_file(str(p)), str(tmp_path / "nohdr.safetensors"))
    with pytest.raises(CheckpointError, match="no napari-probseg header"):
        load_checkpoint(tmp_path / "nohdr.safetensors")


def test_old_header_key_threshold_is_read_as_cluster_radius(tmp_path):
    """Files written before the rename stored the cluster radius as postprocess.threshold."""
    import json

    from safetensors.torch import save_file

    from napari_probseg.checkpoint import PostprocessConfig, load_checkpoint, read_checkpoint, save_checkpoint
    from tests.conftest import tiny_model

    path = save_checkpoint(tmp_path / "new.safetensors", tiny_model(), PostprocessConfig(cluster_radius=3.5))
    header, tensors = read_checkpoint(path)
    assert header["postprocess"]["cluster_radius"] == 3.5 and "threshold" not in header["postprocess"]
    post = header["postprocess"]
    header["postprocess"] = {"bandwidth": post["bandwidth"], "threshold": 1.25, "min_size": 7, "binarize": 0.6,
                             "mc_draws": 4}
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"probseg": json.dumps(header)})
    lm = load_checkpoint(old)
    assert lm.postprocess == PostprocessConfig(bandwidth=post["bandwidth"], cluster_radius=1.25, min_size=7,
                                               binarize=0.6, mc_draws=4)
    header["postprocess"]["threshold"] = -1.0  # the old key is validated as a radius too
    save_file(tensors, str(old), metadata={"probseg": json.dumps(header)})
    with pytest.raises(Exception, match="postprocess.threshold"):
        load_checkpoint(old)


def test_learning_rate_schedule_warms_up_then_follows_the_cosine():
    """Independent of the code: linear warm-up to lr, cosine to min_lr_ratio * lr at the last step."""
    import math

    from napari_probseg.train import learning_rate

    c = TrainConfig(steps=110, warmup=10, lr=1e-3, min_lr_ratio=0.05)
    assert [learning_rate(c, s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])
    assert learning_rate(c, 10) == pytest.approx(1e-3)
    assert learning_rate(c, 60) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half-way: the cosine's midpoint
    assert learning_rate(c, 35) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert learning_rate(c, 110) == learning_rate(c, 500) == pytest.approx(5e-5)
    assert learning_rate(c, 60, total=210) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 4))))


def test_time_budget_does_not_change_the_callers_config(tmp_path):
    from napari_probseg.train import budget_steps

    c = cfg(tmp_path, 60)
    c.time_budget_s = 1e-9  # at the first calibration (step 50) the budget is spent: the run ends at 51
    header = read_checkpoint(train(c, wells=toy_wells()))[0]
    assert header["meta"]["step"] == 51 and header["meta"]["train_config"]["steps"] == 51
    assert c.steps == 60 and c.variant is None  # the caller's config as given
    assert budget_steps(10.0, 0, 50, 5.0, 1000) == 100 and budget_steps(10.0, 0, 49, 5.0, 1000) == 1000
    assert budget_steps(0.0, 0, 50, 5.0, 1000) == 1000


def test_init_from_refuses_contradicting_architecture_options(tmp_path):
    base = tiny_train(tmp_path / "a", 1)
    for kw in ({"variant": "baseline"}, {"levels": 4}, {"base_filters": 8}):
        c = cfg(tmp_path / "b", 1)
        c.base_filters = c.levels = None
        for k, v in kw.items():
            setattr(c, k, v)
        with pytest.raises(CheckpointError, match=next(iter(kw))):
            train(c, wells=toy_wells(), init_from=base)
    c = cfg(tmp_path / "c", 1)  # matching options (and unset ones) are fine
    c.variant = "concrete"
    assert train(c, wells=toy_wells(), init_from=base).exists()


@pytest.mark.skipif(not __import__("napari_probseg.devices", fromlist=["x"]).cpu_supports_bf16(),
                    reason="this CPU has no bf16 support")
def test_bf16_training_path_learns_and_records_it(tmp_path):
    c = cfg(tmp_path, 3)
    c.fast_cpu = True
    path = train(c, wells=toy_wells())
    header, tensors = read_checkpoint(path)
    assert header["meta"]["bf16"] is True
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == 3 and all(np.isfinite(float(r.split(",")[1])) for r in rows)
