import numpy as np
import pytest

from napari_probseg.metrics import IOU_THRESHOLDS, aggregate, coco_ap, image_scores, iou_matrix, match_counts

H, W = 40, 60


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def stack(*masks):
    return np.stack(masks) if masks else np.zeros((0, H, W), bool)


def worms():
    # three disjoint "worms" of 300, 200 and 100 pixels
    return stack(box(0, 10, 0, 30), box(15, 25, 0, 20), box(30, 35, 0, 20))


def test_thresholds():
    assert len(IOU_THRESHOLDS) == 10 and IOU_THRESHOLDS[0] == 0.5 and IOU_THRESHOLDS[-1] == 0.95
    assert IOU_THRESHOLDS[2] == 0.6  # exact, so an IoU of 0.6 passes the 0.6 threshold


def test_iou_matrix_matches_bruteforce():
    rng = np.random.default_rng(0)
    p, g = rng.random((4, H, W)) > 0.7, rng.random((3, H, W)) > 0.6
    ref = np.array([[(a & b).sum() / (a | b).sum() for b in g] for a in p])
    np.testing.assert_allclose(iou_matrix(p, g), ref)
    assert iou_matrix(stack(), g).shape == (0, 3) and iou_matrix(p, stack()).shape == (4, 0)


def test_match_counts_one_to_one():
    iou = np.array([[0.9, 0.6], [0.8, 0.0]])  # greedy would give 0.9 + 0.0; Hungarian 0.6 + 0.8
    assert match_counts(iou, 0.5) == (2, 0, 0)
    assert match_counts(iou, 0.7) == (1, 1, 1)
    assert match_counts(np.zeros((0, 2)), 0.5) == (0, 0, 2)


def test_perfect_prediction():
    g = worms()
    agg = aggregate([image_scores(g[::-1].copy(), g)])
    for k in ("avAP", "AP50", "AP75", "recall80", "avAP_dsb"):
        assert agg[k] == 1.0


def test_missed_instance():
    g = worms()
    s = image_scores(g[:2], g)
    np.testing.assert_allclose(s["precision"], 1.0)
    np.testing.assert_allclose(s["recall"], 2 / 3)
    np.testing.assert_allclose(s["dsb"], 2 / 3)


def test_false_split():
    g = stack(box(0, 10, 0, 50))  # 500 px, split into 300 + 200 px: IoU 0.6 and 0.4
    p = stack(box(0, 10, 0, 30), box(0, 10, 30, 50))
    s = image_scores(p, g)
    # t <= 0.6: TP 1, FP 1, FN 0; t > 0.6: TP 0, FP 2, FN 1
    np.testing.assert_allclose(s["precision"], [0.5] * 3 + [0] * 7)
    np.testing.assert_allclose(s["recall"], [1.0] * 3 + [0] * 7)
    np.testing.assert_allclose(s["dsb"], [0.5] * 3 + [0] * 7)
    agg = aggregate([s])
    assert agg["avAP"] == pytest.approx(0.15) and agg["avAP_dsb"] == pytest.approx(0.15)
    assert agg["AP50"] == 0.5 and agg["AP75"] == 0.0 and agg["recall80"] == 0.0


def test_false_merge():
    g = stack(box(0, 10, 0, 30), box(0, 10, 30, 50))  # 300 + 200 px merged into one: IoU 0.6 / 0.4
    p = stack(box(0, 10, 0, 50))
    s = image_scores(p, g)
    # t <= 0.6: TP 1, FP 0, FN 1; t > 0.6: TP 0, FP 1, FN 2
    np.testing.assert_allclose(s["precision"], [1.0] * 3 + [0] * 7)
    np.testing.assert_allclose(s["recall"], [0.5] * 3 + [0] * 7)
    np.testing.assert_allclose(s["dsb"], [0.5] * 3 + [0] * 7)
    assert aggregate([s])["avAP"] == pytest.approx(0.3)


def test_overlapping_ground_truth():
    a, b = box(0, 10, 0, 40), box(0, 40, 10, 15)  # crossing: b (200 px) shares 50 px with a
    g = stack(a, b)
    assert aggregate([image_scores(g.copy(), g)])["avAP"] == 1.0
    # a label image cannot overlap: give the crossing to a only -> IoU(b) = 150/200 = 0.75
    s = image_scores(stack(a, b & ~a), g)
    np.testing.assert_allclose(s["precision"], [1.0] * 6 + [0.5] * 4)
    assert aggregate([s])["avAP"] == pytest.approx(0.8)


def test_empty_cases():
    g = worms()
    both = image_scores(stack(), stack())
    for k in ("precision", "recall", "dsb"):
        np.testing.assert_allclose(both[k], 1.0)
    for s in (image_scores(stack(), g), image_scores(g, stack())):
        for k in ("precision", "recall", "dsb"):
            np.testing.assert_allclose(s[k], 0.0)
    # aggregate averages over images: one perfect and one empty-prediction image
    assert aggregate([image_scores(g, g), image_scores(stack(), g)])["avAP"] == 0.5


def ap101(tp_ranked, n_gt):
    """Reference COCO AP: 101-point interpolated precision of one ranked detection list."""
    tp = np.cumsum(tp_ranked)
    prec, rec = tp / np.arange(1, len(tp_ranked) + 1), tp / n_gt
    prec = np.maximum.accumulate(prec[::-1])[::-1]  # precision envelope
    out = []
    for r in np.linspace(0, 1, 101):
        i = np.searchsorted(rec, r, side="left")
        out.append(prec[i] if i < len(prec) else 0.0)
    return float(np.mean(out))


def test_coco_perfect_and_reference():
    pytest.importorskip("pycocotools")
    g = worms()
    assert coco_ap([g], [g])["coco_avAP"] == pytest.approx(1.0)
    # missed instance: 2 of 3 found, score 1 -> 67 of 101 recall points at precision 1
    r = coco_ap([g[:2]], [g])
    assert r["coco_avAP"] == pytest.approx(ap101([1, 1], 3)) == pytest.approx(67 / 101)
    # highest-scored detection is a false positive, then two true positives
    fp = box(36, 40, 40, 60)
    r = coco_ap([stack(fp, g[0], g[1])], [g[:2]], scores=[np.array([0.95, 0.9, 0.8])])
    assert r["coco_avAP"] == pytest.approx(ap101([0, 1, 1], 2)) == pytest.approx(2 / 3)
    assert coco_ap([stack()], [g])["coco_avAP"] == 0.0


def test_peer_published_figures():
    from napari_probseg.data import default_data_dir
    from napari_probseg.metrics import evaluate_peer

    data = default_data_dir()
    peer = data.parent / "peers" / "patchperpix-bbbc010-test"
    if not data.exists() or not peer.exists():
        pytest.skip("BBBC010 data or peer predictions not available")
    pytest.importorskip("pycocotools")
    r = evaluate_peer(peer, data)
    assert len(r["wells"]) == 50
    published = {"avAP": 0.783, "AP50": 0.943, "AP75": 0.897, "recall80": 0.89, "avAP_dsb": 0.735}
    for k, v in published.items():
        assert abs(r[k] - v) <= 0.01, (k, r[k], v)
    assert r["coco_avAP"] == pytest.approx(0.719, abs=0.002)  # the peer README's COCO figure
