"""Instance-segmentation metrics in the protocol of the published BBBC010 numbers.

Why two families: the published BBBC010 figures (PatchPerPix, reference paper) score each
well by one-to-one matching and precision TP/(TP+FP) per IoU threshold, averaged over
thresholds and wells; COCO's ranked AP (pycocotools) is a different metric and gives lower
numbers on the same predictions. Both are provided so that results can be compared with
either literature. See docs/metrics.md.

Inputs are boolean stacks ``[N,H,W]`` (one instance per slice; instances may overlap).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from .masks import mask_iou

# Rounded so that 0.6 is the double 0.6 (np.arange alone gives 0.6000000000000001).
IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


# the metrics' name for the one mask IoU (masks.mask_iou)
iou_matrix = mask_iou


def match_counts(iou: np.ndarray, iou_threshold: float) -> tuple[int, int, int]:
    """(TP, FP, FN) of a one-to-one Hungarian matching that maximises total IoU.

    A matched pair is a TP only if its IoU >= iou_threshold; the rest are FP / FN.
    """
    n, m = iou.shape
    if n == 0 or m == 0:
        return 0, n, m
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] >= iou_threshold).sum())
    return tp, n - tp, m - tp


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: bool) -> np.ndarray:
    """num/den; a 0/0 is 1.0 when prediction and ground truth are both empty, else 0.0."""
    return np.divide(num, den, out=np.full(num.shape, 1.0 if both_empty else 0.0), where=den > 0)


def image_scores(pred: np.ndarray, gt: np.ndarray, iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> dict:
    """Per-IoU-threshold precision, recall and DSB score of one image (arrays over ``iou_thresholds``).

    Empty cases: no predictions and no ground truth scores 1.0; any other 0/0 scores 0.0
    (nothing predicted where worms exist, or only false positives on an empty image).
    """
    iou = mask_iou(pred, gt)
    counts = np.array([match_counts(iou, t) for t in iou_thresholds], dtype=np.float64)
    tp, fp, fn = counts.T
    both_empty = iou.shape == (0, 0)
    return {
        "iou_thresholds": np.asarray(iou_thresholds, dtype=np.float64),
        "tp": tp, "fp": fp, "fn": fn,
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "dsb": _ratio(tp, tp + fp + fn, both_empty),
    }


def _at(iou_thresholds: np.ndarray, value: float) -> int:
    hit = np.flatnonzero(np.isclose(iou_thresholds, value))
    if hit.size == 0:
        raise ValueError(f"IoU threshold {value} not among {list(iou_thresholds)}")
    return int(hit[0])


def aggregate(scores: list[dict]) -> dict:
    """Mean over images of the per-image curves, and the published summary figures."""
    if not scores:
        raise ValueError("no image scores to aggregate")
    th = scores[0]["iou_thresholds"]
    curves = {k: np.mean([s[k] for s in scores], axis=0) for k in ("precision", "recall", "dsb")}
    return {
        "avAP": float(curves["precision"].mean()),
        "AP50": float(curves["precision"][_at(th, 0.5)]),
        "AP75": float(curves["precision"][_at(th, 0.75)]),
        "recall80": float(curves["recall"][_at(th, 0.8)]),
        "avAP_dsb": float(curves["dsb"].mean()),
        "iou_thresholds": th.tolist(),
        **{k: v.tolist() for k, v in curves.items()},
        "n_images": len(scores),
    }


def _rle(stack: np.ndarray) -> list[dict]:
    from pycocotools import mask as mask_utils

    s = np.asarray(stack, dtype=bool)
    if s.shape[0] == 0:
        return []
    return mask_utils.encode(np.asfortranarray(s.transpose(1, 2, 0).astype(np.uint8)))


def coco_ap(preds: list[np.ndarray], gts: list[np.ndarray], scores: list[np.ndarray] | None = None) -> dict:
    """COCO ranked AP (pycocotools COCOeval, 'segm', area 'all', maxDets 100).

    ``scores`` default to 1.0 per instance; ties keep the input order (pycocotools sorts
    stably). With no detections at all the APs are 0.0.
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        h, w = np.asarray(g).shape[-2:]
        images.append({"id": i + 1, "height": int(h), "width": int(w)})
        for r in _rle(g):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "segmentation": r,
                         "area": float(mask_utils.area(r)), "bbox": mask_utils.toBbox(r).tolist(), "iscrowd": 0})
        sc = np.ones(len(p)) if scores is None else np.asarray(scores[i], dtype=float)
        for r, s in zip(_rle(p), sc, strict=True):
            dets.append({"image_id": i + 1, "category_id": 1, "segmentation": r, "score": float(s)})
    if not dets:
        return {"coco_avAP": 0.0, "coco_AP50": 0.0, "coco_AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "worm"}]}
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iouType="segm")
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"coco_avAP": float(ev.stats[0]), "coco_AP50": float(ev.stats[1]), "coco_AP75": float(ev.stats[2])}


def evaluate_peer(folder: Path, data_dir: Path | None = None, split: str = "test") -> dict:
    """Both metric families for the ``<WELL>.npz`` instance files in ``folder`` (a peer's output)."""
    from .data import default_data_dir, load_masks, read_split

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    wells = read_split(data_dir, split)
    preds = [np.load(Path(folder) / f"{w}.npz")["instances"].astype(bool) for w in wells]
    gts = [load_masks(data_dir, w) for w in wells]
    out = aggregate([image_scores(p, g) for p, g in zip(preds, gts)])
    out.update(coco_ap(preds, gts))
    out["wells"] = wells
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Score a folder of <WELL>.npz instance predictions.")
    ap.add_argument("--peer", type=Path, required=True, help="folder with <WELL>.npz ('instances', bool N x H x W)")
    ap.add_argument("--data", type=Path, default=None, help="BBBC010 folder (default: default_data_dir())")
    ap.add_argument("--split", default="test")
    a = ap.parse_args(argv)
    r = evaluate_peer(a.peer, a.data, a.split)
    print(f"{len(r['wells'])} wells ({a.split} split)")
    for k in ("avAP", "AP50", "AP75", "recall80", "avAP_dsb", "coco_avAP", "coco_AP50", "coco_AP75"):
        print(f"{k:10s} {r[k]:.4f}")


if __name__ == "__main__":
    main()


THRESHOLDS = IOU_THRESHOLDS  # deprecated name, kept for scripts written against it
