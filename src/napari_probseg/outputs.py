"""Writing one image's results: label TIFF, probabilities NPZ, entropy TIFF, peaks CSV, review CSV, worm table CSV, PNG."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write as _atomic
from .box_file import box_members
from .boxes import BoxPrediction
from .inference import Prediction
from .review import write_review_csv
from .session_file import parse_meta as read_meta  # noqa: F401 (one parser; the reader must stay torch-free)


def prediction_meta(pred: Prediction | BoxPrediction, meta: dict | None = None) -> dict:
    """What ``write_prediction`` records besides the caller's meta: the draw counts and the
    precision and device the draws actually ran with."""
    return {**(meta or {}), "draw_counts": pred.draw_counts,
            "precision": "bfloat16" if pred.bf16 else "float32", "device": pred.device}


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """The files ``write_prediction`` writes for ``stem`` (checked before any compute)."""
    out = Path(out_dir)
    return {
        "labels": out / f"{stem}_labels.tif",
        "probabilities": out / f"{stem}_probabilities.npz",
        "entropy": out / f"{stem}_entropy.tif",
        "peaks": out / f"{stem}_peaks.csv",
        "review": out / f"{stem}_review.csv",  # the default review list, as the dock shows it
        "worms": out / f"{stem}_worms.csv",  # one row per worm (measurements.py)
    }


def remove_stale_partials(folder: Path, names: list[str]) -> None:
    """Delete ``.<name>.partial`` leftovers of a killed earlier write of these outputs."""
    for name in names:
        (folder / f".{name}.partial").unlink(missing_ok=True)


def write_prediction(pred: Prediction | BoxPrediction, out_dir: str | Path, stem: str, meta: dict | None = None,
                     image: np.ndarray | None = None, table: dict | None = None) -> dict[str, Path]:
    """Write the outputs of one image; ``image`` (raw [C,H,W]) adds intensities to ``_worms.csv``
    (``table``: an already measured worm table, see ``measurements.measure_prediction``).
    A ``BoxPrediction`` (an image too large for [N,H,W] arrays) writes the same files, its
    ``_probabilities.npz`` in box layout (``box_file``)."""
    import tifffile

    from .measurements import channel_tags, measure_prediction, write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out, stem)
    remove_stale_partials(out, [p.name for p in paths.values()])
    _atomic(paths["labels"], lambda p: tifffile.imwrite(p, pred.labels(), compression="zlib", photometric="minisblack"))
    _atomic(paths["entropy"], lambda p: tifffile.imwrite(p, pred.entropy, compression="zlib", photometric="minisblack"))

    def write_npz(p: Path) -> None:
        meta_json = json.dumps(prediction_meta(pred, meta), default=_jsonable)
        if isinstance(pred, BoxPrediction):  # layout 2: boxes and crops (box_file)
            members = box_members(pred, meta_json)
        else:
            members = dict(probabilities=pred.probabilities.astype(np.float16), instances=pred.instances,
                           entropy=pred.entropy.astype(np.float16),
                           threshold=np.float32(pred.binarize),  # the file's key; readers (session.py) expect it
                           meta=np.array(meta_json))
        with open(p, "wb") as f:
            np.savez_compressed(f, **members)

    _atomic(paths["probabilities"], write_npz)

    def write_csv(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rank", "score", "y", "x", "instances"])
            for r, pk in enumerate(pred.peaks, 1):
                w.writerow([r, f"{pk.score:.5f}", pk.y, pk.x, " ".join(str(i + 1) for i in pk.instances)])

    _atomic(paths["peaks"], write_csv)
    write_review_csv(pred.review_items(), paths["review"])
    if table is None:
        tags = channel_tags(len(image)) if image is not None and np.ndim(image) == 3 else ()
        table = measure_prediction(pred, image, tags)
    write_table(table, paths["worms"])
    return paths


def _jsonable(value):
    """numpy scalars and arrays in the caller's meta as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"meta value of type {type(value).__name__} is not JSON serialisable")


def overview_rgb(image: np.ndarray) -> tuple[np.ndarray, str]:
    """The input as napari shows it (brightfield grey, fluorescence added in red) and the
    legend that says so; a one-channel image is grey."""
    from .data import normalize

    img = np.clip(normalize(np.asarray(image, dtype=np.float32)), 0, 1)
    if img.shape[0] == 1:
        return np.repeat(img[0][..., None], 3, axis=-1), "input (grey)"
    fluo, bright = img[0], img[1]
    rgb = np.repeat(bright[..., None], 3, axis=-1)
    rgb[..., 0] = np.clip(bright + fluo, 0, 1)
    return rgb, "input (grey: brightfield, red: fluorescence)"


def labels_rgb(labels: np.ndarray) -> np.ndarray:
    """Instances in the colours the napari labels layer uses (touching worms differ), black background."""
    from matplotlib.colors import to_rgb

    from .label_colors import worm_colors

    lut = np.zeros((int(labels.max()) + 1, 3), np.float32)
    for i, color in worm_colors(labels).items():
        if i and i < len(lut):
            lut[i] = to_rgb(color)
    return lut[labels]


def render_overview(image: np.ndarray, pred: Prediction, path: str | Path, title: str = "", top_peaks: int = 20) -> Path:
    """Figure-1-style PNG: input, instances, entropy with the top uncertainty peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb, legend = overview_rgb(image)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    axes[0].imshow(rgb)
    axes[0].set_title(legend)
    axes[1].imshow(labels_rgb(pred.labels()))
    axes[1].set_title(f"{pred.n_instances} instances (p >= {pred.binarize}; touching worms in different colours)")
    im = axes[2].imshow(pred.entropy, cmap="magma", vmin=0, vmax=np.log(2))
    for pk in pred.peaks[:top_peaks]:
        axes[2].add_patch(plt.Rectangle((pk.x - 6, pk.y - 6), 16, 16, fill=False, ec="cyan", lw=1))
    axes[2].set_title(f"uncertainty (entropy), top {min(top_peaks, len(pred.peaks))} peaks in cyan")
    fig.colorbar(im, ax=axes[2], fraction=0.04, label="entropy (0: certain, ln 2: undecided)")
    for a in axes:
        a.axis("off")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
