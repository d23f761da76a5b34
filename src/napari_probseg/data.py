"""BBBC010 reading, input validation, normalisation and augmentation.

Channel order (see the data set README): ``w1`` fluorescence (SYTOX), ``w2`` brightfield.
Per-worm masks come from ``masks/<WELL>_<NN>_ground_truth.png`` (the ``foreground/``
PNGs are shifted by one row and are not used).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .validation import InputError  # noqa: F401 (defined there so the CLI parser needs no torch)

CHANNEL_TAGS = ("w1", "w2")  # fluorescence, brightfield
_WELL_RE = re.compile(r"_([A-P]\d{2})_(w\d)_")




@dataclass
class Well:
    name: str
    image: np.ndarray  # [C,H,W] float32, normalised
    masks: np.ndarray  # [N,H,W] bool, may overlap


def default_data_dir() -> Path:
    """$PROBSEG_DATA, else the first ``shared/data/bbbc010`` in the working directory or a folder
    above it, else ``../shared/data/bbbc010`` (the documented layout; it may not exist).

    Why not relative to this file: in an installed wheel the package lives in site-packages,
    where ``parents[3]`` is some unrelated folder.
    """
    import os

    env = os.environ.get("PROBSEG_DATA")
    if env:
        return Path(env)
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        found = folder / "shared" / "data" / "bbbc010"
        if found.is_dir():
            return found
    return cwd.parent / "shared" / "data" / "bbbc010"


def read_split(data_dir: Path, split: str) -> list[str]:
    path = Path(data_dir) / "splits" / f"{split}.txt"
    if not path.exists():
        raise InputError(f"split file {path} not found; expected one of train/test/test_fold1/test_fold2")
    return [s.strip() for s in path.read_text().split() if s.strip()]


def channel_files(data_dir: Path, well: str) -> dict[str, Path]:
    """The image file of each channel tag present for ``well``."""
    out = {}
    for f in sorted((Path(data_dir) / "images").glob(f"*_{well}_w*_*.tif")):
        m = _WELL_RE.search(f.name)
        if m and m.group(1) == well:
            out[m.group(2)] = f
    return out


def read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        image = tifffile.imread(str(path))
    except Exception as exc:  # tifffile raises many types for broken files
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if image.size == 0:  # some corrupt headers only log a warning and give an empty array
        raise InputError(f"cannot read image {path}: the file holds no pixels (corrupt or truncated TIFF?)")
    return image


def load_image(data_dir: Path, well: str, channels: tuple[str, ...] = CHANNEL_TAGS) -> np.ndarray:
    """Raw [C,H,W] image of one well; a clear error when a channel file is missing."""
    files = channel_files(data_dir, well)
    missing = [c for c in channels if c not in files]
    if missing:
        raise InputError(f"well {well}: channel file(s) {missing} missing in {Path(data_dir) / 'images'}")
    return np.stack([read_tiff(files[c]) for c in channels])


def load_masks(data_dir: Path, well: str) -> np.ndarray:
    from skimage.io import imread

    files = sorted((Path(data_dir) / "masks").glob(f"{well}_*_ground_truth.png"))
    if not files:
        raise InputError(f"well {well}: no ground-truth masks in {Path(data_dir) / 'masks'}")
    return np.stack([imread(str(f)) > 0 for f in files])


def load_well(data_dir: Path, well: str, channels: tuple[str, ...] = CHANNEL_TAGS) -> Well:
    return make_well(well, load_image(data_dir, well, channels), load_masks(data_dir, well))


def make_well(name: str, raw_image: np.ndarray, masks: np.ndarray) -> Well:
    """A training well from a raw [C,H,W] image: validated and normalised as for inference."""
    return Well(name, normalize(validate_image(raw_image, raw_image.shape[0])), masks)


def pad_masks(stacks: list[np.ndarray], n_min: int = 0) -> np.ndarray:
    """Instance stacks [N_i,H,W] of one size -> [len, max N_i, H, W] bool, empty slots all False."""
    out = np.zeros((len(stacks), max([n_min] + [m.shape[0] for m in stacks]), *stacks[0].shape[1:]), dtype=bool)
    for i, m in enumerate(stacks):
        out[i, : m.shape[0]] = m
    return out


def available_wells(data_dir: Path, split: str, channels: tuple[str, ...] = CHANNEL_TAGS) -> tuple[list[str], list[str]]:
    """(wells with every channel, wells skipped because a channel file is missing)."""
    ok, skipped = [], []
    for w in read_split(data_dir, split):
        (ok if all(c in channel_files(data_dir, w) for c in channels) else skipped).append(w)
    return ok, skipped


def validate_image(image: np.ndarray, n_channels: int, min_size: int = 16) -> np.ndarray:
    """Check a [C,H,W] (or [H,W] for one channel) image and return it as float32 [C,H,W].

    Raises InputError naming the problem: wrong dimensions, RGB, wrong dtype, NaNs,
    an empty or constant image, or a side smaller than one U-Net cell.
    """
    a = np.asarray(image)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(f"image dtype {a.dtype} is not numeric; give an integer or float image")
    if a.ndim == 2 and n_channels == 1:
        a = a[None]
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (3, 4):
        raise InputError(
            f"image of shape {a.shape} looks like RGB(A); the model expects {n_channels} separate "
            "grayscale channel(s) (fluorescence, brightfield): split the channels first"
        )
    if a.ndim != 3 or a.shape[0] != n_channels:
        raise InputError(
            f"image of shape {a.shape} does not match the model, which expects {n_channels} channel(s) "
            f"of 2-D images ([{n_channels}, H, W]); pick one 2-D layer per channel"
        )
    if a.shape[1] < min_size or a.shape[2] < min_size:
        raise InputError(f"image of {a.shape[1]}x{a.shape[2]} pixels is smaller than one U-Net cell ({min_size}x{min_size})")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("image contains NaN or infinite values; fill or mask them before segmenting")
    for c in range(a.shape[0]):
        if a[c].max() == a[c].min():
            raise InputError(f"channel {c} of the image is empty or constant (all {a[c].flat[0]}); nothing to segment")
    return a


def is_brightfield_alone(image: np.ndarray, n_channels: int) -> bool:
    """Whether ``image`` is one 2-D channel given to a 2-channel (fluorescence + brightfield) model."""
    a = np.asarray(image)
    return n_channels == 2 and (a.ndim == 2 or (a.ndim == 3 and a.shape[0] == 1))


def validate_model_image(image: np.ndarray, n_channels: int, min_size: int = 16,
                         brightfield_only: bool = False) -> np.ndarray:
    """``validate_image``, but one brightfield channel is accepted by a model that allows it.

    Returns [1,H,W] for brightfield alone.  Why here and not in ``validate_image``: the
    refusal for a model that needs fluorescence must say what to give instead.
    """
    from .channels import NEEDS_BOTH

    if is_brightfield_alone(image, n_channels):
        if not brightfield_only:
            raise InputError(f"image of shape {np.asarray(image).shape} has one channel, but {NEEDS_BOTH}")
        return validate_image(np.asarray(image).reshape(np.shape(image)[-2:]), 1, min_size)
    return validate_image(image, n_channels, min_size)


def model_input(image: np.ndarray, n_channels: int, min_size: int = 16, brightfield_only: bool = False) -> np.ndarray:
    """Validated, normalised [C,H,W] float32 input; brightfield alone gets a zero fluorescence plane.

    Why zero: training blanks the *normalised* fluorescence to 0 (``train.blank_fluorescence``),
    so this is exactly the input the network learnt brightfield alone from.
    """
    a = normalize(validate_model_image(image, n_channels, min_size, brightfield_only))
    if a.shape[0] < n_channels:
        a = np.concatenate([np.zeros_like(a), a])
    return a


NOISE_FLOOR = 40.0  # an image whose every channel spreads less than this many noise sigmas is empty
OUTLIER_RANK = 1e-4  # fraction of pixels (at least OUTLIER_MIN) clipped at each end before scaling
OUTLIER_MIN = 16

# augmentation, shared by random_warp_batch and wellbank.WellBank.sample (one place to change)
SCALE_JITTER = 0.2  # crops are scaled by 1 +- SCALE_JITTER / 2
ELASTIC_GRID = 5  # the elastic displacement field is a bicubic upsampling of a GRID x GRID field
ELASTIC_PIXELS = 6.0  # standard deviation of those coarse displacements, in pixels


def noise_sigma(channel: np.ndarray) -> float:
    """Pixel noise of one channel from neighbouring-pixel differences (MAD, robust to edges)."""
    d = np.diff(np.asarray(channel, dtype=np.float32), axis=-1).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def _rank_clip(channel: np.ndarray) -> np.ndarray:
    """Clip the few most extreme pixels (hot or dead pixels) to the next ordinary value.

    Why: a single saturated pixel (65535 in a 12-bit image) becomes a value ~100x above
    anything the network saw in training and disturbs the embedding well beyond it.
    Clipping by rank leaves normal images nearly untouched (the top 0.01 %).
    """
    flat = channel.ravel()
    k = min(max(OUTLIER_MIN, int(math.ceil(OUTLIER_RANK * flat.size))), flat.size // 4)
    if k < 1:
        return channel
    part = np.partition(flat, (k, flat.size - 1 - k))
    return np.clip(channel, part[k], part[flat.size - 1 - k])


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Per-channel percentile normalisation to roughly [0, 1], robust to outliers and empty fields.

    The bright well rim is above the ``high`` percentile; hot and dead pixels are clipped
    by rank first.  When *no* channel spreads beyond NOISE_FLOOR noise sigmas (a field with
    nothing in it: outside the well, an empty well), each spread is floored there, so camera
    noise is not stretched into worm-like texture.  Why all channels: in BBBC010 the
    fluorescence of wells without dead worms is noise too, next to a brightfield full of
    worms, and the models were trained on it stretched; flooring it alone changed results.
    Training (``make_well``) and inference use this same function.
    """
    chans = [_rank_clip(np.asarray(image[c], dtype=np.float32)) for c in range(image.shape[0])]
    lows, spreads, floors = [], [], []
    for ch in chans:
        lo, hi = np.percentile(ch, [low, high])
        lows.append(float(lo))
        spreads.append(float(hi - lo))
        floors.append(NOISE_FLOOR * noise_sigma(ch))
    empty = all(s < f for s, f in zip(spreads, floors))
    out = np.empty((len(chans), *chans[0].shape), dtype=np.float32)
    for c, ch in enumerate(chans):
        spread = max(spreads[c], floors[c] if empty else 0.0, 1e-6)
        out[c] = (ch - lows[c]) / spread
    return out


def random_warp_batch(
    wells: list[Well],
    batch: int,
    crop: int,
    gen: torch.Generator,
    elastic: bool = True,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sample ``batch`` augmented crops: random well, position, rotation, flip, elastic warp.

    One sampling grid per crop is applied to the image (bilinear) and to the mask stack
    (nearest), so both are deformed identically.  All randomness comes from ``gen``.
    """
    images, masks = [], []
    for _ in range(batch):
        well = wells[int(torch.randint(len(wells), (1,), generator=gen))]
        c, h, w = well.image.shape
        angle = float(torch.rand(1, generator=gen)) * 2 * math.pi
        flip = -1.0 if float(torch.rand(1, generator=gen)) < 0.5 else 1.0
        scale = 1.0 + SCALE_JITTER * (float(torch.rand(1, generator=gen)) - 0.5)
        half = crop / 2 * scale
        cy = float(torch.rand(1, generator=gen)) * max(h - 2 * half, 0) + min(half, h / 2)
        cx = float(torch.rand(1, generator=gen)) * max(w - 2 * half, 0) + min(half, w / 2)
        lin = torch.linspace(-half, half, crop)
        yy, xx = torch.meshgrid(lin, lin * flip, indexing="ij")
        ca, sa = math.cos(angle), math.sin(angle)
        ry, rx = ca * yy - sa * xx, sa * yy + ca * xx
        if elastic:
            coarse = torch.randn(2, 1, ELASTIC_GRID, ELASTIC_GRID, generator=gen) * ELASTIC_PIXELS
            disp = F.interpolate(coarse, size=(crop, crop), mode="bicubic", align_corners=True)[:, 0]
            ry, rx = ry + disp[0], rx + disp[1]
        py, px = ry + cy, rx + cx
        # sample only from the bounding box of the grid: converting whole masks is slow
        y0, x0 = max(int(py.min()) - 1, 0), max(int(px.min()) - 1, 0)
        y1, x1 = min(int(py.max()) + 3, h), min(int(px.max()) + 3, w)
        if y1 - y0 < 2 or x1 - x0 < 2:
            y0, x0, y1, x1 = 0, 0, h, w
        gy = (py - y0) / max(y1 - y0 - 1, 1) * 2 - 1
        gx = (px - x0) / max(x1 - x0 - 1, 1) * 2 - 1
        grid = torch.stack([gx, gy], -1)[None]
        img = torch.from_numpy(well.image[:, y0:y1, x0:x1])[None]
        images.append(F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0])
        mk = torch.from_numpy(well.masks[:, y0:y1, x0:x1]).float()[None]
        wm = F.grid_sample(mk, grid, mode="nearest", padding_mode="zeros", align_corners=True)[0] > 0.5
        masks.append(wm[wm.flatten(1).any(1)])
    return torch.stack(images), masks


def dihedral_batch(
    wells: list[Well], batch: int, crop: int, gen: torch.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sample ``batch`` crops at whole-pixel positions, turned by k x 90 degrees and maybe mirrored.

    Why: ``random_warp_batch`` resamples every crop (bilinear image, nearest masks), so the
    network trains on slightly blurred images while it is tested on exact pixels.  These
    crops are exact pixels, for a final fine-tuning phase that sharpens instance borders.
    A well smaller than ``crop`` is used whole (every crop then has that size: give wells
    of one size).
    """
    images, masks = [], []
    for _ in range(batch):
        well = wells[int(torch.randint(len(wells), (1,), generator=gen))]
        _, h, w = well.image.shape
        ch, cw = min(crop, h), min(crop, w)
        y0 = int(torch.randint(h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(w - cw + 1, (1,), generator=gen))
        k = int(torch.randint(4, (1,), generator=gen))
        mirror = bool(torch.randint(2, (1,), generator=gen))
        img = torch.from_numpy(np.ascontiguousarray(well.image[:, y0:y0 + ch, x0:x0 + cw]))
        mk = torch.from_numpy(np.ascontiguousarray(well.masks[:, y0:y0 + ch, x0:x0 + cw]))
        if mirror:
            img, mk = img.flip(-1), mk.flip(-1)
        img, mk = torch.rot90(img, k, (-2, -1)), torch.rot90(mk, k, (-2, -1))
        images.append(img.contiguous())
        masks.append(mk[mk.flatten(1).any(1)].contiguous())
    return torch.stack(images), masks
