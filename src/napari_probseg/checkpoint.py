"""Checkpoint files: safetensors weights + a JSON config in the header.

safetensors never unpickles, so a model file cannot execute code when loaded.  The
header's ``probseg`` entry holds the model config, normalisation, post-processing
parameters and training provenance; a resume checkpoint also stores the optimiser
moments and random-generator states as tensors.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .channels import allows_brightfield_only, check_channel_meta
from .model import ModelConfig, UNet

FORMAT = "napari-probseg/1"


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


# header keys of older files and the names they have now (one name per concept, issue 13)
LEGACY_POSTPROCESS_KEYS = {"threshold": "cluster_radius"}


@dataclass
class PostprocessConfig:
    bandwidth: float = 2.0  # mean-shift kernel bandwidth (embedding units)
    cluster_radius: float = 2.0  # a pixel joins the nearest mean-shift centre within this distance
    min_size: int = 50  # instances smaller than this (pixels) are dropped
    binarize: float = 0.75  # probability at which a pixel belongs to an instance
    mc_draws: int = 8

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessConfig:
        """From a checkpoint header; older files called ``cluster_radius`` ``threshold``.

        Unknown keys are refused (a typo must not silently fall back to a default).
        """
        unknown = sorted(set(d) - set(cls.__dataclass_fields__) - set(LEGACY_POSTPROCESS_KEYS))
        if unknown:
            raise CheckpointError(f"unknown post-processing keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        new = {LEGACY_POSTPROCESS_KEYS.get(k, k): v for k, v in d.items() if k not in cls.__dataclass_fields__}
        return cls(**{**new, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__}})


@dataclass
class LoadedModel:
    model: UNet
    postprocess: PostprocessConfig
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    sha256: str = ""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: UNet,
    postprocess: PostprocessConfig | None = None,
    meta: dict | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights (+ optional resume state) atomically: a crash never leaves half a file."""
    path = Path(path)
    header = {
        "format": FORMAT,
        "model": model.cfg.to_dict(),
        "postprocess": (postprocess or PostprocessConfig()).__dict__,
        "meta": meta or {},
    }
    tensors = {f"model.{k}": v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().contiguous().cpu()
    return _write(path, header, tensors)


def _write(path: str | Path, header: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """A checkpoint file from its header and tensors, atomically (every writer and rewriter here)."""
    from safetensors.torch import save_file

    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"probseg": json.dumps(header)}))


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a checkpoint file, with a clear error for a bad file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(
            f"model file {path} is not a readable napari-probseg checkpoint (safetensors): {exc}. "
            "It may be truncated, corrupt, or a different format (pickled .pt files are refused)."
        ) from exc
    if "probseg" not in meta:
        raise CheckpointError(f"model file {path} is a safetensors file but has no napari-probseg header")
    try:
        header = json.loads(meta["probseg"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"model file {path} has a corrupt header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else header
        raise CheckpointError(f"model file {path} has format {got!r}, expected {FORMAT!r}")
    validate_header(header, path)
    return header, tensors


MAX_PARAMETERS = 50_000_000  # the bundled U-Nets have ~2 M; a header asking for more is not ours

# key: (type, low, high) of the model config; None bounds are not checked
_MODEL_SCHEMA: dict[str, tuple[type, float | None, float | None]] = {
    "in_channels": (int, 1, 16), "base_filters": (int, 1, 128), "levels": (int, 1, 8),
    "embed_dim": (int, 1, 256), "n_classes": (int, 3, 3), "temperature": (float, 1e-4, 10.0),
    "init_dropout": (float, 1e-6, 0.999), "iota2": (float, 0.0, 1.0), "zeta": (float, 0.0, 1.0),
    "n_train_samples": (int, 1, 10_000_000), "worm_width_bias": (float, 0.5, 2.0),
}
_POST_SCHEMA = {"bandwidth": "bandwidth", "cluster_radius": "cluster_radius", "threshold": "cluster_radius",
                "min_size": "min_size", "binarize": "binarize", "mc_draws": "draws"}


def _typed(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def validate_header(header: Any, path: str | Path) -> None:
    """Check an (untrusted) header against the schema before anything is built from it.

    Why: a hand-edited or foreign header must give one clear message, not a traceback
    and not an attempt to allocate a network of terabytes.
    """
    from .validation import RANGES

    if not isinstance(header, dict):
        raise CheckpointError(f"model file {path}: header is a JSON {type(header).__name__}, expected an object")
    model, post, meta = header.get("model"), header.get("postprocess", {}), header.get("meta", {})
    for name, value in (("model", model), ("postprocess", post), ("meta", meta)):
        if not isinstance(value, dict):
            raise CheckpointError(f"model file {path}: header entry {name!r} must be a JSON object")
    unknown = sorted(set(model) - set(_MODEL_SCHEMA) - {"variant"})
    if unknown:
        raise CheckpointError(f"model file {path}: unknown model config keys {unknown}")
    if model.get("variant", "concrete") not in ("concrete", "baseline"):
        raise CheckpointError(f"model file {path}: model variant must be 'concrete' or 'baseline', "
                              f"got {model.get('variant')!r}")
    for key, value in model.items():
        if key == "variant":
            continue
        kind, lo, hi = _MODEL_SCHEMA[key]
        if not _typed(value, kind) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise CheckpointError(f"model file {path}: model.{key} must be {'an integer' if kind is int else 'a number'}"
                                  f" in [{lo:g}, {hi:g}], got {value!r}")
    unknown = sorted(set(post) - set(_POST_SCHEMA))
    if unknown:
        raise CheckpointError(f"model file {path}: unknown postprocess keys {unknown}")
    for key, rng in _POST_SCHEMA.items():
        if key in post and not RANGES[rng].ok(post[key]):
            raise CheckpointError(f"model file {path}: postprocess.{key} must be {RANGES[rng].text()}, "
                                  f"got {post[key]!r}")
    problem = check_channel_meta(meta)
    if problem:
        raise CheckpointError(f"model file {path}: {problem}")


def build_model(header: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> UNet:
    """The network of a validated header with the file's weights; sizes checked on the meta device first."""
    cfg = ModelConfig.from_dict(header["model"])
    with torch.device("meta"):
        shape_model = UNet(cfg)  # no memory: only shapes
    n_params = sum(p.numel() for p in shape_model.parameters())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"model file {path}: its config describes {n_params:,} parameters "
                              f"(more than {MAX_PARAMETERS:,}); not a napari-probseg model")
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = shape_model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"model file {path} does not match its config ({cfg.variant}, {cfg.in_channels} channels): "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f"model file {path}: tensor {k} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}"
            )
        if not v.is_floating_point() or not torch.isfinite(v).all():
            raise CheckpointError(f"model file {path}: tensor {k} holds NaN, infinite or non-float values")
    model = UNet(cfg)
    model.load_state_dict(state)
    return model


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the network described in the file's header and load its weights."""
    header, tensors = read_checkpoint(path)
    model = build_model(header, tensors, path)
    model.to(device).eval()
    model.brightfield_only = allows_brightfield_only(header.get("meta", {}))  # prepare_input reads it
    return LoadedModel(
        model=model,
        postprocess=PostprocessConfig.from_dict(header.get("postprocess", {})),
        meta=header.get("meta", {}),
        path=str(path),
        sha256=file_sha256(Path(path)),
    )


def update_postprocess(path: str | Path, postprocess: PostprocessConfig, note: str = "") -> None:
    """Rewrite a checkpoint with new post-processing parameters (e.g. after a grid search)."""
    header, tensors = read_checkpoint(path)
    header["postprocess"] = postprocess.__dict__
    if note:
        header.setdefault("meta", {})["postprocess_note"] = note
    _write(path, header, tensors)


def set_worm_width_bias(path: str | Path, bias: float) -> None:
    """Record how much wider than the annotation this network's foreground is (bench/scale_calibration.py);
    a value the loader would refuse is refused here, before the file is touched."""
    header, tensors = read_checkpoint(path)
    header["model"] = {**header["model"], "worm_width_bias": round(float(bias), 3)}
    validate_header(header, path)
    _write(path, header, tensors)


def record_channels(path: str | Path) -> bool:
    """Add the channel entries to a file written before ``train.py`` recorded them, from the file's own
    ``meta.train_config.drop_fluorescence``; returns whether it now allows brightfield alone.

    Why: the v4 campaign started before issue 19, so its checkpoints hold the blanking share in their
    training provenance but not the entry ``load_checkpoint`` reads; nothing is guessed beyond that.
    """
    from .channels import channel_meta

    header, tensors = read_checkpoint(path)
    meta = header.setdefault("meta", {})
    share = (meta.get("train_config") or {}).get("drop_fluorescence", 0.0)
    meta.update(channel_meta(share if isinstance(share, (int, float)) else 0.0))
    _write(path, header, tensors)
    return allows_brightfield_only(meta)
