"""Format ids, how users name a format, and which logical shapes each format accepts.

The ids are CANN's ``aclFormat`` values (HARDWARE.md section 3), the integers that
``torch_npu.npu_format_cast(t, acl_format)`` takes and ``torch_npu.get_npu_format(t)`` returns.
Every ``acl_format=`` / ``fmt`` argument of the package goes through :func:`get_format`.

A tensor's *logical* shape is always given in its format's base layout (the torch_npu convention:
``t.shape`` does not change when the storage format does):

* ND for ND and FRACTAL_NZ,
* NCHW for NCHW, NHWC, HWCN, NC1HWC0, NC1HWC0_C04 and FRACTAL_Z (as (Cout, Cin, H, W)),
* NCDHW for NCDHW, NDHWC, NDC1HWC0 and FRACTAL_Z_3D (as (Cout, Cin, D, H, W)).

:func:`check_shape` enforces the rank that base layout implies.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = [
    "Format", "get_format", "valid_formats", "base_format", "is_fractal", "FRACTAL_FORMATS",
    "logical_rank_rule", "check_shape",
]


class Format(enum.IntEnum):
    """Storage formats, valued by their ``aclFormat`` id (CANN acl_base.h)."""

    UNDEFINED = -1
    NCHW = 0
    NHWC = 1
    ND = 2
    NC1HWC0 = 3
    FRACTAL_Z = 4
    NC1HWC0_C04 = 12
    HWCN = 16
    NDHWC = 27
    FRACTAL_NZ = 29
    NCDHW = 30
    NDC1HWC0 = 32
    FRACTAL_Z_3D = 33

    def __str__(self) -> str:
        return self.name


# Formats whose storage pads the logical data to whole 32-byte blocks / cube fractals; torch_npu
# calls them "private" (internal) formats: only they change a tensor's storage size.
FRACTAL_FORMATS = frozenset({
    Format.NC1HWC0, Format.NC1HWC0_C04, Format.FRACTAL_Z, Format.FRACTAL_NZ,
    Format.NDC1HWC0, Format.FRACTAL_Z_3D,
})

# aclFormat ids that CANN defines but the simulator does not model: named in errors so that a user
# who passes one learns it is real but unsupported, not mistyped.
_UNMODELLED_IDS = {
    35: "NC", 47: "NCL", 50: "FRACTAL_NZ_C0_16", 51: "FRACTAL_NZ_C0_32", 52: "FRACTAL_NZ_C0_2",
    53: "FRACTAL_NZ_C0_4", 54: "FRACTAL_NZ_C0_8",
}

_VALID = tuple(f for f in Format if f is not Format.UNDEFINED)


def _squash(name: str) -> str:
    """Name key that ignores case, separators and the ACL_FORMAT_ / FORMAT_ prefixes."""
    key = name.strip().upper()
    for prefix in ("ACL_FORMAT_", "FORMAT_"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.replace("_", "").replace("-", "").replace(" ", "")


_BY_KEY: dict[str, Format] = {_squash(f.name): f for f in _VALID}
_ALIASES: dict[str, Format] = {
    "NZ": Format.FRACTAL_NZ,
    "5HD": Format.NC1HWC0,        # CANN's shorthand for the 5-D NC1HWC0
    "6HD": Format.NDC1HWC0,       # and for its 6-D 3-D-conv analogue
    "C04": Format.NC1HWC0_C04,
    "FZ": Format.FRACTAL_Z,
    "FZ3D": Format.FRACTAL_Z_3D,
}


def valid_formats() -> tuple[Format, ...]:
    """Every format a tensor can be cast to (all but UNDEFINED), in id order."""
    return _VALID


def _valid_list() -> str:
    return ", ".join(f"{f.name}={int(f)}" for f in _VALID)


def get_format(x: Any, *, what: str = "acl_format") -> Format:
    """Resolve a :class:`Format`, an integer aclFormat id or a format name to a :class:`Format`.

    Names are case-insensitive and may carry the ``ACL_FORMAT_`` prefix; aliases: "nz", "5hd",
    "6hd", "c04", "fz", "fz3d". ``what`` names the argument in error messages. UNDEFINED is not
    a format a tensor can have, so it is refused like an unknown id (ValueError); a value of the
    wrong type (float, None, bool, list...) raises TypeError. Both messages list every valid
    ``NAME=id``.
    """
    if isinstance(x, Format):
        if x is Format.UNDEFINED:
            raise ValueError(f"{what}: UNDEFINED (-1) is not a format a tensor can have; "
                             f"valid formats: {_valid_list()}")
        return x
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{what}: expected a format (Format, int id or name), got the bool {x!r}; "
                        f"valid formats: {_valid_list()}")
    if isinstance(x, (int, np.integer)):
        fid = int(x)
        if fid == Format.UNDEFINED:
            raise ValueError(f"{what}: UNDEFINED (-1) is not a format a tensor can have; "
                             f"valid formats: {_valid_list()}")
        if fid in _UNMODELLED_IDS:
            raise ValueError(f"{what}: aclFormat {fid} ({_UNMODELLED_IDS[fid]}) is not modelled by "
                             f"the simulator; valid formats: {_valid_list()}")
        try:
            return Format(fid)
        except ValueError:
            raise ValueError(f"{what}: unknown aclFormat id {fid}; valid formats: "
                             f"{_valid_list()}") from None
    if isinstance(x, str):
        key = _squash(x)
        # Not `a or b`: NCHW has id 0, so a Format can be falsy.
        fmt = _BY_KEY.get(key, _ALIASES.get(key))
        if fmt is None:
            if key == "UNDEFINED":
                raise ValueError(f"{what}: UNDEFINED is not a format a tensor can have; "
                                 f"valid formats: {_valid_list()}")
            raise ValueError(f"{what}: unknown format name {x!r}; valid formats: {_valid_list()}")
        return fmt
    raise TypeError(f"{what}: expected a format (Format, int id or name), got "
                    f"{type(x).__name__} {x!r}; valid formats: {_valid_list()}")


def is_fractal(fmt: Any) -> bool:
    """True for the private formats whose storage is blocked and padded (NC1HWC0, NC1HWC0_C04,
    FRACTAL_Z, FRACTAL_NZ, NDC1HWC0, FRACTAL_Z_3D)."""
    return get_format(fmt, what="format") in FRACTAL_FORMATS


@dataclass(frozen=True)
class _RankRule:
    base: Format
    min_rank: int
    max_rank: int | None     # None: no upper bound
    description: str


_ND_RULE = _RankRule(Format.ND, 0, None, "an ND logical shape of any rank (a scalar is rank 0)")
_NZ_RULE = _RankRule(Format.ND, 1, None,
                     "an ND logical shape (..., M, N) of rank >= 1; a rank-1 shape (N,) is taken "
                     "as (1, N)")
_NCHW_RULE = _RankRule(Format.NCHW, 4, 4, "a 4-D logical shape in NCHW order (N, C, H, W)")
_FZ_RULE = _RankRule(Format.NCHW, 4, 4,
                     "a 4-D logical conv-weight shape in NCHW order (Cout, Cin, H, W)")
_NCDHW_RULE = _RankRule(Format.NCDHW, 5, 5, "a 5-D logical shape in NCDHW order (N, C, D, H, W)")
_FZ3D_RULE = _RankRule(Format.NCDHW, 5, 5,
                       "a 5-D logical conv-weight shape in NCDHW order (Cout, Cin, D, H, W)")

_RULES: dict[Format, _RankRule] = {
    Format.ND: _ND_RULE,
    Format.FRACTAL_NZ: _NZ_RULE,
    Format.NCHW: _NCHW_RULE,
    Format.NHWC: _NCHW_RULE,
    Format.HWCN: _NCHW_RULE,
    Format.NC1HWC0: _NCHW_RULE,
    Format.NC1HWC0_C04: _NCHW_RULE,
    Format.FRACTAL_Z: _FZ_RULE,
    Format.NCDHW: _NCDHW_RULE,
    Format.NDHWC: _NCDHW_RULE,
    Format.NDC1HWC0: _NCDHW_RULE,
    Format.FRACTAL_Z_3D: _FZ3D_RULE,
}


def base_format(fmt: Any) -> Format:
    """The layout a tensor of this format gives its logical shape in: ND, NCHW or NCDHW."""
    return _RULES[get_format(fmt, what="format")].base


def logical_rank_rule(fmt: Any) -> str:
    """A sentence saying which logical shapes ``fmt`` accepts (used in error messages)."""
    return _RULES[get_format(fmt, what="format")].description


def check_shape(fmt: Any, shape: Sequence[int], *, what: str = "shape") -> tuple[int, ...]:
    """Validate a logical shape for ``fmt`` and return it as a tuple of Python ints.

    Raises TypeError if ``shape`` is not a sequence of integers, ValueError (naming ``what``, the
    format and its rule) if a dimension is negative or the rank does not fit the format.
    """
    fmt = get_format(fmt, what="format")
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise TypeError(f"{what}: expected a shape (a sequence of ints), got "
                        f"{type(shape).__name__} {shape!r}")
    dims = []
    for d in shape:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{what}: shape {tuple(shape)!r} has a non-integer dimension {d!r}")
        dims.append(int(d))
    dims_t = tuple(dims)
    rule = _RULES[fmt]
    rank = len(dims_t)
    if rank < rule.min_rank or (rule.max_rank is not None and rank > rule.max_rank):
        raise ValueError(f"{what}: format {fmt.name} takes {rule.description}; got shape "
                         f"{dims_t} of rank {rank}")
    if any(d < 0 for d in dims_t):
        raise ValueError(f"{what}: shape {dims_t} has a negative dimension")
    return dims_t
