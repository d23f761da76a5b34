"""Per-worm measurements against shapes with known answers, skimage, and real BBBC010 masks."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from skimage.draw import polygon
from skimage.measure import perimeter_crofton, regionprops

from napari_probseg.data import load_masks
from napari_probseg.measurements import (
    columns,
    matched_shape_errors,
    measure_instances,
    measure_labels,
    shape_measures,
    summarise,
    write_table,
)


def bar(length: float, width: float, degrees: float, size: int = 300) -> np.ndarray:
    """A filled rectangle of the given length and width, rotated about the image centre."""
    t = np.deg2rad(degrees)
    c = np.array([size / 2, size / 2])
    u, v = np.array([np.sin(t), np.cos(t)]), np.array([np.cos(t), -np.sin(t)])
    pts = np.array([c - u * length / 2 - v * width / 2, c + u * length / 2 - v * width / 2,
                    c + u * length / 2 + v * width / 2, c - u * length / 2 + v * width / 2])
    m = np.zeros((size, size), bool)
    rr, cc = polygon(pts[:, 0], pts[:, 1], m.shape)
    m[rr, cc] = True
    return m


def half_annulus(radius: float = 100, width: float = 10) -> np.ndarray:
    yy, xx = np.mgrid[:300, :300]
    r, ang = np.hypot(yy - 150, xx - 150), np.arctan2(yy - 150, xx - 150)
    return (r >= radius - width / 2) & (r < radius + width / 2) & (ang >= 0) & (ang <= np.pi)


@pytest.mark.parametrize("degrees", [0, 22.5, 30, 45, 60, 90])
def test_straight_bar_length_width_straightness(degrees):
    s = shape_measures(bar(150, 10, degrees))
    assert s["length_px"] == pytest.approx(150, rel=0.025)  # the raw 8-step count is up to 8% long here
    assert s["mean_width_px"] == pytest.approx(10, rel=0.12)  # rasterised width varies with the angle
    assert s["straightness"] >= 0.98


def test_circle_arc_length_and_straightness():
    s = shape_measures(half_annulus(100, 10))
    assert s["length_px"] == pytest.approx(np.pi * 100, rel=0.02)
    assert s["mean_width_px"] == pytest.approx(10, rel=0.05)
    # chord 200 over length 314: 0.64; the end radii are added along the chord, hence a little more
    assert 0.6 <= s["straightness"] <= 0.7


def test_real_worms_length_agrees_with_an_independent_ribbon_estimate(data_dir):
    """For a ribbon, perimeter = 2 L + 2 W and area = L W; solving for L uses no skeleton at all."""
    ratios = []
    for m in load_masks(data_dir, "A01"):
        a, p = m.sum(), perimeter_crofton(m, 4)
        ribbon = (p / 2 + np.sqrt(max(p * p / 4 - 4 * a, 0))) / 2
        ratios.append(shape_measures(m)["length_px"] / ribbon)
    ratios = np.array(ratios)
    assert np.all((ratios > 0.95) & (ratios < 1.15)), ratios.round(3)  # worm 14 coils onto itself (a hole)
    assert np.median(ratios) == pytest.approx(1.03, abs=0.03)  # tapered ends shorten the ribbon's perimeter


def test_table_matches_regionprops_and_flags_overlap_and_border():
    a, b = bar(150, 10, 0), bar(150, 10, 90)  # a cross: they share a 10 x 10 square
    c = np.zeros_like(a)
    c[:12, 10:40] = True  # touches the top border
    masks = np.stack([a, b, c])
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1000, (2, *a.shape))
    probs = masks * np.float32(0.9)
    probs[0][a & ~b] = 0.5  # worm 1 uncertain except where the other crosses it
    t = measure_instances(masks, probs, image, ("w1", "w2"))
    assert list(t) == columns(("w1", "w2")) and t["label"] == [1, 2, 3]
    assert t["area_px"] == [int(m.sum()) for m in masks]
    assert t["overlaps"] == [1, 1, 0] and t["overlap_px"][:2] == [int((a & b).sum())] * 2
    assert t["touches_border"] == [False, False, True]
    for i, m in enumerate(masks):
        rp = regionprops(m.astype(np.uint8), intensity_image=image[0])[0]
        assert t["mean_intensity_w1"][i] == pytest.approx(rp.intensity_mean, rel=1e-5)
        assert t["integrated_intensity_w2"][i] == pytest.approx(image[1][m].sum(), rel=1e-5)
    unc = (a & ~b).sum() / a.sum()
    assert t["uncertain_fraction"][0] == pytest.approx(unc, abs=1e-3) and t["uncertain_fraction"][1] == 0
    assert t["existence_probability"] == pytest.approx([0.9, 0.9, 0.9])


def test_zero_instances_give_an_empty_table_with_header(tmp_path):
    t = measure_instances(np.zeros((0, 20, 30), bool), np.zeros((0, 20, 30)), np.ones((2, 20, 30)), ("w1", "w2"))
    assert list(t) == columns(("w1", "w2")) and all(v == [] for v in t.values())
    path = write_table(t, tmp_path / "x_worms.csv")
    rows = list(csv.reader(open(path)))
    assert rows == [columns(("w1", "w2"))]
    assert summarise(t)["worms"] == 0 and summarise(t)["median_length_px"] == 0.0
    assert measure_labels(np.zeros((20, 30), np.int32))["label"] == []


def test_labels_table_keeps_instance_probabilities_and_edited_labels_get_nan():
    a, b = bar(100, 8, 0), bar(100, 8, 0)
    b = np.roll(b, 40, axis=0)
    lab = a.astype(np.int32) + 5 * b  # label 5 did not come from an instance of two
    probs = np.stack([a * 0.8, b * 0.6]).astype(np.float32)
    t = measure_labels(lab, probs)
    assert t["label"] == [1, 5]
    assert t["mean_probability"][0] == pytest.approx(0.8) and np.isnan(t["mean_probability"][1])


def test_matched_errors_are_zero_for_identical_masks_and_skip_poor_matches(data_dir):
    gt = load_masks(data_dir, "C10")
    same = matched_shape_errors(gt, gt)
    assert len(same) == len(gt) and all(e["length_rel_error"] == 0 and e["area_rel_error"] == 0 for e in same)
    shifted = np.roll(gt, 30, axis=2)  # thin worms moved 30 px: IoU far below 0.5
    assert matched_shape_errors(shifted, gt) == []


def test_prediction_without_worms_writes_a_header_only_table_and_counts_zero(tmp_path):
    from napari_probseg.counts import count_summary
    from napari_probseg.inference import Prediction
    from napari_probseg.measurements import measure_prediction
    from napari_probseg.outputs import write_prediction

    empty = np.zeros((0, 32, 48), np.float32)
    pred = Prediction(empty, empty > 0, np.zeros((32, 48), np.float32), [], [np.zeros((0, 32, 48), bool)] * 4, 0.75)
    image = np.ones((2, 32, 48), np.uint16)
    paths = write_prediction(pred, tmp_path, "E", {}, image=image)
    assert list(csv.reader(open(paths["worms"]))) == [columns(("w1", "w2"))]
    row = count_summary(pred, measure_prediction(pred, image, ("w1", "w2")))
    assert row["count"] == 0 and row["count_low"] == 0 and row["count_high"] >= 0 and row["median_length_px"] == 0
    from napari_probseg.outputs import render_overview  # the --png overview of zero worms (failed before)

    assert render_overview(image, pred, tmp_path / "E.png").stat().st_size > 0
