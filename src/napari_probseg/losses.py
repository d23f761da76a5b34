"""Section 2.1 losses: discriminative loss (no variance hinge), 3-class CE, regulariser.

The distance hinge acts on the Euclidean distance of centres, as in De Brabandere et
al. (2017): [2 delta_d - ||mu_A - mu_B||]_+^2.  (Hinging the *squared* distance has a zero
gradient when centres coincide, which is where a freshly initialised network starts.)

Overlapping instances: the embedding terms use only pixels that belong to exactly one
instance.  An overlap pixel would be pulled towards two centres at once, which the loss
cannot satisfy; such pixels are instead learnt by the "overlap" class of the
cross-entropy and re-attached to every instance by the overlap heuristic
(``postprocess.overlap_heuristic``).  An instance that lies entirely under others falls
back to all of its pixels so that it still has a centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DELTA_D = 4.0
REG_WEIGHT = 0.001


@dataclass
class LossTerms:
    total: torch.Tensor
    var: torch.Tensor
    dist: torch.Tensor
    reg: torch.Tensor
    ce: torch.Tensor
    concrete: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "var", "dist", "reg", "ce", "concrete")}


def class_target(masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel class from an instance stack [N,H,W] (or a zero-padded batch [B,N,H,W]):
    0 background, 1 one worm, 2 overlap.  An empty stack sums to background."""
    return masks.sum(-3).clamp(max=2).long()


def discriminative_loss(
    embedding: torch.Tensor, masks: torch.Tensor, delta_d: float = DELTA_D
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_var, L_dist, L_reg of eqs. (1)-(3) for one image.

    embedding: [D,H,W]; masks: [N,H,W] bool (may overlap).  Returns zeros for N=0,
    and L_dist=0 for N=1.
    """
    zero = embedding.sum() * 0.0
    n = masks.shape[0]
    if n == 0:
        return zero, zero, zero
    d = embedding.shape[0]
    e = embedding.reshape(d, -1).float()  # [D,P]
    m = masks.reshape(n, -1).float()  # [N,P]
    single = (m.sum(0, keepdim=True) == 1).float()
    m_excl = m * single
    empty = m_excl.sum(1, keepdim=True) == 0
    m_use = torch.where(empty, m, m_excl)
    counts = m_use.sum(1).clamp(min=1)  # [N]
    mu = (m_use @ e.T) / counts[:, None]  # [N,D]
    # sum_i ||mu_c - e_i||^2 = sum_i ||e_i||^2 - 2 mu.sum_i e_i + N_c ||mu||^2
    e_sq = (e * e).sum(0)  # [P]
    sq = m_use @ e_sq - counts * (mu * mu).sum(1)
    l_var = (sq.clamp(min=0) / counts).mean()
    l_reg = (mu * mu).sum(1).mean()
    if n < 2:
        return l_var, zero, l_reg
    dist = (((mu[:, None, :] - mu[None, :, :]) ** 2).sum(-1) + 1e-8).sqrt()  # [N,N]
    hinge = F.relu(2 * delta_d - dist) ** 2
    off_diag = ~torch.eye(n, dtype=torch.bool, device=hinge.device)
    l_dist = hinge[off_diag].sum() / (n * (n - 1))
    return l_var, l_dist, l_reg


def discriminative_loss_batched(
    embedding: torch.Tensor, masks: torch.Tensor, delta_d: float = DELTA_D
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch means of ``discriminative_loss`` in a handful of kernels (GPU training).

    embedding: [B,D,H,W]; masks: [B,N,H,W] bool, zero-padded (an all-False slot is no
    instance).  Equal to averaging ``discriminative_loss`` over the images.
    """
    b, d = embedding.shape[:2]
    if masks.shape[1] == 0:  # no worm in any crop: one empty slot keeps the shapes (and the graph) valid
        masks = masks.new_zeros((b, 1, *masks.shape[2:]))
    n = masks.shape[1]
    e = embedding.reshape(b, d, -1).float()  # [B,D,P]
    m = masks.reshape(b, n, -1).float()  # [B,N,P]
    valid = m.sum(2) > 0  # [B,N]
    n_valid = valid.sum(1)  # [B]
    single = (m.sum(1, keepdim=True) == 1).float()
    m_excl = m * single
    empty = m_excl.sum(2, keepdim=True) == 0
    m_use = torch.where(empty, m, m_excl)
    counts = m_use.sum(2).clamp(min=1)  # [B,N]
    mu = torch.bmm(m_use, e.transpose(1, 2)) / counts[..., None]  # [B,N,D]
    e_sq = (e * e).sum(1)  # [B,P]
    sq = torch.bmm(m_use, e_sq[..., None])[..., 0] - counts * (mu * mu).sum(2)
    vf = valid.float()
    per_inst = n_valid.clamp(min=1).float()
    l_var = ((sq.clamp(min=0) / counts) * vf).sum(1) / per_inst
    l_reg = ((mu * mu).sum(2) * vf).sum(1) / per_inst
    dist = (((mu[:, :, None, :] - mu[:, None, :, :]) ** 2).sum(-1) + 1e-8).sqrt()  # [B,N,N]
    pair = valid[:, :, None] & valid[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=dist.device)
    hinge = F.relu(2 * delta_d - dist) ** 2 * pair.float()
    pairs = (n_valid * (n_valid - 1)).clamp(min=1).float()
    l_dist = hinge.sum((1, 2)) / pairs
    return l_var.mean(), l_dist.mean(), l_reg.mean()


def total_loss(
    embedding: torch.Tensor,
    logits: torch.Tensor,
    masks: list[torch.Tensor] | torch.Tensor,  # [N,H,W] per image, or zero-padded [B,N,H,W]
    regularizer: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ce_weight: float = 1.0,
) -> LossTerms:
    """Batch loss: mean over images of disc. loss + CE, plus the model regulariser.

    ``ce_weight``: the CE is a mean over all pixels while the embedding terms are means
    per instance, so per foreground pixel the discriminative gradient is ~30x larger and
    the classes were not learnt in 4000 steps at weight 1 (docs/model-card); 10 fixes it.
    """
    if not isinstance(masks, torch.Tensor):  # per-image stacks of different lengths: zero-pad
        padded = embedding.new_zeros((len(masks), max((m.shape[0] for m in masks), default=0), *embedding.shape[-2:]),
                                     dtype=torch.bool)
        for b, mk in enumerate(masks):
            padded[b, : mk.shape[0]] = mk
        masks = padded
    var, dist, reg = discriminative_loss_batched(embedding, masks)
    ce = F.cross_entropy(logits.float(), class_target(masks), weight=class_weights)
    total = var + dist + REG_WEIGHT * reg + ce_weight * ce + regularizer
    return LossTerms(total, var, dist, reg, ce, regularizer)
