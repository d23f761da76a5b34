"""How long fine-tuning takes: a stored estimate before the start, the run's own pace after.

Why stored: timing steps before the start would cost the user the time it measures.  The
one figure kept is the pace recorded in issue 16 for the bundled model (19 filters, 5
levels) on the project's 2-core CPU: about 4.5 s per step at batch 4 x 384 x 384 pixels.
A step's cost grows with the pixels it trains on (batch x crop x crop), so other settings
scale from it; a GPU is much faster and has no stored figure.  Once running, the elapsed
time per step replaces the estimate.  Plain Python: no Qt, no torch.
"""
from __future__ import annotations

CPU_SECONDS_PER_STEP = 4.5  # issue 16: bundled model, batch 4, crop 384, 2-core CPU
CPU_REFERENCE_PIXELS = 4 * 384 * 384
TARGET_SECONDS = 300.0  # the dock's defaults are sized to about 5 minutes on that CPU
DEFAULT_STEPS, DEFAULT_BATCH, DEFAULT_CROP = 300, 2, 256


def cpu_seconds_per_step(batch: int, crop: int) -> float:
    """Estimated seconds per step on the 2-core CPU for the bundled model's size."""
    return CPU_SECONDS_PER_STEP * batch * crop * crop / CPU_REFERENCE_PIXELS


def duration(seconds: float) -> str:
    """'40 s', '5 min', '1 h 10 min': as precise as an estimate deserves."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def estimate_text(steps: int, batch: int, crop: int, device: str) -> str:
    """The line the Fine-tune dock shows before Start."""
    what = f"{steps} steps of {batch} x {crop} x {crop} px"
    if device == "cuda":
        return f"{what}: no stored estimate for a GPU (much faster than a CPU); the run shows its pace."
    per = cpu_seconds_per_step(batch, crop)
    return (f"{what}: about {duration(steps * per)} on a 2-core CPU ({per:.2g} s per step, an estimate for "
            "the bundled model's size; a GPU is much faster). The run shows its own pace.")


def pace_text(step: int, steps: int, first_step: int, first_time: float, now: float) -> str:
    """Measured pace and time left, from the steps done since the run's first step (whose
    time includes loading the data and the model, so it is left out)."""
    if step <= first_step:
        return ""
    per = (now - first_time) / (step - first_step)
    return f"{per:.2f} s per step, about {duration(per * (steps - step))} left"
