"""The 5-level U-Net of the paper (section 2.1/3) with optional Concrete Dropout.

Every convolution (including the 1x1 output head) is preceded by a dropout layer:
either nothing (baseline, regularised by weight decay) or *spatial* Concrete Dropout
(Gal, Hron, Kendall 2017) with one learnable rate per layer.  At inference time the
dropout layers keep sampling when ``mc=True`` so that repeated forward passes are
draws from the approximate posterior predictive distribution.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 16
N_CLASSES = 3  # background / foreground / overlap
NOISE_CHUNK = 4  # MC draws whose dropout noise is drawn together, layer by layer (UNet.dropout_noise)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network; stored inside every checkpoint."""

    variant: str = "concrete"  # "concrete" or "baseline"
    in_channels: int = 2
    base_filters: int = 19
    levels: int = 5
    embed_dim: int = EMBED_DIM
    n_classes: int = N_CLASSES
    temperature: float = 0.1
    init_dropout: float = 0.1
    iota2: float = 1e-6  # prior length-scale^2 (= weight decay of the baseline)
    zeta: float = 1e-3  # dropout-rate entropy weight
    # N of eq. (4). The paper's iota^2 = 1e-6 and zeta = 1e-3 are the final coefficients, as passed to
    # Gal's Concrete Dropout wrapper (whose weight_regularizer defaults to 1e-6 = the baseline's weight
    # decay): the 1/N is already folded into them, so N = 1. Models before v4 stored the number of
    # training wells (50), which made the entropy reward 50x weaker and kept every rate below 0.01
    # (docs/training-bbbc010-concrete.md, "Dropout rates").
    n_train_samples: int = 1
    # How wide this network's foreground draws worms at the training magnification, over the ground
    # truth's width (median over train wells, bench/scale_calibration.py --write).  scale.estimate_worm_width
    # divides by it: v5 draws borders outside the annotation (bias 1.080), so uncorrected it called BBBC010's
    # worms ~8% wide and shrank some 1x wells.  1.0 for files written before it existed.
    worm_width_bias: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = cls(**known)
        if cfg.variant not in ("concrete", "baseline"):
            raise ValueError(f"model variant must be 'concrete' or 'baseline', got {cfg.variant!r}")
        return cfg


class ConcreteDropout2d(nn.Module):
    """Spatial Concrete Dropout: drops whole channels with a learnable rate p.

    The relaxed Bernoulli mask (temperature ``t``) keeps the rate differentiable.
    ``mc`` makes the layer sample outside training too (MC-dropout inference).
    """

    def __init__(self, channels: int, init_p: float = 0.1, temperature: float = 0.1):
        super().__init__()
        self.channels = channels
        self.temperature = temperature
        self.p_logit = nn.Parameter(torch.tensor(math.log(init_p) - math.log(1 - init_p)))
        self.mc = False
        # MC inference draws its masks from this generator when set, so a prediction
        # neither reads nor advances the process-wide RNG (a GUI fine-tune shares it)
        self.generator: torch.Generator | None = None
        # the uniform noise u [B,C,1,1] of the next forward pass, drawn ahead by the caller
        # (inference.forward_draws: the same masks whatever the batch size); None: draw here
        self.noise: torch.Tensor | None = None

    @property
    def p(self) -> torch.Tensor:
        return torch.sigmoid(self.p_logit)

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: the caller owns ``x`` (a fresh activation), so without autograd the mask
        scales it in place: a 2048 px window's activations are ~240 MB each, and a new one per
        layer and draw costs memory traffic and page faults, not arithmetic (same numbers)."""
        if not (self.training or self.mc):
            return x  # inverted dropout: the expectation is the identity
        eps = 1e-7
        p = self.p.to(x.dtype if x.dtype == torch.float32 else torch.float32)
        u = self.noise
        if u is None:
            u = torch.rand(x.shape[0], x.shape[1], 1, 1, device=x.device, dtype=torch.float32,
                           generator=self.generator)
        elif u.shape != (x.shape[0], x.shape[1], 1, 1):
            raise ValueError(f"dropout noise of shape {tuple(u.shape)} for an input of shape {tuple(x.shape)}")
        drop_logit = (
            torch.log(p + eps) - torch.log(1 - p + eps) + torch.log(u + eps) - torch.log(1 - u + eps)
        )
        drop = torch.sigmoid(drop_logit / self.temperature)
        keep = (1 - drop) / (1 - p)
        if inplace and not torch.is_grad_enabled():
            return x.mul_(keep.to(x.dtype))
        return x * keep.to(x.dtype)


class DropConv(nn.Module):
    """A convolution with an optional Concrete Dropout on its input."""

    def __init__(self, cin: int, cout: int, k: int, cfg: ModelConfig):
        super().__init__()
        self.drop = (
            ConcreteDropout2d(cin, cfg.init_dropout, cfg.temperature) if cfg.variant == "concrete" else None
        )
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        if self.drop is not None:
            x = self.drop(x, inplace=inplace)
        return self.conv(x)


class UNet(nn.Module):
    """5-level U-Net: 3x3 convs, ReLU, same padding, 19 filters doubling per level.

    Output: ``(embedding [B,16,H,W], logits [B,3,H,W])``.  Any H, W is accepted: the
    input is reflect-padded to a multiple of 2**(levels-1) and the output cropped back.
    """

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig()
        # set from the file's header by load_checkpoint (channels.allows_brightfield_only): not a
        # ModelConfig field, because it describes the training data, not the network's shape
        self.brightfield_only = False
        c = self.cfg
        widths = [c.base_filters * 2**i for i in range(c.levels)]
        self.down = nn.ModuleList()
        cin = c.in_channels
        for w in widths:
            self.down.append(nn.ModuleList([DropConv(cin, w, 3, c), DropConv(w, w, 3, c)]))
            cin = w
        self.up_conv = nn.ModuleList()
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up_conv.append(DropConv(cin, w, 3, c))  # after nearest upsampling
            self.up.append(nn.ModuleList([DropConv(2 * w, w, 3, c), DropConv(w, w, 3, c)]))
            cin = w
        self.head = DropConv(cin, c.embed_dim + c.n_classes, 1, c)
        for m in self.modules():  # He init keeps activations alive through 23 ReLU layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def cell(self) -> int:
        """Smallest image side the network can take; sizes are padded to multiples of it."""
        return 2 ** (self.cfg.levels - 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        m = self.cell
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        skips = []
        for i, (c1, c2) in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            # every input but the network's own is a fresh activation: dropout may scale it in place
            x = F.relu(c2(F.relu(c1(x, inplace=i > 0), inplace=True), inplace=True), inplace=True)
            skips.append(x)
        for upc, (c1, c2), skip in zip(self.up_conv, self.up, reversed(skips[:-1])):
            x = F.relu(upc(F.interpolate(x, scale_factor=2, mode="nearest"), inplace=True), inplace=True)
            x = torch.cat([x, skip], dim=1)
            x = F.relu(c2(F.relu(c1(x, inplace=True), inplace=True), inplace=True), inplace=True)
        out = self.head(x, inplace=True)[..., :h, :w]
        e = self.cfg.embed_dim
        return out[:, :e], out[:, e:]

    # ---- Concrete Dropout helpers -------------------------------------------------
    def dropout_logits(self) -> list[nn.Parameter]:
        """The Concrete Dropout rate parameters: trained in their own optimiser group (train.py)."""
        return [m.drop.p_logit for _, m in self.dropout_layers()]

    def set_dropout_rate(self, p: float) -> None:
        """Restart every layer's rate at ``p`` (a fine-tuning phase that re-learns the rates)."""
        with torch.no_grad():
            for logit in self.dropout_logits():
                logit.fill_(math.log(p) - math.log(1 - p))

    def dropout_layers(self) -> list[tuple[str, DropConv]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, DropConv) and m.drop is not None]

    def dropout_rates(self) -> dict[str, float]:
        """The learned dropout rate of every layer, by layer name (empty for the baseline)."""
        return {n: float(m.drop.p.detach()) for n, m in self.dropout_layers()}

    @torch.no_grad()
    def dropout_call_order(self) -> list[ConcreteDropout2d]:
        """The Concrete Dropout layers in the order a forward pass calls them.

        Why: each layer draws its noise from a shared generator when called, so this order (not
        ``named_modules``', which lists all upsampling convs before the up-levels) fixes which
        numbers each layer gets.  Found by hooks on one forward pass of a one-cell input with
        sampling off (no RNG read); the training flag and the sampling flags are restored.
        """
        drops = [m.drop for _, m in self.dropout_layers()]
        order: list[ConcreteDropout2d] = []
        was_training, mc = self.training, [d.mc for d in drops]
        hooks = [d.register_forward_pre_hook(lambda mod, _args: order.append(mod)) for d in drops]
        try:
            self.eval()
            for d in drops:
                d.mc = False
            p = next(self.parameters())
            self(torch.zeros(1, self.cfg.in_channels, self.cell, self.cell, device=p.device, dtype=p.dtype))
        finally:
            for h in hooks:
                h.remove()
            for d, flag in zip(drops, mc):
                d.mc = flag
            self.train(was_training)
        return order

    def dropout_noise(self, draws: int, generator: torch.Generator) -> dict[ConcreteDropout2d, torch.Tensor]:
        """Each dropout layer's uniform noise u [draws,C,1,1] for ``draws`` MC draws, drawn ahead.

        Why: a layer used to draw u for the rows of its batch when called, so the masks depended
        on the batch size.  These are exactly the numbers that passes in batches of
        ``NOISE_CHUNK`` = 4 drew (every figure before issue 17 was made with them): per chunk of
        4 draws, each layer's rows in the order a forward pass calls the layers.  A forward pass
        of any batch then takes its rows (``inference.forward_draws`` sets ``noise``).
        """
        order = self.dropout_call_order()
        parts: dict[ConcreteDropout2d, list[torch.Tensor]] = {d: [] for d in order}
        dev = generator.device
        for lo in range(0, draws, NOISE_CHUNK):
            n = min(NOISE_CHUNK, draws - lo)
            for d in order:
                parts[d].append(torch.rand(n, d.channels, 1, 1, device=dev, dtype=torch.float32, generator=generator))
        return {d: torch.cat(p) for d, p in parts.items()}

    def set_mc(self, enabled: bool, generator: torch.Generator | None = None) -> None:
        """Keep dropout sampling at inference time (MC-dropout draws), from ``generator``
        if given (else the global RNG, as in training)."""
        for _, m in self.dropout_layers():
            m.drop.mc = enabled
            m.drop.generator = generator

    def regularizer(self) -> torch.Tensor:
        """Eq. (4) summed over the layers (baseline: plain L2 weight decay); see ``layer_penalty``."""
        c = self.cfg
        reg = torch.zeros((), device=self.head.conv.weight.device)
        for m in self.modules():
            if isinstance(m, DropConv):
                reg = reg + layer_penalty(m, c.iota2, c.zeta)
        return reg / c.n_train_samples


def layer_penalty(layer: DropConv, iota2: float, zeta: float) -> torch.Tensor:
    """One layer's term of eq. (4), before the 1/N.

    With inverted dropout the stored weights are the pre-dropout M scaled by (1-p),
    so iota^2 (1-p)/2 ||M||^2 becomes iota^2/2 ||W||^2 / (1-p) as in Gal's code.
    F_l is the layer's input channel count K (spatial dropout drops whole channels, as
    Gal's SpatialConcreteDropout), which is what gives wide deep layers high rates and the
    2-channel input layer a rate near zero.  A layer without dropout pays weight decay only.
    """
    sq = layer.conv.weight.pow(2).sum()
    if layer.drop is None:
        return iota2 / 2 * sq
    p = layer.drop.p
    entropy = -p * torch.log(p) - (1 - p) * torch.log(1 - p)
    return iota2 / 2 * sq / (1 - p) - zeta * layer.drop.channels * entropy
