"""Real screenshots of the three widgets on a BBBC010 sample well, for docs/user-guide.md.

    xvfb-run -a .venv/bin/python scripts/screenshots.py [--model NAME_OR_PATH] [--draws 8] [--no-finetune]

Uses the bundled model when it exists, else a tiny *untrained* network (its output
is noise; rerun with the trained model for meaningful pictures).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def wait(predicate, timeout: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.monotonic()
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the widget did not finish in time")


def pick_model(arg: str | None, tmp: Path) -> tuple[str, str]:
    """(model spec, description for the captions)."""
    from napari_probseg.models import DEFAULT_MODEL, bundled_models

    if arg:
        return arg, Path(arg).name
    if DEFAULT_MODEL in bundled_models():
        return DEFAULT_MODEL, f"bundled model {DEFAULT_MODEL}"
    import torch

    from napari_probseg.checkpoint import save_checkpoint
    from napari_probseg.model import ModelConfig, UNet

    torch.manual_seed(0)
    path = save_checkpoint(tmp / "tiny-untrained.safetensors",
                           UNet(ModelConfig(variant="concrete", in_channels=2, base_filters=4, levels=3)))
    return str(path), "tiny untrained model (no bundled model yet)"


def grab(viewer, name: str) -> Path:
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # e.g. the PyQt5 deprecation notice would cover the canvas
    for _ in range(5):
        QApplication.processEvents()
        time.sleep(0.05)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    viewer.window._qt_window.grab().save(str(path))
    print("wrote", path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundled model name or .safetensors (default: bundled, else tiny untrained)")
    ap.add_argument("--well", default="C10", choices=["C04", "C10", "D21"])
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--no-finetune", action="store_true", help="stop after the proofreading picture (finetune.png kept)")
    ap.add_argument("--measure-only", action="store_true",
                    help="only segment and take measure.png (the worm table dock and a worm's values on hover)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probseg-shots-"))
    os.environ.setdefault("NAPARI_PROBSEG_AUTOSAVE_DIR", str(tmp / "autosave"))

    import napari

    model, desc = pick_model(args.model, tmp)
    print("model:", desc)
    viewer = napari.Viewer(show=True, title=f"napari-probseg - {args.well} - {desc}")
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-probseg", args.well)
    seg_dock, seg = viewer.window.add_plugin_dock_widget("napari-probseg", "Segment worms")
    seg.set_model(model)
    seg.draws.setValue(args.draws)
    t0 = time.monotonic()
    seg.run()
    if args.measure_only:
        wait(lambda: seg.worker is None)
        measure_shot(viewer, seg_dock, args.well)
        viewer.close()
        return
    wait(lambda: seg.progress.value() >= 1)
    grab(viewer, "segment-running.png")
    wait(lambda: seg.worker is None)
    # the figure the user guide quotes: Run pressed -> result layers on screen, on this machine as loaded now
    print(f"run: {time.monotonic() - t0:.1f} s from Run to the result layers; {seg.status.text()}")
    viewer.layers.selection.active = viewer.layers[f"{args.well} labels"]
    grab(viewer, "segment-done.png")

    pr_dock, proof = viewer.window.add_plugin_dock_widget("napari-probseg", "Proofreading")
    seg_dock.setVisible(False)
    proof.go_to(0)  # the first suspected error of the default review list
    grab(viewer, "proofreading.png")
    if args.no_finetune:
        viewer.close()
        return

    tr_dock, train = viewer.window.add_plugin_dock_widget("napari-probseg", "Fine-tune")
    pr_dock.setVisible(False)
    proof.session.reviewed[:5] = True
    train.steps.setValue(args.train_steps)
    train.crop.setValue(128)
    train.batch.setValue(2)
    train.out_edit.setText(str(tmp / "finetune"))
    train.start()
    wait(lambda: train.worker is None)
    train.use_for_inference()
    seg.run()
    wait(lambda: seg.worker is None)
    seg_dock.setVisible(False)
    viewer.reset_view()
    grab(viewer, "finetune.png")
    viewer.close()


def measure_shot(viewer, seg_dock, well: str) -> Path:
    """The Measure worms dock next to the image, the pointer resting on the longest worm."""
    import numpy as np

    docks = getattr(viewer.window, "_wrapped_dock_widgets", None) or viewer.window._dock_widgets
    for dock in list(docks.values()):
        dock.setVisible(False)
    _, meas = viewer.window.add_plugin_dock_widget("napari-probseg", "Measure worms")
    labels = viewer.layers[f"{well} labels"]
    f = labels.features
    pick = int(f["label"][f["length_px"].idxmax()])
    y, x = np.argwhere(labels.data == pick)[len(np.argwhere(labels.data == pick)) // 2]
    viewer.layers.selection.active = labels
    viewer.mouse_over_canvas = True
    viewer.cursor.position = (float(y), float(x))
    viewer.update_status_from_cursor()
    print("status:", viewer.status)
    return grab(viewer, "measure.png")


if __name__ == "__main__":
    main()
