"""The U-Net by row strips (strips.py) gives UNet.forward's outputs, MC dropout on or off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_probseg import strips
from napari_probseg.data import default_data_dir, load_image
from napari_probseg.inference import _inference_state, forward_draws, prepare_input
from napari_probseg.model import ModelConfig, UNet

from .conftest import tiny_model


def _both(model: UNet, x: torch.Tensor, rows: int) -> tuple[tuple, tuple]:
    with torch.no_grad():
        return model(x), strips.forward(model, x, rows=rows)


@pytest.mark.parametrize("rows", [8, 13, 64])
def test_strips_equal_the_whole_pass_with_dropout_masks(rows):
    torch.manual_seed(0)
    model = tiny_model()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 75, 61)  # odd sizes: padded to the cell, cut strips at every level
    with _inference_state(model, True, gen):
        for layer, u in model.dropout_noise(2, gen).items():
            layer.noise = u
        (e0, l0), (e1, l1) = _both(model, x, rows)
    assert e1.shape == e0.shape == (2, 16, 75, 61) and l1.shape == l0.shape == (2, 3, 75, 61)
    torch.testing.assert_close(e1, e0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-5)


def test_strips_equal_the_whole_pass_without_dropout_and_with_one_level():
    torch.manual_seed(1)
    for model in (tiny_model("baseline"), UNet(ModelConfig(base_filters=4, levels=1))):
        model.eval()
        x = torch.randn(1, 2, 40, 33)
        (e0, l0), (e1, l1) = _both(model, x, 7)
        torch.testing.assert_close(e1, e0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-5)


def test_only_large_inference_inputs_go_by_strips():
    big = torch.zeros(1, 2, 1024, 1024)
    with torch.no_grad():
        assert strips.wants_strips(big)
        assert not strips.wants_strips(torch.zeros(1, 2, 520, 696))  # a BBBC010 well stays whole
    assert not strips.wants_strips(big)  # autograd on: training keeps UNet.forward
    with pytest.raises(RuntimeError, match="no_grad"):
        strips.forward(tiny_model(), torch.zeros(1, 2, 32, 32))


def test_forward_draws_of_a_real_well_by_strips_match_the_whole_pass(monkeypatch):
    """A real BBBC010 image through ``forward_draws``, bf16 as on the CPU: strips or not, the same draws."""
    image = load_image(default_data_dir(), "C10")[:, :256, :320]
    model = tiny_model()
    x = prepare_input(image, model)
    whole = list(forward_draws(model, x, 2, bf16=False))
    monkeypatch.setattr(strips, "STRIP_MIN_PX", 1)
    monkeypatch.setattr(strips, "STRIP_ROWS", 48)
    calls, forward = [], strips.forward
    monkeypatch.setattr(strips, "forward", lambda *a: calls.append(a[2]) or forward(*a))
    by_strips = list(forward_draws(model, x, 2, bf16=False))
    assert calls == [48, 48]  # every draw went by strips of 48 rows
    for (e0, l0), (e1, l1) in zip(whole, by_strips):
        np.testing.assert_allclose(e1.numpy(), e0.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(l1.numpy(), l0.numpy(), rtol=1e-5, atol=1e-5)
