"""Object size: segment images taken at another magnification than the training data.

The network learnt worms of one width (BBBC010: about 8 px).  A user's image is
resampled so its worms have that width, segmented, and the results are mapped back to
the user's pixels, so labels, probabilities, entropy, peaks and everything computed
from them (review list, measurements, session) are in the user's pixels.  The width is
given by the user (like cellpose's diameter) or estimated from two quick passes of the
mean network (``estimate_worm_width``); ``segment_at_width`` is the one call the CLI,
batch, evaluation and the Segment dock share.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .validation import AUTO_TILE_PX, OptionError

if TYPE_CHECKING:  # torch loads only when a network runs: the CLI parser imports this module
    import torch

    from .checkpoint import PostprocessConfig
    from .model import UNet

# Median over the 50 BBBC010 train wells of worm_width(union of the ground-truth worms)
# (bench/scale_calibration.py recomputes it).
TRAINING_WORM_WIDTH = 8.6
MIN_FACTOR, MAX_FACTOR = 0.2, 5.0  # beyond these the image is not of worms at a sensible magnification
# |factor - 1| below this: segment at the image's own scale.  Training jitters crop scale by
# +-10% (data.SCALE_JITTER), so the network is equally at home there and resampling only costs detail.
TOLERANCE = 0.1
# The estimator's first look shrinks the image by half: worms up to ~2x BBBC010's width then
# land below the training width, where the network measures widths faithfully (0.35x-1.1x of
# it on 5 test wells x 5 magnifications; beyond ~1.2x it sees worm edges as thin worms).
# The full-size look runs only when the half-size one finds nothing (worms under ~4 px wide);
# no enlarged look: on an empty field (outside the well) the network finds texture there.
FIRST_LOOK = (0.5, 1.0)
FOREGROUND_TILE = 1024  # above AUTO_TILE_PX the width passes run by windows with cores of this side ...
FOREGROUND_MARGIN = 128  # ... and this much context: more than the U-Net's reach (~107 px)
REFINE_AT = 0.85  # the refining look puts the worms at 85% of the training width: a margin below 1.1x
MODES = ("auto", "off")
WIDTH_RANGE = (round(TRAINING_WORM_WIDTH / MAX_FACTOR, 1), round(TRAINING_WORM_WIDTH / MIN_FACTOR))


@dataclass(frozen=True)
class ScaleInfo:
    """How an image was sized for the network; ``describe`` is what the user is shown."""

    worm_width: float | None  # px in the user's image (None: off, or no worms found to estimate it)
    estimated: bool  # True when the width came from the image, False when the user gave it
    factor: float  # user image -> network scale (1.0: not resampled)
    mode: str = "auto"  # "auto", "given" or "off"

    def describe(self, override: str = "give --worm-width to override") -> str:
        if self.mode == "off":
            return "worm width not used (off): segmented at the image's own scale"
        if self.worm_width is None:
            return f"worm width: no worms found to estimate it; segmented at the image's own scale ({override})"
        how = f"estimated; {override}" if self.estimated else "given"
        done = f"image resampled x{self.factor:.2f} for the model" if self.factor != 1.0 else \
            "within 10% of the training width: not resampled"
        return f"worm width {self.worm_width:.1f} px ({how}); {done}"

    def as_meta(self) -> dict:
        """The entries written into each output's metadata and the batch marker."""
        w = None if self.worm_width is None else round(self.worm_width, 2)
        return {"worm_width": w, "worm_width_mode": self.mode, "scale_factor": round(self.factor, 4)}


def parse_worm_width(value: float | str | None, flag: str = "--worm-width") -> float | str:
    """'auto' (also None), 'off', or a width in pixels inside ``WIDTH_RANGE``; OptionError otherwise."""
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    if text in MODES:
        return text
    try:
        width = float(text)
    except ValueError:
        width = float("nan")
    lo, hi = WIDTH_RANGE
    if not (lo <= width <= hi):  # also NaN
        raise OptionError(f"{flag} must be 'auto', 'off' or a worm width in pixels >= {lo:g} and <= {hi:g} "
                          f"(the model resamples images by {MIN_FACTOR:g}-{MAX_FACTOR:g}x), got {value!r}")
    return width


def worm_width(mask: np.ndarray) -> float | None:
    """Typical width (px) of the thin objects in a binary mask: twice the distance from the
    skeleton to the border, averaged along the skeleton without its lowest quarter (branch
    spurs, worm tips) and highest tenth (crossings, worms lying side by side), so merged
    worms and ragged borders barely move it.  None when the mask holds too little to measure."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, bool)
    if mask.sum() < 20:
        return None
    values = np.sort(ndimage.distance_transform_edt(mask)[skeletonize(mask)])
    n = len(values)
    if n < 20:
        return None
    # a centre pixel lies DT from the border on one side and DT or DT-1 on the other: width 2*DT-0.5
    return float(2 * values[n // 4: n - n // 10].mean() - 0.5)


def foreground_probability(model: UNet, image: np.ndarray, device: torch.device | str = "cpu",
                           tile: int | None = None) -> np.ndarray:
    """Mean-network probability of worm or overlap (softmax) of a raw image.

    One forward pass, or one per window when the image is above ``AUTO_TILE_PX`` (``tile`` None;
    0 never, a number: cores of that side): a whole 4096x4096 plate scan, or its 0.85x refining
    look, would need several GB of activations.  Windows are cut from the input normalised as a
    whole, on the U-Net's pooling grid, with ``FOREGROUND_MARGIN`` px of context: the cores
    then match the whole-image pass (tests/test_scale_tiled.py)."""
    import torch

    from .inference import prepare_input
    from .strips import run as run_model
    from .tiling import core_in_window, tile_grid

    x = prepare_input(image, model)
    h, w = x.shape[-2:]
    side = (FOREGROUND_TILE if h * w > AUTO_TILE_PX else 0) if tile is None else int(tile)
    grid = tile_grid(h, w, side, FOREGROUND_MARGIN, align=model.cell) if side and max(h, w) > side else \
        [((slice(0, h), slice(0, w)),) * 2]
    out = np.zeros((h, w), np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for core, win in grid:
                _, logits = run_model(model, x[(slice(None), *win)][None].to(device))  # by strips from 1024x1024 on
                p = torch.softmax(logits[0].float(), 0)[1:].sum(0).cpu().numpy()
                out[core] = p[core_in_window(core, win)]
    finally:
        model.train(was_training)
    return out


def foreground(model: UNet, image: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Mean-network foreground of a raw image, pinholes filled and specks dropped."""
    return clean_foreground(foreground_probability(model, image, device) > 0.5)


def clean_foreground(mask: np.ndarray) -> np.ndarray:
    """Fill the pinholes a network leaves inside worms at an unfamiliar scale (they would split the
    skeleton into loops) and drop specks; loops of curled worms stay."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    mask = mask | ~_components_of_size(~mask, 100)
    return _components_of_size(ndimage.binary_opening(mask), 30)


def _components_of_size(mask: np.ndarray, min_size: int) -> np.ndarray:
    """The connected components of ``mask`` with at least ``min_size`` pixels."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    keep = np.bincount(labels.ravel()) >= min_size
    keep[0] = False
    return keep[labels]


def resample_image(image: np.ndarray, factor: float, order: int | None = None) -> np.ndarray:
    """[C,H,W] (or a 2-D brightfield image) -> round(H*f) x round(W*f) float32, anti-aliased when
    shrinking.  ``order`` None: cubic when enlarging (a 5-px worm blown up linearly is blurred:
    47 test wells at 0.6x, width given, avAP 0.697 linear -> 0.703 cubic), linear when shrinking."""
    from skimage.transform import rescale

    a = np.asarray(image, np.float32)
    if order is None:
        order = 3 if factor > 1 else 1

    def one(c: np.ndarray) -> np.ndarray:
        return rescale(c, factor, order=order, anti_aliasing=factor < 1, preserve_range=True).astype(np.float32)

    return one(a) if a.ndim == 2 else np.stack([one(c) for c in a])


def resample_stack(stack: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """[N,h,w] -> [N,*shape]: probabilities (order 1) or masks (order 0) back to the user's pixels."""
    from skimage.transform import resize

    s = np.asarray(stack)
    if len(s) == 0:
        return np.zeros((0, *shape), s.dtype)
    out = np.stack([resize(m.astype(np.float32), shape, order=order, anti_aliasing=False, preserve_range=True)
                    for m in s])
    return out.astype(s.dtype) if s.dtype != bool else out > 0.5


def estimate_worm_width(model: UNet, image: np.ndarray, device: torch.device | str = "cpu",
                        should_stop: Callable[[], bool] | None = None) -> float | None:
    """Worm width (px) in a raw image, from two mean-network passes on shrunk copies.

    Why not one pass at the image's own scale: a network shown worms wider than it learnt
    finds their dark edges as thin worms and measures them far too thin, while worms
    narrower than it learnt are measured faithfully.  So the first look is at half size
    (full size only when it finds nothing), and the refining look at the magnification that
    puts the worms at 85% of the training width.  None when neither look finds worms.
    The result is divided by the network's ``worm_width_bias`` (how much wider than the annotation
    its foreground is), so it is the width a person would measure.
    """
    width = None
    for first in FIRST_LOOK:
        width = _width_at(model, image, first, device, should_stop)
        if width is not None:
            break
    if width is None:
        return None
    bias = float(getattr(model.cfg, "worm_width_bias", 1.0))
    refined = _width_at(model, image, _clip(REFINE_AT * TRAINING_WORM_WIDTH * bias / width), device, should_stop)
    return (width if refined is None else refined) / bias


def _clip(factor: float) -> float:
    return float(np.clip(factor, MIN_FACTOR, MAX_FACTOR))


def _width_at(model: UNet, image: np.ndarray, factor: float, device, should_stop=None) -> float | None:
    """Worm width in the user's pixels, measured by the network on the image resampled by ``factor``."""
    from .inference import Cancelled

    if should_stop is not None and should_stop():
        raise Cancelled()
    resampled = image if factor == 1.0 else resample_image(image, factor)
    if min(resampled.shape[-2:]) < model.cell:
        return None
    width = worm_width(foreground(model, resampled, device))
    return None if width is None else width / factor


def choose_scale(model: UNet, image: np.ndarray, worm_width_px: float | str | None = "auto",
                 device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None) -> ScaleInfo:
    """The worm width (given, estimated, or 'off') and the resampling factor it implies."""
    setting = parse_worm_width(worm_width_px)
    if setting == "off":
        return ScaleInfo(None, False, 1.0, "off")
    if setting == "auto":
        width, estimated = estimate_worm_width(model, image, device, should_stop), True
    else:
        width, estimated = float(setting), False
    mode = "auto" if estimated else "given"
    if width is None:
        return ScaleInfo(None, True, 1.0, mode)
    factor = _clip(TRAINING_WORM_WIDTH / width)
    return ScaleInfo(width, estimated, 1.0 if abs(factor - 1) < TOLERANCE else factor, mode)


def network_view(model: UNet, image: np.ndarray, worm_width_px: float | str | None = "auto",
                 device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None):
    """(ScaleInfo, the image at the network's scale, a function mapping a Prediction of it back).

    One recipe for ``segment_at_width`` and the Segment dock, which maps each progressive
    update back as it arrives.
    """
    info = choose_scale(model, image, worm_width_px, device, should_stop)
    if info.factor == 1.0:
        return info, image, lambda pred: pred
    shape = np.asarray(image).shape[-2:]
    return info, resample_image(image, info.factor), lambda pred: prediction_to_shape(pred, shape)


def segment_at_width(model: UNet, image: np.ndarray, post: PostprocessConfig | None = None,
                     worm_width_px: float | str | None = "auto", **predict_kwargs):
    """``inference.predict`` at the network's scale, results in the user's pixels.

    ``worm_width_px``: a width in pixels, 'auto' or None (estimated), or 'off' (the image's
    own scale).  Returns (Prediction, ScaleInfo); the CLI, batch and evaluation call this.
    """
    from .inference import predict

    info, view, back = network_view(model, image, worm_width_px, predict_kwargs.get("device", "cpu"),
                                    predict_kwargs.get("should_stop"))
    return back(predict(model, view, post, **predict_kwargs)), info


def prediction_to_shape(pred, shape: tuple[int, int]):
    """A Prediction computed on a resampled image, mapped back to ``shape``.

    Each binarised instance is resampled as a mask (linear, kept where >= 0.5), which keeps
    its area and border where they were; resampling the probabilities and cutting them at
    ``binarize`` (0.75) instead would move every border inward by a quarter of a network
    pixel (C10/D21 at 0.6-1.25x, one draw: avAP 0.03-0.04 lower).  Probabilities are resized
    linearly and, at an instance's border, nudged across the cut to agree with its mask, so
    ``instances == probabilities >= binarize`` still holds (saved predictions rely on it);
    entropy and peaks are recomputed from them as ``predict`` computes them.  The minimum
    instance size is applied in the network's pixels (where it was tuned).
    """
    from dataclasses import replace

    from .inference import uncertainty_peaks
    from .uncertainty_metrics import entropy_map

    shape = tuple(int(s) for s in shape)
    probs = np.clip(resample_stack(pred.probabilities, shape, order=1), 0, 1).astype(np.float32)
    inst = resample_stack(np.asarray(pred.instances, bool), shape, order=1)
    cut = float(pred.binarize)
    # a margin of 1e-3 survives the float16 the outputs store probabilities in
    probs[inst & (probs < cut)] = min(1.0, cut + 1e-3)
    probs[~inst & (probs >= cut)] = max(0.0, cut - 1e-3)
    ent = entropy_map(probs, shape)
    draws = [resample_stack(d, shape, order=0) for d in pred.draws]
    return replace(pred, probabilities=probs, instances=probs >= cut, entropy=ent,
                   peaks=uncertainty_peaks(ent, probs), draws=draws, _items=None)
