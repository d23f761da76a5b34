"""The shared mask helpers, against brute-force definitions."""
import numpy as np

from napari_probseg.masks import drop_empty, grown_window, labels_from_instances, mask_iou, nonempty


def test_mask_iou_against_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 9, 11)) > 0.6, rng.random((3, 9, 11)) > 0.5
    a[2] = False
    want = np.array([[(x & y).sum() / max((x | y).sum(), 1) for y in b] for x in a])
    np.testing.assert_allclose(mask_iou(a, b), want)
    assert mask_iou(a[:0], b).shape == (0, 3)


def test_nonempty_and_drop_empty_and_labels():
    s = np.zeros((3, 4, 5), bool)
    s[0, 1, 1] = s[2, 1:3, 1] = True
    assert nonempty(s).tolist() == [True, False, True] and len(drop_empty(s)) == 2
    assert nonempty(s[:0]).shape == (0,) and drop_empty(s[:0]).shape == (0, 4, 5)
    lab = labels_from_instances(s)
    assert lab[1, 1] == 3 and lab[2, 1] == 3 and lab.sum() == 6  # the later instance wins the shared pixel


def test_grown_window_clips_at_the_border():
    assert grown_window(0, 0, 4, (10, 10)) == (slice(0, 5), slice(0, 5))
    assert grown_window(8, 4, 4, (10, 10)) == (slice(7, 10), slice(3, 9))
