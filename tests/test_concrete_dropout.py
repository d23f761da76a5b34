"""Concrete Dropout rates learn where eq. (4) and the data term balance (issue 14)."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import brentq

from napari_probseg.model import DropConv, ModelConfig, UNet, layer_penalty
from napari_probseg.train import TrainConfig, _param_groups

ZETA = 1e-3


def test_regulariser_is_eq4_term_by_term():
    """sum_l iota^2/2 ||W_l||^2/(1-p_l) - zeta K_l H(p_l), over N, with K_l the layer's input channels."""
    cfg = ModelConfig(base_filters=4, levels=3, n_train_samples=1)
    model = UNet(cfg)
    gen = torch.Generator().manual_seed(0)
    for _, layer in model.dropout_layers():  # a different rate per layer, so K and p must pair up right
        layer.drop.p_logit.data = torch.randn((), generator=gen)
    expected = 0.0
    for _, layer in model.dropout_layers():
        p = float(layer.drop.p)
        k = layer.conv.in_channels
        h = -p * math.log(p) - (1 - p) * math.log(1 - p)
        expected += cfg.iota2 / 2 * float(layer.conv.weight.pow(2).sum()) / (1 - p) - cfg.zeta * k * h
    assert float(model.regularizer()) == pytest.approx(expected, rel=1e-5)
    model.cfg.n_train_samples = 50
    assert float(model.regularizer()) == pytest.approx(expected / 50, rel=1e-5)


def test_new_models_use_the_papers_scale():
    assert ModelConfig().n_train_samples == 1 and TrainConfig().concrete_n == 1
    assert TrainConfig().init_dropout == pytest.approx(0.1)


def _settle(n: int, k: int = 16, data_weight: float = 0.1, steps: int = 500) -> float:
    """Learn one layer's rate on a data term whose dependence on p is known in closed form.

    The layer averages K channels of ones through a fixed 1x1 convolution; the data term is
    data_weight * E[(y - 1)^2] = data_weight * p / ((1 - p) K) for Bernoulli dropout.
    """
    torch.manual_seed(0)
    layer = DropConv(k, 1, 1, ModelConfig(init_dropout=0.1))
    with torch.no_grad():
        layer.conv.weight.fill_(1 / k)
        layer.conv.bias.zero_()
    layer.conv.requires_grad_(False)
    opt = torch.optim.Adam([layer.drop.p_logit], lr=0.05)
    seen = []
    for _ in range(steps):
        y = layer(torch.ones(2048, k, 1, 1))
        loss = data_weight * ((y - 1) ** 2).mean() + layer_penalty(layer, 1e-6, ZETA) / n
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(float(layer.drop.p.detach()))
    return sum(seen[-150:]) / 150


def test_rate_settles_where_regulariser_and_data_balance():
    k, w = 16, 0.1
    # d/dp [w p / ((1-p) K)] = zeta K ln((1-p)/p): the optimum of data term + eq. (4) with N = 1
    p_star = brentq(lambda p: w / (k * (1 - p) ** 2) - ZETA * k * math.log((1 - p) / p), 1e-4, 0.999)
    assert 0.2 < p_star < 0.4
    assert _settle(1, k, w) == pytest.approx(p_star, abs=0.03)
    # the old scale (N = number of wells) has no interior optimum here: the data term wins
    assert _settle(50, k, w) < 0.05


def test_dropout_logits_get_their_own_learning_rate():
    model = UNet(ModelConfig(base_filters=4, levels=3))
    groups = _param_groups(model, TrainConfig(lr=1e-3, dropout_lr=1e-2))
    assert [g["lr_scale"] for g in groups] == [1.0, pytest.approx(10.0)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.dropout_logits()}
    n_params = len(list(model.parameters()))
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == n_params
    baseline = UNet(ModelConfig(variant="baseline", base_filters=4, levels=3))
    assert len(_param_groups(baseline, TrainConfig())) == 1


def test_blank_fluorescence_blanks_channel_zero_of_about_the_share():
    from napari_probseg.train import blank_fluorescence

    x = torch.rand(400, 2, 4, 4) + 0.5
    out = blank_fluorescence(x, 0.25, torch.Generator().manual_seed(0))
    blanked = (out[:, 0] == 0).all(-1).all(-1)
    assert 0.18 < float(blanked.float().mean()) < 0.32
    assert torch.equal(out[:, 1], x[:, 1]) and torch.equal(out[~blanked, 0], x[~blanked, 0])
    assert torch.equal(blank_fluorescence(x[:, 1:], 0.9, torch.Generator()), x[:, 1:])  # brightfield-only models
