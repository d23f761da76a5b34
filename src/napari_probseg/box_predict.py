"""Segmenting for written outputs: an image too large for the dense outputs comes back in box form.

Why apart from ``inference.predict``: its callers (the Segment dock, the evaluation) need the
dense ``Prediction``; the command line and the batch mode only write files, which the box form
(``boxes.BoxPrediction``) can write for an image of any size (issue 17).  The rule: a tiled run
whose dense per-instance probabilities would exceed ``boxes.DENSE_LIMIT_BYTES`` (1 GiB) or a
third of the memory available is written from boxes; any other image exactly as before.
The worm width is estimated as everywhere (``scale.network_view``), whose passes run by windows
on a large image, so they stay below the segmentation's own memory.
"""
from __future__ import annotations

import numpy as np

from .boxes import wants_boxes
from .checkpoint import PostprocessConfig
from .model import UNet


def segment_for_outputs(model: UNet, image: np.ndarray, post: PostprocessConfig | None = None,
                        worm_width_px: float | str | None = "auto", *, tile: int | None = None,
                        force_boxes: bool = False, **kw):
    """``scale.segment_at_width`` for the CLI and batch: (``Prediction`` or ``BoxPrediction``, ScaleInfo).

    ``kw``: ``predict``'s draws, binarize, device, seed, progress, should_stop, batch.
    ``force_boxes`` writes a tiled image from boxes whatever its size (tests, comparisons).
    """
    from .inference import predict, tiles_image
    from .scale import network_view
    from .tiling import TILE, predict_tiled

    info, view, back = network_view(model, image, worm_width_px, kw.get("device", "cpu"), kw.get("should_stop"))
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
