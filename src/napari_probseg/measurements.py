"""Per-worm measurements: one row per instance (area, skeleton length, width, straightness,
intensities, probability, uncertainty, border and overlap flags).

Plain numpy/scipy/skimage: no Qt, no napari.  ``measure_instances`` returns a column
dict (column name -> list), which is what ``Labels.features`` accepts and what
``write_table`` writes as CSV.  Lengths and widths are in pixels.  See docs/measurements.md.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from .atomic import atomic_write
from .masks import nonempty

SMOOTH = 2.0  # pixels: smoothing of the skeleton path before its length is taken
UNCERTAIN = (0.2, 0.8)  # a pixel is uncertain when the instance's probability lies strictly between
BASE_COLUMNS = ["label", "area_px", "length_px", "mean_width_px", "end_to_end_px", "straightness",
                "mean_probability", "existence_probability", "uncertain_fraction", "touches_border",
                "overlaps", "overlap_px"]
_OFFSETS = [(0, 1), (1, -1), (1, 0), (1, 1)]  # half of the 8-neighbourhood (each edge once)


def columns(channel_names: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The table's header: the base columns, then mean and integrated intensity per channel."""
    out = list(BASE_COLUMNS)
    for c in channel_names:
        out += [f"mean_intensity_{c}", f"integrated_intensity_{c}"]
    return out


def _skeleton_graph(skel: np.ndarray):
    """Sparse 8-connected graph of the skeleton pixels (edge weight 1 or sqrt 2) and their coordinates."""
    yx = np.argwhere(skel)
    index = -np.ones(skel.shape, dtype=np.int64)
    index[tuple(yx.T)] = np.arange(len(yx))
    rows, cols, weights = [], [], []
    h, w = skel.shape
    for dy, dx in _OFFSETS:
        ny, nx = yx[:, 0] + dy, yx[:, 1] + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        src = np.flatnonzero(ok)
        dst = index[ny[ok], nx[ok]]
        keep = dst >= 0
        rows.append(src[keep])
        cols.append(dst[keep])
        weights.append(np.full(int(keep.sum()), float(np.hypot(dy, dx))))
    r, c, wt = (np.concatenate(a) for a in (rows, cols, weights))
    n = len(yx)
    return coo_matrix((wt, (r, c)), shape=(n, n)).tocsr(), yx


def skeleton_path(mask: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(length, endpoint a, endpoint b) of the longest geodesic path through the mask's skeleton.

    The skeleton (skimage ``skeletonize``) of the largest connected piece is taken as a
    graph; two Dijkstra sweeps find its longest shortest path, so side branches (spurs)
    are ignored.  The skeleton stops about half a width short of each end of the object,
    so the distance-transform value at each endpoint is added back: a straight bar of
    length L gives L.  A piece with a hole (a worm coiled onto itself) is measured as its
    area over its mean width along the skeleton instead.
    """
    from skimage.measure import euler_number
    from skimage.morphology import skeletonize

    lab, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return 0.0, np.zeros(2), np.zeros(2)
    if n > 1:
        lab = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    piece = lab > 0
    skel = skeletonize(piece)
    edt = ndi.distance_transform_edt(np.pad(piece, 1))[1:-1, 1:-1]
    if skel.sum() < 2:
        y, x = np.argwhere(piece).mean(0)
        r = float(edt.max())
        return 2 * r, np.array([y, x]), np.array([y, x])
    graph, yx = _skeleton_graph(skel)
    d0 = dijkstra(graph, directed=False, indices=0)
    a = int(np.argmax(np.where(np.isfinite(d0), d0, -1)))
    da, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    b = int(np.argmax(np.where(np.isfinite(da), da, -1)))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    ra, rb = float(edt[tuple(yx[a])]), float(edt[tuple(yx[b])])
    if euler_number(piece, connectivity=2) < 1:
        # a hole: the worm touches itself (coiled), and the shortest paths cut across the loop;
        # area over the skeleton's mean width (2 x distance to the edge) follows the whole body
        return float(piece.sum() / (2 * edt[skel].mean())), yx[a].astype(float), yx[b].astype(float)
    return polyline_length(yx[path[::-1]]) + ra + rb, yx[a].astype(float), yx[b].astype(float)


def polyline_length(points: np.ndarray, sigma: float = SMOOTH) -> float:
    """Length of a pixel path after Gaussian smoothing of its coordinates (ends kept in place).

    The raw 8-connected step count (1 or sqrt 2 per step) overestimates curves and oblique
    lines by up to 8% (the staircase); smoothing the coordinates removes most of that.
    """
    from scipy.ndimage import gaussian_filter1d

    pts = np.asarray(points, dtype=float)
    if len(pts) < 2:
        return 0.0
    if len(pts) > 3 * sigma:
        pts = gaussian_filter1d(pts, sigma, axis=0, mode="nearest")
    return float(np.hypot(*np.diff(pts, axis=0).T).sum())


def shape_measures(mask: np.ndarray) -> dict:
    """Area, skeleton length, mean width (area / length), end-to-end distance and straightness."""
    area = int(mask.sum())
    if area:  # work on the bounding box (one pixel of margin): same numbers, far faster
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        mask = mask[max(ys[0] - 1, 0):ys[-1] + 2, max(xs[0] - 1, 0):xs[-1] + 2]
    length, a, b = skeleton_path(mask)
    if area == 0 or length <= 0:
        return {"area_px": area, "length_px": 0.0, "mean_width_px": 0.0, "end_to_end_px": 0.0, "straightness": 0.0}
    edt = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    # end-to-end: between the skeleton ends, extended by the end radii as the length is
    e2e = float(np.hypot(*(a - b))) + float(edt[tuple(a.astype(int))]) + float(edt[tuple(b.astype(int))])
    e2e = min(e2e, length)
    return {"area_px": area, "length_px": round(length, 2), "mean_width_px": round(area / length, 3),
            "end_to_end_px": round(e2e, 2), "straightness": round(e2e / length, 4)}


def _overlaps(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: how many other instances share pixels with it, and how many of its pixels are shared."""
    n = len(masks)
    flat = masks.reshape(n, -1).astype(np.float32)
    inter = flat @ flat.T
    np.fill_diagonal(inter, 0)
    cover = masks.sum(0)
    shared = np.array([int((cover[m] > 1).sum()) for m in masks])
    return (inter > 0).sum(1), shared


def measure_instances(masks: np.ndarray, probabilities: np.ndarray | None = None, image: np.ndarray | None = None,
                      channel_names: list[str] | tuple[str, ...] = (), labels: list[int] | None = None,
                      uncertain: tuple[float, float] = UNCERTAIN) -> dict[str, list]:
    """One row per instance of ``masks`` [N,H,W] bool (instances may overlap).

    ``probabilities`` [N,H,W]: the per-instance MC probabilities (columns stay NaN without
    them); ``image`` [C,H,W] raw intensities named by ``channel_names``; ``labels``: the
    instances' values in the label image (default 1..N).  Zero instances give empty columns.
    """
    masks = np.asarray(masks, dtype=bool)
    image = None if image is None else np.asarray(image, dtype=np.float64)
    if image is not None and image.ndim == 2:
        image = image[None]
    names = list(channel_names) or ([f"ch{i + 1}" for i in range(len(image))] if image is not None else [])
    cols = columns(names)
    table: dict[str, list] = {c: [] for c in cols}
    if len(masks) == 0:
        return table
    n_overlap, shared = _overlaps(masks)
    h, w = masks.shape[1:]
    for i, m in enumerate(masks):
        row = {"label": int(labels[i]) if labels is not None else i + 1, **shape_measures(m)}
        border = m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()
        row.update(touches_border=bool(border), overlaps=int(n_overlap[i]), overlap_px=int(shared[i]))
        row.update(_probability_columns(m, None if probabilities is None else probabilities[i], uncertain))
        for c, name in enumerate(names):
            vals = image[c][m]
            row[f"mean_intensity_{name}"] = round(float(vals.mean()), 3) if vals.size else 0.0
            row[f"integrated_intensity_{name}"] = round(float(vals.sum()), 1)
        for c in cols:
            table[c].append(row[c])
    return table


def _probability_columns(mask: np.ndarray, prob: np.ndarray | None, uncertain: tuple[float, float]) -> dict:
    if prob is None:
        return {"mean_probability": float("nan"), "existence_probability": float("nan"),
                "uncertain_fraction": float("nan")}
    prob = np.asarray(prob, dtype=np.float32)
    support = prob > 0
    lo, hi = uncertain
    unc = (prob > lo) & (prob < hi)
    return {"mean_probability": round(float(prob[mask].mean()), 4) if mask.any() else 0.0,
            "existence_probability": round(float(prob.max()), 4),
            "uncertain_fraction": round(float(unc.sum() / support.sum()), 4) if support.any() else 0.0}


def measure_prediction(pred, image: np.ndarray | None = None, channel_names=()) -> dict[str, list]:
    """The table of a ``Prediction``'s binarised instances; ``label`` matches ``pred.labels()``
    (a ``boxes.BoxPrediction`` is measured on its crops: ``box_measure``)."""
    if hasattr(pred, "crops"):
        from .box_measure import measure_boxes

        return measure_boxes(pred, image, channel_names)
    keep = np.flatnonzero(nonempty(pred.instances))
    return measure_instances(pred.instances[keep], pred.probabilities[keep], image, channel_names,
                             labels=[int(k) + 1 for k in keep])


def write_table(table: dict[str, list], path: str | Path) -> Path:
    """Write the column dict as CSV (header only when there are no rows), atomically."""
    cols = list(table)
    n = len(table[cols[0]]) if cols else 0

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for i in range(n):
                w.writerow([table[c][i] for c in cols])

    return atomic_write(path, write)


def input_tags(n_given: int, n_model: int) -> tuple[str, ...]:
    """Column suffixes for the channels actually given: brightfield alone to a 2-channel model is w2
    (issue 19), so its intensity columns never pass for fluorescence."""
    return ("w2",) if n_given == 1 and n_model == 2 else channel_tags(n_given)


def channel_tags(n_channels: int) -> tuple[str, ...]:
    """Column suffixes for the model's input channels: BBBC010's w1 (fluorescence), w2 (brightfield)."""
    return ("w1", "w2")[:n_channels] if n_channels <= 2 else tuple(f"ch{i + 1}" for i in range(n_channels))


def summarise(table: dict[str, list]) -> dict:
    """Per-image summary of a worm table (medians over worms; zeros when there are none)."""
    n = len(table["label"])

    def med(col: str) -> float:
        return round(float(np.median(table[col])), 2) if n else 0.0

    return {"worms": n, "median_area_px": med("area_px"), "median_length_px": med("length_px"),
            "median_straightness": med("straightness"), "border_worms": int(np.sum(table["touches_border"])),
            "overlapping_worms": int(np.sum(np.asarray(table["overlaps"]) > 0))}


def matched_shape_errors(pred: np.ndarray, gt: np.ndarray, min_iou: float = 0.5) -> list[dict]:
    """Area and skeleton length of each predicted worm matched one-to-one (Hungarian on IoU,
    IoU >= ``min_iou``) to a ground-truth worm, with their relative errors (pred - gt) / gt."""
    from scipy.optimize import linear_sum_assignment

    from .masks import mask_iou

    iou = mask_iou(pred, gt)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    out = []
    for r, c in zip(rows, cols):
        if iou[r, c] < min_iou:
            continue
        p, g = shape_measures(pred[r]), shape_measures(gt[c])
        out.append({"iou": round(float(iou[r, c]), 4), "area_pred": p["area_px"], "area_gt": g["area_px"],
                    "length_pred": p["length_px"], "length_gt": g["length_px"],
                    "area_rel_error": (p["area_px"] - g["area_px"]) / max(g["area_px"], 1),
                    "length_rel_error": (p["length_px"] - g["length_px"]) / max(g["length_px"], 1e-9)})
    return out


def measure_labels(labels: np.ndarray, probabilities: np.ndarray | None = None, image: np.ndarray | None = None,
                   channel_names=()) -> dict[str, list]:
    """The table of a (possibly proofread) label image: one row per label value.

    A label L keeps the probability columns of instance L-1 of ``probabilities`` (its
    origin before any edit); labels created by edits (beyond the instances) get NaN there.
    Overlaps cannot exist in a label image, so ``overlaps`` is 0 here.
    """
    ids = [int(i) for i in np.unique(labels) if i]
    masks = np.stack([labels == i for i in ids]) if ids else np.zeros((0, *labels.shape), bool)
    table = measure_instances(masks, None, image, channel_names, labels=ids)
    if probabilities is not None:
        for r, lab in enumerate(ids):
            if lab - 1 < len(probabilities):
                vals = _probability_columns(masks[r], probabilities[lab - 1], UNCERTAIN)
                for k, v in vals.items():
                    table[k][r] = v
    return table


def instance_straightness(probabilities: np.ndarray, at: float = 0.5) -> list[float]:
    """Straightness of every agglomerated instance's p >= ``at`` mask (for phenotype counts)."""
    return [shape_measures(p >= at)["straightness"] for p in probabilities]
