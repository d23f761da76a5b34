"""napari layer data (plain tuples) for images and proofreading sessions, without Qt or torch.

Why apart: the reader, the sample data and the Segment dock all build the same layers;
returning ``(data, kwargs, type)`` tuples keeps this testable without a viewer.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .label_colors import worm_colors
from .peaks import PATCH
from .session import Session

LayerData = tuple[Any, dict, str]
LN2 = float(np.log(2))
CHANNEL_STYLE = [("fluorescence", "red"), ("brightfield", "gray")]
SHOWN_PEAKS = 100  # markers drawn; the dock lists every peak
ENTROPY_SUFFIX = "uncertainty (entropy)"  # the layer says what it shows, not only how it is computed


def channel_layers(image: np.ndarray, name: str, source: str, names: list[str] | None = None, **geo) -> list[LayerData]:
    """Image layers of a [C,H,W] stack: brightfield below, fluorescence added on top."""
    out = []
    for c in range(image.shape[0]):
        kind, cmap = CHANNEL_STYLE[c] if image.shape[0] == 2 else ("image", "gray")
        lo, hi = np.percentile(image[c], [0.5, 99.8])
        md = {"probseg_image_name": name, "probseg_source": source, "probseg_channel": kind}
        out.append((image[c], {"name": (names or [])[c] if names and c < len(names) else f"{name} {kind}",
                               "colormap": cmap, "blending": "additive" if c == 0 and image.shape[0] > 1 else "translucent",
                               "contrast_limits": (float(lo), float(max(hi, lo + 1))), "metadata": md, **geo}, "image"))
    return out[::-1]


def session_layer_data(session: Session, images: bool = True, **geo) -> list[LayerData]:
    """Layers of a session: [images], max-probability (hidden), entropy (hidden), corrected labels (neighbouring
    worms in different colours), top peaks (hidden), review items."""
    name, sid = session.image_name, session.session_id
    base = {"probseg_session_id": sid, "probseg_image_name": name, "probseg": session.meta}
    out: list[LayerData] = []
    if images and session.image is not None:
        out += channel_layers(session.image, name, session.image_source, session.channel_names, **geo)
    probs = session.probabilities
    pmax = probs.max(0) if len(probs) else np.zeros(session.labels.shape, np.float32)
    out.append((pmax, {"name": f"{name} probability (max)", "colormap": "viridis", "contrast_limits": (0, 1),
                       "visible": False, "metadata": {**base, "probseg_role": "probabilities", "probabilities": probs}, **geo}, "image"))
    # hidden until asked for: shown over the worms its speckle of boundary pixels reads as label noise
    out.append((session.entropy, {"name": f"{name} {ENTROPY_SUFFIX}", "colormap": "magma", "contrast_limits": (0, LN2),
                                  "blending": "additive", "opacity": 0.8, "visible": False,
                                  "metadata": {**base, "probseg_role": "entropy"}, **geo}, "image"))
    out.append((session.labels, {"name": f"{name} labels", "opacity": 0.5, "colormap": worm_colors(session.labels),
                                 "metadata": {**base, "probseg_role": "labels", "probseg_session": session}, **geo}, "labels"))
    shown = session.peaks[:SHOWN_PEAKS]
    pts = np.array([[p.y + PATCH / 2, p.x + PATCH / 2] for p in shown], float).reshape(-1, 2)
    ranks = np.arange(1, len(pts) + 1)
    features = {"rank": ranks, "score": np.array([p.score for p in shown], float),
                "label": [str(r) if r <= 20 else "" for r in ranks]}
    out.append((pts, {"name": f"{name} uncertainty peaks", "symbol": "square", "size": 6, "face_color": "transparent",
                      "border_color": "cyan", "border_width": 0.1, "features": features, "visible": False,
                      "text": {"string": "{label}", "color": "cyan", "size": 9, "anchor": "upper_left"},
                      "metadata": {**base, "probseg_role": "peaks"}, **geo}, "points"))
    out.append(_items_layer(session, base, geo))
    return out


def _items_layer(session: Session, base: dict, geo: dict) -> LayerData:
    """Markers of every review item, numbered as the default list (the proofreading dock then shows and
    numbers the rings of the list it shows)."""
    items, n = session.items, len(session.default_items())
    pts = np.array([[it.y, it.x] for it in items], float).reshape(-1, 2)
    features = {"rank": np.arange(1, len(items) + 1), "score": np.array([it.score for it in items], float),
                "label": [f"{r} {it.kind}" if r <= n else "" for r, it in enumerate(items, 1)]}
    return (pts, {"name": f"{session.image_name} review items", "symbol": "ring", "size": 24,
                  "face_color": "transparent", "border_color": "cyan", "border_width": 0.12, "features": features,
                  "text": {"string": "{label}", "color": "cyan", "size": 10, "anchor": "upper_left"},
                  "metadata": {**base, "probseg_role": "items"}, **geo}, "points")


def box_layer_data(pred, name: str, meta: dict) -> list[LayerData]:
    """Layers of a ``boxes.BoxPrediction`` too large for a proofreading session: labels (worms in
    different colours) and the uncertainty; the review list stays in ``<stem>_review.csv``."""
    base = {"probseg_image_name": name, "probseg": meta}
    labels = pred.labels()
    return [(pred.entropy, {"name": f"{name} {ENTROPY_SUFFIX}", "colormap": "magma", "contrast_limits": (0, LN2),
                            "blending": "additive", "opacity": 0.8, "visible": False,
                            "metadata": {**base, "probseg_role": "entropy"}}, "image"),
            (labels, {"name": f"{name} labels", "opacity": 0.5, "colormap": worm_colors(labels),
                      "metadata": {**base, "probseg_role": "labels"}}, "labels")]
