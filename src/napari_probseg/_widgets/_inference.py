"""Model & inference widget: pick a model and the channel layers, run MC-dropout inference.

The image is copied from the chosen layers when Run is pressed and the results are
tied to those layers (names, scale, unique ids), so switching or editing layers while
the worker runs cannot put results onto another image.  The mean network's segmentation
is shown at once and refined in place as draws finish (issue 17, ``_segment_layers``);
Cancel stops between draws and keeps what has arrived.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
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

from . import _common as C
from . import _segment_layers as L
from ._channels import NO_FLUORESCENCE, LayerInfo, duplicates, match_channels
from ._segment_job import Job, Partial, Segmented, gc_quiet, infer, warm_up

if TYPE_CHECKING:
    import napari

CHECKPOINT_ITEM = "checkpoint file..."


class InferenceWidget(QWidget):
    """Segment the open image with an MC-dropout U-Net (dock: 'Segment worms')."""

    finished = Signal(object)  # the new Session

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._loaded = None  # LoadedModel used for channel count and info
        self._stop = threading.Event()
        self.worker = None
        self._ended = self._showing = False  # the worker thread ended / its final result is being written
        self.relay = C.Relay()
        self.relay.progress.connect(self._on_progress)
        self._build()
        napari_viewer.layers.events.inserted.connect(self._on_layers_changed)
        napari_viewer.layers.events.removed.connect(self._refresh_layers)
        for layer in napari_viewer.layers:
            layer.events.name.connect(self._refresh_layers)
        self._on_model_choice()
        # napari's first labels/points layers import pandas & co. on the GUI thread: do it now, in the background
        threading.Thread(target=warm_up, name="probseg-warm-up", daemon=True).start()

    # ---- UI -----------------------------------------------------------------------
    def _build(self) -> None:
        from ..models import DEFAULT_MODEL, bundled_models

        form = QFormLayout()
        self.model_combo = QComboBox()
        names = bundled_models()  # the Concrete Dropout model first: it is the one with uncertainty
        self.model_combo.addItems(sorted(names, key=lambda n: n != DEFAULT_MODEL) + [CHECKPOINT_ITEM])
        self.model_combo.currentTextChanged.connect(self._on_model_choice)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("path/to/model.safetensors")
        self.path_edit.editingFinished.connect(self._on_model_choice)
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.layer_combos = [QComboBox(), QComboBox()]
        self.layer_labels = [QLabel("Fluorescence (w1)"), QLabel("Brightfield (w2)")]
        self._chosen = [False, False]  # the user picked this box's layer: refreshes keep it
        for k, combo in enumerate(self.layer_combos):
            combo.currentTextChanged.connect(lambda _t, k=k: self._on_pick(k))
        self.channel_warning = QLabel("", wordWrap=True, visible=False, styleSheet="color: #ff5050; font-weight: bold")
        self.device = QComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])
        self.draws = C.int_box("draws", 8)
        self.binarize = QDoubleSpinBox(minimum=0.05, maximum=1.0, singleStep=0.05, value=0.75)
        self.binarize.setToolTip("probability at which a pixel belongs to a worm (the model's own value is preset)")
        self.seed = C.int_box("seed", 0)
        self.worm_width = QLineEdit("auto", toolTip="Typical worm width in pixels: the image is resampled so its worms "
                                    "are as wide as the model's training worms (8.6 px). 'auto' estimates it from the "
                                    "image, 'off' segments at the image's own scale.")
        self.min_size = C.int_box("min_size", 50, suffix=" px")
        self.min_size.setToolTip("Objects smaller than this are dropped. Each model brings its own value "
                                 "(the BBBC010 models: fragments smaller than a whole adult worm); lower it "
                                 "for larvae or a lower magnification.")
        form.addRow("Model", self.model_combo)
        form.addRow("Checkpoint", row)
        form.addRow(self.model_info)
        for lab, combo in zip(self.layer_labels, self.layer_combos):
            form.addRow(lab, combo)
        form.addRow(self.channel_warning)
        form.addRow("Device", self.device)
        form.addRow("MC draws", self.draws)
        form.addRow("Binarise at", self.binarize)
        form.addRow("Seed", self.seed)
        form.addRow("Smallest object", self.min_size)
        form.addRow("Worm width (px)", self.worm_width)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setFormat("draw %v / %m")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self._refresh_layers()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "safetensors (*.safetensors)")
        if path:
            self.set_model(path)

    def set_model(self, name_or_path: str | Path) -> None:
        """Select a bundled model by name or a checkpoint file (also used by the training widget)."""
        names = [self.model_combo.itemText(i) for i in range(self.model_combo.count())]
        self.model_combo.blockSignals(True)  # load once, below, not again on the text change
        if str(name_or_path) in names and str(name_or_path) != CHECKPOINT_ITEM:
            self.model_combo.setCurrentText(str(name_or_path))
        else:
            self.path_edit.setText(str(name_or_path))
            self.model_combo.setCurrentText(CHECKPOINT_ITEM)
        self.model_combo.blockSignals(False)
        self._on_model_choice()

    def model_spec(self) -> str:
        text = self.model_combo.currentText()
        return self.path_edit.text().strip() if text == CHECKPOINT_ITEM else text

    def _on_model_choice(self, *_: Any) -> None:
        """Load the model's header to learn its channels; errors become a notification."""
        from ..checkpoint import CheckpointError
        from ..models import load_model

        is_file = self.model_combo.currentText() == CHECKPOINT_ITEM
        self.path_edit.setEnabled(is_file)
        spec = self.model_spec()
        self._loaded = None
        if not spec:
            self.model_info.setText("No bundled model in this installation: choose a checkpoint file."
                                    if self.model_combo.count() == 1 else "Choose a checkpoint file.")
            return
        try:
            lm = load_model(spec, "cpu")
        except (CheckpointError, OSError, ValueError) as exc:
            self.model_info.setText("model not loaded")
            C.error(f"Cannot load model {spec}: {exc}")
            return
        n = lm.model.cfg.in_channels
        if n not in (1, 2):
            self.model_info.setText("model not usable here")
            C.error(f"Model {spec} expects {n} input channels; this widget feeds 1 (one image layer) "
                    "or 2 (fluorescence + brightfield layers).")
            return
        self._loaded = lm
        rates = lm.model.dropout_rates()
        rate_txt = f"dropout {min(rates.values()):.3f}-{max(rates.values()):.3f}" if rates else "no dropout (baseline)"
        self.model_info.setText(f"{lm.model.cfg.variant}, {n} channel(s), {rate_txt}, sha256 {lm.sha256[:12]}")
        self.draws.setValue(lm.postprocess.mc_draws)
        self.binarize.setValue(lm.postprocess.binarize)
        self.min_size.setValue(lm.postprocess.min_size)
        self.layer_labels[0].setText("Fluorescence (w1)" if n == 2 else "Image")
        for w in (self.layer_labels[1], self.layer_combos[1]):
            w.setVisible(n == 2)
        self._refresh_layers()  # the fluorescence box offers "none (brightfield only)" to 2-channel models

    # ---- layers --------------------------------------------------------------------
    def _on_layers_changed(self, event: Any) -> None:
        event.value.events.name.connect(self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, *_: Any) -> None:
        """Refill the boxes; layers are matched to channels by recorded tag or name (``_channels``)."""
        layers = [l for l in self.viewer.layers if l._type_string == "image" and "probseg_role" not in l.metadata]
        infos = [LayerInfo(l.name, (l.metadata or {}).get("probseg_channel"), (l.metadata or {}).get("probseg_image_name"))
                 for l in layers]
        texts = [c.currentText() for c in self.layer_combos]
        self._chosen = [c and (texts[k] in self.viewer.layers or texts[k] == NO_FLUORESCENCE)
                        for k, c in enumerate(self._chosen)]
        picks = match_channels(infos, 2, texts, self._chosen)
        two = self._loaded is None or self._loaded.model.cfg.in_channels == 2
        for k, (combo, pick) in enumerate(zip(self.layer_combos, picks)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([i.name for i in infos] + ([NO_FLUORESCENCE] if k == 0 and two else []))
            combo.setCurrentIndex(combo.findText(pick))  # -1 (empty) when there is no layer, never "none"
            combo.blockSignals(False)
        self._check_channels()

    def _on_pick(self, k: int) -> None:
        """A box changed outside ``_refresh_layers`` (the user): keep that choice, re-check duplicates."""
        self._chosen[k] = True
        self._check_channels()

    def _brightfield_refused(self) -> str:
        """The message when "none (brightfield only)" is chosen for a model that needs fluorescence, else ""."""
        from ..channels import NEEDS_BOTH

        if self.layer_combos[0].currentText() != NO_FLUORESCENCE or self._loaded is None:
            return ""
        return "" if self._loaded.model.brightfield_only else f"Fluorescence 'none': {NEEDS_BOTH}."

    def _check_channels(self) -> list[str]:
        """Show (and return) the layers chosen for more than one channel (or brightfield alone refused)."""
        n = self._loaded.model.cfg.in_channels if self._loaded is not None else 2
        dup = duplicates([c.currentText() for c in self.layer_combos[:n]])
        text = (f"'{dup[0]}' is chosen for both channels: choose the fluorescence (w1) "
                "and the brightfield (w2) layer." if dup else self._brightfield_refused())
        self.channel_warning.setText(text)
        self.channel_warning.setVisible(bool(text))
        return dup

    def _capture(self) -> Job | None:
        """Check the chosen layers and copy their data; None (after a notification) if unusable."""
        from ..data import InputError, validate_model_image
        from ..scale import parse_worm_width
        from ..train import pick_device
        from ..validation import check

        if self._loaded is None:
            C.error("No usable model: choose a bundled model or a .safetensors checkpoint first.")
            return None
        n = self._loaded.model.cfg.in_channels
        if dup := self._check_channels():
            return C.error(f"'{dup[0]}' is chosen for both channels; Run needs the fluorescence (w1) "
                           "and the brightfield (w2) layer: choose them in the boxes.")
        if refused := self._brightfield_refused():
            return C.error(refused)
        alone = n == 2 and self.layer_combos[0].currentText() == NO_FLUORESCENCE  # fed as a zero plane
        layers = []
        for combo in self.layer_combos[1 if alone else 0:n]:
            name = combo.currentText()
            if not name or name not in self.viewer.layers:
                C.error("No image layer to segment: open an image (or File > Open Sample > napari-probseg) "
                        "and choose it in the widget.")
                return None
            layers.append(self.viewer.layers[name])
        for layer in layers:
            if getattr(layer, "rgb", False):
                C.error(f"Layer '{layer.name}' is RGB; the model needs separate grayscale channels "
                        "(split it with right-click > Split RGB).")
                return None
            if layer.data.ndim != 2:
                C.error(f"Layer '{layer.name}' has shape {layer.data.shape}: one 2-D image per channel is needed "
                        "(split a stack with right-click > Split Stack, or choose another layer).")
                return None
        if len({l.data.shape for l in layers}) > 1:
            C.error("The channel layers have different shapes: " + ", ".join(f"{l.name} {l.data.shape}" for l in layers))
            return None
        image = np.stack([np.array(l.data) for l in layers])
        try:
            validate_model_image(image, n, self._loaded.model.cell, self._loaded.model.brightfield_only)
            for name, box in (("draws", self.draws), ("binarize", self.binarize), ("seed", self.seed),
                              ("min_size", self.min_size)):
                check(name, box.value(), name.replace("_", " "))
            device = str(pick_device(self.device.currentText()))
            width = parse_worm_width(self.worm_width.text(), "Worm width")
        except (InputError, ValueError) as exc:
            C.error(str(exc))
            return None
        md = layers[0].metadata or {}
        name = md.get("probseg_image_name") or layers[0].name
        src = md.get("probseg_source") or str(getattr(layers[0].source, "path", "") or "")
        geo = [{"name": l.name, "id": str(l.unique_id), "scale": tuple(l.scale), "translate": tuple(l.translate)} for l in layers]
        return Job(self.model_spec(), image, name, src, geo, device, self.draws.value(), self.binarize.value(), self.seed.value(),
                   self.min_size.value(), worm_width=width)

    # ---- run -----------------------------------------------------------------------
    def run(self) -> Any:
        """Start inference in a worker thread; returns the worker (None if the input is bad)."""
        from napari.qt.threading import create_worker

        if self.worker is not None:
            C.info("Inference is already running.")
            return None
        job = self._capture()
        if job is None:
            return None
        self._stop.clear()
        self.progress.setRange(0, job.draws)
        self.progress.setFormat("draw %v / %m")
        self.progress.setValue(0)
        self.status.setText(f"segmenting {job.image_name} on {job.device}...")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        layers = L.RunLayers(self.viewer, job.run_id, job.image_name)
        self.worker = create_worker(infer, job, self.relay, self._stop, _start_thread=False)
        self.worker.yielded.connect(lambda part, job=job: self._on_partial(job, layers, part))
        self.worker.returned.connect(lambda res, job=job: self._on_done(job, layers, res))
        self.worker.errored.connect(lambda exc, job=job: self._on_error(job, layers, exc))
        self.worker.finished.connect(self._on_finished)
        self._ended, self._showing = False, False
        gc_quiet(True)
        self.worker.start()
        layers.start()
        return self.worker

    def cancel(self) -> None:
        self._stop.set()
        self.status.setText("cancelling after the current draw (what has arrived is kept)...")

    def _on_progress(self, done: int, total: int) -> None:
        if total != self.progress.maximum():  # a tiled field counts forward passes (every tile's), not draws
            self.progress.setRange(0, total)
            self.progress.setFormat("pass %v / %m")
        self.progress.setValue(done)

    def _on_finished(self) -> None:
        """The worker thread ended; the run ends when its final result is also on screen."""
        self._ended = True
        if not self._showing:
            self._ready()

    def _ready(self) -> None:
        if self.worker is None:
            return
        gc_quiet(False)
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_error(self, job: Job, layers: L.RunLayers, exc: BaseException) -> None:
        layers.remove()
        self.status.setText("failed")
        C.error(f"Inference failed: {exc}")

    def _on_partial(self, job: Job, layers: L.RunLayers, part: Partial) -> None:
        """A result on the way (prepared in the worker): shown at once as a preview, refined in place."""
        if self.worker is None:  # arrived after the run ended (it was queued): the final result is shown
            return
        layers.show(part.layers, final=False)
        self.status.setText(part.status(job.image_name, job.device))

    def _on_done(self, job: Job, layers: L.RunLayers, res: Segmented | C.Cancelled | C.Failed) -> None:
        if isinstance(res, C.Cancelled):
            self.status.setText("cancelled")
            C.info("Inference cancelled before a first result; nothing was added.")
            return
        if isinstance(res, C.Failed):
            layers.remove()
            self.status.setText("failed")
            C.error(res.message)
            return
        self._showing = True
        layers.show(res.layers, final=True, then=lambda: self._final_shown(job, layers, res))

    def _final_shown(self, job: Job, layers: L.RunLayers, res: Segmented) -> None:
        """All of the final result's layers are written: bind the docks, report, end the run."""
        session = res.session
        self._bind_docks(L.run_layers(self.viewer, job.run_id)["labels"])
        self.status.setText(res.status(job))
        self.finished.emit(session)
        training = sys.modules.get("napari_probseg._widgets._training")  # not imported: no Fine-tune dock open
        dock = C.docked(self.viewer, training.TrainingWidget) if training is not None else None
        if dock is not None:
            dock.on_new_session(session)
        self._showing = False
        if self._ended:
            self._ready()

    def _bind_docks(self, labels: Any) -> None:
        """Proofreading follows the new session (opened if closed), Measure refreshes."""
        from ._measure import MeasureWidget
        from ._proofreading import ProofreadingWidget

        proof = C.docked(self.viewer, ProofreadingWidget)
        if proof is None:
            C.open_dock(self.viewer, "Proofreading")  # binds to the newest session on opening
        elif proof.labels_layer is not labels or proof.session is not labels.metadata["probseg_session"]:
            proof.bind(labels)
        measure = C.docked(self.viewer, MeasureWidget)
        if measure is not None:
            measure._refresh()
