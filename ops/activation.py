"""Activation ops: fast_gelu, npu_fast_gelu, npu_gelu, npu_silu, npu_swiglu and npu_mish.

What is modelled, per op page of the torch_npu documentation (Ascend/op-plugin 26.1.0,
``docs/en/custom_APIs/torch_npu``):

* ``(beta)torch_npu-fast_gelu`` and ``torch_npu-npu_fast_gelu``: FastGelu, x / (1 + exp(-1.702 x)).
  The page gives a second formula for Atlas training/inference products (910, 310P),
  x / (1 + exp(-1.702 |x|)) * exp(0.851 (x - |x|)); its literal ``0.851 x (x - |x|)`` exponent is read
  as a typo, because only ``0.851 (x - |x|)`` reproduces the same function (the overflow-safe
  arrangement of x * sigmoid(1.702 x)). Both products therefore give the same numbers; they differ in
  the instructions their kernels run, which the plan reflects. fast_gelu takes float16/float32;
  npu_fast_gelu adds bfloat16 on A2/A3.
* ``torch_npu-npu_gelu``: x * Phi(x), with ``approximate='none'`` (erf) or ``'tanh'``
  (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))). bfloat16 only on A2.
* ``(beta)torch_npu-npu_silu``: x * sigmoid(x); ``(beta)torch_npu-npu_mish``: x * tanh(ln(1 + e^x)).
  Both float16/float32.
* ``(beta)torch_npu-npu_swiglu``: the input is split in two halves A (first) and B (second) along
  ``dim``; the result is silu(A) * B, with ``dim`` halved. 1-8 dimensions, no empty tensors.

Numerics: 16-bit inputs are widened to float32 and every result is rounded once to the output dtype,
as the vector unit computes these in fp32. erf has no numpy ufunc: a small numba kernel evaluates it
in float64 and rounds to float32, which is the correctly rounded value the hardware's fp32 polynomial
approximates.

Timing: elementwise kernels (templates.elementwise) stream the tensor through UB; the vector steps
follow the instruction mix of each kernel (casts, vector-scalar ops, exp, div...). npu_swiglu reads
two halves per output element and uses the row template, with each row cut into pieces so that all
vector cores have work when there are few rows.
"""
from __future__ import annotations

import abc
import math
import os
import sys
from dataclasses import dataclass


def numba_cache_dir() -> str:
    """Where numba's ``cache=True`` keeps compiled kernels: a user cache directory, never the package
    (a read-only install, a shared checkout). ``NUMBA_CACHE_DIR`` when the user set it, else
    ``$XDG_CACHE_HOME/ascend-sim/numba`` (``~/.cache/ascend-sim/numba``). Set before numba is
    imported here; if numba was imported first (by the user), its config is pointed there too,
    because numba reads the directory when it writes a cache, not at import."""
    d = os.environ.get("NUMBA_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "ascend-sim", "numba")
        os.environ["NUMBA_CACHE_DIR"] = d
    if "numba" in sys.modules:
        cfg = sys.modules["numba"].config
        if not getattr(cfg, "CACHE_DIR", ""):
            cfg.CACHE_DIR = d
    return d


numba_cache_dir()

import numba  # noqa: E402  (after the cache directory is set)
import numpy as np  # noqa: E402

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .common import fp32, supports_bf16
from .templates.elementwise import ElementwiseKernel, ElementwiseKernelOp, Operand, VectorStep
from .templates.rows import RowKernel, RowKernelOp, RowOperand, RowStep

FP16_FP32 = (D.float16, D.float32)
FP16_FP32_BF16 = (D.float16, D.float32, D.bfloat16)
MAX_DIMS = 8                  # "up to 8D" on the pages that state a rank limit
FAST_GELU_ALPHA = 1.702       # FastGelu's sigmoid slope (both formulas on the npu_fast_gelu page)
GELU_TANH_C = math.sqrt(2.0 / math.pi)
GELU_TANH_CUBIC = 0.044715
FAST_GELU_ABS_FORM_PRODUCTS = ("910", "310P")   # run the |x| form of FastGelu (npu_fast_gelu page)
F32 = "float32"


def _fp16_fp32_bf16(chip) -> tuple[D.DType, ...]:
    return FP16_FP32_BF16 if supports_bf16(chip) else FP16_FP32


@numba.njit(cache=True)
def _gelu_erf_fp32(x, out):
    # erfc(-x / sqrt 2) keeps full relative accuracy where Phi(x) is tiny (x << 0); 1 + erf would cancel
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    for i in range(x.size):
        v = np.float64(x[i])
        out[i] = np.float32(0.5 * v * math.erfc(-v * inv_sqrt2))


@dataclass(frozen=True, kw_only=True)
class ActivationSpec(OpSpec):
    dtype: D.DType
    storage_numel: int          # elementwise over storage: padding holds f(0) = 0
    approximate: str = "none"   # npu_gelu
    abs_form: bool = False      # FastGelu's |x| form (Atlas training/inference products)


class _Elementwise(ElementwiseKernelOp, Op):
    """An activation y = f(x): same shape, dtype and format as its input.

    Subclasses set ``arg`` (the documented name of the input), ``max_dims`` when the page limits
    the rank, and define ``allowed(chip)``, ``fn(spec, x32)`` and ``vector_steps(spec)``.
    """

    arg = "self"
    max_dims: int | None = None

    def allowed(self, chip) -> tuple[D.DType, ...]:
        return FP16_FP32

    def infer(self, a: Args, chip) -> ActivationSpec:
        x = self.tensor(a, self.arg)
        self.check_dtype(self.arg, x, self.allowed(chip))
        if self.max_dims is not None and len(x.shape) > self.max_dims:
            raise self.fail(self.arg, f"must have at most {self.max_dims} dimensions, got {len(x.shape)}")
        return ActivationSpec(outputs=(TensorMeta(x.shape, x.dtype, x.format),), device_work=x.numel > 0,
                              dtype=x.dtype, storage_numel=math.prod(x.storage_shape), **self.options(a, chip))

    def options(self, a: Args, chip) -> dict:
        """The op's parsed non-tensor arguments, as spec fields (none by default)."""
        return {}

    @abc.abstractmethod
    def fn(self, spec: ActivationSpec, x32: np.ndarray) -> np.ndarray:
        """The activation on float32 values."""

    def compute(self, spec: ActivationSpec, a: Args):
        with np.errstate(over="ignore", under="ignore"):   # exp overflow saturates, as on the device
            y = self.fn(spec, fp32(a[self.arg].data))
        return (D.cast(y, spec.outputs[0].dtype),)

    @abc.abstractmethod
    def vector_steps(self, spec: ActivationSpec) -> tuple[list[VectorStep], float]:
        """The fp32 compute steps per element and the fp32 scratch bytes per element they need."""

    def kernel(self, spec: ActivationSpec, chip) -> ElementwiseKernel:
        item = spec.dtype.itemsize
        steps, scratch = self.vector_steps(spec)
        flops = sum(s.passes for s in steps)
        if spec.dtype is not D.float32:
            # widen to fp32 on the way in, narrow on the way out; the fp32 copy of x lives in UB too
            steps = [VectorStep("unary", F32), *steps, VectorStep("unary", F32)]
            scratch += D.float32.itemsize
        return ElementwiseKernel(spec.storage_numel, (Operand(self.arg, item),), (Operand("out0", item),),
                                 tuple(steps), scratch, flops)


def _fast_gelu_steps(abs_form: bool) -> tuple[list[VectorStep], float]:
    if abs_form:
        # x / (1 + exp(-1.702|x|)) * exp(0.851 (x - |x|)): two exponentials, no overflow for x << 0
        return ([VectorStep("unary", F32), VectorStep("unary", F32), VectorStep("exp", F32),
                 VectorStep("unary", F32), VectorStep("div", F32), VectorStep("binary", F32),
                 VectorStep("unary", F32), VectorStep("exp", F32), VectorStep("binary", F32)],
                3 * D.float32.itemsize)
    # x / (1 + exp(-1.702 x)): muls, exp, adds, div
    return ([VectorStep("unary", F32), VectorStep("exp", F32), VectorStep("unary", F32), VectorStep("div", F32)],
            D.float32.itemsize)


def _fast_gelu(x32: np.ndarray) -> np.ndarray:
    return x32 / (np.float32(1) + np.exp(np.float32(-FAST_GELU_ALPHA) * x32))


class FastGelu(_Elementwise):
    name = "fast_gelu"
    arg = "self"

    def options(self, a, chip):
        return {"abs_form": chip.family in FAST_GELU_ABS_FORM_PRODUCTS}

    def fn(self, spec, x32):
        return _fast_gelu(x32)

    def vector_steps(self, spec):
        return _fast_gelu_steps(spec.abs_form)


class NpuFastGelu(FastGelu):
    name = "npu_fast_gelu"
    arg = "input"
    max_dims = MAX_DIMS
    allowed = staticmethod(_fp16_fp32_bf16)


class NpuGelu(_Elementwise):
    name = "npu_gelu"
    arg = "input"
    max_dims = MAX_DIMS
    APPROXIMATE = ("none", "tanh")
    allowed = staticmethod(_fp16_fp32_bf16)

    def options(self, a, chip):
        mode = a.approximate
        if not isinstance(mode, str):
            raise TypeError(f"{self.name}: argument 'approximate' must be a str, got {type(mode).__name__}")
        if mode not in self.APPROXIMATE:
            raise self.fail("approximate", f"must be 'none' or 'tanh', got {mode!r}")
        return {"approximate": mode, "attrs": (("approximate", mode),)}

    def fn(self, spec, x32):
        if spec.approximate == "tanh":
            # 0.5 (1 + tanh(u)) = sigmoid(2u): the kernel's form, one exp and one div
            u2 = np.float32(2 * GELU_TANH_C) * (x32 + np.float32(GELU_TANH_CUBIC) * x32 * x32 * x32)
            return x32 / (np.float32(1) + np.exp(-u2))
        out = np.empty(x32.size, np.float32)
        _gelu_erf_fp32(x32.reshape(-1), out)
        return out.reshape(x32.shape)

    def vector_steps(self, spec):
        if spec.approximate == "tanh":
            # x^2 (mul), c1 + c2 x^2 (muls, adds), * x (mul), exp(-2u), 1 + e (adds), x / (..) (div)
            return ([VectorStep("binary", F32), VectorStep("unary", F32), VectorStep("unary", F32),
                     VectorStep("binary", F32), VectorStep("exp", F32), VectorStep("unary", F32),
                     VectorStep("div", F32)], 2 * D.float32.itemsize)
        # Ascend C's Erf (lib/math/erf.h): erf = x P(t) / Q(t), t = clip(x)^2, P and Q of degree 5 in
        # t evaluated by Horner with scalar coefficients (mul by t, then adds); then 0.5 x (1 + erf)
        clip = [VectorStep("unary", F32)] * 2                                   # maxs, mins
        square = [VectorStep("binary", F32)]                                    # t = x * x
        horner = [VectorStep("binary", F32), VectorStep("unary", F32)] * 4      # (.) * t + c
        numerator = [VectorStep("unary", F32)] * 2 + horner + [VectorStep("binary", F32)]   # muls, adds; * x
        denominator = [VectorStep("unary", F32)] + horner                       # t + c first
        wrap = [VectorStep("div", F32), VectorStep("unary", F32), VectorStep("unary", F32),
                VectorStep("binary", F32)]                                      # P/Q, +1, *0.5, *x
        return clip + square + numerator + denominator + wrap, 3 * D.float32.itemsize


class NpuSilu(_Elementwise):
    name = "npu_silu"
    arg = "self"

    def fn(self, spec, x32):
        return x32 / (np.float32(1) + np.exp(-x32))

    def vector_steps(self, spec):
        # x / (1 + exp(-x)): muls, exp, adds, div
        return ([VectorStep("unary", F32), VectorStep("exp", F32), VectorStep("unary", F32),
                 VectorStep("div", F32)], D.float32.itemsize)


class NpuMish(_Elementwise):
    name = "npu_mish"
    arg = "self"

    def fn(self, spec, x32):
        return x32 * np.tanh(np.logaddexp(np.float32(0), x32))

    def vector_steps(self, spec):
        # tanh(ln(1 + e)) = e (e + 2) / (e (e + 2) + 2) with e = exp(x) (x clipped first so e^2 stays
        # finite): mins, exp, adds, mul, adds, div, mul
        return ([VectorStep("unary", F32), VectorStep("exp", F32), VectorStep("unary", F32),
                 VectorStep("binary", F32), VectorStep("unary", F32), VectorStep("div", F32),
                 VectorStep("binary", F32)], 2 * D.float32.itemsize)


def _row_split(rows: int, half: int, itemsize: float, cores: int, burst: int) -> int:
    """How many pieces to cut each half-row into so that the vector cores share the work evenly
    (the row template gives each core ceil(rows / cores) rows). Pieces divide the half exactly and
    stay at least one burst long, so that cutting never makes the loads less efficient."""
    if rows >= cores or half <= 1:
        return 1
    best, best_work = 1, -(-rows // cores) * half
    for q in _divisors(half)[1:]:
        if half // q * itemsize < burst:
            break
        work = -(-rows * q // cores) * (half // q)      # elements of the busiest core
        if work < best_work:
            best, best_work = q, work
    return best


def _divisors(n: int) -> list[int]:
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


@dataclass(frozen=True, kw_only=True)
class SwigluSpec(OpSpec):
    dtype: D.DType
    dim: int                    # normalised: 0 <= dim < ndim
    rows: int                   # the input's elements before dim
    half: int                   # elements of each half (A, B) of a row


class NpuSwiglu(RowKernelOp, Op):
    name = "npu_swiglu"

    def infer(self, a: Args, chip) -> SwigluSpec:
        x = self.tensor(a, "input")
        self.check_dtype("input", x, FP16_FP32_BF16)
        nd = len(x.shape)
        if not 1 <= nd <= MAX_DIMS:
            raise self.fail("input", f"must have 1 to {MAX_DIMS} dimensions, got {nd}")
        if x.numel == 0:
            raise self.fail("input", f"empty tensors are not supported (shape {x.shape})")
        if F.is_fractal(x.format):
            raise self.fail("input", f"must be in ND layout, got {x.format.name}")
        d = self.int_arg(a, "dim", lo=-nd, hi=nd - 1) % nd
        if x.shape[d] % 2:
            raise self.fail("input", f"size {x.shape[d]} of dimension {d} (dim={a.dim}) must be divisible by 2")
        shape = list(x.shape)
        shape[d] //= 2
        return SwigluSpec(outputs=(TensorMeta(tuple(shape), x.dtype, x.format),), attrs=(("dim", a.dim),),
                          dtype=x.dtype, dim=d, rows=math.prod(x.shape[:d]),
                          half=x.shape[d] // 2 * math.prod(x.shape[d + 1:]))   # a row is [A | B]

    def compute(self, spec: SwigluSpec, a: Args):
        first, second = np.split(fp32(a.input.data), 2, axis=spec.dim)
        with np.errstate(over="ignore", under="ignore"):
            y = first / (np.float32(1) + np.exp(-first)) * second
        return (D.cast(y, spec.outputs[0].dtype),)

    def kernel(self, spec: SwigluSpec, chip) -> RowKernel:
        item = spec.dtype.itemsize
        pieces = _row_split(spec.rows, spec.half, item, chip.vector_cores, chip.memory.burst_bytes)
        cols = spec.half // pieces
        # silu(A) * B: muls, exp, adds, div, mul
        steps = [RowStep("unary", F32), RowStep("exp", F32), RowStep("unary", F32), RowStep("div", F32),
                 RowStep("binary", F32)]
        flops = len(steps)
        scratch = D.float32.itemsize
        if spec.dtype is not D.float32:
            steps = [RowStep("unary", F32, count=2), *steps, RowStep("unary", F32)]   # widen A, B; narrow y
            scratch += 2 * D.float32.itemsize
        # each (piece of a) row reads 2 x cols inputs and writes cols results. The template loads the
        # 2 x cols as one run; the kernel loads A's and B's parts as two runs of cols: the same bytes,
        # in runs of at least a burst (see _row_split)
        return RowKernel(spec.rows * pieces, cols, (RowOperand("input", item, "row", cols=2 * cols),),
                         (RowOperand("out0", item, "row"),), tuple(steps), temps_bytes=scratch, flops_per_elem=flops)


OPS = (FastGelu(), NpuFastGelu(), NpuGelu(), NpuSilu(), NpuSwiglu(), NpuMish())
