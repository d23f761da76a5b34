"""Peak memory and time of the automatic worm width on a big image (issue 17 / 19).

Builds a mosaic of the sample well C10 (``--size`` px square) and runs ``scale.estimate_worm_width``
by windows (the default above ``AUTO_TILE_PX``) or, with ``--whole``, as one pass per look.
Run under ``/usr/bin/time -v`` for the peak RSS:

    /usr/bin/time -v python bench/width_memory.py --size 4096
    /usr/bin/time -v python bench/width_memory.py --size 4096 --whole
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile

import napari_probseg.scale as scale
from napari_probseg.models import load_model

SAMPLE = Path(__file__).resolve().parents[1] / "src/napari_probseg/sample_data/C10.tif"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--whole", action="store_true", help="one pass per look (the path before windows)")
    args = ap.parse_args()
    if args.whole:
        scale.FOREGROUND_TILE = 10**9  # a core larger than any image: one window
    well = tifffile.imread(SAMPLE)
    reps = (1, -(-args.size // well.shape[1]), -(-args.size // well.shape[2]))
    big = np.tile(well, reps)[:, :args.size, :args.size]
    model = load_model("bbbc010-concrete").model
    t0 = time.perf_counter()
    width = scale.estimate_worm_width(model, big)
    print(json.dumps({"size": args.size, "whole": args.whole, "width_px": width,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
