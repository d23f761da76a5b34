"""Images of any size in bounded memory (issue 17): tiled inference, instances stitched across tiles.

The image is validated and normalised once as a whole (``prepare_input``: the same
percentiles as an untiled run), then cut into a grid of cores of about ``tile`` pixels.
Each core is segmented in a window grown by ``margin`` on every side and started on a
multiple of the U-Net's cell (so its outputs in the core equal the whole image's): MC draws
as ``predict``'s, each draw clustered blob by blob and agglomerated on boxes
(``sparse``: per-blob clustering keeps a window's result independent of how many worms it
holds).  A window's instance is kept by the tile whose core holds its centre
(probability-weighted centroid); with ``MARGIN`` = 224 px (half the longest BBBC010 worm, 78
px, plus the U-Net's reach of ~107 px around a pixel), such a worm lies whole inside the
window and beyond the reach of the window's cut.  Two tiles that kept the same worm (its
centre on their border) are matched by IoU and one copy stays.

Nothing full-size is held per draw or per instance: one window's draws at a time, as boxes,
and each kept instance as its probabilities inside its box.  The full-size outputs are the
entropy and the label image; ``check_memory`` refuses, before any compute, an image whose
outputs and input would not fit in the memory available.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .boxes import sparse_peaks  # noqa: F401 (moved there: torch-free for the reader)
from .checkpoint import PostprocessConfig
from .inference import Prediction
from .model import UNet
from .peaks import Peak
from .sparse import Box
from .validation import AUTO_TILE_CORE, InputError

TILE = AUTO_TILE_CORE  # core side (pixels), validation says why 2048
MARGIN = 224  # context on every side of a core: half the longest BBBC010 worm (155 px) + the U-Net's reach (~107 px)
SAME_WORM_IOU = 0.5  # two tiles' copies of one worm overlap at least this much (p >= 0.5 masks)
# bytes per pixel of the full-size arrays: normalised input (4 per channel), its normalisation
# temporaries (8 per channel), entropy (4), labels (4), instance boxes (about 4: worms' boxes
# cover a pixel about once)
_BYTES_PER_PX = 12
_FIXED_PER_PX = 12
# working set of one window per pixel (one forward pass of the 19-filter U-Net in bf16 with
# batch 1, embeddings and clustering); measured order of magnitude, see docs/benchmarks.md
BYTES_PER_WINDOW_PX = 400
# the dense outputs per instance and pixel: float32 probabilities, bool instances, the npz's
# float16 copy, and a float32 temporary while the review list and worm table are computed
DENSE_BYTES_PER_INSTANCE_PX = 12


@dataclass
class Instance:
    """One stitched instance: its probabilities inside its box of the image."""

    y: int  # top-left of the box
    x: int
    probabilities: np.ndarray  # [h,w] float32
    tile: int  # the tile that kept it

    @property
    def box(self) -> tuple[slice, slice]:
        h, w = self.probabilities.shape
        return slice(self.y, self.y + h), slice(self.x, self.x + w)


@dataclass
class TiledPrediction:
    """``predict_tiled``'s result: sparse instances, full-size entropy, peaks."""

    instances: list[Instance]
    entropy: np.ndarray  # [H,W] float32, max over instances of the Bernoulli entropy
    peaks: list[Peak]
    binarize: float
    tiles: int
    truncated: int = 0  # kept instances cut by their window (a worm longer than the margin allows)
    bf16: bool = False
    device: str = "cpu"
    draw_counts: list[int] = field(default_factory=list)  # instances per MC draw, summed over the tiles

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.entropy.shape)  # type: ignore[return-value]

    @property
    def n_instances(self) -> int:
        """Instances with a binarised pixel (as ``Prediction.n_instances``)."""
        return sum(bool((i.probabilities >= self.binarize).any()) for i in self.instances)

    def labels(self) -> np.ndarray:
        """Label image (0 = background, instance i -> i + 1; the later one wins where they overlap)."""
        return self.to_boxes().labels()

    def to_prediction(self) -> Prediction:
        """The dense ``Prediction`` ([N,H,W] arrays) the outputs are written from (``check_dense`` first);
        its peaks are this prediction's (``sparse_peaks``: the dense ``uncertainty_peaks``' peaks)."""
        probs = self.to_boxes().to_dense()
        return StitchedPrediction(probs, probs >= self.binarize, self.entropy, list(self.peaks),
                                  [], self.binarize, bf16=self.bf16, device=self.device, counted=list(self.draw_counts),
                                  tiles=self.tiles)

    def to_boxes(self):
        """The box form (``boxes.BoxPrediction``) the outputs of a large image are written from."""
        from .boxes import BoxPrediction, Crop

        return BoxPrediction([Crop(i.y, i.x, i.probabilities) for i in self.instances], self.entropy, list(self.peaks),
                             self.binarize, bf16=self.bf16, device=self.device, counts=list(self.draw_counts),
                             tiles=self.tiles, truncated=self.truncated)

    def check_dense(self, available: int | None = None) -> None:
        """Refuse, before building them, per-instance outputs ([N,H,W]) that would not fit in memory."""
        need = len(self.instances) * self.shape[0] * self.shape[1] * DENSE_BYTES_PER_INSTANCE_PX
        have = available_bytes() if available is None else available
        if need > have:
            raise InputError(f"the tiled segmentation of this {self.shape[0]}x{self.shape[1]} image found "
                             f"{len(self.instances)} instances; their per-instance outputs need about "
                             f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of memory available: "
                             "cut the image into parts")


@dataclass
class StitchedPrediction(Prediction):
    """A tiled run's dense ``Prediction``: its draws are not kept (each would be [n,H,W]), their counts
are (``Prediction.counted``)."""

    tiles: int = 0


def tile_grid(h: int, w: int, tile: int = TILE, margin: int = MARGIN,
              align: int = 1) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """(core, window) slices of each tile, row by row; cores split the image evenly, windows add ``margin``.

    A window starts on a multiple of ``align`` (the model's ``cell``): the U-Net's pooling grid
    then lies where it lies in the whole image, and the window's outputs in its core equal the
    whole image's (unaligned, the C03-C06 mosaic's cores differed by up to 7 in the embedding).
    """
    ys = np.linspace(0, h, math.ceil(h / tile) + 1).round().astype(int)
    xs = np.linspace(0, w, math.ceil(w / tile) + 1).round().astype(int)
    out = []
    for y0, y1 in zip(ys[:-1], ys[1:]):
        for x0, x1 in zip(xs[:-1], xs[1:]):
            core = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
            win = (slice(max(int(y0) - margin, 0) // align * align, min(int(y1) + margin, h)),
                   slice(max(int(x0) - margin, 0) // align * align, min(int(x1) + margin, w)))
            out.append((core, win))
    return out


def core_in_window(core: tuple[slice, slice], win: tuple[slice, slice]) -> tuple[slice, slice]:
    """A tile's core (``tile_grid``) in its window's own pixels: where the window's outputs are kept."""
    return tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, win))  # type: ignore[return-value]


def available_bytes() -> int:
    """Memory available to this process now (psutil when installed, else the free physical pages)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a napari dependency
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def estimate_bytes(h: int, w: int, channels: int, tile: int = TILE, margin: int = MARGIN) -> int:
    """Bytes a tiled run of an ``h`` x ``w`` image needs: full-size arrays plus one window's working set."""
    win = min(h, tile + 2 * margin) * min(w, tile + 2 * margin)
    return int(h * w * (_BYTES_PER_PX * channels + _FIXED_PER_PX) + win * BYTES_PER_WINDOW_PX)


def check_memory(h: int, w: int, channels: int, tile: int = TILE, margin: int = MARGIN,
                 available: int | None = None) -> None:
    """Refuse, before any compute, an image whose outputs would not fit in the memory available."""
    need = estimate_bytes(h, w, channels, tile, margin)
    have = available_bytes() if available is None else available
    if need > have:
        raise InputError(f"image of {h}x{w} pixels needs about {need / 2**30:.1f} GiB for its outputs, more than "
                         f"the {have / 2**30:.1f} GiB of memory available: crop or downscale it, or free memory")


def predict_tiled(
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
    tile: int = TILE,
    margin: int = MARGIN,
    batch: int | None = None,
) -> TiledPrediction:
    """Raw image [C,H,W] of any size -> stitched instances, entropy and peaks, tile by tile.

    ``tiled_progress.predict_tiled_progressive`` run to its end (without the quick pass nobody
    sees here): one code path for the dock's progressive results and this.
    ``progress(done, total)`` counts tiles; ``should_stop()`` is checked before every draw of
    every tile (raises ``inference.Cancelled``).  Every window uses the same ``seed``, so the
    same dropout masks as an untiled ``predict`` with the same ``batch`` (they drop whole
    channels, whatever the window's size).  ``batch`` defaults to 1 here: on a 1248 px window
    a batch of 4 took 1.8x as long per draw and 2.7x the memory (docs/benchmarks.md).
    """
    from .tiled_progress import predict_tiled_progressive

    last, finished = None, 0
    for last in predict_tiled_progressive(model, image, post, draws, binarize, device, seed, should_stop,
                                          tile=tile, margin=margin, batch=batch, first=False):
        if progress is not None and last.tiles_done > finished:
            finished = last.tiles_done
            progress(finished, last.tiles)
    return last.prediction()


def predict_stitched(model: UNet, image: np.ndarray, post: PostprocessConfig | None = None, draws: int | None = None,
                     binarize: float | None = None, device: torch.device | str = "cpu", seed: int = 0,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, *, tile: int = TILE,
                     batch: int | None = None) -> Prediction:
    """``inference.predict``'s result by tiles (its ``tile=`` path): ``predict_tiled``, then the
    dense outputs if they fit (``TiledPrediction.check_dense``)."""
    tiled = predict_tiled(model, image, post, draws, binarize, device, seed, progress, should_stop, tile=tile,
                          batch=batch)
    tiled.check_dense()
    return tiled.to_prediction()


def _centre_in(p: Box, win: tuple[slice, slice], core: tuple[slice, slice]) -> bool:
    """Whether the weighted centroid of ``p`` (window coordinates) lies in ``core`` (image coordinates)."""
    c = p.centre()
    if c is None:
        return False
    cy, cx = c[0] + win[0].start, c[1] + win[1].start
    return core[0].start <= cy < core[0].stop and core[1].start <= cx < core[1].stop


def _keep(p: Box, core, win, shape: tuple[int, int], tile: int) -> tuple[Instance, bool] | None:
    """The window's instance ``p`` in image coordinates, if its centre is in ``core``; and
    whether the window's cut (an edge inside the image) crosses it."""
    if not _centre_in(p, win, core):
        return None
    wh, ww = win[0].stop - win[0].start, win[1].stop - win[1].start
    cut = ((p.y == 0 and win[0].start > 0) or (p.y1 == wh and win[0].stop < shape[0])
           or (p.x == 0 and win[1].start > 0) or (p.x1 == ww and win[1].stop < shape[1]))
    return Instance(int(win[0].start + p.y), int(win[1].start + p.x), p.a.astype(np.float32), tile), bool(cut)


def _dedupe(kept: list[Instance]) -> list[Instance]:
    """Drop the smaller copy of a worm kept by two tiles (IoU of the p >= 0.5 masks >= SAME_WORM_IOU)."""
    if len(kept) < 2:
        return kept
    boxes = np.array([[i.y, i.x, i.y + i.probabilities.shape[0], i.x + i.probabilities.shape[1]] for i in kept])
    tiles = np.array([i.tile for i in kept])
    mass = np.array([float(i.probabilities.sum()) for i in kept])
    dropped = np.zeros(len(kept), bool)
    for a in np.argsort(-mass, kind="stable"):
        if dropped[a]:
            continue
        b0, b1 = np.maximum(boxes[:, :2], boxes[a, :2]), np.minimum(boxes[:, 2:], boxes[a, 2:])
        near = np.flatnonzero((b0 < b1).all(1) & (tiles != tiles[a]) & ~dropped)
        for b in near:
            if _box_iou(kept[a], kept[b]) >= SAME_WORM_IOU:
                dropped[b] = True
    return [i for i, d in zip(kept, dropped) if not d]


def _box_iou(a: Instance, b: Instance) -> float:
    """IoU of the p >= 0.5 masks of two instances, on the box around both."""
    y0, x0 = min(a.y, b.y), min(a.x, b.x)
    y1 = max(a.y + a.probabilities.shape[0], b.y + b.probabilities.shape[0])
    x1 = max(a.x + a.probabilities.shape[1], b.x + b.probabilities.shape[1])
    ma, mb = np.zeros((y1 - y0, x1 - x0), bool), np.zeros((y1 - y0, x1 - x0), bool)
    for m, i in ((ma, a), (mb, b)):
        m[i.y - y0: i.y - y0 + i.probabilities.shape[0], i.x - x0: i.x - x0 + i.probabilities.shape[1]] = \
            i.probabilities >= 0.5
    union = (ma | mb).sum()
    return float((ma & mb).sum() / union) if union else 0.0
