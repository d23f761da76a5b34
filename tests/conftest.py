from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_probseg.checkpoint import PostprocessConfig, save_checkpoint
from napari_probseg.data import default_data_dir
from napari_probseg.model import ModelConfig, UNet


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if not (d / "images").is_dir():
        pytest.skip(f"BBBC010 not found at {d}")
    return d


def tiny_model(variant: str = "concrete", in_channels: int = 2) -> UNet:
    torch.manual_seed(0)
    return UNet(ModelConfig(variant=variant, in_channels=in_channels, base_filters=4, levels=3))


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model(), PostprocessConfig(), {"note": "test"})


@pytest.fixture(autouse=True)
def autosave_dir(tmp_path: Path, monkeypatch) -> Path:
    """Every test's autosaves go to its own temporary folder, never the user's."""
    from napari_probseg import autosave

    d = tmp_path / "autosave"
    monkeypatch.setenv(autosave.AUTOSAVE_ENV, str(d))
    return d


@pytest.fixture
def notes():
    """Notifications dispatched during the test (what the user would see)."""
    from napari.utils.notifications import notification_manager

    got: list = []
    notification_manager.notification_ready.connect(got.append)
    yield got
    notification_manager.notification_ready.disconnect(got.append)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
    yield
