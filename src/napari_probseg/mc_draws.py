"""The network's Monte-Carlo draws (section 2.3): dropout masks drawn ahead from a seeded
generator, the model's own state restored afterwards, Cancel between draws.

Split from ``inference`` (which re-exports these names) so that the forward pass and the
agglomeration of its draws each fit on a screen.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from .devices import cpu_supports_bf16
from .model import UNet
from .strips import run as run_model


class Cancelled(Exception):
    """Raised by ``predict`` when ``should_stop`` asked it to stop."""


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled()


def default_batch(device: torch.device | str) -> int:
    """Draws per forward pass when the caller does not say: 1 on a CPU, 4 elsewhere.

    Why 1 on a CPU: issue 17 measured one 520x696 draw alone at 0.13 s on a 2-core CPU against
    0.23 s per draw in a batch of 4 (cache effects).  The batch size no longer changes the
    dropout masks (``UNet.dropout_noise``), so this is a speed choice only.  On CUDA a batch of 4
    keeps the GPU busy (not measured against 1: no GPU in the sessions so far).
    """
    return 1 if torch.device(device).type == "cpu" else 4


def uses_bf16(device: torch.device | str) -> bool:
    """Whether draws on ``device`` run under bf16 autocast: always on CUDA, on CPUs with bf16
    support (~4x faster there, see docs/benchmarks.md).  Recorded in every prediction."""
    device = torch.device(device)
    return device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())


@contextmanager
def _inference_state(model: UNet, mc: bool, generator: torch.Generator):
    """Eval mode, MC sampling from ``generator`` and channels_last for the call only.

    Why: the caller's model may be shared (a fine-tune in the GUI): its training flag,
    MC flags and memory format are restored afterwards, whatever happens.
    """
    was_training = model.training
    mc_before = [(m.drop, m.drop.mc, m.drop.generator, m.drop.noise) for _, m in model.dropout_layers()]
    was_standard = all(p.is_contiguous() for p in model.parameters())
    model.eval()
    model.set_mc(mc, generator)
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for drop, flag, gen, noise in mc_before:
            drop.mc, drop.generator, drop.noise = flag, gen, noise
        model.train(was_training)
        if was_standard:
            model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def forward_draws(
    model: UNet,
    x: torch.Tensor,
    draws: int,
    device: torch.device | str = "cpu",
    batch: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    bf16: bool | None = None,
    as_float: bool = True,
):
    """Yield (embedding [D,H,W], logits [3,H,W]) for each MC draw, ``batch`` at a time
    (``default_batch`` when None); in float32, or with ``as_float=False`` as the network gave
    them (bf16 under autocast: a tile's caller converts only the foreground it clusters).

    The dropout masks come from a generator seeded with ``seed``, never the global RNG, and
    are drawn ahead for all draws (``UNet.dropout_noise``): the same draws whatever ``batch``.
    ``should_stop`` is checked before every draw is handed out, not once per batch: the
    caller clusters each draw as it arrives, and Cancel must stop before the next one.
    """
    device = torch.device(device)
    use_bf16 = uses_bf16(device) if bf16 is None else bf16
    batch = default_batch(device) if batch is None else max(int(batch), 1)
    mc = draws > 1 and bool(model.dropout_layers())
    gen = torch.Generator(device=device).manual_seed(seed)
    xb = x[None].to(device).contiguous(memory_format=torch.channels_last)
    done = 0
    with _inference_state(model, mc, gen):
        noise = model.dropout_noise(draws, gen) if mc else {}
        while done < draws:
            _check_stop(should_stop)
            n = min(batch, draws - done)
            for layer, u in noise.items():
                layer.noise = u[done:done + n]
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    emb, logits = run_model(model, xb.expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last))
            finally:  # set for this pass only: a caller may keep this generator suspended
                for layer in noise:
                    layer.noise = None
            for i in range(n):
                if i:
                    _check_stop(should_stop)
                yield (emb[i].float(), logits[i].float()) if as_float else (emb[i], logits[i])
                done += 1
                if progress is not None:
                    progress(done, draws)
