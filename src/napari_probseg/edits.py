"""Label edits as pure functions: each returns the pixels to set, the GUI applies them undoably.

Why pure: the napari dock applies an ``Edit`` with ``Labels.data_setitem`` so that
Ctrl+Z undoes it, and the same functions are tested headless without a viewer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .session import SessionError

SNAP = 5.0  # pixels: a split seed this close to the instance is moved onto it


@dataclass
class Edit:
    """Pixels to set (``labels[indices] = values``) for one undoable correction."""

    indices: tuple[np.ndarray, np.ndarray]
    values: np.ndarray
    description: str

    def apply(self, labels: np.ndarray) -> None:
        labels[self.indices] = self.values


def _check(labels: np.ndarray, *ids: int) -> None:
    present = set(np.unique(labels).tolist())
    for i in ids:
        if i <= 0 or i not in present:
            raise SessionError(f"instance {i} is not in the label image")


def merge(labels: np.ndarray, keep: int, other: int) -> Edit:
    """Relabel ``other`` as ``keep`` (two pieces of one worm)."""
    _check(labels, keep, other)
    if keep == other:
        raise SessionError("choose two different instances to merge")
    idx = np.nonzero(labels == other)
    return Edit(idx, np.full(len(idx[0]), keep, labels.dtype), f"merge {other} into {keep}")


def erase(labels: np.ndarray, label: int) -> Edit:
    """Remove an instance (a false positive)."""
    _check(labels, label)
    idx = np.nonzero(labels == label)
    return Edit(idx, np.zeros(len(idx[0]), labels.dtype), f"erase {label}")


def replace(labels: np.ndarray, label: int, mask: np.ndarray) -> Edit:
    """Swap an instance for a painted mask (keeping its id); a new id when ``label`` is 0."""
    mask = np.asarray(mask, bool)
    if mask.shape != labels.shape or not mask.any():
        raise SessionError("paint the new instance first (the paint layer is empty or has another shape)")
    if label:
        _check(labels, label)
    new = label or int(labels.max()) + 1
    out = labels.copy()
    if label:
        out[labels == label] = 0
    out[mask] = new
    idx = np.nonzero(out != labels)
    return Edit(idx, out[idx], f"replace {label} by painted instance {new}" if label else f"add painted instance {new}")


def split(labels: np.ndarray, label: int, seeds: np.ndarray, snap: float = SNAP) -> Edit:
    """Split an instance by watershed on its distance transform from >= 2 seed points.

    Seeds ([S,2] y,x) up to ``snap`` pixels off the instance are snapped onto it (a click
    beside a thin worm is still meant for it); farther ones are refused.  The region of
    the first seed keeps the id, the others get new ids.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    _check(labels, label)
    seeds = np.round(np.asarray(seeds, float).reshape(-1, 2)).astype(int)
    if len(seeds) < 2:
        raise SessionError("place at least two seed points on the instance to split it")
    mask = labels == label
    dist, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
    h, w = mask.shape
    markers = np.zeros(labels.shape, np.int32)
    for k, (y, x) in enumerate(seeds, 1):
        if not (0 <= y < h and 0 <= x < w) or dist[y, x] > snap:
            raise SessionError(f"seed point ({y}, {x}) is not on instance {label}; "
                               f"place it on the worm (within {snap:g} pixels)")
        markers[iy[y, x], ix[y, x]] = k
    if len(np.unique(markers)) - 1 < 2:
        raise SessionError("the seed points fall on the same pixel; spread them over the instance")
    regions = watershed(-ndimage.distance_transform_edt(mask), markers, mask=mask)
    base = int(labels.max())
    new_ids = np.where(regions > 1, base + regions - 1, label)
    idx = np.nonzero(mask & (regions > 1))
    return Edit(idx, new_ids[idx].astype(labels.dtype), f"split {label} into {len(seeds)}")
