"""The U-Net's forward pass in row strips, for large inputs on a CPU (issue 17).

Why: on the 2-core CPU one forward pass costs 0.41 us per pixel on a 544x544 input but
0.61 us on a 2272x2272 window (a tile of a large image): a full-resolution activation of
such a window (19 channels, bf16) is ~200 MB and every layer streams it through memory,
while a BBBC010 well's (~14 MB) stays in the caches.  The network has no normalisation over
the image and its dropout masks are per channel, so each level's convolutions can run strip
by strip: a strip is cut with a halo of one row per 3x3 convolution, runs the level's
convolutions, and keeps its middle rows, which are the whole-input outputs (the zero
padding of a cut edge reaches only the halo).  Each level's full-size output (the skip
connection) is still written; a level's temporaries are a strip's, so the peak memory falls too
(4096x4096 mosaic: 2.4 -> 1.6 GB, docs/benchmarks.md).

``forward`` equals ``UNet.forward`` up to the order of floating-point sums inside a
convolution (``tests/test_strips.py``).  Without autograd only: training keeps
``UNet.forward``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .model import UNet

STRIP_ROWS = 128  # rows per strip at every level: bytes per row are the same at every level (channels x2, width /2)
STRIP_MIN_PX = 1024 * 1024  # inputs from this many pixels on go by strips (a BBBC010 well stays whole)


def wants_strips(x: torch.Tensor) -> bool:
    """Whether ``forward`` pays off for this input: large, on a CPU, without autograd."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and x.shape[-2] * x.shape[-1] >= STRIP_MIN_PX


def run(model: UNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x)``, by strips where that is faster (``wants_strips``)."""
    return forward(model, x, STRIP_ROWS) if wants_strips(x) else model(x)


def _by_strips(height: int, rows: int, halo: int, block: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """Assemble ``block(a, b)`` (a level's outputs for input rows a..b) strip by strip."""
    out = None
    for r0 in range(0, height, rows):
        r1 = min(r0 + rows, height)
        a, b = max(r0 - halo, 0), min(r1 + halo, height)
        y = block(a, b)[:, :, r0 - a: r1 - a]
        if out is None:
            out = torch.empty((y.shape[0], y.shape[1], height, y.shape[3]), dtype=y.dtype, device=y.device,
                              memory_format=torch.channels_last)
        out[:, :, r0:r1] = y
    assert out is not None
    return out


def forward(model: UNet, x: torch.Tensor, rows: int = STRIP_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """``UNet.forward`` by strips of ``rows`` rows at every level (see the module's docstring)."""
    if torch.is_grad_enabled():
        raise RuntimeError("strips.forward is for inference: call it under torch.no_grad()")
    h, w = x.shape[-2:]
    m = model.cell
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
    skips = []
    for i, (c1, c2) in enumerate(model.down):
        if i:
            x = F.max_pool2d(x, 2)
        src = x

        def encode(a: int, b: int, src=src, c1=c1, c2=c2) -> torch.Tensor:
            # the strip is a view of ``src``: its first dropout must not scale it in place
            return F.relu(c2(F.relu(c1(src[:, :, a:b]), inplace=True), inplace=True), inplace=True)

        x = _by_strips(src.shape[-2], rows, 2, encode)
        skips.append(x)
    last = len(model.up) - 1
    for j, (upc, (c1, c2), skip) in enumerate(zip(model.up_conv, model.up, reversed(skips[:-1]))):
        low = x

        def decode(a: int, b: int, low=low, skip=skip, upc=upc, c1=c1, c2=c2, head=j == last) -> torch.Tensor:
            lo = a // 2  # the low-resolution rows whose nearest upsampling covers a..b
            up = F.interpolate(low[:, :, lo:(b + 1) // 2], scale_factor=2, mode="nearest")[:, :, a - 2 * lo:][:, :, :b - a]
            y = F.relu(upc(up, inplace=True), inplace=True)
            y = torch.cat([y, skip[:, :, a:b]], dim=1)
            y = F.relu(c2(F.relu(c1(y, inplace=True), inplace=True), inplace=True), inplace=True)
            return model.head(y, inplace=True) if head else y

        x = _by_strips(skip.shape[-2], rows, 3, decode)
    if not model.up:  # a one-level network: the head (1x1) right after the encoder
        x = model.head(x, inplace=True)
    out = x[..., :h, :w]
    e = model.cfg.embed_dim
    return out[:, :e], out[:, e:]
