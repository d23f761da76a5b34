"""Which input channels a model file needs (issue 19: brightfield alone).

Torch-free so the CLI parser, batch discovery and the widgets can ask without loading
a network.  A model trained with the fluorescence channel blanked in some crops
(``TrainConfig.drop_fluorescence > 0``) records ``meta["optional_channels"] = ["w1"]``;
such a model is fed a zero fluorescence plane when only brightfield is given, which
is exactly what training's ``blank_fluorescence`` fed it.  Files without the entry
(all older ones) need both channels.
"""
from __future__ import annotations

from typing import Any

CHANNEL_NAMES = ("w1 fluorescence", "w2 brightfield")  # order of the model's input channels
FLUORESCENCE, BRIGHTFIELD = "w1", "w2"
NEEDS_BOTH = ("this model needs fluorescence (w1) and brightfield (w2); give both, "
              "or use a model trained for brightfield alone")


def channel_meta(drop_fluorescence: float) -> dict[str, list[str]]:
    """The header entries ``train.py`` writes: the channels, and w1 optional when it was blanked."""
    meta: dict[str, list[str]] = {"channels": list(CHANNEL_NAMES)}
    if drop_fluorescence > 0:
        meta["optional_channels"] = [FLUORESCENCE]
    return meta


def check_channel_meta(meta: dict[str, Any]) -> str | None:
    """The problem with a header's channel entries, or None; why: a hand-edited entry must
    not silently switch on brightfield-only input for a model never trained for it."""
    chans, optional = meta.get("channels"), meta.get("optional_channels")
    if chans is not None and (not isinstance(chans, list) or not all(isinstance(c, str) for c in chans)):
        return f"meta.channels must be a list of channel names, got {chans!r}"
    if optional is not None:
        if not isinstance(optional, list) or any(c != FLUORESCENCE for c in optional):
            return f"meta.optional_channels may only be [] or [{FLUORESCENCE!r}], got {optional!r}"
    return None


def allows_brightfield_only(meta: dict[str, Any] | None) -> bool:
    """Whether a model (by its header ``meta``) can segment brightfield alone."""
    return bool(meta) and FLUORESCENCE in (meta.get("optional_channels") or [])
