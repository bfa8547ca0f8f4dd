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


# ----- GEMM numerics and operand checks (the matmul, quantised-matmul and fused comm families) -----
EXACT_FLOAT64 = 2 ** 53       # integers below this add exactly in float64


def float_matmul(a, b) -> np.ndarray:
    """fp32-accumulated product of any float inputs (upcast once), broadcasting batch dims."""
    return np.matmul(fp32(a), fp32(b))


def int_matmul(a, b) -> np.ndarray:
    """Exact integer product (int64), broadcasting batch dims."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.size == 0 or b.size == 0:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    bound = float(np.abs(a).max()) * float(np.abs(b).max()) * a.shape[-1]
    if bound < EXACT_FLOAT64:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def wrap_int32(v) -> np.ndarray:
    """int64 -> int32 modulo 2^32, as 32-bit integer hardware lanes wrap."""
    return np.asarray(v, dtype=np.int64).astype(np.int32)


def unpack_int4_matrix(words: np.ndarray, packed_along_k: bool) -> np.ndarray:
    """int32 words of a (k, n) int4 matrix -> int8 values (k, n). Packed along n: (k, n/8) words;
    packed along k: (k/8, n) words (the transpose of (n, k/8))."""
    if packed_along_k:
        return int4_values(np.swapaxes(words, -1, -2)).swapaxes(-1, -2)
    return int4_values(words)


def aligned_batch(batch, n: int) -> tuple:
    """Batch dims right-aligned to ``n`` dims (leading 1s)."""
    return (1,) * (n - len(batch)) + tuple(batch)


def broadcast_batch(op, a_batch, b_batch, a_arg: str, b_arg: str) -> tuple:
    """Right-aligned broadcast of two batch shapes; OpError naming both arguments if impossible."""
    n = max(len(a_batch), len(b_batch))
    a, b = aligned_batch(a_batch, n), aligned_batch(b_batch, n)
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and x != 1 and y != 1:
            raise op.fail(b_arg, f"batch dims {tuple(b_batch)} cannot be broadcast with {a_arg}'s {tuple(a_batch)} "
                                 f"(axis {i - n}: {x} vs {y})")
        out.append(y if x == 1 else x)          # 1 broadcasts to the other size, also to 0
    return tuple(out)


def matrix_format(op, arg: str, t) -> bool:
    """True if a matmul operand is FRACTAL_NZ; ND-like base formats give False; others fail."""
    from ascend_sim import formats as F
    if t.format == F.Format.FRACTAL_NZ:
        return True
    if F.is_fractal(t.format):
        raise op.fail(arg, f"format {t.format.name} is not supported (ND or FRACTAL_NZ)")
    return False


def dequantise_weight(w, scale, offset, group: int, k: int, dtype) -> np.ndarray:
    """A low-bit (k, n) weight as the cube consumes it: ``(w + offset) * scale`` in float32, rounded
    once to ``dtype``. ``scale`` / ``offset`` (float32 arrays; offset may be None) are per tensor,
    per channel, or -- ``group`` > 0 -- one row per ``group`` rows of k."""
    sf = np.asarray(scale, dtype=np.float32)
    of = None if offset is None else np.asarray(offset, dtype=np.float32)
    if group:
        sf = np.repeat(sf, group, axis=0)[:k]
        of = None if of is None else np.repeat(of, group, axis=0)[:k]
    else:
        sf = sf.reshape(1, -1)
        of = None if of is None else of.reshape(1, -1)
    wf = np.asarray(w).astype(np.float32)
    if of is not None:
        wf = wf + of
    return D.cast(wf * sf, dtype)
