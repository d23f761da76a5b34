"""Label colours that differ between neighbouring worms (a graph colouring of the instances).

Why: napari's default cyclic colours are assigned by id, so two worms that touch, cross or
lie side by side can get the same or a barely different colour and read as one object.
Here instances within ``2 * gap`` pixels of each other (by default 16 px, about a worm's
width) are neighbours in a graph, and networkx colours the graph so that neighbours never
share a palette colour (equitably, so the colours stay spread over the image).  Plain
numpy/scikit-image/networkx: no napari, no Qt.
"""
from __future__ import annotations

import numpy as np

# 12 of Sasha Trubetskoy's "20 simple, distinct colours", chosen to be told apart on a grey image
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
           "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff")
SPARE_IDS = 256  # ids above the largest get palette colours too (worms added or split while proofreading)
GAP = 8  # each instance grows by this many pixels: worms up to 16 px apart are neighbours


def touching_pairs(labels: np.ndarray, gap: int = GAP) -> set[tuple[int, int]]:
    """Pairs (a, b), a < b, of label ids whose pixels come within ``2 * gap`` pixels (8-connected)."""
    from skimage.segmentation import expand_labels  # imported here: napari imports the reader on every drop

    grown = expand_labels(np.asarray(labels), distance=gap) if gap > 0 else np.asarray(labels)
    pairs: set[tuple[int, int]] = set()
    for a, b in ((grown[:, :-1], grown[:, 1:]), (grown[:-1, :], grown[1:, :]),
                 (grown[:-1, :-1], grown[1:, 1:]), (grown[:-1, 1:], grown[1:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        if m.any():
            ab = np.unique(np.sort(np.stack([a[m], b[m]], 1), axis=1), axis=0)
            pairs.update((int(x), int(y)) for x, y in ab)
    return pairs


def color_indices(labels: np.ndarray, n_colors: int = len(PALETTE), gap: int = GAP) -> dict[int, int]:
    """Palette index per label id, different for every neighbouring pair when the palette allows.

    Equitable colouring (colour classes differ in size by at most one) needs more colours than
    the most-touched worm has neighbours; beyond that DSATUR's greedy colouring is used and an
    index above the palette wraps around (only then can neighbours share a colour)."""
    import networkx as nx

    ids = [int(i) for i in np.unique(labels) if i > 0]
    graph = nx.Graph()
    graph.add_nodes_from(ids)
    graph.add_edges_from(touching_pairs(labels, gap))
    if not ids:
        return {}
    max_degree = max(d for _, d in graph.degree)
    if max_degree < n_colors:
        colors = nx.equitable_color(graph, n_colors)
    else:
        colors = nx.greedy_color(graph, strategy="DSATUR")
    return {i: int(colors[i]) % n_colors for i in ids}


def worm_colors(labels: np.ndarray, palette: tuple[str, ...] = PALETTE, gap: int = GAP) -> dict[int | None, str]:
    """A napari label colour dict: background transparent, neighbouring worms in different colours,
    ids above the current ones (added while proofreading) cycling through the palette."""
    idx = color_indices(labels, len(palette), gap)
    top = max(idx, default=0)
    colors: dict[int | None, str] = {None: palette[0], 0: "transparent"}
    colors.update({i: palette[c] for i, c in idx.items()})
    colors.update({i: palette[i % len(palette)] for i in range(top + 1, top + 1 + SPARE_IDS)})
    return colors
