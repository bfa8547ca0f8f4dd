"""Memory, format and dtype ops: npu_format_cast (TransData), npu_format_cast_, copy_memory_,
npu_dtype_cast (Cast) and one_ (Fill).

Semantics follow torch_npu (FormatCastKernelNpu, CopyMemoryKernel, CastKernelNpuOpApi):

* npu_format_cast returns the input itself when it already has the target format, relabels it in
  place when both formats are base formats (ND, NCHW, NHWC, NCDHW: no data moves), and otherwise
  makes a new tensor in the target format (a TransData kernel moves and pads the data).
* npu_format_cast_(input, src) gives ``input`` the format of ``src`` (a tensor or a format id), as
  the documentation says, keeping its numbers.
* copy_memory_(self, src) copies raw storage bytes: same dtype, same device, no shape or format
  check; ``self`` takes as many leading storage elements of ``src`` as its own storage (or numel)
  holds. A ``src`` with fewer elements than that is an error here (the device would read past it).
* npu_dtype_cast rounds to nearest even for float targets and truncates toward zero for integer
  targets; ``input_dtype=torch_npu.int4`` reads an int32 tensor as packed int4 (8 per word).
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
from .templates.transdata import TransDataTiling, transdata_plan
from .templates.transdata import default_tiling as transdata_tiling

BASE_FORMATS = (F.Format.ND, F.Format.NCHW, F.Format.NHWC, F.Format.NCDHW)


def _bases_compatible(src: F.Format, dst: F.Format) -> bool:
    return src in BASE_FORMATS and dst in BASE_FORMATS


@dataclass(frozen=True, kw_only=True)
class FormatCastSpec(OpSpec):
    src: TensorMeta
    dst_name: str          # the plan's name of the tensor written ("input" for the in-place op)


class NpuFormatCast(Op):
    name = "npu_format_cast"
    inplace_op = False

    def target(self, a: Args) -> F.Format:
        return F.get_format(a.acl_format, what=f"{self.name}: argument 'acl_format'")

    def infer(self, a: Args, chip) -> FormatCastSpec:
        x = self.tensor(a, "input")
        fmt = self.target(a)
        F.check_shape(fmt, x.shape, what=f"{self.name}: argument 'input' for acl_format {fmt.name}")
        cd = a.get("customize_dtype")
        if cd is not None and self.dtype_arg(a, "customize_dtype") is not x.dtype:
            raise self.fail("customize_dtype", f"must be None or the input's own dtype ({x.dtype.name}); "
                            "a different storage dtype is not supported by this simulator's chips")
        idt = a.get("input_dtype")
        if idt is not None and self.dtype_arg(a, "input_dtype") is not x.dtype:
            raise self.fail("input_dtype", f"must be None or the input's dtype ({x.dtype.name})")
        # the same format returns the input; base -> base relabels it in place; else a TransData kernel
        transdata = fmt != x.format and not _bases_compatible(x.format, fmt)
        return FormatCastSpec(outputs=(TensorMeta(x.shape, x.dtype, fmt),),
                              inplace=("input",) if self.inplace_op or not transdata else (),
                              device_work=transdata, attrs=(("src_format", x.format.name), ("dst_format", fmt.name)),
                              src=x.meta, dst_name="input" if self.inplace_op else "out0")

    def compute(self, spec: FormatCastSpec, a: Args):
        return (a.input.data.copy(),)

    def default_tiling(self, spec: FormatCastSpec, chip) -> TransDataTiling:
        return transdata_tiling(spec.src, spec.outputs[0], chip)

    def plan(self, spec: FormatCastSpec, chip, tiling: TransDataTiling):
        return transdata_plan(spec.src, spec.outputs[0], chip, name=self.name, src_name="input",
                              dst_name=spec.dst_name, tiling=tiling)


class NpuFormatCastInplace(NpuFormatCast):
    name = "npu_format_cast_"
    inplace_op = True

    def target(self, a: Args) -> F.Format:
        src = a.src
        if hasattr(src, "format") and hasattr(src, "shape"):
            return src.format
        return F.get_format(src, what=f"{self.name}: argument 'src'")


@dataclass(frozen=True, kw_only=True)
class StreamSpec(OpSpec):
    """An elementwise stream over storage: ``n`` elements, read as ``src_dtype``."""

    n: int
    src_dtype: D.DType


class CopyMemory(ElementwiseKernelOp, Op):
    name = "copy_memory_"

    def infer(self, a: Args, chip) -> StreamSpec:
        dst = self.tensor(a, "self")
        src = self.tensor(a, "src")
        if src.dtype is not dst.dtype:
            raise TypeError(f"{self.name}: 'self' ({dst.dtype.name}) and 'src' ({src.dtype.name}) must have "
                            "the same dtype")
        if src.device is not None and dst.device is not None and src.device is not dst.device:
            raise self.fail("src", f"must be on the same device as self (npu:{dst.device.index}), "
                                   f"got npu:{src.device.index}")
        dst_storage = math.prod(dst.storage_shape)
        n = dst_storage if F.is_fractal(dst.format) else min(dst.numel, dst_storage)
        avail = math.prod(src.storage_shape)
        if avail < n:
            raise self.fail("src", f"holds {avail} storage elements, fewer than the {n} that 'self' copies "
                                   "(copy_memory_ copies raw storage, without shape checks)")
        return StreamSpec(outputs=(dst.meta,), inplace=("self",), n=n, src_dtype=src.dtype)

    def compute(self, spec: StreamSpec, a: Args):
        dst, src = a.self, a.src
        src_flat = F.to_storage(src.data, src.format, src.dtype).reshape(-1)
        dst_flat = F.to_storage(dst.data, dst.format, dst.dtype).reshape(-1)
        dst_flat[:spec.n] = src_flat[:spec.n]
        storage = dst_flat.reshape(dst.storage_shape)
        return (F.from_storage(storage, dst.format, dst.shape, dst.dtype),)

    def kernel(self, spec: StreamSpec, chip) -> ElementwiseKernel:
        item = spec.src_dtype.itemsize
        return ElementwiseKernel(spec.n, (Operand("src", item),), (Operand("self", item),))


class NpuDtypeCast(ElementwiseKernelOp, Op):
    name = "npu_dtype_cast"

    def source(self, a: Args) -> tuple[D.DType, tuple[int, ...]]:
        """The dtype and logical shape the input holds (an int32 tensor may hold packed int4)."""
        x = a.input
        if a.get("input_dtype") is None:
            return x.dtype, x.shape
        idt = self.dtype_arg(a, "input_dtype")
        if idt is x.dtype:
            return idt, x.shape
        if idt is D.int4 and x.dtype is D.int32:
            if not x.shape:
                raise self.fail("input", "a packed int4 input must have at least one dimension")
            return D.int4, (*x.shape[:-1], x.shape[-1] * 8)
        raise self.fail("input_dtype", f"{idt.name} cannot be read from a {x.dtype.name} tensor "
                                       "(only int32 words holding packed int4 are reinterpreted)")

    def infer(self, a: Args, chip) -> StreamSpec:
        x = self.tensor(a, "input")
        dst = self.dtype_arg(a, "dtype")
        src_dtype, shape = self.source(a)
        # Cast keeps the storage format; a reinterpreted (packed) input comes out in ND.
        out = TensorMeta(shape, dst, x.format if src_dtype is x.dtype else F.Format.ND)
        return StreamSpec(outputs=(out,), attrs=(("dst_dtype", dst.name),), n=math.prod(out.storage_shape),
                          src_dtype=src_dtype)

    def compute(self, spec: StreamSpec, a: Args):
        x = a.input
        data = D.unpack_int4(x.data) if spec.src_dtype is D.int4 and x.dtype is D.int32 else x.data
        return (D.cast(data, spec.outputs[0].dtype),)

    def kernel(self, spec: StreamSpec, chip) -> ElementwiseKernel:
        dst = spec.outputs[0].dtype
        wide = spec.src_dtype if spec.src_dtype.bits >= dst.bits else dst
        return ElementwiseKernel(spec.n, (Operand("input", spec.src_dtype.itemsize),), (Operand("out0", dst.itemsize),),
                                 (VectorStep("unary", wide.name),))


class One(ElementwiseKernelOp, Op):
    name = "one_"

    def infer(self, a: Args, chip) -> StreamSpec:
        x = self.tensor(a, "self")
        return StreamSpec(outputs=(x.meta,), inplace=("self",), n=math.prod(x.storage_shape), src_dtype=x.dtype)

    def compute(self, spec: StreamSpec, a: Args):
        return (np.ones(a.self.shape, dtype=a.self.dtype.np_dtype),)

    def kernel(self, spec: StreamSpec, chip) -> ElementwiseKernel:
        d = spec.src_dtype
        return ElementwiseKernel(spec.n, (), (Operand("self", d.itemsize),), (VectorStep("unary", d.name),))


OPS = (NpuFormatCast(), NpuFormatCastInplace(), CopyMemory(), NpuDtypeCast(), One())
