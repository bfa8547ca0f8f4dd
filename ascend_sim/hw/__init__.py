"""Chip presets and the ChipSpec that holds every hardware number (with its source).

>>> from ascend_sim.hw import get_chip
>>> chip = get_chip("Ascend910B2")
>>> round(chip.cube_peak_tflops("float16"), 1)
353.9
>>> fast = chip.derive("910B2-fastHBM", memory__hbm_bandwidth_GBps=3200)
"""
from __future__ import annotations

import os

from .presets import PRESETS
from .spec import FAMILIES, Buffers, ChipSpec, Cores, Cube, Link, Memory, Path, Runtime, Vector, from_dict, to_dict
from .toml_io import load_chip, save_chip

__all__ = ["ChipSpec", "Cores", "Cube", "Vector", "Buffers", "Path", "Memory", "Runtime", "Link",
           "FAMILIES", "PRESETS", "get_chip", "list_chips", "load_chip", "save_chip", "to_dict", "from_dict"]


def list_chips() -> list[str]:
    """Names of the built-in presets."""
    return list(PRESETS)


def get_chip(chip: "str | ChipSpec | os.PathLike") -> ChipSpec:
    """A ChipSpec from a preset name (case-insensitive), a ChipSpec, or a path to a TOML file."""
    if isinstance(chip, ChipSpec):
        return chip
    if isinstance(chip, os.PathLike) or (isinstance(chip, str) and chip.endswith(".toml")):
        return load_chip(chip)
    if not isinstance(chip, str):
        raise TypeError(f"chip: expected a preset name, a ChipSpec or a .toml path, got {type(chip).__name__}; "
                        f"presets: {', '.join(PRESETS)}")
    for name, spec in PRESETS.items():
        if name.lower() == chip.strip().lower():
            return spec
    raise ValueError(f"chip: unknown preset {chip!r}; valid presets: {', '.join(PRESETS)}")
