"""``<stem>_probabilities.npz`` in box layout (layout 2): instances as boxes + crops, not [N,H,W].

Members (all plain arrays, nothing pickled):

- ``layout``: int, 2 (files without it are the dense layout 1: ``probabilities`` [N,H,W]
  float16, ``instances`` [N,H,W] bool);
- ``shape``: int64 [2], the image's H, W;
- ``boxes``: int64 [N,4], each instance's top-left y, x and its box's height, width;
- ``crop_probabilities``: float16 [sum of h*w], the crops row by row, one instance after another;
- ``crop_instances``: bool, the same length: the binarised masks (``probabilities >= binarize``);
- ``entropy`` float16 [H,W], ``threshold`` (the binarisation cut) and ``meta`` (JSON), as in layout 1.

The file is untrusted input: every shape and box is checked against the others before use.
No torch here (the napari reader reads it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .boxes import BoxPrediction, Crop

LAYOUT = 2
MEMBERS = ("layout", "shape", "boxes", "crop_probabilities", "crop_instances", "entropy", "threshold")


def box_members(pred: BoxPrediction, meta_json: str) -> dict[str, np.ndarray]:
    """The arrays ``outputs.write_prediction`` saves for a box form (``meta_json``: its metadata as JSON)."""
    boxes = np.array([[c.y, c.x, *c.probabilities.shape] for c in pred.crops], np.int64).reshape(-1, 4)
    probs = [c.probabilities.ravel() for c in pred.crops]
    flat = np.concatenate(probs) if probs else np.zeros(0, np.float32)
    return {"layout": np.int64(LAYOUT), "shape": np.array(pred.shape, np.int64), "boxes": boxes,
            "crop_probabilities": flat.astype(np.float16), "crop_instances": flat >= pred.binarize,
            "entropy": pred.entropy.astype(np.float16), "threshold": np.float32(pred.binarize),
            "meta": np.array(meta_json)}


def is_box_layout(names) -> bool:
    """Whether an .npz with these member names is a box-layout probabilities file."""
    return {"boxes", "crop_probabilities", "entropy"} <= set(names)


def read_box_members(z, path: Path) -> tuple[BoxPrediction, np.ndarray]:
    """(box form, binarised masks as one flat array) from an open npz ``z`` (``SafeNpz`` or
    ``np.load``); ValueError with a one-line reason when a member does not fit the others."""
    missing = [m for m in MEMBERS if m not in z.files]
    if missing:
        raise ValueError(f"{path} is not a complete box-layout probabilities file (missing {missing})")
    layout = np.asarray(z["layout"])
    if layout.shape != () or int(layout) != LAYOUT:
        raise ValueError(f"{path} has box layout {layout!r}, this version reads layout {LAYOUT}: update napari-probseg")
    shape, boxes = np.asarray(z["shape"]), np.asarray(z["boxes"])
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 1).any():
        raise ValueError(f"{path}: member 'shape' must be two positive integers, not {shape!r}")
    h, w = (int(s) for s in shape)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.dtype.kind not in "iu":
        raise ValueError(f"{path}: member 'boxes' must be integers [N,4], not {boxes.dtype} {boxes.shape}")
    boxes = boxes.astype(np.int64)
    bad = np.flatnonzero((boxes < 0).any(1) | (boxes[:, 0] + boxes[:, 2] > h) | (boxes[:, 1] + boxes[:, 3] > w))
    if bad.size:
        raise ValueError(f"{path}: box of instance {bad[0] + 1} ({boxes[bad[0]].tolist()}) lies outside the "
                         f"{h}x{w} image")
    probs, inst, ent = (np.asarray(z[k]) for k in ("crop_probabilities", "crop_instances", "entropy"))
    sizes = boxes[:, 2] * boxes[:, 3]
    total = int(sizes.sum())
    if probs.shape != (total,) or inst.shape != (total,):
        raise ValueError(f"{path}: the boxes hold {total} pixels but 'crop_probabilities' has shape {probs.shape} "
                         f"and 'crop_instances' {inst.shape}")
    if probs.dtype.kind != "f" or inst.dtype != bool:
        raise ValueError(f"{path}: crops must be float probabilities and bool masks, not {probs.dtype}, {inst.dtype}")
    if ent.shape != (h, w) or ent.dtype.kind != "f":
        raise ValueError(f"{path}: entropy {ent.dtype} {ent.shape} does not match the {h}x{w} image")
    probs = probs.astype(np.float32)
    if total and not (np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1):
        raise ValueError(f"{path}: crop probabilities outside [0, 1]")
    cut = float(np.asarray(z["threshold"]))
    ends = np.concatenate([[0], np.cumsum(sizes)])
    crops = [Crop(int(b[0]), int(b[1]), probs[ends[k]:ends[k + 1]].reshape(int(b[2]), int(b[3])))
             for k, b in enumerate(boxes)]
    pred = BoxPrediction(crops, ent.astype(np.float32), [], cut)
    return pred, inst


def dense_arrays(pred: BoxPrediction, inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The layout-1 arrays ([N,H,W] float32 probabilities, bool instances) of a box file's contents."""
    probs = pred.to_dense()
    masks = np.zeros(probs.shape, bool)
    pos = 0
    for k, c in enumerate(pred.crops):
        n = c.probabilities.size
        masks[k][c.box] = inst[pos:pos + n].reshape(c.probabilities.shape)
        pos += n
    return probs, masks


def is_box_file(path: str | Path) -> bool:
    """Whether ``path`` is a readable .npz in box layout (member names only; nothing is read)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return is_box_layout(n[:-4] for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load(path: str | Path) -> tuple[BoxPrediction, np.ndarray, dict]:
    """(box form, flat binarised masks, metadata) of a box-layout file; SessionError naming the
    file and the problem when it is damaged or its members do not fit each other."""
    from .session import SessionError
    from .session_file import DAMAGE, open_npz, parse_meta

    path = Path(path)
    with open_npz(path) as z:
        try:
            pred, inst = read_box_members(z, path)
            meta = parse_meta(str(z["meta"])) if "meta" in z.files else {}
        except ValueError as exc:
            if str(path) in str(exc):
                raise SessionError(str(exc)) from None
            raise SessionError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
        except DAMAGE as exc:
            raise SessionError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    counts = meta.get("draw_counts")
    if isinstance(counts, list) and all(isinstance(v, int) for v in counts):
        pred.counts = counts  # the count interval's per-draw spread; anything else in meta is left alone
    return pred, inst, meta


SESSION_LIMIT_BYTES = 2 << 30  # a box file whose dense probabilities exceed this opens without a session


def too_large_for_session(pred: BoxPrediction) -> bool:
    """Whether a proofreading session ([N,H,W] float32 probabilities) of ``pred`` would exceed the limit."""
    return pred.dense_bytes() > SESSION_LIMIT_BYTES
