"""Label edits as pure functions: each returns the pixels to set, the GUI applies them undoably.

Why pure: the napari dock applies an ``Edit`` with ``Labels.data_setitem`` so that
Ctrl+Z undoes it, and the same functions are tested headless without a viewer.

Besides the hand edits (merge, split, erase, replace) this holds the two edits made from
what the model already computed: ``add_instance`` (a sub-threshold instance of the
probability stack becomes a new worm, on background pixels only) and ``fix_item`` (the
suggested fix of a review item, applied to the instances it names that exist).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .session import SessionError

SNAP = 5.0  # pixels: a split seed this close to the instance is moved onto it


@dataclass
class Edit:
    """Pixels to set (``labels[indices] = values``) for one undoable correction.

    ``label``: the worm to select afterwards (the one kept, made or fixed; 0: none).
    """

    indices: tuple[np.ndarray, np.ndarray]
    values: np.ndarray
    description: str
    label: int = 0

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
    return Edit(idx, np.full(len(idx[0]), keep, labels.dtype), f"merge {other} into {keep}", keep)


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
    return Edit(idx, out[idx], f"replace {label} by painted instance {new}" if label else f"add painted instance {new}",
                new)


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
    return Edit(idx, new_ids[idx].astype(labels.dtype), f"split {label} into {len(seeds)}", label)


# ---- edits from the model's own instances ---------------------------------------------
class NoAutomaticFix(SessionError):
    """A review item whose fix is done by hand (an uncertain outline); ``label`` is the worm to work on."""

    def __init__(self, message: str, label: int = 0):
        super().__init__(message)
        self.label = label


def instance_mask(prob: np.ndarray, cut: float) -> tuple[np.ndarray, float]:
    """The model's instance as a worm mask, and the level it was cut at: ``p >= cut``, or
    ``p >= max(p) / 2`` when it never reaches ``cut``; only its largest connected piece.

    Why half the peak: an instance seen in 3 of 8 draws has p = 0.375 over the whole worm and
    never reaches the session's cut; half its own peak keeps the pixels at least half as many
    draws agree on, the worm's body without the specks single draws add at its edges.
    """
    from scipy import ndimage

    p = np.asarray(prob, np.float32)
    peak = float(p.max()) if p.size else 0.0
    if peak <= 0:
        return np.zeros(p.shape, bool), float(cut)
    level = float(cut) if peak >= cut else peak / 2
    mask = p >= level
    pieces, n = ndimage.label(mask)
    if n > 1:
        mask = pieces == 1 + int(np.argmax(ndimage.sum_labels(mask, pieces, range(1, n + 1))))
    return mask, level


def add_instance(labels: np.ndarray, mask: np.ndarray, take_from: tuple[int, ...] = (),
                 name: str = "the model's worm", min_free: float = 0.5) -> Edit:
    """``mask`` as a new worm on background pixels (and on pixels of the worms ``take_from``).

    Other worms keep every pixel: a missed worm lying over a good one never eats it.  When less
    than ``min_free`` of the mask is free, the worm is labelled already (or the fix was applied
    before) and nothing is added; a worm of ``take_from`` is never removed entirely.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != labels.shape or not mask.any():
        raise SessionError(f"{name} has no pixels in this image; paint it instead ('Paint new instance')")
    free = mask & ((labels == 0) | np.isin(labels, list(take_from)))
    if free.sum() < min_free * mask.sum():
        ids, counts = np.unique(labels[mask & ~free], return_counts=True)
        owner = int(ids[np.argmax(counts)])
        raise SessionError(f"{name} is labelled already, mostly as worm {owner}: nothing to add "
                           f"(Ctrl+Z removes a worm added by mistake)")
    for t in take_from:
        if (labels == t).any() and not ((labels == t) & ~free).any():
            raise SessionError(f"adding {name} would remove worm {t} entirely; merge or erase it instead")
    new = int(labels.max()) + 1
    idx = np.nonzero(free)
    taken = sorted({int(v) for v in np.unique(labels[idx]) if v})
    what = f"add {name} as worm {new}" + (f" (taking pixels of worm {', '.join(map(str, taken))})" if taken else "")
    return Edit(idx, np.full(len(idx[0]), new, labels.dtype), what, new)


def combine(labels: np.ndarray, edits: list[Edit], description: str, label: int) -> Edit:
    """Several edits applied in turn, as one undoable edit."""
    out = labels.copy()
    for e in edits:
        e.apply(out)
    idx = np.nonzero(out != labels)
    return Edit(idx, out[idx], description, label)


def fix_item(session, index: int, labels: np.ndarray) -> Edit:
    """The suggested fix of review item ``index`` (``session.items``) on ``labels``.

    ``add`` / ``split``: each instance of the item that never reaches the session's cut
    becomes a new worm (``instance_mask``, ``add_instance``); for ``split`` it may take pixels
    from the item's other worms, for ``add`` only background.  ``merge`` joins the item's worms
    that exist into the first; ``erase`` removes its worm.  Anything that cannot apply (a worm
    erased already, an outline to repaint by hand) raises a SessionError saying what to do.
    """
    it = session.items[index]
    present = {int(v) for v in np.unique(labels) if v}
    ids = [i + 1 for i in it.instances if i + 1 in present]
    cut = session.binarize
    if it.fix in ("add", "split"):
        below = [i for i in it.instances if session.probabilities[i].max() < cut]
        if not below:
            raise SessionError(f"every worm of this item reaches the cut {cut:g} and is labelled; "
                               "split by Ctrl-clicking seed points on the worm instead")
        take = tuple(i + 1 for i in it.instances if i not in below and i + 1 in present) if it.fix == "split" else ()
        out, edits = labels.copy(), []
        for i in below:
            mask, level = instance_mask(session.probabilities[i], cut)
            e = add_instance(out, mask, take, name=f"the model's worm {i + 1} (p >= {level:.2f})")
            e.apply(out)
            edits.append(e)
        return combine(labels, edits, "; ".join(e.description for e in edits), edits[-1].label)
    if it.fix == "merge":
        if len(ids) < 2:
            raise SessionError(f"only worm {ids[0] if ids else '-'} of this item is in the Labels layer (the others "
                               "were erased or merged already): nothing to merge; mark it reviewed (Shift-R)")
        return combine(labels, [merge(labels, ids[0], b) for b in ids[1:]],
                       f"merge {', '.join(map(str, ids[1:]))} into {ids[0]}", ids[0])
    if it.fix == "erase":
        if not ids:
            raise SessionError(f"worm {it.instances[0] + 1} is not in the Labels layer any more (erased or merged "
                               "already): nothing to erase; mark the item reviewed (Shift-R)")
        return erase(labels, ids[0])
    a = ids[0] if ids else 0
    raise NoAutomaticFix(f"uncertain outline of worm {a}: there is no automatic fix; paint (P) or erase (E) along "
                         "its edge with the brush, then mark it reviewed (Shift-R)", a)
