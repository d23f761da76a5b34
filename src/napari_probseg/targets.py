"""Training targets from a corrected session (what fine-tuning learns from).

Why a module of its own: turning a proofreader's corrections into masks is neither the
session's storage nor an edit, and the training dock needs it without the GUI.
"""
from __future__ import annotations

import numpy as np

from .masks import labels_from_instances


def label_masks(labels: np.ndarray) -> np.ndarray:
    """One bool mask per label id [N,H,W] of a 2-D label image (disjoint by construction)."""
    ids = [int(i) for i in np.unique(labels) if i]
    return np.stack([labels == i for i in ids]) if ids else np.zeros((0, *labels.shape), bool)


def training_masks(labels: np.ndarray, probabilities: np.ndarray, binarize: float) -> np.ndarray:
    """Instance masks [N,H,W] for fine-tuning from corrected ``labels``, keeping the model's overlaps.

    Why: a napari Labels layer holds one id per pixel, so where two of the model's worms
    overlap only one of them shows (the later one, as ``masks.labels_from_instances`` paints them).
    Masks taken from the label image alone are disjoint, and fine-tuning on them teaches
    the network that worms never overlap - the overlap class is trained down.

    The hidden part of model instance ``i`` (its binarised mask under another instance)
    is given back to the id its visible pixels carry now, when the correction leaves
    that unambiguous: all its visible pixels still carry one and the same id (untouched,
    or merged into another worm as a whole), and the hiding pixel still shows the
    instance the model put there.  Erased, split, replaced or repainted instances, and
    pixels the proofreader changed, get no hidden part: there the label image is the
    proofreader's word.  New instances (painted, split pieces) are their labels.
    """
    labels = np.asarray(labels)
    masks = label_masks(labels)
    ids = [int(i) for i in np.unique(labels) if i]
    if not ids or len(probabilities) == 0:
        return masks
    model = np.asarray(probabilities) >= binarize
    shown = labels_from_instances(model)  # the label image the session started from
    unchanged_occluder = (labels == shown) & (labels > 0)
    row = {lab: k for k, lab in enumerate(ids)}
    for i, inst in enumerate(model):
        visible = shown == i + 1
        now = np.unique(labels[visible])
        if len(now) != 1 or now[0] == 0:
            continue  # erased, split, replaced, partly repainted or never shown
        target = int(now[0])
        hidden = inst & ~visible & unchanged_occluder & (labels != target)
        masks[row[target]] |= hidden
    return masks
