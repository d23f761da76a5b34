import pytest
import torch

from napari_probseg.model import ModelConfig, UNet
from tests.conftest import tiny_model


@pytest.mark.parametrize("shape", [(37, 53), (16, 16), (64, 48)])
def test_any_image_size_gives_same_size_outputs(shape):
    m = tiny_model()
    emb, logits = m(torch.rand(2, 2, *shape))
    assert emb.shape == (2, 16, *shape) and logits.shape == (2, 3, *shape)


def test_full_size_architecture_filters():
    m = UNet(ModelConfig())
    assert [blk[0].conv.out_channels for blk in m.down] == [19, 38, 76, 152, 304]
    assert all(c.conv.kernel_size == (3, 3) for blk in m.down for c in blk)


def test_one_channel_model():
    m = UNet(ModelConfig(in_channels=1, base_filters=4, levels=3))
    emb, _ = m(torch.rand(1, 1, 32, 32))
    assert emb.shape[1] == 16


def test_concrete_rates_readable_and_baseline_has_none():
    rates = tiny_model().dropout_rates()
    assert len(rates) == 3 * 2 + 2 * 3 + 1  # down convs, up convs (+upsampling conv), head
    assert all(abs(p - 0.1) < 1e-6 for p in rates.values())
    assert tiny_model("baseline").dropout_rates() == {}


def test_mc_mode_samples_eval_mode_is_deterministic():
    m = tiny_model().eval()
    x = torch.rand(1, 2, 32, 32)
    a, b = m(x)[0], m(x)[0]
    assert torch.equal(a, b)
    m.set_mc(True)
    c, d = m(x)[0], m(x)[0]
    assert not torch.allclose(c, d)


def test_gradients_flow_to_dropout_rates():
    m = tiny_model().train()
    emb, logits = m(torch.rand(2, 2, 32, 32))
    (emb.pow(2).mean() + logits.mean() + m.regularizer()).backward()
    grads = [mod.drop.p_logit.grad for _, mod in m.dropout_layers()]
    assert all(g is not None and torch.isfinite(g) for g in grads)
    assert any(abs(float(g)) > 0 for g in grads)


def test_regulariser_pulls_rates_towards_half():
    """The entropy term alone rewards p = 0.5: its gradient pushes a low rate up."""
    m = tiny_model()
    for _, mod in m.dropout_layers():
        mod.conv.weight.data.zero_()
    m.regularizer().backward()
    assert all(float(mod.drop.p_logit.grad) < 0 for _, mod in m.dropout_layers())
