"""``probseg evaluate --resample F --worm-width PX|auto|off`` (issue 19): one protocol for any magnification.

Each BBBC010 well and its ground truth are resampled by the same factor (images: linear,
anti-aliased when shrinking; each worm mask: the same linear resampling of the 0/1 mask,
then thresholded at 0.5, so a mask keeps its area and stays aligned with the image), and
the well is segmented with the worm width given, estimated or not used, exactly as
``probseg predict`` does.  Kept apart so ``evaluate.py`` only calls it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .scale import parse_worm_width, segment_at_width
from .validation import InputError, OptionError, Range

RESAMPLE_RANGE = Range(0.25, 4.0, what="factor BBBC010's images and masks are resampled by")


def parse_resample(value, flag: str = "--resample") -> float:
    """A resampling factor inside ``RESAMPLE_RANGE``; OptionError naming the range otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not RESAMPLE_RANGE.ok(v):
        raise OptionError(f"{flag} must be {RESAMPLE_RANGE.text()}, got {value!r}")
    return v


def resample_masks(masks: np.ndarray, factor: float) -> np.ndarray:
    """[N,H,W] bool worm masks -> [N,round(H*f),round(W*f)]: resampled like the image, thresholded at 0.5."""
    from skimage.transform import rescale

    m = np.asarray(masks, bool)
    if factor == 1.0:
        return m
    out = [rescale(x.astype(np.float32), factor, order=1, anti_aliasing=factor < 1) >= 0.5 for x in m]
    return np.stack(out) if out else np.zeros((0, *(round(s * factor) for s in m.shape[1:])), bool)


@dataclass
class WellScaler:
    """The evaluation's magnification: loads resampled wells, segments them, records each well's width."""

    resample: float = 1.0
    worm_width: float | str = "off"
    per_well: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resample = parse_resample(self.resample)
        self.worm_width = parse_worm_width(self.worm_width)

    @classmethod
    def from_record(cls, record: dict | None) -> WellScaler:
        r = record or {}
        return cls(r.get("resample", 1.0), r.get("worm_width", "off"))

    def load(self, data_dir: Path, well: str, channels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The well's raw image and ground-truth masks, both resampled by ``resample``."""
        from .data import load_image, load_masks
        from .scale import resample_image

        image, gt = load_image(data_dir, well, channels), load_masks(data_dir, well)
        if self.resample == 1.0:
            return image, gt
        # the simulated magnification stays linear, whatever the user path's upsampling does
        return resample_image(image, self.resample, order=1), resample_masks(gt, self.resample)

    def segment(self, well: str, model, image: np.ndarray, post, draws: int, binarize: float, device, seed: int):
        """``segment_at_width`` with this run's setting; the width used is kept for metrics.json."""
        pred, info = segment_at_width(model, image, post, self.worm_width, draws=draws, binarize=binarize,
                                      device=device, seed=seed)
        self.per_well[well] = info.as_meta()
        return pred

    def record(self) -> dict:
        """metrics.json's ``scale`` entry: the setting and each well's width and factor."""
        return {"resample": self.resample, "worm_width": self.worm_width, "per_well": self.per_well}

    def check_reuse(self, reuse: str | None) -> None:
        """Saved predictions of another magnification would be scored against the wrong masks."""
        if not reuse:
            return
        path = Path(reuse) / "metrics.json"
        try:
            earlier = json.loads(path.read_text()).get("scale") or {}
        except (OSError, ValueError):
            return  # saved_prediction names the missing files itself
        if float(earlier.get("resample", 1.0)) != self.resample:
            raise InputError(f"--reuse {reuse} holds predictions at --resample {earlier.get('resample', 1.0)}; "
                             f"give --resample {earlier.get('resample', 1.0)} or evaluate without --reuse")


def report_line(m: dict) -> str:
    """report.md's line saying at what magnification and worm width the wells were segmented."""
    s = m.get("scale") or {}
    f, ww = s.get("resample", 1.0), s.get("worm_width", "off")
    how = {"off": "no worm width used (segmented at the images' own scale)",
           "auto": "worm width estimated per well"}.get(ww, f"worm width given: {ww} px")
    widths = [v["worm_width"] for v in (s.get("per_well") or {}).values() if v.get("worm_width") is not None]
    spread = f" (median {np.median(widths):.2f} px, {min(widths):.2f}-{max(widths):.2f})" if widths and ww == "auto" else ""
    return (f"Magnification: images and ground-truth masks resampled x{f:g} (masks: linear, thresholded at 0.5); "
            f"{how}{spread}.")

