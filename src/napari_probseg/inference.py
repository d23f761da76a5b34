"""Sections 2.3 and 3.1: MC-dropout draws, agglomeration, entropy and uncertainty peaks.

``predict_progressive`` is the one path: it yields the mean network's segmentation first
(dropout off: a result on screen after one forward pass), then an update after every MC
draw.  ``predict`` (the CLI, the benchmark, the batch mode) runs it to the end.  Both can be
cancelled between draws (``should_stop``), so a GUI never has to kill a thread.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .checkpoint import PostprocessConfig
from .data import model_input
from .masks import labels_from_instances, mask_iou, nonempty  # noqa: F401 (nonempty: re-exported)
from .mc_draws import (  # noqa: F401 (re-exported: the names callers have always imported from here)
    Cancelled,
    _check_stop,
    _inference_state,
    default_batch,
    forward_draws,
    uses_bf16,
)
from .model import UNet
from .peaks import PATCH, Peak, uncertainty_peaks  # noqa: F401 (re-exported: one copy, torch-free)
from .postprocess import cluster_draw
from .uncertainty_metrics import bernoulli_entropy, entropy_map  # noqa: F401 (bernoulli_entropy: re-exported)
from .validation import AUTO_TILE_PX


@dataclass
class Prediction:
    probabilities: np.ndarray  # [N,H,W] float32, per-instance probability
    instances: np.ndarray  # [N,H,W] bool, probabilities >= binarize (a slice may be empty)
    entropy: np.ndarray  # [H,W] float32, max over instances of the Bernoulli entropy
    peaks: list[Peak]
    draws: list[np.ndarray]  # the T post-processed draws
    binarize: float  # probability at which a pixel belongs to an instance
    bf16: bool = False  # whether the draws ran under bf16 autocast (uses_bf16); written to the outputs' meta
    device: str = "cpu"  # where the draws ran
    counted: list[int] | None = None  # each draw's instance count where the draws are not kept (a reloaded run)
    _items: list | None = field(default=None, repr=False, compare=False)  # review items, all (cached)
    # cached; not an init field, so that dataclasses.replace (a resampled copy) starts without it
    _count_inputs: dict | None = field(default=None, init=False, repr=False, compare=False)

    def review_items(self, show_all: bool = False) -> list:
        """The review list (``review.review_items``): suspected errors, best first; ``show_all``
        also returns the items below the default list's score."""
        from .review import ReviewConfig, review_items

        if self._items is None:
            self._items = review_items(self.probabilities, self.binarize, show_all=True, counted=self.count_inputs())
        return list(self._items) if show_all else [it for it in self._items if it.score >= ReviewConfig().min_score]

    def count_inputs(self) -> dict:
        """``counts.count_inputs`` of this prediction, computed once: the count and the review
        list's count flags both read them (each instance's skeleton is the costly part)."""
        from .counts import count_inputs

        if self._count_inputs is None:
            self._count_inputs = count_inputs(self.probabilities, self.instances, self.draw_counts)
        return self._count_inputs

    @property
    def threshold(self) -> float:
        """Deprecated name of ``binarize`` (kept until the widgets and session use the new name)."""
        return self.binarize

    @property
    def draw_counts(self) -> list[int]:
        """How many instances each MC draw found (the spread feeds the count interval)."""
        return list(self.counted) if self.counted is not None else [len(d) for d in self.draws]

    def binary_instances(self) -> np.ndarray:
        """The non-empty binarised instances: what the metrics score."""
        return self.instances[nonempty(self.instances)]

    @property
    def n_instances(self) -> int:
        """How many binarised instances are non-empty (0 for an empty field)."""
        return int(nonempty(self.instances).sum())

    def labels(self) -> np.ndarray:
        """A label image (0 = background); where instances overlap the later one wins."""
        return labels_from_instances(self.instances, self.entropy.shape)


def agglomerate(draws: list[np.ndarray]) -> np.ndarray:
    """Section 2.3: per-instance probability maps [N,H,W] from T instance stacks.

    Start from the draw with the most instances; match each further draw to the running
    union by Hungarian matching on IoU; matched masks are summed and unioned, unmatched
    ones start new instances.  The sums divided by T are the probabilities.
    """
    t = len(draws)
    if t == 0:
        raise ValueError("agglomerate needs at least one draw")
    shape = draws[0].shape[1:]
    order = sorted(range(t), key=lambda i: -len(draws[i]))
    base = draws[order[0]].astype(bool).copy()
    sums = base.astype(np.float32)
    for i in order[1:]:
        d = draws[i].astype(bool)
        if len(d) == 0:
            continue
        iou = mask_iou(base, d)
        rows, cols = linear_sum_assignment(-iou) if len(base) else (np.array([], int), np.array([], int))
        matched = set()
        for r, c in zip(rows, cols):
            if iou[r, c] > 0:
                sums[r] += d[c]
                base[r] |= d[c]
                matched.add(c)
        new = [c for c in range(len(d)) if c not in matched]
        if new:
            base = np.concatenate([base, d[new]])
            sums = np.concatenate([sums, d[new].astype(np.float32)])
    if len(sums) == 0:
        return np.zeros((0, *shape), dtype=np.float32)
    return sums / t


def draws_entropy_map(probabilities: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``uncertainty_metrics.entropy_map`` of agglomerated draws, bit for bit, at a tenth of the
    cost (C10, 13 instances: 0.165 -> 0.014 s).  Why equal: the entropy grows with min(p, 1-p),
    exact in float32, and H(1-p) = H(p) in float64; the probabilities are multiples of 1/T, so
    no two instances differ by a rounding error that could change which one is nearest 0.5.
    """
    if len(probabilities) == 0:
        return np.zeros(tuple(shape)[-2:], np.float32)
    nearest = np.minimum(probabilities, 1 - probabilities).max(0)
    return bernoulli_entropy(nearest).astype(np.float32)


def prepare_input(image: np.ndarray, model: UNet) -> torch.Tensor:
    """Validate and normalise a raw [C,H,W] image for the model (clear errors on bad input).

    A 2-D brightfield image is accepted when the model's file allows it (``model.brightfield_only``,
    set by ``load_checkpoint``); its fluorescence plane is then zero, as in training's blanking.
    """
    a = model_input(image, model.cfg.in_channels, model.cell, getattr(model, "brightfield_only", False))
    return torch.from_numpy(a)


@dataclass
class Update:
    """One step of ``predict_progressive``: the mean network's segmentation (``done`` = 0) or
    the result of the first ``done`` of ``total`` MC draws.

    ``prediction()`` builds the arrays on demand and keeps them (agglomeration, entropy,
    peaks: about 0.1 s on a BBBC010 well), so a consumer that skips an update pays nothing.
    """

    done: int  # MC draws clustered so far (0: the mean network, dropout off)
    total: int  # MC draws asked for
    mean: np.ndarray | None  # [N,H,W] bool, the mean network's instances (None when it was not run)
    draws: list[np.ndarray]  # the first ``done`` post-processed draws
    shape: tuple[int, int]
    binarize: float
    bf16: bool = False
    device: str = "cpu"
    _pred: Prediction | None = field(default=None, repr=False, compare=False)

    @property
    def final(self) -> bool:
        return self.done == self.total

    def prediction(self) -> Prediction:
        """The ``Prediction`` of this step.  The mean network's step has probabilities 0 or 1,
        zero entropy, no peaks and no draws: a segmentation without uncertainty yet."""
        if self._pred is None:
            probs = agglomerate(self.draws) if self.done else self.mean.astype(np.float32)
            ent = draws_entropy_map(probs, self.shape)
            peaks = uncertainty_peaks(ent, probs) if self.done else []
            self._pred = Prediction(probs, probs >= self.binarize, ent, peaks, list(self.draws), self.binarize,
                                    bf16=self.bf16, device=self.device)
        return self._pred


def _settings(post: PostprocessConfig | None, draws: int | None, binarize: float | None):
    """The call's post-processing, draws and binarisation, each checked against its range."""
    from .validation import check

    post = post or PostprocessConfig()
    draws = check("draws", post.mc_draws if draws is None else draws, "draws")
    binarize = check("binarize", post.binarize if binarize is None else binarize, "binarize")
    check("min_size", post.min_size, "minimum size")
    check("bandwidth", post.bandwidth, "bandwidth")
    check("cluster_radius", post.cluster_radius, "cluster radius")
    return post, draws, binarize


def _repeated(out, n: int, should_stop: Callable[[], bool] | None):
    """The same network output ``n`` times (no dropout: every draw is the mean network)."""
    for _ in range(n):
        _check_stop(should_stop)
        yield out


def predict_progressive(
    model: UNet,
    image: np.ndarray,
    post: PostprocessConfig | None = None,
    draws: int | None = None,
    binarize: float | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    *,
    batch: int | None = None,
    seeded: bool = False,
    first: bool = True,
) -> Iterator[Update]:
    """Raw image [C,H,W] -> ``Update``s: the mean network's segmentation, then one per MC draw.

    ``first`` yields the mean network's step (``done`` = 0) as soon as it is clustered.
    ``seeded`` starts each draw's mean-shift from the mean network's centres
    (``postprocess.mean_shift(init=...)``; same instances within a matched IoU of 0.95 on
    BBBC010 wells, ``tests/test_progressive.py``), which needs the mean pass even when
    ``first`` is off; off by default: on a crop of C10 with a saturated pixel it lost a worm
    in a draw that the unseeded path kept (docs/benchmarks.md).  ``batch``: draws per
    forward pass (``default_batch``; the same masks whatever it is).  A model without
    dropout, or one draw, runs the network once: every draw is the mean network.
    ``should_stop()`` is checked before every forward pass and raises ``Cancelled``; the
    updates already yielded stay valid.  Same seed, same result, global RNG untouched.
    """
    post, draws, binarize = _settings(post, draws, binarize)
    yield from updates_from_input(model, prepare_input(image, model), post, draws, binarize, device, seed,
                                  should_stop, batch=batch, seeded=seeded, first=first)


def updates_from_input(model: UNet, x: torch.Tensor, post: PostprocessConfig, draws: int, binarize: float,
                       device: torch.device | str = "cpu", seed: int = 0,
                       should_stop: Callable[[], bool] | None = None, *, batch: int | None = None,
                       seeded: bool = False, first: bool = True) -> Iterator[Update]:
    """``predict_progressive`` on an already prepared input [C,H,W] (``prepare_input``) and checked
    settings: the tiles of ``tiling.predict_tiled`` are cut from one image normalised as a whole."""
    bf16 = uses_bf16(device)
    info = {"shape": tuple(x.shape[-2:]), "binarize": binarize, "bf16": bf16, "device": str(torch.device(device))}
    mc = draws > 1 and bool(model.dropout_layers())
    cluster = dict(bandwidth=post.bandwidth, cluster_radius=post.cluster_radius, min_size=post.min_size)
    mean = init = mean_out = None
    if first or seeded or not mc:
        _check_stop(should_stop)
        mean_out = next(forward_draws(model, x, 1, device, seed=seed, bf16=bf16))  # one pass: dropout off
        mean, centres = cluster_draw(*mean_out, **cluster, seed=seed)
        init = centres if seeded else None
        if first:
            yield Update(0, draws, mean, [], **info)
    source = (forward_draws(model, x, draws, device, batch, seed=seed, should_stop=should_stop, bf16=bf16)
              if mc else _repeated(mean_out, draws, should_stop))
    stacks: list[np.ndarray] = []
    for i, (emb, logits) in enumerate(source):
        if not mc and i == 0:
            stacks.append(mean)  # the same output clustered with the same seed
        else:
            stacks.append(cluster_draw(emb, logits, **cluster, seed=seed + i, init=init)[0])
        yield Update(i + 1, draws, mean, list(stacks), **info)


def tiles_image(shape: tuple[int, ...], tile: int | None) -> bool:
    """Whether ``predict(tile=...)`` segments an image of ``shape`` by tiles: ``tile`` 0 never,
    None (auto) above ``AUTO_TILE_PX`` pixels, else when a side is longer than ``tile``."""
    h, w = shape[-2:]
    if tile is None:
        return h * w > AUTO_TILE_PX
    return bool(tile) and max(h, w) > tile


def predict(
    model: UNet,
    image: np.ndarray,
    post: PostprocessConfig | None = None,
    draws: int | None = None,
    binarize: float | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    threshold: float | None = None,
    batch: int | None = None,
    seeded: bool = False,
    tile: int | None = None,
) -> Prediction:
    """Raw image [C,H,W] -> per-instance probabilities, binarised instances, entropy, peaks.

    ``predict_progressive`` run to its last update (without the mean network's step, which
    nobody sees here).  ``progress(done, total)`` is called after each draw is clustered;
    ``should_stop()`` is checked before each draw and raises ``Cancelled``.  The same ``seed``
    gives the same result whatever the global torch RNG holds, and the global RNG is left
    untouched.  ``batch`` changes the speed, not the dropout masks (``default_batch``: 1 on a
    CPU; results equal up to the convolutions' rounding, bit for bit under bf16 on the project's
    CPU); ``seeded=True`` (``predict_progressive``) clusters faster but adds the mean network's
    pass and is not equal draw by draw.  ``threshold=`` is the deprecated name of ``binarize=``.
    ``tile`` (issue 17): 0 never tiles; None tiles images above ``AUTO_TILE_PX`` pixels with
    ``tiling.TILE`` cores; a number tiles with cores of that side when the image is longer
    (``tiling.predict_stitched``: bounded memory until the dense outputs; ``progress`` then
    counts tiles, and ``seeded`` does not apply).
    """
    if threshold is not None:
        warnings.warn("predict(threshold=...) is deprecated; use binarize=...", DeprecationWarning, stacklevel=2)
        binarize = threshold if binarize is None else binarize
    if tiles_image(np.shape(image), tile):
        from .tiling import TILE, predict_stitched

        return predict_stitched(model, image, post, draws, binarize, device, seed, progress, should_stop,
                                tile=tile or TILE, batch=batch)
    last = None
    for last in predict_progressive(model, image, post, draws, binarize, device, seed, should_stop,
                                    batch=batch, seeded=seeded, first=False):
        if progress is not None:
            progress(last.done, last.total)
    return last.prediction()
