"""The GPU training path (WellBank + batched loss), run here on the CPU."""
import numpy as np
import torch
import torch.nn.functional as F

from napari_probseg.losses import REG_WEIGHT, class_target, discriminative_loss, discriminative_loss_batched, total_loss
from napari_probseg.train import TrainConfig, train
from napari_probseg.wellbank import WellBank
from tests.test_train_checkpoint import toy_wells


def test_batched_loss_equals_per_image_loss():
    torch.manual_seed(0)
    emb = torch.randn(3, 4, 20, 20) * 3
    masks = torch.zeros(3, 4, 20, 20, dtype=torch.bool)
    masks[0, 0, 2:8, 2:15] = masks[0, 1, 5:18, 10:14] = True  # overlapping pair
    masks[0, 2, 15:19, 0:5] = True
    masks[1, 3, 0:10, 0:10] = True  # one instance in the last slot
    # image 2: no instance at all
    got = discriminative_loss_batched(emb, masks)
    per_image = [discriminative_loss(emb[b], masks[b][masks[b].flatten(1).any(1)]) for b in range(3)]
    for i in range(3):
        want = torch.stack([p[i] for p in per_image]).mean()
        assert torch.allclose(got[i], want, rtol=1e-5, atol=1e-5), (i, got[i], want)
    logits = torch.randn(3, 3, 20, 20)
    reg = torch.tensor(0.5)
    listed = [masks[b][masks[b].flatten(1).any(1)] for b in range(3)]
    assert torch.allclose(total_loss(emb, logits, masks, reg).total, total_loss(emb, logits, listed, reg).total, rtol=1e-5)
    # and both equal the loss written per image: disc. terms averaged, CE on the stacked class targets
    v, d, r = (torch.stack([p[i] for p in per_image]).mean() for i in range(3))
    ce = F.cross_entropy(logits, torch.stack([class_target(m) for m in listed]))
    assert torch.allclose(total_loss(emb, logits, listed, reg).total, v + d + REG_WEIGHT * r + ce + reg, rtol=1e-5)


def test_bank_samples_aligned_image_and_masks():
    wells = toy_wells()
    wells[0].image[:] = wells[0].masks.any(0)  # image == foreground, so warps must agree
    bank = WellBank(wells * 2)
    gen = torch.Generator().manual_seed(1)
    x, m = bank.sample(4, 40, gen)
    assert x.shape == (4, 2, 40, 40) and m.shape == (4, 3, 40, 40) and m.dtype == torch.bool
    fg = m.any(1)
    # bilinear vs nearest differ only along edges
    agree = ((x[:, 0] > 0.5) == fg).float().mean()
    assert agree > 0.95 and fg.any()
    x2, _ = bank.sample(4, 40, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)


def test_bank_refuses_mixed_sizes():
    a = toy_wells()[0]
    b = toy_wells()[0]
    b.image, b.masks = b.image[:, :64], b.masks[:, :64]
    try:
        WellBank([a, b])
    except ValueError as exc:
        assert "one size" in str(exc)
    else:
        raise AssertionError("mixed sizes accepted")


def test_training_with_bank_runs(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=5, batch=2, crop=48, base_filters=4, levels=3, warmup=2,
                      checkpoint_every=1000, fast_cpu=False, device="cpu", use_bank=True)
    seen = []
    train(cfg, wells=toy_wells(), progress=lambda s, t: seen.append(t["total"]))
    assert len(seen) == 5 and np.isfinite(seen).all()
