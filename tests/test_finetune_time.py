"""The Fine-tune dock's expected time: defaults of about 5 minutes on the 2-core CPU (issue 16, item 8)."""
from __future__ import annotations

import pytest

from napari_probseg import finetune_time as FT


def test_the_stored_pace_and_the_defaults():
    assert FT.cpu_seconds_per_step(4, 384) == pytest.approx(4.5)  # the pace measured in issue 16
    total = FT.DEFAULT_STEPS * FT.cpu_seconds_per_step(FT.DEFAULT_BATCH, FT.DEFAULT_CROP)
    assert 0.9 * FT.TARGET_SECONDS <= total <= 1.1 * FT.TARGET_SECONDS
    assert "300 steps of 4 x 384 x 384 px: about 22 min on a 2-core CPU" in FT.estimate_text(300, 4, 384, "cpu")
    assert "about 5 min" in FT.estimate_text(300, 2, 256, "auto")
    assert "no stored estimate" in FT.estimate_text(300, 2, 256, "cuda")


def test_durations_and_the_measured_pace():
    assert [FT.duration(s) for s in (0.2, 40, 300, 4200)] == ["1 s", "40 s", "5 min", "1 h 10 min"]
    assert FT.pace_text(1, 300, 1, 100.0, 100.0) == ""  # nothing measured after the first step
    assert FT.pace_text(11, 300, 1, 100.0, 110.0) == "1.00 s per step, about 5 min left"
