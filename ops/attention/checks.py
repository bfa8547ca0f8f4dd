"""Argument rules the four attention ops share: integer lists, cumulative lengths, the sparse
modes' visible-key bands, mask shapes, and the granularity the pages' alignment rules use."""
from __future__ import annotations

import numpy as np

from ascend_sim import dtypes as D

from ..base import Args
from ..templates.flash_attention import NO_LIMIT, Band

INT_MAX = 2147483647
COMPRESSED_MASK = 2048        # the optimised causal mask's side (documented)
PREFIX_MASK_ROWS = 3072       # sparse_mode 6's optimised mask: 2048 causal rows + 1024 prefix rows
ALIBI_ROWS = 1024             # rows kept by the ALiBi-compressed pse
STAT_LANES = 8                # softmax_max / softmax_sum repeat each value 8 times (op-plugin's allocation)
FLOATS = (D.float16, D.bfloat16)
MASK_DTYPES = (D.bool_, D.int8, D.uint8)


def int_list(op, a: Args, arg: str) -> list[int] | None:
    """An int-list argument (``int[]?``): None, or a list/tuple of Python or numpy ints. A tensor,
    a string, a bare number or an element that is not an int (a bool, a float, a string) is a
    TypeError naming the op and the argument. Every attention op's int lists go through here."""
    v = a.get(arg)
    if v is None:
        return None
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (list, tuple)):
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of ints, got a tensor")
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of ints, got {type(v).__name__}")
    bad = next((x for x in v if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer))), None)
    if bad is not None:
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of ints, got an element of type "
                        f"{type(bad).__name__}")
    return [int(x) for x in v]


def cumulative(op, arg: str, cum: list[int], total: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(start, length) per batch of a cumulative length list. Trailing zeros exclude trailing
    batches (length 0); otherwise the list must not decrease; the last value may not exceed T."""
    starts, lens = [], []
    prev = 0
    trailing = False
    for i, c in enumerate(cum):
        if c < 0:
            raise op.fail(arg, f"cumulative lengths cannot be negative, got {c} at index {i}")
        if trailing or (c == 0 and prev > 0):
            if c != 0:
                raise op.fail(arg, f"after a trailing zero every value must be 0 (index {i} is {c})")
            trailing = True
            starts.append(prev)
            lens.append(0)
            continue
        if c < prev:
            raise op.fail(arg, f"cumulative lengths must not decrease ({prev} then {c} at index {i})")
        starts.append(prev)
        lens.append(c - prev)
        prev = c
    if prev > total:
        raise op.fail(arg, f"the total length {prev} exceeds the T axis ({total}) of the tensor")
    return tuple(starts), tuple(lens)


def mode_band(mode: int, sq: int, skv: int, pre: int, nxt: int, prefix: int = 0, *, is_first: bool = True,
              is_last: bool = True) -> Band:
    """The visible-key rule of a sparse mode for one batch (see the package docstring)."""
    rd = skv - sq
    if mode == 0:
        return Band(0, pre, nxt)
    if mode == 1:
        return Band()
    if mode == 2:
        return Band(0, NO_LIMIT, 0)
    if mode == 3:
        return Band(rd, NO_LIMIT, 0)
    if mode == 4:
        return Band(rd, pre, nxt)
    if mode in (5, 6):
        return Band(rd, NO_LIMIT, 0, prefix)
    if mode == 7:
        return Band(rd, pre, nxt) if is_last else Band(rd, NO_LIMIT, 0)
    if mode == 8:
        return Band(rd, pre, nxt) if is_first else Band(0, NO_LIMIT, 0)
    return Band()


def mask4(shape: tuple, decode: bool) -> tuple:
    """A mask/pse shape as [B?, N?, rows, cols] (decode: a 2-D mask is (B, KV_S))."""
    if len(shape) == 2:
        return (shape[0], 1, 1, shape[1]) if decode else (1, 1) + tuple(shape)
    if len(shape) == 3:
        return (shape[0], 1, shape[1], shape[2])
    return tuple(shape)


def block_elems(chip, *dtypes: D.DType, default: int | None = None) -> int:
    """Elements of one 32-byte block of the 8- and 16-bit dtypes among ``dtypes`` (the largest
    count): the granularity of the pages' head-dim and block-size rules -- 16 for fp16/bf16, 32
    for int8. Packed int4 has no whole-byte element; it follows the others or ``default``."""
    counts = [int(chip.memory.block_bytes // dt.itemsize) for dt in dtypes if dt.bits >= 8]
    return max(counts, default=chip.cube.m0 if default is None else default)


def check_mask_dtype(op, arg: str, t, allowed=MASK_DTYPES) -> None:
    if t.dtype not in allowed:
        raise TypeError(f"{op.name}: argument '{arg}' has dtype {t.dtype.name}; allowed: "
                        f"{', '.join(d.name for d in allowed)}")
