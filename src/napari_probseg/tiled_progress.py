"""Progressive tiled prediction (issue 17): results of a large image shown before it is done.

``tiling.predict_tiled`` runs ``predict_tiled_progressive`` to its end; this is its one path.

Order of the work, and why:

1. **A quick pass**, tile by tile: the mean network (dropout off, one forward pass per
   window) clustered blob by blob, as ``tiling`` clusters a draw.  Its instances (probability
   0 or 1, no uncertainty) are yielded after every tile.  The dock's images go tiled from
   ``AUTO_TILE_PX`` (1024x1024) on, with cores of 2048 px: most are ONE tile (a 2048x2048
   field is one window), so "one update per finished tile" alone would show nothing before
   the end.  The quick pass puts the whole field's worms on screen at the cost of one
   forward pass per window (1/draws of the run: ~12% more work at 8 draws).
2. **The draws, tile by tile** (each window's ``draws`` passes in a row, as before: the
   window is cut and moved to the device once, and ``batch`` still groups draws).  An
   update follows every draw: the tile in progress shows the agglomeration of its draws so
   far, tiles not yet reached keep their quick-pass instances, finished tiles their final
   ones.  Draw-major order (draw 1 on every tile, then draw 2...) would keep every tile at
   the same number of draws, but it re-cuts every window per draw and loses ``batch``;
   instead an update says how many draws each tile holds (``tile_draws``).

An update builds its ``TiledPrediction`` only when asked (``prediction()``: agglomeration
and stitching), so a consumer that skips updates pays nothing for them.  Updates are
snapshots: one kept after ``should_stop`` raised ``inference.Cancelled`` stays usable.
A model without dropout, or one draw, has no quick pass: its mean pass is every draw.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .boxes import paste_max, sparse_peaks
from .checkpoint import PostprocessConfig
from .inference import _settings, prepare_input
from .mc_draws import _check_stop, forward_draws, uses_bf16
from .model import UNet
from .sparse import Box, agglomerate_boxes, cluster_blobs
from .tiling import (
    MARGIN,
    TILE,
    Instance,
    TiledPrediction,
    _centre_in,
    _dedupe,
    _keep,
    check_memory,
    core_in_window,
    tile_grid,
)
from .uncertainty_metrics import bernoulli_entropy
from .validation import OptionError


@dataclass
class _Tile:
    """What one tile holds at an update (a snapshot: lists are never changed after it is taken)."""

    core: tuple[slice, slice]
    win: tuple[slice, slice]
    index: int
    stacks: list[list[Box]] = field(default_factory=list)  # its clustered draws so far
    counts: list[int] = field(default_factory=list)  # instances centred in its core, per draw
    preview: list[Instance] = field(default_factory=list)  # the quick pass's kept instances
    kept: list[tuple[Instance, bool]] | None = None  # final instances (and cut flags) once all draws are in


@dataclass
class TiledUpdate:
    """One step of ``predict_tiled_progressive``.

    ``stage`` "mean": the quick pass has reached tile ``tile``; "draws": tile ``tile`` holds
    ``tile_draws[tile]`` of ``total_draws`` draws.  ``done``/``total`` count forward passes
    (quick pass and draws, every window): what a progress bar shows.
    """

    stage: str
    tile: int
    tiles: int
    done: int
    total: int
    tile_draws: tuple[int, ...]  # draws agglomerated in each tile (0: quick pass or nothing yet)
    reached: int  # tiles with a result (the first ``reached``: quick pass or draws); the rest are empty
    total_draws: int
    shape: tuple[int, int]
    binarize: float
    bf16: bool
    device: str
    _tiles: list[_Tile] = field(repr=False)
    _pred: TiledPrediction | None = field(default=None, repr=False, compare=False)

    @property
    def final(self) -> bool:
        return self.done == self.total

    @property
    def draws(self) -> int:
        """Draws every tile holds (0 while a tile shows the quick pass): what a result's "draws" is."""
        return min(self.tile_draws)

    @property
    def tiles_done(self) -> int:
        """Tiles whose draws are all in."""
        return sum(d == self.total_draws for d in self.tile_draws)

    def prediction(self) -> TiledPrediction:
        """This step's stitched result (built once, on demand).  Instances of a tile in progress
        are its draws so far agglomerated; of a tile not reached, the quick pass's (p = 0 or 1).
        ``draw_counts`` covers the ``draws`` every tile holds; peaks come once any tile has draws."""
        if self._pred is None:
            kept, truncated = [], 0
            for t in self._tiles:
                pairs = t.kept if t.kept is not None else (
                    _kept(t.stacks, t, self.shape) if t.stacks else [(i, False) for i in t.preview])
                kept += [i for i, _ in pairs]
                truncated += sum(cut for _, cut in pairs)
            kept = _dedupe(kept)
            entropy = paste_max(self.shape, kept, bernoulli_entropy)
            m = self.draws
            counts = [sum(t.counts[d] for t in self._tiles) for d in range(m)]
            peaks = sparse_peaks(entropy, kept) if any(self.tile_draws) else []
            self._pred = TiledPrediction(kept, entropy, peaks, self.binarize, self.tiles, truncated,
                                         bf16=self.bf16, device=self.device, draw_counts=counts)
        return self._pred


def _kept(stacks: list[list[Box]], t: _Tile, shape: tuple[int, int]) -> list[tuple[Instance, bool]]:
    """A tile's agglomerated draws, the instances centred in its core (``tiling._keep``)."""
    out = []
    for p in agglomerate_boxes(stacks):
        inst = _keep(p, t.core, t.win, shape, t.index)
        if inst is not None:
            out.append(inst)
    return out


def predict_tiled_progressive(
    model: UNet,
    image: np.ndarray,
    post: PostprocessConfig | None = None,
    draws: int | None = None,
    binarize: float | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    *,
    tile: int = TILE,
    margin: int = MARGIN,
    batch: int | None = None,
    first: bool = True,
) -> Iterator[TiledUpdate]:
    """Raw image [C,H,W] of any size -> ``TiledUpdate``s: the quick pass tile by tile (``first``),
    then one per draw of each tile; the last one's ``prediction()`` is ``predict_tiled``'s result.

    ``should_stop()`` is checked before every forward pass (raises ``inference.Cancelled``);
    updates already yielded stay valid.  ``first=False`` skips the quick pass (``predict_tiled``:
    nobody sees it there).  Settings, memory check and seeds are ``predict_tiled``'s.
    """
    post, draws, binarize = _settings(post, draws, binarize)
    if tile < 2 * model.cell or margin < 0:
        raise OptionError(f"tile {tile} and margin {margin}: the tile must be at least {2 * model.cell} pixels "
                          "and the margin at least 0")
    h, w = np.shape(image)[-2:]
    check_memory(h, w, model.cfg.in_channels, tile, margin)
    x = prepare_input(image, model)
    tiles = [_Tile(core, win, i) for i, (core, win) in enumerate(tile_grid(h, w, tile, margin, align=model.cell))]
    bf16 = uses_bf16(device)
    batch = 1 if batch is None else batch
    mc = draws > 1 and bool(model.dropout_layers())
    quick = first and mc
    total = (len(tiles) if quick else 0) + len(tiles) * (draws if mc else 1)
    info = dict(tiles=len(tiles), total=total, total_draws=draws, shape=(int(h), int(w)), binarize=binarize,
                bf16=bf16, device=str(torch.device(device)))
    cluster = dict(bandwidth=post.bandwidth, cluster_radius=post.cluster_radius, min_size=post.min_size)
    done = 0

    def update(stage: str, k: int) -> TiledUpdate:
        snap = [_Tile(t.core, t.win, t.index, list(t.stacks), list(t.counts), t.preview, t.kept) for t in tiles]
        reached = len(tiles) if quick and stage == "draws" else k + 1
        return TiledUpdate(stage, k, done=done, tile_draws=tuple(len(t.stacks) for t in tiles), reached=reached,
                           _tiles=snap, **info)

    def mean_pass(t: _Tile) -> list[Box]:
        _check_stop(should_stop)
        xw = x[:, t.win[0], t.win[1]]
        emb, logits = next(forward_draws(model, xw, 1, device, seed=seed, bf16=bf16, as_float=False))
        return cluster_blobs(emb, logits, **cluster, seed=seed, roi=core_in_window(t.core, t.win))

    if quick:
        for t in tiles:
            t.preview = [i for i, _ in _kept([mean_pass(t)], t, (h, w))]
            done += 1
            yield update("mean", t.index)
    for t in tiles:
        roi = core_in_window(t.core, t.win)
        if mc:
            source = (cluster_blobs(emb, logits, **cluster, roi=roi, seed=seed + i) for i, (emb, logits) in enumerate(
                forward_draws(model, x[:, t.win[0], t.win[1]], draws, device, batch, seed=seed,
                              should_stop=should_stop, bf16=bf16, as_float=False)))
        else:  # every draw is the mean network: one pass
            source = iter([mean_pass(t)] * draws)
        for i, stack in enumerate(source):
            t.stacks = [*t.stacks, stack]
            t.counts = [*t.counts, sum(_centre_in(m, t.win, t.core) for m in stack)]
            if i == draws - 1:
                t.kept = _kept(t.stacks, t, (h, w))
            if mc or i == draws - 1:  # without dropout the one pass stands for every draw: one update
                done += 1
                yield update("draws", t.index)
