"""Pieces several op families share: host numerics (the fp32 working copy, int8 saturation, the
packed quantisation parameter, int4 words) and questions ops ask the chip (bf16 support, the
fractal and alignment numbers). One module both sides import, so no op module reaches into
another's internals.
"""
from __future__ import annotations

import numpy as np

from ascend_sim import dtypes as D


def fp32(x) -> np.ndarray:
    """The fp32 working copy the cube and vector compute in (exact for float16/bfloat16)."""
    return np.asarray(x).astype(np.float32)


def as_float32(t) -> np.ndarray:
    """A float/bf16/fp16 tensor's numbers as float32."""
    return fp32(t.data)


# ----- what ops ask the chip -----
def supports_bf16(chip) -> bool:
    """bf16 arrived with the A2 generation in cube and vector together (HARDWARE.md 2.2): a chip
    whose cube has a bf16 mode runs bf16 vector ops too (910 and 310P have neither)."""
    return "bfloat16" in chip.cube.macs_per_cycle


def is_310p(chip) -> bool:
    return chip.family == "310P"


def block_bytes(chip) -> int:
    """The 32-byte block: the unit of UB addresses and GM transfers."""
    return chip.memory.block_bytes


def burst_bytes(chip) -> int:
    """The 512-byte burst: GM transfers aligned to it move at full rate."""
    return chip.memory.burst_bytes


def fractal_rows(chip) -> int:
    """Rows of a cube fractal (16): FRACTAL_NZ pads rows to this."""
    return chip.cube.m0


# ----- the packed quantisation parameter (npu_trans_quant_param's documented bit layout) -----
FP19_KEEP_MASK = 0xFFFFE000        # the float32 bits an FP19 keeps: sign, exponent, top 10 mantissa bits
FP19_DROPPED_BITS = 13             # float32 mantissa bits an FP19 drops
QUANT_PARAM_FLAG_BIT = 46          # set in every packed word
OFFSET_SHIFT = 37                  # offset field: bits 37..45
OFFSET_FIELD_BITS = 9
OFFSET_MIN, OFFSET_MAX = -(1 << (OFFSET_FIELD_BITS - 1)), (1 << (OFFSET_FIELD_BITS - 1)) - 1
INT8_MIN, INT8_MAX = -128, 127

# c10::ScalarType::QUInt4x2: the id torch passes for torch.quint4x2 (npu_anti_quant's src_dtype)
QUINT4X2_SCALAR_TYPE = 16
INT4_PER_INT32 = 8


def fp19_bits(scale: np.ndarray, round_mode: int = 0) -> np.ndarray:
    """float32 values -> uint32 bit patterns of their FP19 (low 13 bits zero)."""
    bits = np.ascontiguousarray(scale, dtype=np.float32).view(np.uint32).astype(np.uint64)
    if round_mode == 0:
        return (bits & FP19_KEEP_MASK).astype(np.uint32)
    sign = (bits >> 31) & 1
    exponent = (bits >> 23) & 0xFF
    mantissa = bits & 0x7FFFFF
    kept = mantissa >> FP19_DROPPED_BITS
    round_bit = (mantissa >> (FP19_DROPPED_BITS - 1)) & 1
    sticky = mantissa & ((1 << (FP19_DROPPED_BITS - 1)) - 1)
    up = (round_bit == 1) & ((sticky != 0) | ((kept & 1) == 1)) & (exponent != 0) & (exponent != 0xFF)
    kept = kept + up
    carry = kept >> 10
    kept = np.where(carry == 1, 0, kept)
    exponent = np.where((exponent != 0) & (exponent != 0xFF), exponent + carry, exponent)
    overflow = exponent > 0xFF
    exponent = np.where(overflow, 0xFF, exponent)
    kept = np.where(overflow | (exponent == 0), 0, kept)
    fp19 = (sign << 18) | (exponent << 10) | kept
    return (fp19 << FP19_DROPPED_BITS).astype(np.uint32)


def pack_quant_param(scale: np.ndarray, offset: np.ndarray | None = None, round_mode: int = 0) -> np.ndarray:
    """The int64 words of npu_trans_quant_param (shapes already broadcast by the caller)."""
    words = fp19_bits(scale, round_mode).astype(np.uint64) | np.uint64(1 << QUANT_PARAM_FLAG_BIT)
    if offset is not None:
        off = np.clip(np.rint(np.asarray(offset, dtype=np.float32)), OFFSET_MIN, OFFSET_MAX).astype(np.int64)
        field = (off & ((1 << OFFSET_FIELD_BITS) - 1)).astype(np.uint64) << np.uint64(OFFSET_SHIFT)
        words = np.broadcast_to(words, np.broadcast_shapes(words.shape, field.shape)) | field
    return np.ascontiguousarray(words).view(np.int64)


def quant_param_scale(words: np.ndarray) -> np.ndarray:
    """The float32 scale FIXPIPE uses from packed int64 words: their low 32 bits."""
    w = np.ascontiguousarray(words, dtype=np.int64).view(np.uint64)
    return (w & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)


def quant_param_offset(words: np.ndarray) -> np.ndarray:
    """The signed 9-bit offset field of packed int64 words, as float32."""
    w = np.ascontiguousarray(words, dtype=np.int64).view(np.uint64)
    field = ((w >> np.uint64(OFFSET_SHIFT)) & np.uint64((1 << OFFSET_FIELD_BITS) - 1)).astype(np.int64)
    return np.where(field > OFFSET_MAX, field - (1 << OFFSET_FIELD_BITS), field).astype(np.float32)


def to_int8_saturated(values: np.ndarray) -> np.ndarray:
    """float -> int8 as FIXPIPE/vector requantisation does: round half to even, saturate."""
    with np.errstate(invalid="ignore"):
        r = np.rint(np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0))
    return np.clip(r, INT8_MIN, INT8_MAX).astype(np.int8)


def int4_values(words: np.ndarray) -> np.ndarray:
    """int32 words holding eight int4 values each -> int8 array with the last dim x8."""
    return D.unpack_int4(np.ascontiguousarray(words, dtype=np.int32)).astype(np.int8)
