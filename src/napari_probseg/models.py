"""Bundled models, loaded by name with no download (``load_model("bbbc010-concrete")``)."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, LoadedModel, load_checkpoint

MODEL_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "bbbc010-concrete"


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in MODEL_DIR.glob("*.safetensors"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A bundled model name or a checkpoint path -> the file to load."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists():
        return p
    bundled = MODEL_DIR / f"{name_or_path}.safetensors"
    if bundled.exists():
        return bundled
    raise CheckpointError(
        f"no model named {str(name_or_path)!r}: bundled models are {bundled_models() or 'none'}; "
        "or give the path of a .safetensors checkpoint"
    )


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> LoadedModel:
    return load_checkpoint(resolve_model(name_or_path), device)
