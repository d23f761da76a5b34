"""A small live loss plot (matplotlib, Qt canvas) for the training widget."""
from __future__ import annotations

import time

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LossPlot(FigureCanvasQTAgg):
    """Total loss per step; redraws at most every ``min_interval`` s so training is not slowed."""

    def __init__(self, min_interval: float = 0.5):
        fig = Figure(figsize=(3.2, 1.8), dpi=90, layout="tight")
        super().__init__(fig)
        self.ax = fig.add_subplot(111)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.min_interval = min_interval
        self._last = 0.0
        self.clear()

    def clear(self) -> None:
        self.steps.clear()
        self.losses.clear()
        self.ax.clear()
        self.ax.set_xlabel("step", fontsize=8)
        self.ax.set_ylabel("loss", fontsize=8)
        self.ax.tick_params(labelsize=7)
        (self.line,) = self.ax.plot([], [], lw=1.2, color="tab:orange")
        self.draw_idle()

    def add(self, step: int, loss: float, force: bool = False) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        if force or time.monotonic() - self._last >= self.min_interval:
            self.redraw()

    def redraw(self) -> None:
        self._last = time.monotonic()
        self.line.set_data(self.steps, self.losses)
        self.ax.relim()
        self.ax.autoscale_view()
        self.draw_idle()
