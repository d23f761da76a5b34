"""Matching image layers to model channels (``_widgets._channels``, pure: no viewer)."""
from __future__ import annotations

from napari_probseg._widgets._channels import LayerInfo as L
from napari_probseg._widgets._channels import channel_of, duplicates, match_channels

FL, BF = L("C10 fluorescence", "fluorescence", "C10"), L("C10 brightfield", "brightfield", "C10")


def test_recorded_tag_beats_the_name_and_order():
    # the sample adds brightfield first; neutral names match by tag alone
    assert match_channels([BF, FL], 2) == ["C10 fluorescence", "C10 brightfield"]
    a, b = L("scan 2", "w2", "s"), L("scan 1", "w1", "s")
    assert match_channels([a, b], 2) == ["scan 1", "scan 2"]
    assert channel_of(L("bf image", "w1")) == 0  # the record wins over a misleading name
    assert channel_of(L("plain", "image")) is None and channel_of(L("my sytox")) == 0 and channel_of(L("x")) is None


def test_a_box_showing_the_wrong_channel_is_corrected_unless_the_user_chose_it():
    # the dock saw only brightfield first and showed it in both boxes (the reported bug)
    half = match_channels([BF], 2)
    assert half == ["C10 brightfield", "C10 brightfield"] and duplicates(half) == ["C10 brightfield"]
    assert match_channels([BF, FL], 2, half) == ["C10 fluorescence", "C10 brightfield"]
    assert match_channels([BF, FL], 2, half, [True, False]) == half  # an explicit choice stays (and is warned about)


def test_the_other_channel_comes_from_the_same_image_and_untagged_layers_do_not_repeat():
    d_fl, d_bf = L("D21 fluorescence", "fluorescence", "D21"), L("D21 brightfield", "brightfield", "D21")
    # the user keeps C10 fluorescence; brightfield is C10's, not the newer D21's
    assert match_channels([BF, FL, d_bf, d_fl], 2, ["C10 fluorescence", ""], [True, False]) == [
        "C10 fluorescence", "C10 brightfield"]
    assert match_channels([BF, FL, d_bf, d_fl], 2) == ["D21 fluorescence", "D21 brightfield"]  # newest image
    assert match_channels([L("a"), L("b")], 2) == ["b", "a"]  # two different layers, never one twice
    assert match_channels([L("a")], 1) == ["a"] and match_channels([], 2) == ["", ""]
    assert duplicates(["a", "b"]) == [] and duplicates(["", ""]) == []
