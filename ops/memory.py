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

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from .base import Args, LegacyOp as Op
from .templates.elementwise import Operand, VectorStep, elementwise_plan
from .templates.transdata import transdata_plan

BASE_FORMATS = (F.Format.ND, F.Format.NCHW, F.Format.NHWC, F.Format.NCDHW)


def _bases_compatible(src: F.Format, dst: F.Format) -> bool:
    return src in BASE_FORMATS and dst in BASE_FORMATS


class NpuFormatCast(Op):
    name = "npu_format_cast"

    def target(self, a: Args) -> F.Format:
        return F.get_format(a.acl_format, what=f"{self.name}: argument 'acl_format'")

    def check(self, a: Args) -> F.Format:
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
        return fmt

    def mode(self, a: Args) -> str:
        """'same' (returns the input), 'relabel' (base -> base, in place), or 'transdata'."""
        x, fmt = a.input, self.target(a)
        if fmt == x.format:
            return "same"
        if _bases_compatible(x.format, fmt):
            return "relabel"
        return "transdata"

    def infer(self, a: Args, chip):
        fmt = self.check(a)
        x = a.input
        return (TensorMeta(x.shape, x.dtype, fmt),)

    def inplace_target(self, a: Args) -> str | None:
        return "input" if self.inplace or self.mode(a) != "transdata" else None

    def plan(self, a: Args, outs, chip):
        dst = "input" if self.inplace else "out0"
        return transdata_plan(a.input.meta, outs[0], chip, name=self.name, src_name="input", dst_name=dst)

    def device_work(self, a: Args) -> bool:
        return self.mode(a) == "transdata"

    def compute(self, a: Args, outs):
        return (a.input.data.copy(),)

    def attrs(self, a: Args) -> dict:
        return {"src_format": a.input.format.name, "dst_format": self.target(a).name}


class NpuFormatCastInplace(NpuFormatCast):
    name = "npu_format_cast_"
    inplace = "input"

    def target(self, a: Args) -> F.Format:
        src = a.src
        if hasattr(src, "format") and hasattr(src, "shape"):
            return src.format
        return F.get_format(src, what=f"{self.name}: argument 'src'")


class CopyMemory(Op):
    name = "copy_memory_"
    inplace = "self"

    def counts(self, a: Args) -> tuple[int, int]:
        dst, src = a.self, a.src
        dst_storage = math.prod(dst.storage_shape)
        n = dst_storage if F.is_fractal(dst.format) else min(dst.numel, dst_storage)
        return n, math.prod(src.storage_shape)

    def infer(self, a: Args, chip):
        dst = self.tensor(a, "self")
        src = self.tensor(a, "src")
        if src.dtype is not dst.dtype:
            raise TypeError(f"{self.name}: 'self' ({dst.dtype.name}) and 'src' ({src.dtype.name}) must have "
                            "the same dtype")
        if src.device is not None and dst.device is not None and src.device is not dst.device:
            raise self.fail("src", f"must be on the same device as self (npu:{dst.device.index}), "
                                   f"got npu:{src.device.index}")
        n, avail = self.counts(a)
        if avail < n:
            raise self.fail("src", f"holds {avail} storage elements, fewer than the {n} that 'self' copies "
                                   "(copy_memory_ copies raw storage, without shape checks)")
        return (dst.meta,)

    def compute(self, a: Args, outs):
        dst, src = a.self, a.src
        n, _ = self.counts(a)
        src_flat = F.to_storage(src.data, src.format, src.dtype).reshape(-1)
        dst_flat = F.to_storage(dst.data, dst.format, dst.dtype).reshape(-1)
        dst_flat[:n] = src_flat[:n]
        storage = dst_flat.reshape(dst.storage_shape)
        return (F.from_storage(storage, dst.format, dst.shape, dst.dtype),)

    def plan(self, a: Args, outs, chip):
        n, _ = self.counts(a)
        item = a.self.dtype.itemsize
        return elementwise_plan(self.name, chip, n, [Operand("src", item)], [Operand("self", item)], [])


class NpuDtypeCast(Op):
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

    def infer(self, a: Args, chip):
        x = self.tensor(a, "input")
        dst = self.dtype_arg(a, "dtype")
        src_dtype, shape = self.source(a)
        # Cast keeps the storage format; a reinterpreted (packed) input comes out in ND.
        fmt = x.format if src_dtype is x.dtype else F.Format.ND
        return (TensorMeta(shape, dst, fmt),)

    def compute(self, a: Args, outs):
        x = a.input
        src_dtype, _ = self.source(a)
        data = D.unpack_int4(x.data) if src_dtype is D.int4 and x.dtype is D.int32 else x.data
        return (D.cast(data, outs[0].dtype),)

    def plan(self, a: Args, outs, chip):
        src_dtype, _ = self.source(a)
        n = math.prod(outs[0].storage_shape)
        wide = src_dtype if src_dtype.bits >= outs[0].dtype.bits else outs[0].dtype
        return elementwise_plan(self.name, chip, n, [Operand("input", src_dtype.itemsize)],
                                [Operand("out0", outs[0].dtype.itemsize)], [VectorStep("unary", wide.name)])

    def attrs(self, a: Args) -> dict:
        return {"dst_dtype": self.dtype_arg(a, "dtype").name}


class One(Op):
    name = "one_"
    inplace = "self"

    def infer(self, a: Args, chip):
        x = self.tensor(a, "self")
        return (x.meta,)

    def compute(self, a: Args, outs):
        return (np.ones(a.self.shape, dtype=a.self.dtype.np_dtype),)

    def plan(self, a: Args, outs, chip):
        t = a.self
        return elementwise_plan(self.name, chip, math.prod(t.storage_shape), [], [Operand("self", t.dtype.itemsize)],
                                [VectorStep("unary", t.dtype.name)])


OPS = (NpuFormatCast(), NpuFormatCastInplace(), CopyMemory(), NpuDtypeCast(), One())
