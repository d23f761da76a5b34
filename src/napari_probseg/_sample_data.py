"""Sample data: three BBBC010 wells bundled with the package (npe2 ``sample_data``)."""
from __future__ import annotations

from ._layers import LayerData, channel_layers


def _sample(well: str) -> list[LayerData]:
    from .sample_data import load_sample

    return channel_layers(load_sample(well), well, f"sample:{well}")


def sample_c04() -> list[LayerData]:
    return _sample("C04")


def sample_c10() -> list[LayerData]:
    return _sample("C10")


def sample_d21() -> list[LayerData]:
    return _sample("D21")
