"""How long the 'Segment worms' widget takes on one full well, and does the GUI stay live?

    xvfb-run -a .venv/bin/python scripts/measure_responsiveness.py [--model M] [--draws 8]

A 50 ms QTimer on the GUI thread counts its ticks while the worker runs: if the event
loop were blocked, ticks would be missing and the largest gap between two ticks would
grow.  The same timer is measured idle first, as the baseline.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def tick_stats(stamps: list[float], seconds: float, interval: float) -> dict:
    gaps = np.diff(stamps) if len(stamps) > 1 else np.array([seconds])
    return {"ticks": len(stamps), "expected": int(seconds / interval), "max_gap_ms": 1000 * float(gaps.max()),
            "p95_gap_ms": 1000 * float(np.percentile(gaps, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundled name or .safetensors (default: bundled, else tiny untrained)")
    ap.add_argument("--well", default="C10")
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probseg-measure-"))
    os.environ.setdefault("NAPARI_PROBSEG_AUTOSAVE_DIR", str(tmp))

    import napari
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication
    from screenshots import pick_model, wait

    model, desc = pick_model(args.model, tmp)
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-probseg", args.well)
    _, seg = viewer.window.add_plugin_dock_widget("napari-probseg", "Segment worms")
    seg.set_model(model)
    seg.draws.setValue(args.draws)
    seg.device.setCurrentText(args.device)

    interval = 0.05
    stamps: list[float] = []
    timer = QTimer()
    timer.setInterval(int(interval * 1000))
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    t0 = time.perf_counter()
    wait(lambda: time.perf_counter() - t0 > 2.0)
    idle = tick_stats(stamps, time.perf_counter() - t0, interval)

    stamps.clear()
    shown: list[float] = []  # when the first labels layer appeared (issue 17: the mean network's result)
    viewer.layers.events.inserted.connect(
        lambda e: shown.append(time.perf_counter()) if e.value._type_string == "labels" and not shown else None)
    t0 = time.perf_counter()
    seg.run()
    wait(lambda: seg.worker is None)
    total = time.perf_counter() - t0
    t1 = time.perf_counter()  # keep ticking briefly: adding the layers runs on the GUI thread
    wait(lambda: time.perf_counter() - t1 > 0.5)
    busy = tick_stats(stamps, time.perf_counter() - t0, interval)
    timer.stop()
    for _ in range(3):
        QApplication.processEvents()
    meta = viewer.layers[f"{args.well} labels"].metadata["probseg"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, device {meta['device']}")
    print(f"model: {desc}; well {args.well} (520x696), {args.draws} MC draws")
    first = f"{shown[0] - t0:.2f} s" if shown else "n/a"
    print(f"inference in the worker: {meta['seconds']:.1f} s; Run -> first labels on screen: {first}; "
          f"Run -> final layers: {total:.1f} s")
    print(f"idle: {idle['ticks']}/{idle['expected']} ticks, max gap {idle['max_gap_ms']:.0f} ms")
    print(f"during inference (+0.5 s after): {busy['ticks']}/{busy['expected']} ticks of 50 ms delivered, "
          f"p95 gap {busy['p95_gap_ms']:.0f} ms, max gap {busy['max_gap_ms']:.0f} ms")
    viewer.close()


if __name__ == "__main__":
    main()
