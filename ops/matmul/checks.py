"""Argument checks of npu_bmmV2, npu_linear and npu_transpose_batchmatmul: each op's rules, once,
composing into its frozen spec (see :mod:`ascend_sim.ops.base`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from ..base import Args, OpSpec
from ..common import aligned_batch, broadcast_batch, matrix_format

F16, BF16, F32, I8, I32, I64 = D.float16, D.bfloat16, D.float32, D.int8, D.int32, D.int64


# ============================================================================================
# npu_bmmV2
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class BmmSpec(OpSpec):
    dtype: D.DType
    m: int
    k: int
    n: int
    batch: tuple            # the product's broadcast batch dims
    self_batch: tuple       # each operand's batch dims, aligned to batch
    mat2_batch: tuple
    reduce: tuple           # batch axes output_sizes sums (folded into K)
    self_nz: bool
    mat2_nz: bool


BMM_DTYPES = (F16, F32, I32)


def _bmm_operands(op, a: Args):
    s, m2 = op.tensor(a, "self"), op.tensor(a, "mat2")
    for arg, t in (("self", s), ("mat2", m2)):
        if t.ndim < 2:
            raise op.fail(arg, f"must have 2 or more dimensions; got shape {t.shape}")
        op.check_dtype(arg, t, BMM_DTYPES)
        matrix_format(op, arg, t)
    if s.dtype is not m2.dtype:
        raise TypeError(f"{op.name}: argument 'mat2' has dtype {m2.dtype.name}; it must have self's dtype "
                        f"{s.dtype.name}")
    if s.shape[-1] != m2.shape[-2]:
        raise op.fail("mat2", f"its rows ({m2.shape[-2]}) must equal self's last dimension ({s.shape[-1]})")
    return s, m2


def _bmm_output_sizes(op, a: Args, infer: tuple, sb: tuple, mb: tuple, n_batch: int) -> tuple[tuple, tuple]:
    """output_sizes: (the output shape, the batch axes it sums)."""
    sizes = a.get("output_sizes")
    sizes = [] if sizes is None else sizes
    if not isinstance(sizes, (list, tuple)) or not all(isinstance(v, (int, np.integer)) for v in sizes):
        raise TypeError(f"{op.name}: argument 'output_sizes' must be a list of ints, got {sizes!r}")
    sizes = tuple(int(v) for v in sizes)
    if not sizes:
        return infer, ()
    if len(sizes) > len(infer):
        raise op.fail("output_sizes", f"{sizes} has more dimensions than the product {infer}")
    exp = aligned_batch(sizes, len(infer))
    reduce = tuple(i for i, (e, f) in enumerate(zip(exp, infer)) if e != f)
    for i in reduce:
        if i >= n_batch or exp[i] != 1:
            raise op.fail("output_sizes", f"{sizes} differs from the product's shape {infer} on axis {i}; "
                                          "only batch axes may differ, and only as 1 (summed)")
        if sb[i] != mb[i]:
            raise op.fail("output_sizes", f"cannot sum batch axis {i}: it is broadcast ({sb[i]} vs {mb[i]}), "
                                          "and torch_npu folds summed axes into K")
    return sizes, reduce


def bmm_spec(op, a: Args, chip=None) -> BmmSpec:
    s, m2 = _bmm_operands(op, a)
    batch = broadcast_batch(op, s.shape[:-2], m2.shape[:-2], "self", "mat2")
    sb, mb = aligned_batch(s.shape[:-2], len(batch)), aligned_batch(m2.shape[:-2], len(batch))
    infer = (*batch, s.shape[-2], m2.shape[-1])
    out, reduce = _bmm_output_sizes(op, a, infer, sb, mb, len(batch))
    return BmmSpec(outputs=(TensorMeta(tuple(out), s.dtype),), dtype=s.dtype, m=s.shape[-2], k=s.shape[-1],
                   n=m2.shape[-1], batch=batch, self_batch=sb, mat2_batch=mb, reduce=reduce,
                   self_nz=matrix_format(op, "self", s), mat2_nz=matrix_format(op, "mat2", m2))


# ============================================================================================
# npu_linear
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class LinearSpec(OpSpec):
    dtype: D.DType
    m: int
    k: int
    n: int
    input_nz: bool
    weight_nz: bool
    bias: D.DType | None


LINEAR_DTYPES = (F32, F16, I32, I8)
LINEAR_BIAS_DTYPES = (F32, F16, I32)


def _linear_bias(op, a: Args, n: int) -> D.DType | None:
    bias = op.tensor(a, "bias", optional=True)
    if bias is None:
        return None
    op.check_dtype("bias", bias, LINEAR_BIAS_DTYPES)
    if bias.ndim != 1 or bias.shape[0] != n:
        raise op.fail("bias", f"must be 1-D of length out_features={n}; got shape {bias.shape}")
    if F.is_fractal(bias.format):
        raise op.fail("bias", f"format must be ND; got {bias.format.name}")
    return bias.dtype


def linear_spec(op, a: Args, chip=None) -> LinearSpec:
    x, w = op.tensor(a, "input"), op.tensor(a, "weight")
    nz = []
    for arg, t in (("input", x), ("weight", w)):
        if t.ndim != 2:
            raise op.fail(arg, f"must be 2-D; got shape {t.shape}")
        op.check_dtype(arg, t, LINEAR_DTYPES)
        nz.append(matrix_format(op, arg, t))
    if x.dtype is not w.dtype:
        raise TypeError(f"{op.name}: argument 'weight' has dtype {w.dtype.name}; it must have input's dtype "
                        f"{x.dtype.name}")
    if x.shape[1] != w.shape[1]:
        raise op.fail("weight", f"its second dimension ({w.shape[1]}) must equal input's ({x.shape[1]}): "
                                "weight is (out_features, in_features)")
    bias = _linear_bias(op, a, w.shape[0])
    return LinearSpec(outputs=(TensorMeta((x.shape[0], w.shape[0]), x.dtype),), dtype=x.dtype, m=x.shape[0],
                      k=x.shape[1], n=w.shape[0], input_nz=nz[0], weight_nz=nz[1], bias=bias)


# ============================================================================================
# npu_transpose_batchmatmul
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class TransposeBmmSpec(OpSpec):
    x_dtype: D.DType
    w_dtype: D.DType
    perm_x1: tuple
    perm_x2: tuple
    b: int
    m: int
    k: int
    n: int
    split: int               # batch_split_factor
    scale: bool              # int64 scale: requantised to int8
    weight_nz: bool


TBMM_DTYPES = (F16, BF16, F32)
PERM_X1 = ((0, 1, 2), (1, 0, 2))
PERM_X2 = ((0, 1, 2), (0, 2, 1))     # [0, 2, 1]: the meta function and aclnn accept it (CANN >= 8.5)
PERM_Y = ((1, 0, 2),)
TBMM_DIM_LIMIT = 65536


def _perm(op, a: Args, arg: str, default, allowed) -> tuple:
    v = a.get(arg)
    try:
        p = tuple(default) if v is None else tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise op.fail(arg, f"must be a list of ints, one of {[list(x) for x in allowed]}; got {v!r}") from None
    if p not in allowed:
        raise op.fail(arg, f"must be one of {[list(x) for x in allowed]}; got {list(p)}")
    return p


def _tbmm_operands(op, a: Args):
    x, w = op.tensor(a, "input"), op.tensor(a, "weight")
    for arg, t in (("input", x), ("weight", w)):
        if t.ndim != 3:
            raise op.fail(arg, f"must be 3-D; got shape {t.shape}")
        op.check_dtype(arg, t, TBMM_DTYPES)
        if t.shape[-1] > TBMM_DIM_LIMIT - 1:
            raise op.fail(arg, f"last dimension {t.shape[-1]} exceeds 65535")
        if matrix_format(op, arg, t) and arg == "input":
            raise op.fail(arg, "must be ND")
    if BF16 in (x.dtype, w.dtype) and x.dtype is not w.dtype:
        raise TypeError(f"{op.name}: argument 'weight' has dtype {w.dtype.name} and input {x.dtype.name}: "
                        "bfloat16 cannot be mixed with another dtype")
    return x, w


def _tbmm_dims(op, x, w, p1, p2) -> tuple[int, int, int, int]:
    b, m, k = (x.shape[p1.index(i)] for i in range(3))
    wb, wk, n = (w.shape[p2.index(i)] for i in range(3))
    if wb != b:
        raise op.fail("weight", f"batch {wb} must equal input's batch {b}")
    if wk != k:
        raise op.fail("weight", f"reduction dimension {wk} must equal input's K={k}")
    if not 1 <= b < TBMM_DIM_LIMIT:
        raise op.fail("input", f"batch B={b} must lie in [1, 65536)")
    if not 1 <= n < TBMM_DIM_LIMIT:
        raise op.fail("weight", f"N={n} must lie in [1, 65536)")
    if k % 16 or n % 16:      # the page's rule (multiples of 16), not a chip number
        raise op.fail("weight" if n % 16 else "input", f"K={k} and N={n} must both be multiples of 16")
    if p1 == (1, 0, 2) and not 1 <= k * b < TBMM_DIM_LIMIT:
        raise op.fail("input", f"K*B={k * b} must lie in [1, 65536) when perm_x1 is [1, 0, 2]")
    return b, m, k, n


def _tbmm_scale(op, a: Args, x, w, b: int, n: int, bsf: int) -> bool:
    scale = op.tensor(a, "scale", optional=True)
    if scale is None:
        return False
    op.check_dtype("scale", scale, [I64])
    if scale.ndim != 1 or scale.shape[0] != b * n:
        raise op.fail("scale", f"must be 1-D of length B*N={b * n}; got shape {scale.shape}")
    if not b * n < TBMM_DIM_LIMIT:
        raise op.fail("scale", f"B*N={b * n} must lie in [1, 65536)")
    if x.dtype is not F16 or w.dtype is not F16:
        raise TypeError(f"{op.name}: argument 'scale' requires float16 input and weight (fp16 -> int8)")
    if bsf != 1:
        raise op.fail("batch_split_factor", f"must be 1 when scale is given; got {bsf}")
    return True


def transpose_bmm_spec(op, a: Args, chip=None) -> TransposeBmmSpec:
    x, w = _tbmm_operands(op, a)
    p1 = _perm(op, a, "perm_x1", (0, 1, 2), PERM_X1)
    p2 = _perm(op, a, "perm_x2", (0, 1, 2), PERM_X2)
    _perm(op, a, "perm_y", (1, 0, 2), PERM_Y)
    if a.get("bias") is not None:
        raise op.fail("bias", "is not supported yet (the page says: use its default, None)")
    b, m, k, n = _tbmm_dims(op, x, w, p1, p2)
    bsf = op.int_arg(a, "batch_split_factor", lo=1) if a.get("batch_split_factor") is not None else 1
    scale = _tbmm_scale(op, a, x, w, b, n, bsf)
    if p2 == (0, 2, 1) and (scale or bsf != 1 or p1 != (1, 0, 2)):
        raise op.fail("perm_x2", "[0, 2, 1] requires perm_x1 [1, 0, 2], no scale and batch_split_factor 1")
    if bsf > b or b % bsf:
        raise op.fail("batch_split_factor", f"must lie in [1, B={b}] and divide B; got {bsf} (the kernel splits "
                                            "the batch; the page's 'N' is B)")
    if scale:
        out = TensorMeta((m, 1, b * n), I8)
    elif bsf > 1:
        out = TensorMeta((bsf, m, b * n // bsf), x.dtype)
    else:
        out = TensorMeta((m, b, n), x.dtype)
    return TransposeBmmSpec(outputs=(out,), attrs=(("batch_split_factor", a.get("batch_split_factor", 1)),),
                            x_dtype=x.dtype, w_dtype=w.dtype, perm_x1=p1, perm_x2=p2, b=b, m=m, k=k, n=n, split=bsf,
                            scale=scale, weight_nz=matrix_format(op, "weight", w))


__all__ = ["BmmSpec", "LinearSpec", "TransposeBmmSpec", "bmm_spec", "linear_spec", "transpose_bmm_spec"]
