"""Object size: segment images taken at another magnification than the training data.

The network learnt worms of one width (BBBC010: about 9 px).  A user's image is
resampled so its worms have that width, segmented, and the results are mapped back to
the user's pixels, so labels, probabilities, entropy, peaks and everything computed
from them (review list, measurements, session) are in the user's pixels.  The width is
given by the user (like cellpose's diameter) or estimated from a first pass of the mean
network: the median width of its foreground along the skeleton.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import PostprocessConfig
from .model import UNet

# Median over the 50 BBBC010 train wells of worm_width(union of the ground-truth worms): 7.89 px.
TRAINING_WORM_WIDTH = 7.9
MIN_FACTOR, MAX_FACTOR = 0.2, 5.0  # beyond these the image is not of worms at a sensible magnification
_CANDIDATES = (0.6, 1.0, 1.6)  # magnifications of the first look: 0.6x-1.6x images land near 1x
_TOLERANCE = 0.07  # |factor - 1| below this: segment at the user's scale (resampling costs detail)


@dataclass
class ScaleInfo:
    worm_width: float | None  # px in the user's image (None: no foreground found)
    estimated: bool  # True when the width came from the image, False when the user gave it
    factor: float  # user image -> network scale (1.0: not resampled)

    def describe(self) -> str:
        if self.worm_width is None:
            return "worm width: no worms found to estimate it; segmented at the image's own scale"
        how = "estimated" if self.estimated else "given"
        return f"worm width {self.worm_width:.1f} px ({how}); image resampled x{self.factor:.2f} for the model"


def worm_width(mask: np.ndarray) -> float | None:
    """Typical width (px) of the thin objects in a binary mask: their area over their skeleton's
    length (a ribbon's mean width), which stays right where a distance transform is fooled by
    pinholes and ragged borders.  None when the mask holds too little to measure."""
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, bool)
    if mask.sum() < 20:
        return None
    skeleton = skeletonize(mask)
    # skeleton length: a diagonal step counts sqrt(2), so count 4-connected and diagonal neighbours
    s = skeleton.astype(np.int8)
    straight = (s[1:, :] & s[:-1, :]).sum() + (s[:, 1:] & s[:, :-1]).sum()
    diagonal = (s[1:, 1:] & s[:-1, :-1]).sum() + (s[1:, :-1] & s[:-1, 1:]).sum()
    length = float(straight + np.sqrt(2) * diagonal) or float(skeleton.sum())
    if length < 5:
        return None
    return float(mask.sum() / length)


@torch.no_grad()
def foreground(model: UNet, image: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Mean-network foreground (worm or overlap class) of a raw [C,H,W] image: one forward pass."""
    from .inference import prepare_input

    x = prepare_input(image, model)[None].to(device)
    was_training = model.training
    model.eval()
    try:
        _, logits = model(x)
    finally:
        model.train(was_training)
    return clean_foreground((logits[0].argmax(0) > 0).cpu().numpy())


def clean_foreground(mask: np.ndarray) -> np.ndarray:
    """Fill the pinholes a network leaves inside worms at an unfamiliar scale (they would split the
    skeleton into loops and halve the measured width) and drop specks; loops of curled worms stay."""
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


def resample_image(image: np.ndarray, factor: float) -> np.ndarray:
    """[C,H,W] -> [C,round(H*f),round(W*f)] float32, linear, anti-aliased when shrinking."""
    from skimage.transform import rescale

    a = np.asarray(image, np.float32)
    return np.stack([rescale(c, factor, order=1, anti_aliasing=factor < 1, preserve_range=True) for c in a]).astype(
        np.float32)


def resample_stack(stack: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """[N,h,w] -> [N,*shape]: probabilities (order 1) or masks (order 0) back to the user's pixels."""
    from skimage.transform import resize

    s = np.asarray(stack)
    if len(s) == 0:
        return np.zeros((0, *shape), s.dtype)
    out = np.stack([resize(m.astype(np.float32), shape, order=order, anti_aliasing=False, preserve_range=True)
                    for m in s])
    return out.astype(s.dtype) if s.dtype != bool else out > 0.5


def estimate_worm_width(model: UNet, image: np.ndarray, device: torch.device | str = "cpu") -> float | None:
    """Worm width (px) in a raw image, from a few mean-network passes.

    A network shown worms far from its training width finds fragments of them and
    measures them too thin, so the width is measured at a few magnifications; the one
    whose measured width is nearest the training width is trusted, and one more pass at
    the magnification it implies refines it when it lands nearer still.
    """
    best: tuple[float, float] | None = None  # (distance from the training width in log units, user width)
    for factor in _CANDIDATES:
        width = _width_at(model, image, factor, device)
        if width is not None and (best is None or abs(np.log(width / TRAINING_WORM_WIDTH)) < best[0]):
            best = (abs(np.log(width / TRAINING_WORM_WIDTH)), width / factor)
    if best is None:
        return None
    factor = float(np.clip(TRAINING_WORM_WIDTH / best[1], MIN_FACTOR, MAX_FACTOR))
    refined = _width_at(model, image, factor, device)
    if refined is None or abs(np.log(refined / TRAINING_WORM_WIDTH)) > best[0]:
        return best[1]  # the refining pass saw fragments: keep the better-matched first look
    return refined / factor


def _width_at(model: UNet, image: np.ndarray, factor: float, device) -> float | None:
    """Worm width measured by the network on the image resampled by ``factor`` (network pixels)."""
    resampled = image if factor == 1.0 else resample_image(image, factor)
    if min(resampled.shape[-2:]) < model.cell:
        return None
    return worm_width(foreground(model, resampled, device))


def choose_scale(model: UNet, image: np.ndarray, given_width: float | None = None,
                 device: torch.device | str = "cpu") -> ScaleInfo:
    """The worm width (given or estimated) and the resampling factor it implies."""
    if given_width is not None:
        width, estimated = float(given_width), False
    else:
        width, estimated = estimate_worm_width(model, image, device), True
    if width is None:
        return ScaleInfo(None, True, 1.0)
    factor = float(np.clip(TRAINING_WORM_WIDTH / width, MIN_FACTOR, MAX_FACTOR))
    return ScaleInfo(width, estimated, 1.0 if abs(factor - 1) < _TOLERANCE else factor)


def predict_at_scale(model: UNet, image: np.ndarray, post: PostprocessConfig | None = None,
                     worm_width_px: float | None = None, **predict_kwargs):
    """``inference.predict`` at the network's scale, results in the user's pixels.

    Returns (Prediction, ScaleInfo).  ``worm_width_px=None`` estimates the width.
    """
    from .inference import predict

    device = predict_kwargs.get("device", "cpu")
    info = choose_scale(model, image, worm_width_px, device)
    if info.factor == 1.0:
        return predict(model, image, post, **predict_kwargs), info
    pred = predict(model, resample_image(image, info.factor), post, **predict_kwargs)
    return prediction_to_shape(pred, np.asarray(image).shape[-2:]), info


def prediction_to_shape(pred, shape: tuple[int, int]):
    """A Prediction computed on a resampled image, mapped back to ``shape``.

    Probabilities are resized linearly; instances, entropy and peaks are recomputed from
    them exactly as ``predict`` computes them, so the user-pixel result is self-consistent.
    The minimum instance size is applied in the network's pixels (where it was tuned).
    """
    from dataclasses import replace

    from .inference import uncertainty_peaks
    from .uncertainty_metrics import entropy_map

    shape = tuple(int(s) for s in shape)
    probs = np.clip(resample_stack(pred.probabilities, shape, order=1), 0, 1).astype(np.float32)
    inst = probs >= pred.binarize
    ent = entropy_map(probs, shape)
    draws = [resample_stack(d, shape, order=0) for d in pred.draws]
    return replace(pred, probabilities=probs, instances=inst, entropy=ent, peaks=uncertainty_peaks(ent, probs),
                   draws=draws)
