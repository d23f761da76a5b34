"""Segmenting for written outputs: an image too large for the dense outputs comes back in box form.

Why apart from ``inference.predict``: its callers (the Segment dock, the evaluation) need the
dense ``Prediction``; the command line and the batch mode only write files, which the box form
(``boxes.BoxPrediction``) can write for an image of any size (issue 17).  The rule: a tiled run
whose dense per-instance probabilities would exceed ``boxes.DENSE_LIMIT_BYTES`` (1 GiB) or a
third of the memory available is written from boxes; any other image exactly as before.
The worm width of an image over ``WIDTH_SAMPLE`` px a side is estimated on its central square
(``width_sample``): the estimate's whole-image network passes would dominate the memory.
"""
from __future__ import annotations

import numpy as np

from .boxes import BoxPrediction, wants_boxes
from .checkpoint import PostprocessConfig
from .model import UNet

WIDTH_SAMPLE = 2048  # px: a larger image's worm width is estimated on its central square of this side


def segment_for_outputs(model: UNet, image: np.ndarray, post: PostprocessConfig | None = None,
                        worm_width_px: float | str | None = "auto", *, tile: int | None = None,
                        force_boxes: bool = False, **kw):
    """``scale.segment_at_width`` for the CLI and batch: (``Prediction`` or ``BoxPrediction``, ScaleInfo).

    ``kw``: ``predict``'s draws, binarize, device, seed, progress, should_stop, batch.
    ``force_boxes`` writes a tiled image from boxes whatever its size (tests, comparisons).
    """
    from .inference import predict, tiles_image
    from .tiling import TILE, predict_tiled

    info, view, back = _network_view(model, image, worm_width_px, kw.get("device", "cpu"), kw.get("should_stop"))
    if not tiles_image(np.shape(view), tile):
        return back(predict(model, view, post, tile=tile, **kw)), info
    tiled = predict_tiled(model, view, post, tile=tile or TILE, **kw)
    if not (force_boxes or wants_boxes(len(tiled.instances), tiled.shape)):
        tiled.check_dense()
        return back(tiled.to_prediction()), info
    boxes = tiled.to_boxes()
    if info.factor != 1.0:
        from .box_resample import boxes_to_shape

        boxes = boxes_to_shape(boxes, tuple(np.shape(image)[-2:]))
    return boxes, info


def width_sample(image: np.ndarray) -> np.ndarray:
    """The part of ``image`` its worm width is estimated on: the whole image up to
    ``WIDTH_SAMPLE`` px a side, else its central ``WIDTH_SAMPLE`` square.  Why: the estimate runs
    the network on the whole image at once (at 0.5x, then at ~0.85x); on a 4096x4096 mosaic that
    second pass alone took the run's peak RSS to 6.2 GB, over the 4 GB target."""
    h, w = np.shape(image)[-2:]
    sh, sw = min(h, WIDTH_SAMPLE), min(w, WIDTH_SAMPLE)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    return image[..., y0:y0 + sh, x0:x0 + sw]


def _network_view(model: UNet, image: np.ndarray, worm_width_px, device, should_stop):
    """``scale.network_view`` with the width estimated on ``width_sample(image)``."""
    from .scale import choose_scale, network_view, prediction_to_shape, resample_image

    shape = tuple(np.shape(image)[-2:])
    if max(shape) <= WIDTH_SAMPLE:
        return network_view(model, image, worm_width_px, device, should_stop)
    info = choose_scale(model, width_sample(image), worm_width_px, device, should_stop)
    if info.factor == 1.0:
        return info, image, lambda pred: pred
    return info, resample_image(image, info.factor), lambda pred: prediction_to_shape(pred, shape)


def count_inputs_of(pred) -> dict:
    """``counts.count_inputs`` of a dense or a box-form prediction."""
    if isinstance(pred, BoxPrediction):
        from .box_measure import box_count_inputs

        return box_count_inputs(pred)
    from .counts import count_inputs

    return count_inputs(pred.probabilities, pred.instances, pred.draw_counts)


def count_summary_of(pred, table: dict) -> dict:
    """``counts.count_summary`` (a summary.csv row's count and medians) of a dense or box-form prediction."""
    from .counts import count_interval, count_summary
    from .measurements import summarise

    if not isinstance(pred, BoxPrediction):
        return count_summary(pred, table)
    res = count_interval(count_inputs_of(pred))
    s = summarise(table)
    s.pop("worms")
    return {"count": res.count, "count_low": res.low, "count_high": res.high, "count_level": res.level, **s}
