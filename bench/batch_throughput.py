"""Wells per minute of ``probseg batch`` for 1 and 2 local Dask workers.

    nice -n 19 .venv/bin/python bench/batch_throughput.py --wells 4 --draws 8
    python bench/batch_throughput.py --wells 8 --json     # issue 17: one JSON line at the end

Runs the first N BBBC010 test wells (both channels, full 520x696) through ``run_batch``
once per worker count, each into a fresh output folder, and prints a markdown table.
Wall time includes starting the cluster and loading the model once per worker, as a
user would see it.  Model: ``--model``, else the bundled ``bbbc010-concrete``, else a
freshly initialised full-size U-Net (same network compute as the trained one).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def pick_model(arg: str | None, tmp: Path) -> tuple[str, str]:
    """(model path, how it was chosen) following the order in the module docstring."""
    from napari_probseg.checkpoint import save_checkpoint
    from napari_probseg.model import ModelConfig, UNet
    from napari_probseg.models import MODEL_DIR

    if arg:
        return arg, arg
    bundled = MODEL_DIR / "bbbc010-concrete.safetensors"
    if bundled.exists():
        return str(bundled), "bundled bbbc010-concrete"
    import torch

    torch.manual_seed(0)
    path = save_checkpoint(tmp / "untrained-full.safetensors", UNet(ModelConfig()), meta={"note": "untrained, benchmark only"})
    return str(path), "untrained full-size U-Net (bundled bbbc010-concrete not present yet)"


def main() -> None:
    from napari_probseg.batch import run_batch
    from napari_probseg.data import available_wells, channel_files, default_data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=None, help="BBBC010 folder (default ../shared/data/bbbc010)")
    ap.add_argument("--wells", type=int, default=4)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", action="store_true", help="also print one JSON line: wells/min and CPU s/well per worker count")
    args = ap.parse_args()
    measured = {}

    data = Path(args.data) if args.data else default_data_dir()
    wells = available_wells(data, "test")[0][: args.wells]
    with tempfile.TemporaryDirectory(prefix="probseg-bench-") as td:
        tmp = Path(td)
        model, model_note = pick_model(args.model, tmp)
        inp = tmp / "in"
        inp.mkdir()
        for w in wells:  # symlinks: the batch sees exactly these wells
            for f in channel_files(data, w).values():
                (inp / f.name).symlink_to(f)
        print(f"model: {model_note}; wells: {', '.join(wells)} (520x696); {os.cpu_count()} CPUs, "
              f"{platform.processor() or platform.machine()}; load avg = 1-min load average when each run started\n")
        print("| workers | wells ok | draws | wall s | wells/min | s/well in worker | CPU s/well | load avg |")
        print("|---|---|---|---|---|---|---|---|", flush=True)
        for n in args.workers:
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = run_batch(inp, tmp / f"out{n}", model, draws=args.draws, workers=n, progress=False)
            wall = time.perf_counter() - t0
            rows = [r for r in res.rows if r["status"] == "ok"]
            per = statistics.mean(float(r["seconds"]) for r in rows) if rows else float("nan")
            cpu = statistics.mean(float(r["cpu_seconds"]) for r in rows) if rows else float("nan")
            print(f"| {n} | {len(rows)}/{len(wells)} | {args.draws} | {wall:.0f} | {60 * len(rows) / wall:.2f} "
                  f"| {per:.0f} | {cpu:.0f} | {load0:.1f} |", flush=True)  # each row as soon as it is measured
            measured[n] = {"wells_ok": len(rows), "wall_s": round(wall, 1), "wells_per_min": round(60 * len(rows) / wall, 3),
                           "s_per_well_in_worker": round(per, 2), "cpu_s_per_well": round(cpu, 2), "load_avg": load0}
    if args.json:
        import json

        lo, hi = min(measured), max(measured)
        scaling = measured[hi]["wells_per_min"] / measured[lo]["wells_per_min"] if measured[lo]["wells_per_min"] else None
        print(json.dumps({"model": model_note, "wells": wells, "draws": args.draws, "cpus": os.cpu_count(),
                          "workers": measured, f"scaling_{hi}_vs_{lo}": scaling and round(scaling, 2)}))


if __name__ == "__main__":  # required: Dask's worker processes re-import this file
    main()
