"""Ascend storage formats: aclFormat ids, logical-shape rules, storage shapes and the exact data
transforms between a tensor's logical array and its storage (see :mod:`.layouts` for the
conventions and why FRACTAL_NZ matters)."""
from __future__ import annotations

from ascend_sim.formats.acl_format import (
    FRACTAL_FORMATS, Format, base_format, check_shape, get_format, is_fractal, logical_rank_rule,
    valid_formats,
)
from ascend_sim.formats.layouts import (
    C04, CUBE_M0, C0Dims, FractalDims, FractalZDims, NZDims, fractal_dims, from_storage,
    storage_nbytes, storage_shape, to_storage,
)

__all__ = [
    "Format", "get_format", "valid_formats", "base_format", "is_fractal", "FRACTAL_FORMATS",
    "logical_rank_rule", "check_shape",
    "storage_shape", "storage_nbytes", "to_storage", "from_storage", "fractal_dims",
    "FractalDims", "NZDims", "C0Dims", "FractalZDims", "CUBE_M0", "C04",
]
