"""All training wells as device tensors, sampled as whole augmented batches.

Why: on a GPU the per-crop loop of ``data.random_warp_batch`` (CPU grids, one
``grid_sample`` per crop and per mask stack) costs more than the network's step.  Here
the wells stay on the device, padded to a common instance count, and one batched
``grid_sample`` warps image and masks of every crop at once with the same kind of
rotation / flip / scale / elastic grid.  Used by ``train.train`` whenever all wells
share one image size.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data import ELASTIC_GRID, ELASTIC_PIXELS, SCALE_JITTER, Well, pad_masks


def same_size(wells: list[Well]) -> bool:
    """Whether all wells share one image size (the bank stacks them)."""
    return len({w.image.shape[1:] for w in wells}) == 1


class WellBank:
    """Images [W,C,H,X] and zero-padded instance masks [W,N,H,X] on one device."""

    def __init__(self, wells: list[Well], device: torch.device | str = "cpu"):
        if not same_size(wells):
            raise ValueError(f"WellBank needs wells of one size, got {sorted({w.image.shape[1:] for w in wells})}")
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.stack([w.image for w in wells])).float().to(self.device)
        self.masks = torch.from_numpy(pad_masks([w.masks for w in wells], n_min=1)).to(self.device)
        self.height, self.width = self.images.shape[-2:]

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, batch: int, crop: int, gen: torch.Generator, elastic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [B,C,crop,crop], masks [B,N,crop,crop] bool); empty mask slots stay all False.

        Random numbers come from the CPU generator ``gen`` so a run is repeatable.
        """
        idx = torch.randint(len(self), (batch,), generator=gen)
        angle = torch.rand(batch, generator=gen) * 2 * math.pi
        flip = torch.where(torch.rand(batch, generator=gen) < 0.5, -1.0, 1.0)
        scale = 1.0 + SCALE_JITTER * (torch.rand(batch, generator=gen) - 0.5)
        half = crop / 2 * scale
        cy = torch.rand(batch, generator=gen) * (self.height - 2 * half).clamp(min=0) + torch.minimum(half, torch.tensor(self.height / 2))
        cx = torch.rand(batch, generator=gen) * (self.width - 2 * half).clamp(min=0) + torch.minimum(half, torch.tensor(self.width / 2))
        coarse = torch.randn(batch, 2, ELASTIC_GRID, ELASTIC_GRID, generator=gen) * ELASTIC_PIXELS if elastic else None

        dev = self.device
        lin = torch.linspace(-1.0, 1.0, crop, device=dev)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")  # [crop,crop]
        h_ = half.to(dev)[:, None, None]
        yy = yy[None] * h_
        xx = xx[None] * h_ * flip.to(dev)[:, None, None]
        ca, sa = torch.cos(angle).to(dev)[:, None, None], torch.sin(angle).to(dev)[:, None, None]
        ry, rx = ca * yy - sa * xx, sa * yy + ca * xx
        if coarse is not None:
            disp = F.interpolate(coarse.to(dev), size=(crop, crop), mode="bicubic", align_corners=True)
            ry, rx = ry + disp[:, 0], rx + disp[:, 1]
        py = ry + cy.to(dev)[:, None, None]
        px = rx + cx.to(dev)[:, None, None]
        grid = torch.stack([px / (self.width - 1) * 2 - 1, py / (self.height - 1) * 2 - 1], -1)
        idx_d = idx.to(dev)
        img = F.grid_sample(self.images[idx_d], grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        mk = F.grid_sample(self.masks[idx_d].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True)
        return img, mk > 0.5
