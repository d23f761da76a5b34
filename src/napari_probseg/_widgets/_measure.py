"""Measurements dock: the worm table of a labels layer, the count with its interval, export.

The widget only reads layers, calls ``measurements`` / ``counts`` and writes the labels
layer's ``features`` (napari then shows a worm's values when the pointer is over it).
"""
from __future__ import annotations

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
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import _common as C

if TYPE_CHECKING:
    import napari

SHOWN_COLUMNS = ["label", "area_px", "length_px", "mean_width_px", "straightness", "mean_probability",
                 "uncertain_fraction", "touches_border", "overlaps", "mean_intensity_w1"]


def set_layer_features(layer: Any, table: dict[str, list]) -> None:
    """Write a worm table as the layer's features (``index`` = label value, as napari maps rows)."""
    layer.features = {"index": list(table["label"]), **table}


def layer_table(layer: Any) -> dict[str, list]:
    """The layer's features as a column dict, without napari's ``index`` column."""
    f = layer.features
    return {c: list(f[c]) for c in f.columns if c != "index"}


class MeasureWidget(QWidget):
    """Per-worm measurements and counts (dock: 'Measure worms')."""

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        form = QFormLayout()
        self.layer_combo = QComboBox()
        self.straight = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.85)
        self.straight.setToolTip("A worm counts as straight when end-to-end distance / skeleton length is at least this "
                                 "(dead worms in BBBC010 are straight).")
        self.straight.valueChanged.connect(self._refresh)  # the split follows the threshold
        form.addRow("Labels", self.layer_combo)
        form.addRow("Straight if straightness >=", self.straight)
        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        self.export_button = QPushButton("Export CSV...")
        self.export_button.clicked.connect(self._export_dialog)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.export_button)
        self.count_label = QLabel("")
        self.count_label.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.count_label)
        lay.addWidget(self.table, 1)
        napari_viewer.layers.events.inserted.connect(self._refresh)
        napari_viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _refresh(self, *_: Any) -> None:
        names = [l.name for l in C.session_labels_layers(self.viewer)]
        current = self.layer_combo.currentText()
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        layer = self.layer()
        if layer is not None and len(layer.features):
            self.show(layer)

    def layer(self) -> Any | None:
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def measure(self) -> dict | None:
        """Measure the chosen labels layer as it is now (after any proofreading)."""
        from ..measurements import channel_tags, measure_labels

        layer = self.layer()
        if layer is None:
            C.error("No segmented labels layer: run 'Segment worms' first.")
            return None
        s = layer.metadata["probseg_session"]
        image = s.image if s.image is not None and np.ndim(s.image) == 3 else None
        table = measure_labels(np.asarray(layer.data), s.probabilities, image,
                               channel_tags(len(image)) if image is not None else ())
        set_layer_features(layer, table)
        self.show(layer)
        return table

    def show(self, layer: Any) -> None:
        """Fill the count text and the table from the layer's features and session."""
        table = layer_table(layer)
        self.count_label.setText(count_text(layer.metadata["probseg_session"], table, self.straight.value()))
        cols = [c for c in SHOWN_COLUMNS if c in table] + [c for c in table if c not in SHOWN_COLUMNS]
        n = len(table.get("label", []))
        self.table.clear()
        self.table.setRowCount(n)
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        for j, c in enumerate(cols):
            for i, v in enumerate(table[c]):
                self.table.setItem(i, j, QTableWidgetItem(_fmt(v)))
        self.table.resizeColumnsToContents()

    def export(self, path: str | Path) -> Path:
        """Write the chosen layer's worm table as CSV (measuring it first if it has none)."""
        from ..measurements import write_table

        layer = self.layer()
        if layer is None:
            raise ValueError("no segmented labels layer to export")
        table = layer_table(layer) if len(layer.features) else self.measure()
        return write_table(table, path)

    def _export_dialog(self) -> None:
        layer = self.layer()
        if layer is None:
            C.error("No segmented labels layer to export.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Worm table", f"{layer.name}_worms.csv", "CSV (*.csv)")
        if path:
            C.info(f"worm table written to {self.export(path)}")


def count_text(session: Any, table: dict[str, list], straight_at: float) -> str:
    """'12 worms (11-14, 90%)' from the session's MC draws, the phenotype split, the labels now."""
    from ..counts import count_inputs, count_interval, phenotype_counts
    from ..measurements import instance_straightness

    meta = session.meta or {}
    inp = meta.get("count_inputs")
    if inp is None and meta.get("draw_counts"):  # a probseg predict / batch file: rebuild from its arrays
        probs = session.probabilities
        inp = count_inputs(probs, probs >= session.binarize, meta["draw_counts"])
    lines = []
    if inp:
        lines.append(f"Automatic count: {count_interval(inp).text()}")
        straight = np.asarray(instance_straightness(session.probabilities)) >= straight_at
        ph = phenotype_counts(inp, straight)
        lines.append(f"straight (>= {straight_at:.2f}): {ph['straight'].text('')}, curved: {ph['curved'].text('')}"
                     .replace("  ", " "))
    lines.append(f"Labels now: {len(table.get('label', []))}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "nan" if np.isnan(v) else f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)
