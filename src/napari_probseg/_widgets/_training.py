"""Training widget: fine-tune the current model on the proofread labels of the open image.

The corrected labels layer becomes a ``data.Well`` (one mask per label id), optionally
joined by BBBC010-style folders; ``train.train`` runs in a worker and saves a checkpoint
when stopped.  Before Start it states the expected time (``finetune_time``: the defaults
take about 5 minutes on a 2-core CPU); while running, the measured pace and time left.
After a re-run of inference on the same image the widget reports how the mean entropy at
the reviewed peaks changed.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import finetune_time as FT
from ..peaks import mean_peak_entropy
from ..session import Session
from ..targets import training_masks
from . import _common as C
from ._plot import LossPlot

if TYPE_CHECKING:
    import napari


class TrainingWidget(QWidget):
    """Dock 'Fine-tune': train on corrected labels, live loss, Stop, save-as."""

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.checkpoint: Path | None = None
        self.trained_on: Session | None = None  # session whose corrections were used
        self.fast_cpu = True  # bf16 autocast where the CPU supports it (tests switch it off)
        self._stop = threading.Event()
        self._first_step: tuple[int, float] | None = None  # (step, monotonic time) of the run's first step
        self.relay = C.Relay()
        self.relay.train_step.connect(self._on_step)
        self._build()
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        napari_viewer.layers.events.removed.connect(self._refresh)
        for layer in napari_viewer.layers:
            layer.events.name.connect(self._refresh)

    def _build(self) -> None:
        form = QFormLayout()
        self.labels_combo = QComboBox()
        self.labels_combo.currentTextChanged.connect(self._on_labels_choice)
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("model to start from (.safetensors or bundled name)")
        self.extra_edit = QLineEdit()
        self.extra_edit.setPlaceholderText("optional BBBC010-style folders, ';'-separated")
        self.steps = C.int_box("steps", FT.DEFAULT_STEPS, maximum=100000)
        self.batch = C.int_box("batch", FT.DEFAULT_BATCH, maximum=64)
        self.crop = C.int_box("crop", FT.DEFAULT_CROP, maximum=2048, singleStep=32)
        self.lr = QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=1e-2, singleStep=1e-5, value=1e-4)
        self.device = QComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder (default ~/.napari-probseg/finetune/<image>-<time>)")
        form.addRow("Corrected labels", self.labels_combo)
        form.addRow("Start from", self._with_browse(self.init_edit, file=True))
        form.addRow("Extra data", self._with_browse(self.extra_edit, file=False))
        for text, w in (("Steps", self.steps), ("Batch", self.batch), ("Crop", self.crop), ("Learning rate", self.lr),
                        ("Device", self.device), ("Output folder", self.out_edit)):
            form.addRow(text, w)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        for box in (self.steps, self.batch, self.crop):
            box.valueChanged.connect(self._update_estimate)
        self.device.currentTextChanged.connect(self._update_estimate)
        form.addRow("Expected time", self.estimate)
        row = QHBoxLayout()
        self.start_button, self.stop_button = QPushButton("Start"), QPushButton("Stop (saves)")
        self.save_button, self.use_button = QPushButton("Save as..."), QPushButton("Use for inference")
        for b, slot in ((self.start_button, self.start), (self.stop_button, self.stop),
                        (self.save_button, self.save_dialog), (self.use_button, self.use_for_inference)):
            b.clicked.connect(lambda _=False, s=slot: s())
            row.addWidget(b)
        self.stop_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.use_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("step %v / %m")
        self.plot = LossPlot()
        self.plot.setMinimumHeight(140)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.plot)
        lay.addWidget(self.status)
        self._refresh()

    def _update_estimate(self, *_: Any) -> None:
        """The expected time of the current settings (the crop as capped at the image size)."""
        layer = self._labels_layer()
        crop = min(self.crop.value(), *layer.data.shape) if layer is not None else self.crop.value()
        self.estimate.setText(FT.estimate_text(self.steps.value(), self.batch.value(), crop, self.device.currentText()))

    def _with_browse(self, edit: QLineEdit, file: bool) -> QHBoxLayout:
        def browse() -> None:
            if file:
                path, _ = QFileDialog.getOpenFileName(self, "Model", "", "safetensors (*.safetensors)")
            else:
                path = QFileDialog.getExistingDirectory(self, "BBBC010-style folder (images/, masks/)")
            if path:
                edit.setText(path if file or not edit.text() else f"{edit.text()};{path}")

        row = QHBoxLayout()
        b = QPushButton("Browse...")
        b.clicked.connect(browse)
        row.addWidget(edit)
        row.addWidget(b)
        return row

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self._refresh)
        self._refresh()

    def _refresh(self, *_: Any) -> None:
        """List session labels layers; the choice follows the layer, not its name (a re-run
        renames the corrected layer to '... (before HH:MM:SS)')."""
        layers = C.session_labels_layers(self.viewer)
        chosen = self._labels_layer()
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        for layer in layers:
            self.labels_combo.addItem(layer.name, str(layer.unique_id))
        if layers:
            keep = chosen if chosen in layers else layers[0]
            self.labels_combo.setCurrentIndex(layers.index(keep))
        self.labels_combo.blockSignals(False)
        self._on_labels_choice()

    def _on_labels_choice(self, *_: Any) -> None:
        layer = self._labels_layer()
        if layer is not None and not self.init_edit.text():
            meta = layer.metadata["probseg_session"].meta
            self.init_edit.setText(str(meta.get("model_path") or meta.get("model") or ""))
        self._update_estimate()  # the crop is capped at this layer's size

    def _labels_layer(self) -> Any | None:
        uid = self.labels_combo.currentData()
        return next((l for l in self.viewer.layers if str(l.unique_id) == uid), None) if uid else None

    # ---- run ------------------------------------------------------------------------
    def start(self) -> Any:
        """Fine-tune in a worker; returns the worker, or None after a notification."""
        from napari.qt.threading import create_worker

        from ..train import TrainConfig
        from ..validation import check_writable_dir

        if self.worker is not None:
            C.info("Training is already running.")
            return None
        layer = self._labels_layer()
        if layer is None:
            C.error("No corrected labels: segment an image (or open a session) and proofread it first.")
            return None
        session: Session = layer.metadata["probseg_session"]
        labels = np.array(layer.data)
        image = session.image if session.image is not None else self._image_from_layers(session)
        if image is None:  # an empty label image is fine: it teaches that this field holds no worm
            C.error("Fine-tuning needs the image; open the image layers of "
                    f"'{session.image_name}' ({', '.join(session.channel_names) or 'unknown'}).")
            return None
        init = self.init_edit.text().strip()
        if not init:
            C.error("Choose the model to start from (a .safetensors checkpoint or a bundled model name).")
            return None
        out = self.out_edit.text().strip() or str(Path.home() / ".napari-probseg" / "finetune" /
                                                 f"{session.image_name}-{time.strftime('%Y%m%d-%H%M%S')}")
        steps = self.steps.value()
        try:
            cfg = TrainConfig(out_dir=out, steps=steps, batch=self.batch.value(), lr=self.lr.value(),
                              crop=min(self.crop.value(), *labels.shape), warmup=max(1, min(50, steps // 5)),
                              device=self.device.currentText(), checkpoint_every=max(steps, 1), fast_cpu=self.fast_cpu)
            check_writable_dir(out, "output folder")
        except ValueError as exc:
            C.error(f"Cannot fine-tune: {exc}")
            return None
        extra = [p for p in self.extra_edit.text().split(";") if p.strip()]
        self.trained_on = session
        self._stop.clear()
        self.plot.clear()
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self._first_step = None
        self.status.setText("loading data...")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        masks = training_masks(labels, session.probabilities, session.binarize)  # overlaps kept
        self.worker = create_worker(_fine_tune, cfg, init, session.image_name, image, masks, extra,
                                    self.relay, self._stop, _start_thread=False)
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(lambda exc: C.error(f"Fine-tuning failed: {exc}"))
        self.worker.finished.connect(self._on_finished)
        self.worker.start()
        return self.worker

    def _image_from_layers(self, session: Session) -> np.ndarray | None:
        names = session.channel_names
        if not names or not all(n in self.viewer.layers for n in names):
            return None
        return np.stack([np.asarray(self.viewer.layers[n].data) for n in names])

    def stop(self) -> None:
        self._stop.set()
        self.status.setText("stopping: saving a checkpoint...")

    def _on_step(self, step: int, terms: dict) -> None:
        if self._first_step is None:
            self._first_step = (step, time.monotonic())
        self.progress.setValue(step)
        self.plot.add(step, float(terms["total"]))
        pace = FT.pace_text(step, self.progress.maximum(), *self._first_step, time.monotonic())
        self.status.setText(f"step {step} / {self.progress.maximum()}: loss {terms['total']:.4f}"
                            + (f"; {pace}" if pace else ""))

    def _on_finished(self) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _on_done(self, res: Path | C.Failed) -> None:
        self.plot.redraw()
        if isinstance(res, C.Failed):
            self.status.setText("failed")
            C.error(res.message)
            return
        self.checkpoint = Path(res)
        self.save_button.setEnabled(True)
        self.use_button.setEnabled(True)
        self.status.setText(f"checkpoint {self.checkpoint} after {len(self.plot.steps)} steps. Press 'Use for "
                            "inference' and Run in 'Segment worms' to see the effect at the reviewed peaks.")

    def use_for_inference(self) -> None:
        if self.checkpoint is None:
            return
        from ._inference import InferenceWidget

        inference = C.docked(self.viewer, InferenceWidget) or C.open_dock(self.viewer, "Segment worms")
        if inference is not None:
            inference.set_model(self.checkpoint)

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save fine-tuned model", "", "safetensors (*.safetensors)")
        if path:
            self.save_as(path)

    def save_as(self, path: str | Path) -> Path | None:
        """Copy the fine-tuned weights (without optimiser state) to ``path``."""
        from ..train import export_weights

        if self.checkpoint is None:
            C.error("Nothing to save yet: fine-tune first.")
            return None
        try:
            return export_weights(self.checkpoint, path)
        except (OSError, ValueError) as exc:
            C.error(f"Could not save the model to {path}: {exc}")
            return None

    def on_new_session(self, new: Session) -> None:
        """Called by the inference widget: compare uncertainty at the reviewed peaks."""
        old = self.trained_on
        if old is None or new.image_name != old.image_name or new is old or new.entropy.shape != old.entropy.shape:
            return
        peaks = [p for p, r in zip(old.peaks, old.reviewed) if r] or old.peaks[:20]
        what = "reviewed" if old.reviewed.any() else "top"
        before, after = mean_peak_entropy(old.entropy, peaks), mean_peak_entropy(new.entropy, peaks)
        self.comparison = (before, after, len(peaks))
        self.status.setText(f"Mean entropy at the {len(peaks)} {what} peaks: {before:.3f} before fine-tuning, "
                            f"{after:.3f} after ({after - before:+.3f}).")


def _fine_tune(cfg: Any, init: str, name: str, image: np.ndarray, masks: np.ndarray, extra: list[str],
               relay: C.Relay, stop: threading.Event) -> Path | C.Failed:
    """Worker body: build the wells, train; the checkpoint Path, or the failure's message."""
    from ..checkpoint import CheckpointError
    from ..data import CHANNEL_TAGS, InputError, Well, load_well, normalize, validate_image
    from ..models import load_model, resolve_model
    from ..train import train

    try:
        path = resolve_model(init)
        n = load_model(path, "cpu").model.cfg.in_channels
        wells = [Well(name, normalize(validate_image(image, n)), masks)]
        cfg.channels = list(CHANNEL_TAGS[:n])
        for folder in extra:
            names = sorted({f.name.split("_")[0] for f in (Path(folder) / "masks").glob("*_ground_truth.png")})
            if not names:
                raise InputError(f"{folder}: no masks/<WELL>_<NN>_ground_truth.png files")
            wells += [load_well(Path(folder), w, tuple(cfg.channels)) for w in names]
        return Path(train(cfg, wells, init_from=path, progress=relay.train_step.emit, should_stop=stop.is_set))
    except (CheckpointError, InputError, ValueError, RuntimeError, OSError) as exc:
        C.log.exception("fine-tuning failed")
        return C.Failed(f"Fine-tuning failed: {exc}")
