"""How long the 'Segment worms' widget takes on one full well, and does the GUI stay live?

    xvfb-run -a .venv/bin/python scripts/measure_responsiveness.py [--model M] [--draws 8] [--worm-width auto]
    xvfb-run -a .venv/bin/python scripts/measure_responsiveness.py --image /tmp/m.tif   # a [C,H,W] TIFF instead

``--image``: a 2-channel TIFF (fluorescence, brightfield) in place of the sample well, e.g.
``bench/mosaic.py --size 2048``'s mosaic: a field the dock segments by tiles (issue 17).

Prints one JSON line.  A 50 ms QTimer on the GUI thread stamps its ticks while the run
goes on (Run pressed -> the final result bound for proofreading, then 0.5 s more): if the
event loop is blocked, ticks go missing and the gap between two ticks grows
(``max_gap_ms``, ``p95_gap_ms``; the same timer idle first: ``idle_max_gap_ms``).  The
GUI thread's own CPU time between two ticks (``max_gap_main_cpu_ms``) tells a stall the
GUI caused from one where the machine was busy elsewhere: compare runs by it when the
machine is loaded.  ``first_labels_s``: Run -> the run's first labels layer in the layer
list (the mean network's result, issue 17); ``final_s``: Run -> the dock ready again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def tick_stats(stamps: list[float], cpu: list[float]) -> dict:
    """Gaps between ticks (wall and the GUI thread's CPU), in ms."""
    gaps, used = np.diff(stamps), np.diff(cpu)
    return {"ticks": len(stamps), "max_gap_ms": round(1000 * float(gaps.max()), 1),
            "p95_gap_ms": round(1000 * float(np.percentile(gaps, 95)), 1),
            "gaps_over_200ms": int((gaps > 0.2).sum()), "max_gap_main_cpu_ms": round(1000 * float(used.max()), 1)}


def run_until(predicate, timeout: float = 600.0) -> None:
    """Run Qt's event loop (as napari does, no sleeping in between) until ``predicate()``."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, poll, t0 = QEventLoop(), QTimer(), time.monotonic()
    poll.setInterval(10)

    def check() -> None:
        if predicate() or time.monotonic() - t0 > timeout:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()
    if not predicate():
        raise TimeoutError("the widget did not finish in time")


def open_input(viewer, image: Path | None, well: str) -> str:
    """The sample ``well``, or the TIFF ``image`` as the dock's channel layers; returns the image's name."""
    if image is None:
        viewer.open_sample("napari-probseg", well)
        return well
    import tifffile

    from napari_probseg._layers import channel_layers

    for data, kwargs, _kind in channel_layers(tifffile.imread(image), image.stem, str(image)):
        viewer.add_image(data, **kwargs)
    return image.stem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundled name or .safetensors (default: bundled, else tiny untrained)")
    ap.add_argument("--well", default="C10")
    ap.add_argument("--image", type=Path, help="a [C,H,W] TIFF to segment instead of the sample well")
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--worm-width", default="auto", help="the dock's Worm width box (default auto, as the dock)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probseg-measure-"))
    os.environ.setdefault("NAPARI_PROBSEG_AUTOSAVE_DIR", str(tmp))

    import napari
    import torch
    from qtpy.QtCore import QTimer
    from screenshots import pick_model

    model, desc = pick_model(args.model, tmp)
    viewer = napari.Viewer(show=True)
    name = open_input(viewer, args.image, args.well)
    _, seg = viewer.window.add_plugin_dock_widget("napari-probseg", "Segment worms")
    seg.set_model(model)
    seg.draws.setValue(args.draws)
    seg.device.setCurrentText(args.device)
    seg.worm_width.setText(args.worm_width)

    stamps: list[float] = []
    cpu: list[float] = []
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: (stamps.append(time.perf_counter()), cpu.append(time.thread_time())))
    timer.start()
    t0 = time.perf_counter()
    run_until(lambda: time.perf_counter() - t0 > 2.0)
    idle = tick_stats(stamps, cpu)

    stamps.clear()
    cpu.clear()
    shown: list[float] = []
    viewer.layers.events.inserted.connect(
        lambda e: shown.append(time.perf_counter()) if e.value._type_string == "labels" and not shown else None)
    load = round(os.getloadavg()[0], 2)  # 1-minute load average at Run and at the end: was the machine idle?
    t0 = time.perf_counter()
    stamps.append(t0)
    cpu.append(time.thread_time())
    seg.run()
    run_until(lambda: seg.worker is None)
    total = time.perf_counter() - t0
    t1 = time.perf_counter()  # keep ticking briefly: anything the end of a run left to the GUI thread
    run_until(lambda: time.perf_counter() - t1 > 0.5)
    busy = tick_stats(stamps, cpu)
    timer.stop()
    labels = viewer.layers[f"{name} labels"]
    meta = labels.metadata["probseg"]
    print(json.dumps({
        "first_labels_s": round(shown[0] - t0, 3) if shown else None, "final_s": round(total, 3),
        "worker_s": round(meta["seconds"], 3), **busy, "idle_max_gap_ms": idle["max_gap_ms"],
        "instances": int(len(np.unique(labels.data)) - 1), "draws": meta["draws"], "worm_width": args.worm_width,
        "scale": meta["scale_text"], "device": meta["device"], "model": desc, "well": name,
        "shape": list(labels.data.shape),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch threads {torch.get_num_threads()}", "load_average": [load, round(os.getloadavg()[0], 2)]}))
    viewer.close()


if __name__ == "__main__":
    main()
