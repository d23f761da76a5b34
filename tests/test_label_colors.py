"""Label colours: neighbouring worms never share a colour (issue 16, item 6)."""
from __future__ import annotations

import numpy as np

from napari_probseg.label_colors import PALETTE, SPARE_IDS, color_indices, touching_pairs, worm_colors
from napari_probseg.masks import labels_from_instances


def bars(gaps: list[int], width: int = 4, length: int = 40) -> np.ndarray:
    """Vertical bars (ids 1, 2, ...) separated by the given gaps in pixels."""
    x, cols = 2, []
    for g in [0, *gaps]:
        x += g
        cols.append(x)
        x += width
    lab = np.zeros((length + 4, x + 2), np.int32)
    for i, c in enumerate(cols, 1):
        lab[2:2 + length, c:c + width] = i
    return lab


def test_neighbours_are_bars_closer_than_twice_the_gap():
    lab = bars([0, 10, 30])  # 1|2 touch, 2 and 3 are 10 px apart, 3 and 4 are 30 px apart
    assert touching_pairs(lab, gap=0) == {(1, 2)}
    assert touching_pairs(lab, gap=8) == {(1, 2), (2, 3)}
    assert touching_pairs(np.zeros((5, 5), np.int32)) == set()


def test_every_neighbouring_pair_differs_and_colours_spread():
    lab = bars([0, 2, 4, 0, 6, 1, 3, 0, 5, 2, 0, 1, 4])  # a row of 14 worms, each next to the next
    idx = color_indices(lab)
    pairs = touching_pairs(lab)
    assert len(pairs) >= 13 and all(idx[a] != idx[b] for a, b in pairs)
    assert len(set(idx.values())) >= 6  # equitable: not two alternating colours for 14 worms


def test_a_worm_with_more_neighbours_than_colours_still_differs_from_each():
    # one long worm with 14 short ones touching it (more neighbours than the 12 colours: DSATUR)
    lab = np.zeros((30, 14 * 6 + 2), np.int32)
    lab[2:5, :] = 1
    for i in range(14):
        lab[5:20, 1 + i * 6:4 + i * 6] = i + 2
    idx = color_indices(lab, gap=1)
    assert all(idx[1] != idx[j] for j in range(2, 16))


def test_napari_colour_dict_covers_new_ids(data_dir):
    from napari_probseg.data import load_masks

    lab = labels_from_instances(load_masks(data_dir, "C10") > 0)  # the 15 ground-truth worms of C10
    colors = worm_colors(lab)
    pairs = touching_pairs(lab)
    assert len(pairs) >= 5  # crossing, touching and side-by-side worms in this well
    assert all(colors[a] != colors[b] for a, b in pairs)
    assert colors[0] == "transparent" and set(colors[i] for i in range(1, 16)) <= set(PALETTE)
    assert 15 + SPARE_IDS in colors  # a worm added while proofreading has a palette colour, not the default
