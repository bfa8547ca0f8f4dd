"""Quantisation parameter and data ops: npu_trans_quant_param, npu_anti_quant and
npu_convert_weight_to_int4pack -- plus the bit-level helpers the quantised matmuls share.

Semantics follow the op-plugin pages (26.1.0) ``torch_npu-npu_trans_quant_param``,
``torch_npu-npu_anti_quant`` and ``torch_npu-npu_convert_weight_to_int4pack``:

* npu_trans_quant_param packs a float32 scale (and optional offset) into the int64 word the cube's
  FIXPIPE reads: the scale's float32 bits with the low 13 bits cleared (an "FP19": sign, 8-bit
  exponent, 10-bit mantissa) in bits 0-31, bit 46 set, and the offset rounded half to even,
  clamped to [-256, 255] and kept as a 9-bit two's-complement field in bits 37-45.
  ``round_mode=1`` (R_INT) first rounds the float32 mantissa to 10 bits, to nearest with ties to
  even, as the TransQuantParamV2 kernel does: a zero exponent flushes to a signed zero, an
  all-ones exponent (inf/NaN) is truncated, a carry out of the mantissa bumps the exponent, and an
  exponent overflow gives infinity.
* npu_anti_quant computes ``(x + offset) * scale`` in float32 and rounds once to the output type;
  an int32 ``x`` holds eight int4 values per word (element j in bits 4j..4j+3).
* npu_convert_weight_to_int4pack packs int32 words holding one int4 value each, eight per int32 in
  that same order; a FRACTAL_NZ input gives a FRACTAL_NZ output.

Timing: the three are vector (AIV) kernels. TransQuantParamV2 runs on one vector core and works
element by element on the scalar unit, so its plan is one AIV block of scalar instructions.
torch_npu actually packs int4 weights on the host (copy out, pack, copy back); the simulator has no
host<->device copy model, so the packing is timed as the device kernel CANN also provides for it
(ConvertWeightToInt4Pack: stream int32 in, packed words out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.isa import Buf, KernelPlan, Pipe, ProgramBuilder
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .common import INT4_PER_INT32, QUINT4X2_SCALAR_TYPE, as_float32, int4_values, is_310p, pack_quant_param
from .templates.elementwise import ElementwiseKernel, ElementwiseKernelOp, Operand, VectorStep
from .templates.rows import RowKernel, RowKernelOp, RowOperand, RowStep

# the packed quantisation parameter and int4 helpers live in .common (the quantised matmuls share them)
# ----- npu_trans_quant_param -----
# Instructions the TransQuantParamV2 kernel's per-element loop issues on the scalar unit (read the
# scale, mask and or the bits, write the word; R_INT adds the field extraction and rounding):
# counts of the kernel's own code, not hardware constants.
_SCALAR_OPS_PER_PARAM = {0: 4, 1: 14}
_SCALAR_OPS_PER_OFFSET = 3


def _scalar_kernel_plan(name: str, chip, n: int, loads: list[tuple[str, int, bool]], store: tuple[str, int],
                        scalar_ops: int) -> KernelPlan:
    """One AIV block working element by element on its scalar unit, in UB-sized chunks: MTE2 the
    inputs of a chunk, the scalar loop, MTE3 the results. Chunks run one after another (the kernel
    synchronises every chunk with PIPE_ALL barriers). ``loads``: (tensor, bytes per element,
    per-element?) -- a tensor that is not per-element is one value, read once."""
    b = ProgramBuilder(chip, "AIV")
    blk = chip.memory.block_bytes
    addr = 0
    for tensor, size, per_elem in loads:
        if not per_elem:
            b.load_gm(Buf.UB, addr, tensor, 0, 1, size)
            addr += blk
    fixed = addr
    per_elem_bytes = sum(size for _, size, pe in loads if pe) + store[1]
    chunk = max(1, min(n, (chip.buffers.ub - fixed) // per_elem_bytes // blk * blk))
    for lo in range(0, n, chunk):
        cnt = min(chunk, n - lo)
        addr = fixed
        for tensor, size, per_elem in loads:
            if per_elem:
                b.load_gm(Buf.UB, addr, tensor, lo * size, 1, cnt * size)
                addr += math.ceil(cnt * size / blk) * blk
        b.set_flag(Pipe.MTE2, Pipe.SCALAR, 0)
        b.wait_flag(Pipe.MTE2, Pipe.SCALAR, 0)
        b.scalar(cnt * scalar_ops)
        b.set_flag(Pipe.SCALAR, Pipe.MTE3, 0)
        b.wait_flag(Pipe.SCALAR, Pipe.MTE3, 0)
        b.store_gm(addr, store[0], lo * store[1], 1, cnt * store[1])
        b.set_flag(Pipe.MTE3, Pipe.MTE2, 0)
        b.wait_flag(Pipe.MTE3, Pipe.MTE2, 0)
    return KernelPlan(name, "AIV", [[b.build()]], tensors=tuple(t for t, _, _ in loads) + (store[0],))


def trans_quant_param_plan(name: str, chip, n: int, *, scale: str = "scale", scale_len: int | None = None,
                           offset: str | None = None, offset_len: int = 1, out: str = "out0",
                           round_mode: int = 0) -> KernelPlan:
    """The TransQuantParamV2 kernel for ``n`` output words (also used by the quantised matmuls,
    which run it before the cube kernel when given a float32 scale). A scale or offset of length 1
    is read once and broadcast."""
    scale_len = n if scale_len is None else scale_len
    loads = [(scale, 4, scale_len == n and n > 1)]
    if offset:
        loads.append((offset, 4, offset_len == n and n > 1))
    ops = _SCALAR_OPS_PER_PARAM[round_mode] + (_SCALAR_OPS_PER_OFFSET if offset else 0)
    return _scalar_kernel_plan(name, chip, n, loads, (out, 8), ops)


@dataclass(frozen=True, kw_only=True)
class TransQuantParamSpec(OpSpec):
    scale_len: int
    offset_len: int | None        # None: no offset
    round_mode: int


class NpuTransQuantParam(Op):
    name = "npu_trans_quant_param"

    def _shape(self, a: Args) -> tuple[int, ...]:
        scale = self.tensor(a, "scale")
        offset = self.tensor(a, "offset", optional=True)
        self.check_dtype("scale", scale, [D.float32])
        if scale.ndim not in (1, 2) or (scale.ndim == 2 and scale.shape[0] != 1):
            raise self.fail("scale", f"must be 1-D (t,) or 2-D (1, n); got shape {scale.shape}")
        if scale.numel == 0:
            raise self.fail("scale", "empty tensors are not supported")
        shape = scale.shape
        if offset is not None:
            self.check_dtype("offset", offset, [D.float32])
            if offset.numel == 0:
                raise self.fail("offset", "empty tensors are not supported")
            if scale.ndim == 1:
                if offset.ndim != 1:
                    raise self.fail("offset", f"must be 1-D like scale; got shape {offset.shape}")
                t, o = scale.shape[0], offset.shape[0]
                if t != 1 and o != 1 and t != o:
                    raise self.fail("offset", f"length {o} must be 1 or equal scale's length {t}")
                shape = (max(t, o),)
            elif offset.shape != scale.shape:
                raise self.fail("offset", f"shape {offset.shape} must equal scale's shape {scale.shape} when scale "
                                          "is 2-D")
        return shape

    def infer(self, a: Args, chip) -> TransQuantParamSpec:
        shape = self._shape(a)
        rm = 0 if a.get("round_mode") is None else self.int_arg(a, "round_mode", lo=0, hi=1)
        off = a.get("offset")
        return TransQuantParamSpec(outputs=(TensorMeta(shape, D.int64),), attrs=(("round_mode", rm),),
                                   scale_len=a.scale.numel, offset_len=None if off is None else off.numel,
                                   round_mode=rm)

    def compute(self, spec: TransQuantParamSpec, a: Args):
        shape = spec.outputs[0].shape
        scale = np.broadcast_to(a.scale.data.astype(np.float32), shape)
        offset = None if spec.offset_len is None else np.broadcast_to(a.offset.data.astype(np.float32), shape)
        return (pack_quant_param(scale, offset, spec.round_mode).reshape(shape),)

    def plan(self, spec: TransQuantParamSpec, chip, tiling=None):
        return trans_quant_param_plan(self.name, chip, spec.outputs[0].numel, scale_len=spec.scale_len,
                                      offset=None if spec.offset_len is None else "offset",
                                      offset_len=spec.offset_len or 1, round_mode=spec.round_mode)


# ----- npu_anti_quant -----
def _anti_quant_src(op: Op, a: Args) -> D.DType:
    """The logical source dtype: int8, or int4 when x is int32 words (src_dtype checked)."""
    x = a.x
    src = a.get("src_dtype")
    logical = D.int4 if x.dtype is D.int32 else x.dtype
    if src is None:
        return logical
    if isinstance(src, (int, np.integer)) and not isinstance(src, bool) and int(src) == QUINT4X2_SCALAR_TYPE:
        want = D.int4
    else:
        want = op.dtype_arg(a, "src_dtype")
    if want is not logical:
        rule = ("x is int32 (packed int4), so src_dtype must be int4/quint4x2" if x.dtype is D.int32
                else f"must match x's dtype {x.dtype.name}")
        raise TypeError(f"{op.name}: argument 'src_dtype' is {want.name}: {rule}")
    return want


@dataclass(frozen=True, kw_only=True)
class AntiQuantSpec(OpSpec):
    packed: bool                   # x is int32 words of eight int4 values
    scale_len: int
    scale_itemsize: float
    has_offset: bool


class NpuAntiQuant(RowKernelOp, Op):
    name = "npu_anti_quant"
    MAX_RANK = 8

    def infer(self, a: Args, chip):
        x = self.tensor(a, "x")
        scale = self.tensor(a, "scale")
        offset = self.tensor(a, "offset", optional=True)
        p310 = is_310p(chip)
        self.check_dtype("x", x, [D.int8] if p310 else [D.int8, D.int32])
        if x.ndim > self.MAX_RANK:
            raise self.fail("x", f"has {x.ndim} dimensions; at most {self.MAX_RANK} are supported")
        if x.dtype is D.int32 and x.ndim == 0:
            raise self.fail("x", "an int32 (packed int4) x must have at least one dimension")
        src = _anti_quant_src(self, a)
        self.check_dtype("scale", scale, [D.float32] if p310 else [D.float32, D.bfloat16])
        if scale.ndim != 1:
            raise self.fail("scale", f"must be 1-D (n,); got shape {scale.shape}")
        last = (x.shape[-1] if x.ndim else 1) * (INT4_PER_INT32 if src is D.int4 else 1)
        n = scale.shape[0]
        if n != 1 and n != last:
            what = "8 x the last dimension of x (int4)" if src is D.int4 else "the last dimension of x"
            raise self.fail("scale", f"length {n} must be 1 or {what} ({last})")
        if offset is not None:
            if offset.dtype is not scale.dtype:
                raise TypeError(f"{self.name}: argument 'offset' has dtype {offset.dtype.name}; it must match "
                                f"scale's dtype {scale.dtype.name}")
            if offset.shape != scale.shape:
                raise self.fail("offset", f"shape {offset.shape} must equal scale's shape {scale.shape}")
        dst = D.float16 if a.get("dst_dtype") is None else self.dtype_arg(a, "dst_dtype")
        allowed = [D.float16] if p310 else [D.float16, D.bfloat16]
        if dst not in allowed:
            raise TypeError(f"{self.name}: argument 'dst_dtype' is {dst.name}; allowed: "
                            f"{', '.join(d.name for d in allowed)}")
        shape = x.shape if src is not D.int4 else (*x.shape[:-1], last)
        out = TensorMeta(shape, dst)
        return AntiQuantSpec(outputs=(out,), device_work=out.numel > 0,
                             attrs=(("dst_dtype", str(a.get("dst_dtype") or "float16")),), packed=x.dtype is D.int32,
                             scale_len=n, scale_itemsize=scale.dtype.itemsize, has_offset=offset is not None)

    def compute(self, spec: AntiQuantSpec, a: Args):
        x = a.x
        vals = int4_values(x.data) if spec.packed else x.data
        v = vals.astype(np.float32)
        if spec.has_offset:
            v = v + as_float32(a.offset)
        v = v * as_float32(a.scale)
        return (D.cast(v, spec.outputs[0].dtype),)

    def kernel(self, spec: AntiQuantSpec, chip) -> RowKernel:
        out = spec.outputs[0]
        cols = out.shape[-1] if out.shape else 1
        src_item = D.int4.itemsize if spec.packed else D.int8.itemsize
        n = spec.scale_len
        inputs = [RowOperand("x", src_item), RowOperand("scale", spec.scale_itemsize, "shared", cols=n)]
        steps = [RowStep("unary", "float32")]                       # widen the integers to fp32
        if spec.has_offset:
            inputs.append(RowOperand("offset", spec.scale_itemsize, "shared", cols=n))
            steps.append(RowStep("binary", "float32"))              # + offset
        steps += [RowStep("binary", "float32"), RowStep("unary", "float32")]   # * scale, round to dst
        return RowKernel(out.numel // cols, cols, tuple(inputs), (RowOperand("out0", out.dtype.itemsize),),
                         tuple(steps), temps_bytes=D.float32.itemsize)


# ----- npu_convert_weight_to_int4pack -----
class NpuConvertWeightToInt4pack(ElementwiseKernelOp, Op):
    name = "npu_convert_weight_to_int4pack"

    def infer(self, a: Args, chip):
        w = self.tensor(a, "weight")
        self.check_dtype("weight", w, [D.int32])
        if w.ndim != 2:
            raise self.fail("weight", f"must be 2-D (k, n) or (n, k); got shape {w.shape}")
        if min(w.shape) <= 0:
            raise self.fail("weight", f"every dimension must be positive; got {w.shape}")
        if w.shape[-1] % INT4_PER_INT32:
            raise self.fail("weight", f"the last dimension ({w.shape[-1]}) must be a multiple of {INT4_PER_INT32}")
        if w.format not in (F.Format.ND, F.Format.FRACTAL_NZ):
            raise self.fail("weight", f"format must be ND or FRACTAL_NZ; got {w.format.name}")
        self.int_arg(a, "inner_k_tiles")                            # reserved, unused by the op
        if w.data is not None and w.data.size and (w.data.min() < -8 or w.data.max() > 7):
            raise self.fail("weight", "every value must lie in the int4 range [-8, 7]")
        return OpSpec(outputs=(TensorMeta((w.shape[0], w.shape[1] // INT4_PER_INT32), D.int32, w.format),))

    def compute(self, spec: OpSpec, a: Args):
        return (D.pack_int4(a.weight.data),)

    def kernel(self, spec: OpSpec, chip) -> ElementwiseKernel:
        word = D.int32.itemsize
        # per value: shift it to its nibble and or it into the word (two integer vector passes)
        return ElementwiseKernel(spec.outputs[0].numel * INT4_PER_INT32, (Operand("weight", word),),
                                 (Operand("out0", word / INT4_PER_INT32),),
                                 (VectorStep("unary", "int32"), VectorStep("binary", "int32")))


OPS = (NpuTransQuantParam(), NpuAntiQuant(), NpuConvertWeightToInt4pack())
