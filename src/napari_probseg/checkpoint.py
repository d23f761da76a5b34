"""Checkpoint files: safetensors weights + a JSON config in the header.

safetensors never unpickles, so a model file cannot execute code when loaded.  The
header's ``probseg`` entry holds the model config, normalisation, post-processing
parameters and training provenance; a resume checkpoint also stores the optimiser
moments and random-generator states as tensors.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .model import ModelConfig, UNet

FORMAT = "napari-probseg/1"


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


@dataclass
class PostprocessConfig:
    bandwidth: float = 2.0  # mean-shift kernel bandwidth (embedding units)
    threshold: float = 2.0  # cluster radius around each centre
    min_size: int = 50  # instances smaller than this (pixels) are dropped
    binarize: float = 0.75
    mc_draws: int = 8

    @classmethod
    def from_dict(cls, d: dict) -> "PostprocessConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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
    from safetensors.torch import save_file

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"probseg": json.dumps(header)})
    tmp.replace(path)
    return path


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
    if header.get("format") != FORMAT:
        raise CheckpointError(f"model file {path} has format {header.get('format')!r}, expected {FORMAT!r}")
    return header, tensors


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the network described in the file's header and load its weights."""
    header, tensors = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(header["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"model file {path}: bad model config: {exc}") from exc
    model = UNet(cfg)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
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
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedModel(
        model=model,
        postprocess=PostprocessConfig.from_dict(header.get("postprocess", {})),
        meta=header.get("meta", {}),
        path=str(path),
        sha256=file_sha256(Path(path)),
    )


def update_postprocess(path: str | Path, postprocess: PostprocessConfig, note: str = "") -> None:
    """Rewrite a checkpoint with new post-processing parameters (e.g. after a grid search)."""
    from safetensors.torch import save_file

    header, tensors = read_checkpoint(path)
    header["postprocess"] = postprocess.__dict__
    if note:
        header.setdefault("meta", {})["postprocess_note"] = note
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata={"probseg": json.dumps(header)})
    tmp.replace(path)
