"""Which image layer feeds which model channel (pure: no Qt, no napari, no torch).

Why apart: the Segment dock used to keep whatever a box showed and guessed only from
names, so a dock opened before the sample put the first-arriving layer (brightfield)
in both boxes and Run segmented the wrong image without a word.  Layers now carry
the channel the reader / sample data recorded (``metadata["probseg_channel"]``);
this module matches on that first, then on the name, and never picks one layer for
two channels while another one is free.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NO_FLUORESCENCE = "none (brightfield only)"  # the fluorescence box's entry for brightfield alone (issue 19)
# per model channel: the metadata tags and the name fragments that identify it
TAGS = (("w1", "fluorescence"), ("w2", "brightfield"))
NAME_HINTS = (("fluo", "w1", "sytox"), ("bright", "w2", "bf"))


@dataclass(frozen=True)
class LayerInfo:
    """What matching needs to know of an image layer."""

    name: str
    tag: str | None = None  # metadata["probseg_channel"] (reader / sample data / session)
    image: str | None = None  # metadata["probseg_image_name"]: channels of one image belong together


def channel_of(layer: LayerInfo) -> int | None:
    """The model channel (0 = w1 fluorescence, 1 = w2 brightfield) a layer is recorded or named as."""
    for k, tags in enumerate(TAGS):
        if layer.tag in tags:
            return k
    if layer.tag is not None:  # recorded as something else (e.g. a 1-channel 'image'): names do not override it
        return None
    name = layer.name.lower()
    hits = [k for k, hints in enumerate(NAME_HINTS) if any(h in name for h in hints)]
    return hits[0] if len(hits) == 1 else None


def match_channels(layers: Sequence[LayerInfo], n: int, current: Sequence[str] = (),
                   chosen: Sequence[bool] = ()) -> list[str]:
    """The layer name for each of ``n`` channels ("" when there is no layer).

    A box keeps its layer when the user chose it (``chosen[k]``) or when that layer is
    recorded/named as channel k; otherwise it takes the newest layer recorded/named as
    channel k (of the same image as the other box, when there is one), else the newest
    layer no other box uses, else any layer - the caller warns about duplicates.
    ``NO_FLUORESCENCE`` in the first box is kept when the user chose it (never picked otherwise:
    brightfield alone is a choice, not a fallback).  ``layers`` are in viewer order (oldest first).
    """
    by_name = {l.name: l for l in layers}
    newest = list(reversed(layers))
    picks: list[str] = [""] * n
    for k in range(n):
        cur = current[k] if k < len(current) else ""
        if cur in by_name and ((k < len(chosen) and chosen[k]) or channel_of(by_name[cur]) == k):
            picks[k] = cur
        elif k == 0 and cur == NO_FLUORESCENCE and len(chosen) > 0 and chosen[0]:
            picks[k] = cur
    for k in range(n):
        if picks[k]:
            continue
        partner = next((by_name[p].image for p in picks if p in by_name), None)
        tagged = [l for l in newest if channel_of(l) == k and l.name not in picks]
        same = [l for l in tagged if partner is not None and l.image == partner]
        if same or tagged:
            picks[k] = (same or tagged)[0].name
    for k in range(n):
        if not picks[k]:
            free = [l for l in newest if l.name not in picks and channel_of(l) is None]
            free = free or [l for l in newest if l.name not in picks]
            picks[k] = free[0].name if free else (newest[0].name if newest else "")
    return picks


def duplicates(picks: Sequence[str]) -> list[str]:
    """Layer names chosen for more than one channel (Run refuses them)."""
    return sorted({p for p in picks if p and list(picks).count(p) > 1})
