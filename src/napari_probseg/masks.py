"""Small operations on instance stacks [N,H,W] shared by inference, metrics and measurements.

Why one module: mask IoU, "which instances are non-empty", the label image and the
one-pixel-grown patch window were each written two to four times; one copy each keeps
their edge cases (an empty stack, a patch at the image border) fixed in one place.
"""
from __future__ import annotations

import numpy as np


def _flat(stack: np.ndarray) -> np.ndarray:
    s = np.asarray(stack, dtype=bool)
    return s.reshape(s.shape[0], int(np.prod(s.shape[1:], dtype=np.int64)))


def nonempty(stack: np.ndarray) -> np.ndarray:
    """Per slice of an [N,H,W] stack, whether it has any True pixel; safe for N = 0.

    Why: ``stack.reshape(len(stack), -1)`` fails on an empty stack (numpy cannot infer -1
    from size 0), and an image without worms is a valid input.
    """
    return _flat(stack).any(1)


def drop_empty(stack: np.ndarray) -> np.ndarray:
    """The non-empty slices of a bool stack (what the metrics score)."""
    s = np.asarray(stack, dtype=bool)
    return s[nonempty(s)]


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``pred`` vs every mask of ``gt``, ``[N,M]`` float64.

    One float32 matmul counts the intersections (exact: counts < 2**24); empty pairs get 0.
    """
    p, g = _flat(pred), _flat(gt)
    if p.shape[0] == 0 or g.shape[0] == 0:
        return np.zeros((p.shape[0], g.shape[0]))
    inter = (p.astype(np.float32) @ g.T.astype(np.float32)).astype(np.float64)
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def labels_from_instances(instances: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A label image (0 = background, instance i -> i + 1); where instances overlap the later one wins."""
    inst = np.asarray(instances, dtype=bool)
    lab = np.zeros(inst.shape[1:] if shape is None else shape, dtype=np.int32)
    for i, m in enumerate(inst):
        lab[m] = i + 1
    return lab


def grown_window(y: int, x: int, size: int, shape: tuple[int, ...], grow: int = 1) -> tuple[slice, slice]:
    """The ``size`` x ``size`` patch at (y, x) grown by ``grow`` pixels, clipped to the image.

    Why: the paper's "within or directly neighbouring" a peak patch; peaks, the proofreading
    simulation and the session's peak labels all use this window (review items grow it more).
    """
    h, w = shape[-2:]
    return slice(max(y - grow, 0), min(y + size + grow, h)), slice(max(x - grow, 0), min(x + size + grow, w))
