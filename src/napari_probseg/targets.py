"""Training targets from a corrected session (what fine-tuning learns from).

Why a module of its own: turning a proofreader's corrections into masks is neither the
session's storage nor an edit, and the training dock needs it without the GUI.
"""
from __future__ import annotations

import numpy as np


def label_masks(labels: np.ndarray) -> np.ndarray:
    """One bool mask per label id [N,H,W] of a 2-D label image (disjoint by construction)."""
    ids = [int(i) for i in np.unique(labels) if i]
    return np.stack([labels == i for i in ids]) if ids else np.zeros((0, *labels.shape), bool)
