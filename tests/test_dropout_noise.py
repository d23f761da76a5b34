"""Issue 17: the MC dropout masks do not depend on the batch size, and are the batch-4 masks.

Real parts only: a tiny real U-Net for the masks, the bundled model on real wells for the instances.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from napari_probseg.data import load_image
from napari_probseg.inference import default_batch, forward_draws, predict, prepare_input
from napari_probseg.masks import mask_iou
from napari_probseg.models import load_model
from napari_probseg.sample_data import load_sample
from tests.conftest import tiny_model

CROP = (slice(None), slice(112, 240), slice(224, 384))


def _noise_rows(model, x, draws: int, batch: int, seed: int = 3) -> dict[str, torch.Tensor]:
    """The noise every dropout layer used over all draws, rows in draw order, by layer name."""
    seen: dict[str, list[torch.Tensor]] = {}

    def record(mod, _args, name: str) -> None:
        if mod.noise is not None:  # None: the pass that finds the layers' call order
            seen.setdefault(name, []).append(mod.noise.clone())

    hooks = [m.drop.register_forward_pre_hook(lambda mod, a, n=n: record(mod, a, n)) for n, m in model.dropout_layers()]
    list(forward_draws(model, x, draws, batch=batch, seed=seed, bf16=False))
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


def test_dropout_call_order_is_the_forward_order_not_the_module_order():
    model = tiny_model()  # in training mode: its dropout would read the global RNG
    names = {m.drop: n for n, m in model.dropout_layers()}
    rng = torch.get_rng_state()
    order = [names[d] for d in model.dropout_call_order()]
    assert sorted(order) == sorted(names.values())
    assert order.index("up_conv.0") < order.index("up.0.0") < order.index("up_conv.1")  # named_modules: up_conv.1 first
    assert order[-1] == "head"
    assert model.training and torch.equal(torch.get_rng_state(), rng)  # mode restored, no RNG read


@pytest.mark.parametrize("draws", [8, 6, 3])
def test_every_batch_size_gets_the_same_masks(draws):
    model = tiny_model()
    x = prepare_input(load_sample("C10")[CROP], model)
    ref = _noise_rows(model, x, draws, batch=4)
    for batch in (1, 3, 8):
        got = _noise_rows(model, x, draws, batch=batch)
        assert got.keys() == ref.keys()
        for name in ref:
            assert torch.equal(got[name], ref[name]), (batch, name)
    assert all(d.noise is None for d in model.dropout_call_order())  # nothing left behind
    suspended = forward_draws(model, x, draws, batch=2)
    next(suspended)  # a caller that keeps the generator: the next training pass must not use the noise
    assert all(d.noise is None for d in model.dropout_call_order())
    suspended.close()


def test_batch_4_draws_are_the_layers_own_draws_of_a_batch_of_4():
    """The reference is the layers sampling for themselves (the path before issue 17) on batches of 4,
    float32: forward_draws at batch 4 must give the same outputs bit for bit, at batch 1 within float rounding."""
    model = tiny_model()
    x = prepare_input(load_sample("C10")[CROP], model)
    gen = torch.Generator().manual_seed(5)
    model.eval()
    model.set_mc(True, gen)
    model.to(memory_format=torch.channels_last)  # as forward_draws runs it
    ref = []
    with torch.no_grad():
        for n in (4, 2):  # 6 draws: a batch of 4, then one of 2
            emb, logits = model(x[None].expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last))
            ref += list(zip(emb, logits))
    model.set_mc(False)
    for batch, exact in ((4, True), (1, False), (5, False)):
        got = list(forward_draws(model, x, 6, batch=batch, seed=5, bf16=False))
        for (e, lg), (re, rl) in zip(got, ref):
            if exact:
                assert torch.equal(e, re) and torch.equal(lg, rl), batch
            else:
                torch.testing.assert_close(e, re, rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(lg, rl, rtol=1e-4, atol=1e-4)


def test_cpu_default_is_one_draw_per_pass_cuda_keeps_four():
    assert default_batch("cpu") == 1 and default_batch("cuda") == 4


def _matched_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iou = mask_iou(a, b)
    r, c = linear_sum_assignment(-iou)
    return iou[r, c]


@pytest.mark.parametrize("well", ["C10", "D12"])
def test_batch_1_and_4_give_the_same_instances_on_real_wells(data_dir, well):
    """Same masks; the bf16 convolutions may round differently by batch size on other CPUs, so the
    tolerance is the same instance count and every matched IoU >= 0.95 (this machine: identical)."""
    lm = load_model("bbbc010-concrete")
    img = load_image(data_dir, well)
    one = predict(lm.model, img, lm.postprocess, draws=4, batch=1)
    four = predict(lm.model, img, lm.postprocess, draws=4, batch=4)
    assert one.draw_counts == four.draw_counts
    assert one.n_instances == four.n_instances >= 5
    assert _matched_ious(one.binary_instances(), four.binary_instances()).min() >= 0.95


@pytest.mark.parametrize("bf16", [False, True])
def test_inference_scales_activations_in_place_with_the_same_numbers(bf16):
    """Without autograd the dropout scales fresh activations in place (less memory traffic on big
    images); the outputs are bit-identical to the autograd path's, and the input is left untouched."""
    lm = load_model("bbbc010-concrete")
    model = lm.model
    x = prepare_input(load_sample("C10")[CROP], model)[None]
    x_before = x.clone()
    noise = model.dropout_noise(1, torch.Generator().manual_seed(5))
    layers = [m.drop for _, m in model.dropout_layers()]
    for d in layers:
        d.mc, d.noise = True, noise[d]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                fast = model(x)  # the caller's own tensor: the first layer must not scale it in place
            with torch.enable_grad():
                slow = model(x)
    finally:
        for d in layers:
            d.mc, d.noise = False, None
    for a, b in zip(fast, slow):
        assert torch.equal(a, b.detach())
    assert torch.equal(x, x_before)
