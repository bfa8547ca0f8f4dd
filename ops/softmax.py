"""Softmax and dropout ops: npu_scaled_masked_softmax, npu_dropout_with_add_softmax, _npu_dropout.

What is modelled, from the op-plugin pages "torch_npu.npu_scaled_masked_softmax",
"(beta) torch_npu.npu_dropout_with_add_softmax" and "(beta) torch_npu._npu_dropout" (26.1.0),
read together with the op-plugin adapters and the CANN operators they call:

* npu_scaled_masked_softmax: ``softmax((x * scale).masked_fill(mask, -10000), dim=-1)``; ``True``
  in the mask marks a position to suppress (the value -10000 is the CANN operator's, as in
  op-plugin's own reference). x is 4-D (NCHW), fp16/bf16/fp32, ND or FRACTAL_NZ; H and W in
  [32, 4096] and multiples of 32; the bool mask is 4-D with x's H and W and broadcasts to x.
  ``fixed_triu_mask=True`` makes the kernel use the upper-triangular mask ``triu(ones(H, W), 1)``
  instead of ``mask`` (the CANN migration guide's definition; the torch_npu page calls the
  argument reserved). ``mask`` must still be a valid mask then.
* npu_dropout_with_add_softmax(self, x1, alpha, prob, dim): ``y = x1 + alpha * self``,
  ``result_softmax = softmax(y, -1)``, ``result_dropout = result_softmax * keep / (1 - prob)``;
  returns ``(mask, result_softmax, result_dropout)``. The mask is what DropOutGenMaskV3 writes
  and op-plugin returns: a 1-D uint8 tensor with one 0/1 byte per element, its length rounded up
  to a multiple of 128 (the page describes it as (N, C, H, W); every shape the page allows has a
  multiple of 128 elements, so only the rank differs). Rules: 4-D, same shapes, H and W each one
  of 128/256/384/512, N*C a multiple of 32, dim == -1, 0 <= prob < 1; fp16 or fp32 (the page names
  no dtype; these are the dtypes op-plugin tests it with), both tensors of one dtype.
* _npu_dropout(self, p): ``(output, mask)`` with ``output = self * keep / (1 - p)`` and ``mask`` the
  bit-packed keep mask DropOutGenMask writes: uint8, ``ceil(numel / 128) * 16`` bytes, element i
  in bit ``i % 8`` of byte ``i // 8`` (least significant bit first, as the page's example shows:
  mask byte 98 = 0b01100010 keeps element 1 of 4). The bits past ``numel`` are drawn like the
  others. fp16/bf16/fp32 inputs (the adapter rejects non-float dtypes), 0 <= p <= 1. p = 0 keeps
  everything (output equals input); p = 1 drops everything (output zeros, mask zeros) as torch's
  dropout does.

Random numbers: the device draws its masks from a Philox stream (a generator seed and offset) that
cannot be reproduced here. Masks are instead drawn from ``numpy.random.default_rng`` seeded with a
BLAKE2b digest of the call: the op's name, its scalar arguments, and its input tensors' shapes,
dtypes and bytes. The same call gives the same mask; each element is kept with probability
exactly ``1 - p`` (a float64 uniform below ``1 - p``); kept elements are scaled by
``1 / (1 - p)``, and the returned mask reproduces the output when applied to the input.

Numerics: fp16/bf16 are widened to float32, computed there, rounded once to the output dtype.

Timing: softmax kernels are row kernels (templates/rows.py) over the last axis: max, exp, sum and
normalise per row, in three passes over a row that does not fit UB. A mask that broadcasts over
N or C is a "row" operand whose row map (templates/tables.py) points its loads at the mask rows
they read. The dropouts run two kernels, as the device
does: the mask generator (Philox draws on the vector unit), then the masked op. (The adapters
issue the generator on a secondary stream, where it may overlap earlier work; here both kernels
run in order on the current stream.)
"""
from __future__ import annotations

import abc

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .common import fp32
from .templates.elementwise import ElementwiseKernel, ElementwiseTiling, Operand, VectorStep
from .templates.rows import RowKernel, RowOperand, RowStep, RowTiling
from .templates.tables import table_row_view

F32 = "float32"
MASKED_FILL = -10000.0                 # the value ScaledMaskedSoftmax gives masked positions
SOFTMAX_SIDE_MIN, SOFTMAX_SIDE_MAX, SOFTMAX_SIDE_MULTIPLE = 32, 4096, 32
ADD_SOFTMAX_SIDES = (128, 256, 384, 512)
ADD_SOFTMAX_NC_MULTIPLE = 32
MASK_ALIGN_ELEMS = 128                 # dropout masks cover numel rounded up to this many elements
BITS_PER_BYTE = 8
SOFTMAX_PASSES = 3                     # max, sum, normalise: each streams a row that does not fit UB
# Cost of a Philox4x32-10 draw on the vector unit: each of the 10 rounds does two 32x32->64-bit
# products (lo and hi halves: 4 multiplies) and 4 xors for 4 output words: 2 ops per word.
PHILOX_ROUNDS = 10
PHILOX_OPS_PER_WORD_PER_ROUND = 2


def _is_real_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating))


def softmax_last_axis_(y: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of a float32 array, in place (attention-sized inputs make every
    temporary count), as the kernel does: minus the row max, exp, divided by the row sum."""
    y -= y.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


def call_rng(op_name: str, scalars: tuple, tensors) -> np.random.Generator:
    """A generator seeded by the call: op name, scalar arguments, tensors' shapes, dtypes, bytes."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((op_name, scalars)).encode())
    for t in tensors:
        h.update(repr((t.shape, t.dtype.name)).encode())
        h.update(np.ascontiguousarray(t.data).reshape(-1).view(np.uint8))
    return np.random.default_rng(int.from_bytes(h.digest(), "little"))


def keep_draws(rng: np.random.Generator, n: int, keep_prob: float) -> np.ndarray:
    """n Bernoulli(keep_prob) draws as a bool array (a float64 uniform below keep_prob)."""
    return rng.random(n) < keep_prob


def mask_elems(numel: int) -> int:
    """Elements a dropout mask covers: numel rounded up to MASK_ALIGN_ELEMS."""
    return -(-numel // MASK_ALIGN_ELEMS) * MASK_ALIGN_ELEMS


def philox_steps(mask_dtype: str) -> list[VectorStep]:
    """Vector work of a mask generator per element: a Philox draw, a compare with the keep
    threshold (which writes the keep bit), and for byte masks a select that writes 0/1 bytes."""
    steps = [VectorStep("binary", "int32")] * (PHILOX_ROUNDS * PHILOX_OPS_PER_WORD_PER_ROUND)
    steps.append(VectorStep("binary", F32))
    if mask_dtype == "byte":
        steps.append(VectorStep("unary", "float16"))
    return steps


def gen_mask_plan(name: str, chip, elems: int, mask_out: str, mask_itemsize: float, mask_dtype: str):
    """The mask generator kernel: ``elems`` Philox draws, compared with the keep threshold, written
    as a bit or byte mask. Its UB holds the draws as 32-bit words besides the mask itself."""
    return ElementwiseKernel(elems, (), (Operand(mask_out, mask_itemsize),), tuple(philox_steps(mask_dtype)),
                             D.int32.itemsize).plan(name, chip)


def softmax_row_steps(chip, narrow_inputs: float, prologue: list[RowStep], epilogue: list[RowStep],
                      chunked: bool) -> list[RowStep]:
    """Vector work of a softmax row tile (fp32 compute): widen ``narrow_inputs`` 16-bit inputs per
    element, ``prologue`` (scale, mask...), max (an elementwise max tree down to one repeat, then a
    reduce of that repeat per row), x - max and exp, the same for the sum, 1/sum per row, the
    product, then ``epilogue`` (dropout, narrowing).

    The row template repeats every step in each pass of a row that streams in chunks; each step
    here runs in only some passes (max in the first, the sum in the second, the product in the
    third; loading and the prologue in all three), so its count is scaled to the passes it runs in."""
    tail = chip.vector.repeat_bytes // D.float32.itemsize     # fp32 elements of one repeat
    every, once, twice = SOFTMAX_PASSES, 1, 2                  # passes a step runs in
    runs = []
    if narrow_inputs:
        runs.append((RowStep("unary", F32, "elem", narrow_inputs), every))
    runs += [(s, every) for s in prologue]
    runs += [(RowStep("binary", F32), once), (RowStep("reduce_max", F32, "row", tail), once),      # max
             (RowStep("binary", F32), twice), (RowStep("exp", F32), twice),                       # exp(x - max)
             (RowStep("binary", F32), once), (RowStep("reduce_sum", F32, "row", tail), once),     # sum
             (RowStep("div", F32, "row"), once), (RowStep("binary", F32), once)]                  # * 1/sum
    runs += [(s, once) for s in epilogue]
    if not chunked:
        return [s for s, _ in runs]
    return [replace(s, count=s.count * k / SOFTMAX_PASSES) for s, k in runs]


def fuller_tiling(chip, kernel: RowKernel) -> RowTiling:
    """The template's default tiling, with as many whole rows per tile as UB holds. (The default
    grows a tile by doubling and stops at the first size that does not fit, e.g. at 4 rows of a
    2048-wide fp16 softmax where 5 fit; a kernel fills its UB, and fewer, larger tiles are also
    fewer instructions to simulate.) UB bytes are counted as the template counts them."""
    t = kernel.default_tiling(chip)
    if t.col_chunk < kernel.cols or any(o.kind != "row" for o in kernel.inputs + kernel.outputs):
        return t
    per_core = -(-kernel.rows // chip.vector_cores)
    r = t.rows_per_tile
    while r < per_core and kernel.ub_need(replace(t, rows_per_tile=r + 1), chip) <= chip.buffers.ub:
        r += 1
    return replace(t, rows_per_tile=r, block_dim=max(1, min(chip.vector_cores, -(-kernel.rows // r))))


@dataclass(frozen=True, kw_only=True)
class SoftmaxSpec(OpSpec):
    """A softmax call over rows of ``cols``: x's dtype and shape, its parsed options, and (masked
    softmax) the mask's shape unless the fixed triangular mask replaces it."""

    dtype: D.DType
    shape: tuple[int, ...]
    mask_shape: tuple[int, ...] | None = None
    scale: float = 1.0
    alpha: float = 1.0
    prob: float = 0.0
    dim: int = -1

    @property
    def rows(self) -> int:
        return int(np.prod(self.shape[:-1]))

    @property
    def cols(self) -> int:
        return self.shape[-1]


class _Softmax(Op):
    """A softmax row kernel (the op's last kernel): three passes when a row does not fit UB, each
    step's work scaled to the passes it runs in (:func:`softmax_row_steps`)."""

    @abc.abstractmethod
    def kernel(self, spec: SoftmaxSpec, chip, chunked: bool = False) -> RowKernel:
        """The softmax row kernel of this call (``chunked``: rows cut into column chunks)."""

    def default_tiling(self, spec: SoftmaxSpec, chip) -> RowTiling:
        return fuller_tiling(chip, self.kernel(spec, chip))

    def softmax_plan(self, spec: SoftmaxSpec, chip, tiling: RowTiling):
        return self.kernel(spec, chip, tiling.col_chunk < spec.cols).plan(self.name, chip, tiling)


def softmax_temps_bytes(narrow: bool) -> float:
    """UB scratch per element: an fp32 working row, plus the fp32 copy of a 16-bit input. The row
    template keeps ``buffer_num`` copies of everything per tile; scratch is not double-buffered
    on the device, so it is passed divided by the template's two buffers."""
    fp32 = D.float32.itemsize
    return (2 if narrow else 1) * fp32 / 2


# ----------------------------------------------------------------------------------------------
# npu_scaled_masked_softmax
# ----------------------------------------------------------------------------------------------
class NpuScaledMaskedSoftmax(_Softmax):
    name = "npu_scaled_masked_softmax"

    def _format_ok(self, arg: str, t) -> None:
        if F.is_fractal(t.format) and t.format != F.Format.FRACTAL_NZ:
            raise self.fail(arg, f"format must be ND or FRACTAL_NZ, got {t.format.name}")

    def infer(self, a: Args, chip):
        x = self.tensor(a, "x")
        mask = self.tensor(a, "mask")
        self.check_dtype("x", x, (D.float16, D.float32, D.bfloat16))
        self.check_dtype("mask", mask, (D.bool_,))
        self._format_ok("x", x)
        self._format_ok("mask", mask)
        if not _is_real_number(a.scale):
            raise TypeError(f"{self.name}: argument 'scale' must be a float or int, got {type(a.scale).__name__}")
        if not isinstance(a.fixed_triu_mask, (bool, np.bool_)):
            raise TypeError(f"{self.name}: argument 'fixed_triu_mask' must be a bool, "
                            f"got {type(a.fixed_triu_mask).__name__}")
        if x.ndim != 4:
            raise self.fail("x", f"must be 4-D (N, C, H, W), got shape {x.shape}")
        for axis, n in (("H", x.shape[2]), ("W", x.shape[3])):
            if not (SOFTMAX_SIDE_MIN <= n <= SOFTMAX_SIDE_MAX and n % SOFTMAX_SIDE_MULTIPLE == 0):
                raise self.fail("x", f"{axis} = {n} must lie in [{SOFTMAX_SIDE_MIN}, {SOFTMAX_SIDE_MAX}] and be a "
                                     f"multiple of {SOFTMAX_SIDE_MULTIPLE} (shape {x.shape})")
        if mask.ndim != 4:
            raise self.fail("mask", f"must be 4-D, got shape {mask.shape}")
        if mask.shape[2:] != x.shape[2:]:
            raise self.fail("mask", f"its last two dimensions must equal x's {x.shape[2:]}, got shape {mask.shape}")
        for i in (0, 1):
            if mask.shape[i] not in (1, x.shape[i]):
                raise self.fail("mask", f"shape {mask.shape} does not broadcast to x's {x.shape} "
                                        f"(dimension {i} must be 1 or {x.shape[i]})")
        scale, triu = float(a.scale), bool(a.fixed_triu_mask)
        return SoftmaxSpec(outputs=(TensorMeta(x.shape, x.dtype, x.format),), device_work=x.numel > 0,
                           attrs=(("scale", scale), ("fixed_triu_mask", triu)), dtype=x.dtype, shape=x.shape,
                           mask_shape=None if triu else mask.shape, scale=scale)

    def compute(self, spec: SoftmaxSpec, a: Args):
        h, w = spec.shape[2:]
        masked = np.triu(np.ones((h, w), bool), 1) if spec.mask_shape is None else a.mask.data
        y = fp32(a.x.data)                                 # a copy: the input is never written
        y *= np.float32(spec.scale)
        np.copyto(y, np.float32(MASKED_FILL), where=np.broadcast_to(masked, y.shape))
        return (D.cast(softmax_last_axis_(y), spec.outputs[0].dtype),)

    def kernel(self, spec: SoftmaxSpec, chip, chunked: bool = False) -> RowKernel:
        item = spec.dtype.itemsize
        narrow = spec.dtype.bits < 32
        inputs = [RowOperand("x", item)]
        prologue = [RowStep("binary", F32)]                                  # * scale
        if spec.mask_shape is None:
            prologue.append(RowStep("binary", F32))                          # col > row: the mask
        else:
            # a mask shared along N or C is read through its row map
            view = table_row_view(spec.shape, spec.mask_shape)
            inputs.append(RowOperand("mask", D.bool_.itemsize, "row", spec.cols, view.row_map))
        prologue.append(RowStep("binary", F32))                              # select -10000
        epilogue = [RowStep("unary", F32)] if narrow else []                 # round to the output dtype
        steps = softmax_row_steps(chip, 1 if narrow else 0, prologue, epilogue, chunked)
        return RowKernel(spec.rows, spec.cols, tuple(inputs), (RowOperand("out0", item),), tuple(steps),
                         SOFTMAX_PASSES, softmax_temps_bytes(narrow), flops_per_elem=5)

    def plan(self, spec: SoftmaxSpec, chip, tiling: RowTiling):
        return self.softmax_plan(spec, chip, tiling)


# ----------------------------------------------------------------------------------------------
# npu_dropout_with_add_softmax
# ----------------------------------------------------------------------------------------------
class NpuDropoutWithAddSoftmax(_Softmax):
    name = "npu_dropout_with_add_softmax"

    def infer(self, a: Args, chip):
        x = self.tensor(a, "self")
        x1 = self.tensor(a, "x1")
        self.check_dtype("self", x, (D.float16, D.float32))
        if x1.dtype is not x.dtype:
            raise TypeError(f"{self.name}: argument 'x1' has dtype {x1.dtype.name}; it must be self's dtype "
                            f"({x.dtype.name})")
        if not _is_real_number(a.alpha):
            raise TypeError(f"{self.name}: argument 'alpha' must be a float or int, got {type(a.alpha).__name__}")
        p = a.prob
        if isinstance(p, (bool, np.bool_)) or not _is_real_number(p):
            raise TypeError(f"{self.name}: argument 'prob' must be a float, got {type(p).__name__}")
        if not 0.0 <= float(p) < 1.0:
            raise self.fail("prob", f"must satisfy 0 <= prob < 1, got {p}")
        dim = self.int_arg(a, "dim")
        if dim != -1:
            raise self.fail("dim", f"must be -1, got {dim}")
        if x.ndim != 4:
            raise self.fail("self", f"must be 4-D (N, C, H, W), got shape {x.shape}")
        if x1.shape != x.shape:
            raise self.fail("x1", f"must have self's shape {x.shape}, got {x1.shape}")
        n, c, h, w = x.shape
        for axis, v in (("H", h), ("W", w)):
            if v not in ADD_SOFTMAX_SIDES:
                raise self.fail("self", f"{axis} = {v} must be one of {', '.join(map(str, ADD_SOFTMAX_SIDES))} "
                                        f"(shape {x.shape})")
        if (n * c) % ADD_SOFTMAX_NC_MULTIPLE:
            raise self.fail("self", f"N * C = {n * c} must be a multiple of {ADD_SOFTMAX_NC_MULTIPLE} "
                                    f"(shape {x.shape})")
        alpha, prob = float(a.alpha), float(p)
        return SoftmaxSpec(outputs=(TensorMeta((mask_elems(x.numel),), D.uint8), TensorMeta(x.shape, x1.dtype, x1.format),
                                    TensorMeta(x.shape, x.dtype, x.format)), device_work=x.numel > 0,
                           attrs=(("alpha", alpha), ("prob", prob), ("dim", dim)), dtype=x.dtype, shape=x.shape,
                           alpha=alpha, prob=prob, dim=dim)

    def compute(self, spec: SoftmaxSpec, a: Args):
        x, x1, outs = a.self, a.x1, spec.outputs
        keep_prob = 1.0 - spec.prob
        rng = call_rng(self.name, (spec.alpha, spec.prob, spec.dim), (x, x1))
        keep = keep_draws(rng, outs[0].shape[0], keep_prob)
        s = softmax_last_axis_(fp32(x1.data) + np.float32(spec.alpha) * fp32(x.data))
        kept = keep[:x.numel].reshape(x.shape)
        dropped = np.where(kept, s * np.float32(1.0 / keep_prob), np.float32(0))
        return keep.astype(np.uint8), D.cast(s, outs[1].dtype), D.cast(dropped, outs[2].dtype)

    def kernel(self, spec: SoftmaxSpec, chip, chunked: bool = False) -> RowKernel:
        item, outs = spec.dtype.itemsize, spec.outputs
        narrow = spec.dtype.bits < 32
        inputs = (RowOperand("self", item), RowOperand("x1", item), RowOperand("out0", 1))
        outputs = (RowOperand("out1", outs[1].dtype.itemsize), RowOperand("out2", outs[2].dtype.itemsize))
        prologue = [RowStep("fma", F32)]                                     # x1 + alpha * self
        epilogue = [RowStep("binary", F32), RowStep("binary", F32)]          # keep select, * 1/(1-prob)
        if narrow:
            epilogue.append(RowStep("unary", F32, "elem", 2))                # round both outputs
        steps = softmax_row_steps(chip, 2 if narrow else 0, prologue, epilogue, chunked)
        return RowKernel(spec.rows, spec.cols, inputs, outputs, tuple(steps), SOFTMAX_PASSES,
                         softmax_temps_bytes(narrow), flops_per_elem=7)

    def plan(self, spec: SoftmaxSpec, chip, tiling: RowTiling):
        gen = gen_mask_plan(f"{self.name}.gen_mask", chip, spec.outputs[0].shape[0], "out0", 1, "byte")
        return [gen, self.softmax_plan(spec, chip, tiling)]


# ----------------------------------------------------------------------------------------------
# _npu_dropout
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DropoutSpec(OpSpec):
    p: float
    mask_bits: int


class NpuDropout(Op):
    name = "_npu_dropout"

    def infer(self, a: Args, chip) -> DropoutSpec:
        x = self.tensor(a, "self")
        self.check_dtype("self", x, (D.float16, D.bfloat16, D.float32))
        p = a.p
        if isinstance(p, (bool, np.bool_)) or not _is_real_number(p):
            raise TypeError(f"{self.name}: argument 'p' must be a float, got {type(p).__name__}")
        if not 0.0 <= float(p) <= 1.0:
            raise self.fail("p", f"dropout probability must satisfy 0 <= p <= 1, got {p}")
        mask_bytes = mask_elems(x.numel) // BITS_PER_BYTE
        return DropoutSpec(outputs=(TensorMeta(x.shape, x.dtype, x.format), TensorMeta((mask_bytes,), D.uint8)),
                           device_work=x.numel > 0, attrs=(("p", float(p)),), p=float(p),
                           mask_bits=mask_bytes * BITS_PER_BYTE)

    def compute(self, spec: DropoutSpec, a: Args):
        x, outs = a.self, spec.outputs
        keep_prob = 1.0 - spec.p
        rng = call_rng(self.name, (spec.p,), (x,))
        keep = keep_draws(rng, spec.mask_bits, keep_prob)
        mask = np.packbits(keep, bitorder="little")
        if keep_prob == 0.0:               # p = 1: everything dropped (no 0 * inf)
            return np.zeros(x.shape, x.dtype.np_dtype), mask
        kept = keep[:x.numel].reshape(x.shape)
        out = np.where(kept, fp32(x.data) * np.float32(1.0 / keep_prob), np.float32(0))
        return D.cast(out, outs[0].dtype), mask

    def kernel(self, spec: DropoutSpec, chip) -> ElementwiseKernel:
        """The masked op (the main kernel): keep select and scale, per element."""
        x = spec.outputs[0]
        steps = (VectorStep("binary", F32), VectorStep("binary", F32))      # keep select, * 1/(1-p)
        if x.dtype.bits < 32:
            steps = (VectorStep("unary", F32),) + steps + (VectorStep("unary", F32),)
        item = x.dtype.itemsize
        return ElementwiseKernel(x.numel, (Operand("self", item), Operand("out1", 1 / BITS_PER_BYTE)),
                                 (Operand("out0", item),), steps, flops_per_elem=1)

    def default_tiling(self, spec: DropoutSpec, chip) -> ElementwiseTiling:
        return self.kernel(spec, chip).default_tiling(chip)

    def plan(self, spec: DropoutSpec, chip, tiling: ElementwiseTiling):
        gen = gen_mask_plan(f"{self.name}.gen_mask", chip, spec.mask_bits, "out1", 1 / BITS_PER_BYTE, "bit")
        return [gen, self.kernel(spec, chip).plan(f"{self.name}.do_mask", chip, tiling)]


OPS = (NpuScaledMaskedSoftmax(), NpuDropoutWithAddSoftmax(), NpuDropout())
