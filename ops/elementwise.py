"""Plain elementwise arithmetic (aten.add, aten.mul): the glue around torch_npu ops in a model.

Not torch_npu custom operators -- these are torch's own ``add``/``mul`` as they run on the NPU
(an AIV elementwise kernel), exposed as ``ascend_sim.aten.add`` / ``ascend_sim.aten.mul`` so that
workloads time their residual adds instead of skipping them. Same dtype on both sides (no type
promotion); shapes broadcast as numpy broadcasts; fp16/bf16 computed in fp32 and rounded once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .templates.elementwise import ElementwiseKernel, ElementwiseKernelOp, Operand, VectorStep

_FLOATS = (D.float16, D.bfloat16, D.float32)
_ALLOWED = _FLOATS + (D.int32, D.int64, D.int16, D.int8, D.uint8)


@dataclass(frozen=True, kw_only=True)
class BinarySpec(OpSpec):
    numel: int
    itemsize: float
    work: str            # dtype the vector computes in
    widen: bool          # fp16/bf16: cast in, compute in fp32, cast out
    alpha: float = 1.0


class _Binary(ElementwiseKernelOp, Op):
    ufunc = None

    def infer(self, a: Args, chip) -> BinarySpec:
        x, y = self.tensor(a, "self"), self.tensor(a, "other")
        self.check_dtype("self", x, _ALLOWED)
        if y.dtype is not x.dtype:
            raise TypeError(f"{self.name}: 'self' ({x.dtype.name}) and 'other' ({y.dtype.name}) must have the same dtype")
        for arg, t in (("self", x), ("other", y)):
            if t.format not in (F.Format.ND, F.Format.NCHW, F.Format.NCDHW):
                raise self.fail(arg, f"must be in a base format (ND/NCHW/NCDHW), got {t.format.name}")
        try:
            shape = tuple(np.broadcast_shapes(x.shape, y.shape))
        except ValueError:
            raise self.fail("other", f"shape {y.shape} does not broadcast with {x.shape}") from None
        widen = x.dtype in (D.float16, D.bfloat16)
        return BinarySpec(outputs=(TensorMeta(shape, x.dtype),), numel=math.prod(shape), itemsize=x.dtype.itemsize,
                          work="float32" if widen else x.dtype.name, widen=widen, alpha=a.get("alpha", 1))

    def compute(self, spec: BinarySpec, a: Args):
        x, y = a.self.data, a.other.data
        if a.self.dtype.is_float:
            r = self.ufunc(x.astype(np.float32), y.astype(np.float32) * np.float32(spec.alpha))
            return (D.cast(r, spec.outputs[0].dtype),)
        return (self.ufunc(x, y * spec.alpha).astype(spec.outputs[0].dtype.np_dtype),)

    def kernel(self, spec: BinarySpec, chip) -> ElementwiseKernel:
        # a broadcast operand is re-read per tile of the output: charge it at the output's size
        ins = (Operand("self", spec.itemsize), Operand("other", spec.itemsize))
        steps = (VectorStep("binary", spec.work),)
        if spec.widen:
            steps = (VectorStep("unary", spec.work),) * 2 + steps + (VectorStep("unary", spec.work),)
        return ElementwiseKernel(spec.numel, ins, (Operand("out0", spec.itemsize),), steps, flops_per_elem=1.0)


class Add(_Binary):
    name = "aten.add"
    ufunc = staticmethod(np.add)


class Mul(_Binary):
    name = "aten.mul"
    ufunc = staticmethod(np.multiply)


OPS = (Add(), Mul())
