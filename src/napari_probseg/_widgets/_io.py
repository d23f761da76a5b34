"""Manifest entry points without Qt: sample data, the session reader and writer.

Opening a session file or ``probseg predict``'s ``*_probabilities.npz`` adds the layers
and opens the proofreading dock, which binds to the new labels layer by itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..inference import PATCH
from ..session import SUFFIX, Session, SessionError, file_kind

LayerData = tuple[Any, dict, str]
LN2 = float(np.log(2))
CHANNEL_STYLE = [("fluorescence", "red"), ("brightfield", "gray")]
SHOWN_PEAKS = 100  # markers drawn; the dock lists every peak


def _channel_layers(image: np.ndarray, name: str, source: str, names: list[str] | None = None, **geo) -> list[LayerData]:
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


def _sample(well: str) -> list[LayerData]:
    from ..sample_data import load_sample

    return _channel_layers(load_sample(well), well, f"sample:{well}")


def sample_c04() -> list[LayerData]:
    return _sample("C04")


def sample_c10() -> list[LayerData]:
    return _sample("C10")


def sample_d21() -> list[LayerData]:
    return _sample("D21")


def session_layer_data(session: Session, images: bool = True, **geo) -> list[LayerData]:
    """Layers of a session: [images], max-probability, entropy, corrected labels, top peaks (hidden), review items."""
    name, sid = session.image_name, session.session_id
    base = {"probseg_session_id": sid, "probseg_image_name": name, "probseg": session.meta}
    out: list[LayerData] = []
    if images and session.image is not None:
        out += _channel_layers(session.image, name, session.image_source, session.channel_names, **geo)
    probs = session.probabilities
    pmax = probs.max(0) if len(probs) else np.zeros(session.labels.shape, np.float32)
    out.append((pmax, {"name": f"{name} probability (max)", "colormap": "viridis", "contrast_limits": (0, 1),
                       "visible": False, "metadata": {**base, "probseg_role": "probabilities", "probabilities": probs}, **geo}, "image"))
    out.append((session.entropy, {"name": f"{name} entropy", "colormap": "magma", "contrast_limits": (0, LN2),
                                  "blending": "additive", "opacity": 0.8,
                                  "metadata": {**base, "probseg_role": "entropy"}, **geo}, "image"))
    out.append((session.labels, {"name": f"{name} labels", "opacity": 0.45,
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
    """Markers of every review item (numbered: the default list; unnumbered: shown under 'all')."""
    items, n = session.items, len(session.default_items())
    pts = np.array([[it.y, it.x] for it in items], float).reshape(-1, 2)
    features = {"rank": np.arange(1, len(items) + 1), "score": np.array([it.score for it in items], float),
                "label": [f"{r} {it.kind}" if r <= n else "" for r, it in enumerate(items, 1)]}
    return (pts, {"name": f"{session.image_name} review items", "symbol": "ring", "size": 24,
                  "face_color": "transparent", "border_color": "cyan", "border_width": 0.12, "features": features,
                  "text": {"string": "{label}", "color": "cyan", "size": 10, "anchor": "upper_left"},
                  "metadata": {**base, "probseg_role": "items"}, **geo}, "points")


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """napari reader hook: our session files and ``*_probabilities.npz``, nothing else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_session if file_kind(path) else None


def read_session(path: str | list[str]) -> list[LayerData]:
    """Layers of a session (or predict output) file; opens the proofreading dock."""
    path = Path(path[0] if isinstance(path, list) else path)
    kind = file_kind(path)
    session = Session.from_probabilities_file(path) if kind == "probabilities" else Session.load(path)
    viewer = _current_viewer()
    images = True
    if viewer is not None:  # the image is often open already: don't add it twice
        have = {l.name for l in viewer.layers}
        images = not session.channel_names or not set(session.channel_names) <= have
        from ._common import open_dock

        open_dock(viewer, "Proofreading")
    return session_layer_data(session, images=images)


def _current_viewer():
    try:
        import napari

        return napari.current_viewer()
    except Exception:
        return None


def write_session(path: str, data: Any, meta: dict) -> list[str]:
    """napari writer hook for a labels layer: the full session when the layer has one,
    else a labels-only session so a plain label image can be proofread later."""
    md = meta.get("metadata") or {}
    session = md.get("probseg_session")
    labels = np.asarray(data, dtype=np.int32)
    if labels.ndim != 2:
        raise SessionError(f"a proofreading session holds one 2-D label image; this layer has shape {labels.shape}")
    if session is None:
        session = Session(meta.get("name", "labels"), np.zeros((0, *labels.shape), np.float32),
                          np.zeros(labels.shape, np.float32), labels, [])
    session.labels = labels
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + SUFFIX)
    return [str(session.save(p))]
