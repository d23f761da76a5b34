"""Write the square mosaic of a BBBC010 well that ``bench/speed.py --size`` segments, as one 2-channel TIFF.

Why: ``probseg predict`` of a plate-sized image (issue 17) is measured on the same input as the
speed benchmark: the well tiled with its mirror images (no seams in the texture), cut to NxN.

    python bench/mosaic.py --size 4096 --out /tmp/mosaic4096.tif
    /usr/bin/time -v probseg predict /tmp/mosaic4096.tif --out /tmp/m4096   # peak RSS: "Maximum resident"
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def mosaic(raw: np.ndarray, size: int) -> np.ndarray:
    """[C,size,size]: ``raw`` [C,H,W] and its mirror images, tiled (``bench/speed.py``'s construction)."""
    h, w = raw.shape[-2:]
    cell = np.concatenate([np.concatenate([raw, raw[:, :, ::-1]], 2),
                           np.concatenate([raw[:, ::-1], raw[:, ::-1, ::-1]], 2)], 1)
    reps = (1, -(-size // (2 * h)), -(-size // (2 * w)))
    return np.ascontiguousarray(np.tile(cell, reps)[:, :size, :size])


def main() -> None:
    import tifffile

    from napari_probseg.data import default_data_dir, load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--well", default="C10")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    m = mosaic(load_image(default_data_dir(), args.well), args.size)
    tifffile.imwrite(args.out, m, photometric="minisblack")
    print(f"{args.out}: {m.shape} {m.dtype}")


if __name__ == "__main__":
    main()
