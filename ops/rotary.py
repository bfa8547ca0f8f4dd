"""Position ops (rotary position embedding): npu_rotary_mul and npu_interleave_rope.

What is modelled, from the op-plugin pages "torch_npu.npu_rotary_mul" and
"torch_npu.npu_interleave_rope" (26.1.0) and the op-plugin adapters behind them:

* npu_rotary_mul: ``out = x * r1 + rotate(x) * r2`` where ``rotate`` is, by ``rotary_mode``,
  "half" (``concat(-x2, x1)`` of the two halves of the last axis) or "interleave" (each even/odd
  pair (a, b) becomes (-b, a)); a ``rotate`` matrix, when given, replaces both: ``rotate(x) =
  x @ rotate``. The adapter casts r1/r2 to the input's dtype when their dtypes differ, so we do
  too. Constraints (A2/A3, the page's jit_compile=False kernel): 3-D (TND) or 4-D (BNSD, BSND,
  SBND) input, ``D`` even and below 896, r1/r2 in one of the layouts the page lists for the mode
  (half: 11SD/B1SD/BNSD, 1S1D/BS1D/BSND, S11D/SB1D/SBND, T1D/TND; interleave: 11SD, 1S1D, S11D,
  T1D), B and N below 1000 (half) or B*N below 1000 (interleave). The layout is not an argument:
  it is whatever layout the shapes of x and r1 fit; a rule about B and N holds when some layout
  that fits satisfies it. On the Atlas training/inference products (910, 310P) the adapter runs
  the older kernel (the page's jit_compile=True scenario): half mode only, 4-D input, D = 128,
  B and N at most 1000, at most 1024 elements across the broadcast axes, and no ``rotate``.
  Not checked: the [-1, 1] data range of r1/r2 (a precondition on values, not a rule the device
  enforces) and the B*N <= 1024 rule that applies only when cos/sin gradients are wanted.
* npu_interleave_rope: x (B, N, S, D) fp16/bf16 with D = 64; cos/sin (B, 1, S or 1, 64), same
  dtype and format as x. The pairs of the last axis are first de-interleaved (evens, then odds),
  then rotated as in "half" mode; the result stays in the de-interleaved order.

Numerics: fp16/bf16 are widened to float32, computed there, and rounded once to the input dtype.

Timing: a row kernel (templates/rows.py). x is viewed as rows x cols with its last axis inside
each row; the cos/sin tables are "shared" operands when they are the same for every row, and
otherwise "row" operands of D elements per row. The row template addresses a "row" operand as
if it had one row per x row; when cos/sin broadcast over an axis inside the rows' range (e.g.
1S1D tables for a BSND input with B > 1), the operand's row map (templates/tables.py) points
each load at the table row it really reads. With a ``rotate`` matrix, a cube matmul kernel first writes ``x @ rotate``
into the output buffer (used as scratch), and the row kernel reads it back. r1/r2 of another
dtype than the input cost a Cast kernel each before the rope kernel, as the adapter runs them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .common import fp32
from .templates.elementwise import ElementwiseKernel, VectorStep
from .templates.elementwise import Operand as EOperand
from .templates.matmul import MatmulProblem
from .templates.matmul import Operand as MatmulOperand
from .templates.matmul import matmul_plan
from .templates.rows import RowKernel, RowKernelOp, RowOperand, RowStep
from .templates.tables import TableView, table_row_view

HALF, INTERLEAVE = "half", "interleave"
ROTARY_MODES = (HALF, INTERLEAVE)
FLOAT_DTYPES = (D.float16, D.bfloat16, D.float32)

# npu_rotary_mul, jit_compile=False kernel (Atlas A2/A3): x layouts and the r1/r2 layouts each allows.
R_LAYOUTS = {
    HALF: {"BNSD": ("11SD", "B1SD", "BNSD"), "BSND": ("1S1D", "BS1D", "BSND"),
           "SBND": ("S11D", "SB1D", "SBND"), "TND": ("T1D", "TND")},
    INTERLEAVE: {"BNSD": ("11SD",), "BSND": ("1S1D",), "SBND": ("S11D",), "TND": ("T1D",)},
}
HEAD_DIM_LIMIT = 896          # D < 896
BN_LIMIT = 1000               # half: B < 1000 and N < 1000; interleave: B * N < 1000
# jit_compile=True kernel (Atlas training / inference products)
LEGACY_FAMILIES = ("910", "310P")
LEGACY_HEAD_DIM = 128
LEGACY_BN_MAX = 1000          # B <= 1000 and N <= 1000
LEGACY_BROADCAST_MAX = 1024   # elements across the broadcast axes

INTERLEAVE_ROPE_HEAD_DIM = 64


# ----------------------------------------------------------------------------------------------
# Shared pieces of both ops
# ----------------------------------------------------------------------------------------------
def rotate_half(x: np.ndarray) -> np.ndarray:
    """concat(-x2, x1) of the two halves of the last axis."""
    h = x.shape[-1] // 2
    return np.concatenate((-x[..., h:], x[..., :h]), axis=-1)


def rotate_interleaved(x: np.ndarray) -> np.ndarray:
    """Each (even, odd) pair (a, b) of the last axis becomes (-b, a)."""
    out = np.empty_like(x)
    out[..., 0::2] = -x[..., 1::2]
    out[..., 1::2] = x[..., 0::2]
    return out


def _out_format(x) -> F.Format:
    return F.Format.ND if F.is_fractal(x.format) else x.format


def rope_row_steps(x_dtype: D.DType, view: TableView, rotation: str | None) -> list[RowStep]:
    """Vector work per row tile: widen 16-bit inputs to fp32, rotate, x*cos + rot*sin, narrow.
    ``rotation``: "half" (negate and swap halves), "gather" (pair swap / de-interleave, an index
    gather), None (rotated input already computed by the cube)."""
    steps = []
    narrow = x_dtype.bits < 32
    table_per_elem = view.table_cols / view.cols if view.kind == "row" else 0.0
    if narrow:
        # casts of x and of this row's cos and sin pieces (shared tables are cast once per block)
        steps.append(RowStep("unary", "float32", "elem", 1 + 2 * table_per_elem))
    if rotation == "half":
        steps.append(RowStep("unary", "float32"))            # -x2 and x1 moved into place
    elif rotation == "gather":
        steps.append(RowStep("gather", "float32"))
    steps += [RowStep("binary", "float32"), RowStep("binary", "float32"), RowStep("binary", "float32")]
    if narrow:
        steps.append(RowStep("unary", "float32"))            # round to the output dtype
    return steps


def rope_temps_bytes(x_dtype: D.DType) -> float:
    """UB scratch per element: fp32 copies of x (16-bit inputs only), of rotate(x) and of the
    sum. The row template keeps ``buffer_num`` copies of everything per tile; scratch is not
    double-buffered on the device, so it is passed divided by the template's two buffers."""
    fp32 = D.float32.itemsize
    working = (3 if x_dtype.bits < 32 else 2) * fp32
    return working / 2


@dataclass(frozen=True, kw_only=True)
class RopeSpec(OpSpec):
    """A rope call: x's and the tables' shapes, their dtypes, how x is rotated."""

    dtype: D.DType
    x_shape: tuple[int, ...]
    table_shape: tuple[int, ...]
    table_dtypes: tuple[D.DType, D.DType] = ()
    mode: str = HALF
    rotate_dtype: D.DType | None = None      # npu_rotary_mul's rotate matrix, when given

    def view(self, chip) -> TableView:
        return table_row_view(self.x_shape, self.table_shape, shared_min_rows=chip.vector_cores)


class _Rope(RowKernelOp, Op):
    """A rope op's row kernel over x and its two tables (the last of its kernels)."""

    tables: tuple[str, str]
    x_arg: str

    def kernel(self, spec: RopeSpec, chip) -> RowKernel:
        view = spec.view(chip)
        dt = spec.dtype
        inputs, steps, temps = self.rope_inputs(spec)
        inputs += [view.operand(name, dt.itemsize) for name in self.tables]
        return RowKernel(view.rows, view.cols, tuple(inputs), (RowOperand("out0", dt.itemsize),),
                         tuple(steps + rope_row_steps(dt, view, self.rotation(spec))), temps_bytes=temps,
                         flops_per_elem=3)

    def rope_inputs(self, spec: RopeSpec) -> tuple[list[RowOperand], list[RowStep], float]:
        """x's operands, the vector steps before the rope's, and the UB scratch per element."""
        return [RowOperand(self.x_arg, spec.dtype.itemsize)], [], rope_temps_bytes(spec.dtype)

    def rotation(self, spec: RopeSpec) -> str | None:
        return "half" if spec.mode == HALF else "gather"


# ----------------------------------------------------------------------------------------------
# npu_rotary_mul
# ----------------------------------------------------------------------------------------------
class NpuRotaryMul(_Rope):
    name = "npu_rotary_mul"

    def mode(self, a: Args) -> str:
        m = a.rotary_mode
        if not isinstance(m, str) or m not in ROTARY_MODES:
            raise self.fail("rotary_mode", f"must be one of {', '.join(repr(v) for v in ROTARY_MODES)}, got {m!r}")
        return m

    def infer(self, a: Args, chip):
        x = self.tensor(a, "input")
        r1 = self.tensor(a, "r1")
        r2 = self.tensor(a, "r2")
        for arg, t in (("input", x), ("r1", r1), ("r2", r2)):
            self.check_dtype(arg, t, FLOAT_DTYPES)
        mode = self.mode(a)
        if x.ndim not in (3, 4):
            raise self.fail("input", f"must have 3 (TND) or 4 (BNSD, BSND, SBND) dimensions, got shape {x.shape}")
        if r1.ndim != x.ndim:
            raise self.fail("r1", f"must have as many dimensions as input ({x.ndim}), got shape {r1.shape}")
        if r2.shape != r1.shape:
            raise self.fail("r2", f"must have the shape of r1 {r1.shape}, got {r2.shape}")
        d = x.shape[-1]
        if d % 2:
            raise self.fail("input", f"the last dimension D must be even, got {d}")
        if r1.shape[-1] != d:
            raise self.fail("r1", f"its last dimension must equal input's D = {d}, got shape {r1.shape}")
        for i, (n, t) in enumerate(zip(x.shape[:-1], r1.shape[:-1])):
            if t not in (1, n):
                raise self.fail("r1", f"dimension {i} must be 1 or input's {n}, got shape {r1.shape}")
        rotate = self.tensor(a, "rotate", optional=True)
        if chip.family in LEGACY_FAMILIES:
            self._check_legacy(x.shape, r1.shape, mode, rotate, chip)
        else:
            self._check_layouts(x.shape, r1.shape, mode)
        if rotate is not None:
            self.check_dtype("rotate", rotate, FLOAT_DTYPES)
            if rotate.shape != (d, d):
                raise self.fail("rotate", f"must be a 2-D ({d}, {d}) matrix (D x D for input's D = {d}), "
                                          f"got shape {rotate.shape}")
        return RopeSpec(outputs=(TensorMeta(x.shape, x.dtype, _out_format(x)),), device_work=x.numel > 0,
                        attrs=(("rotary_mode", mode), ("rotate", rotate is not None)), dtype=x.dtype,
                        x_shape=x.shape, table_shape=r1.shape, table_dtypes=(r1.dtype, r2.dtype), mode=mode,
                        rotate_dtype=None if rotate is None else rotate.dtype)

    def _check_layouts(self, xs, rs, mode: str) -> None:
        d = xs[-1]
        if d >= HEAD_DIM_LIMIT:
            raise self.fail("input", f"the last dimension D must be < {HEAD_DIM_LIMIT}, got {d}")
        layouts = {k: v for k, v in R_LAYOUTS[mode].items() if len(k) == len(xs)}
        fits = [(lay, rl) for lay, allowed in layouts.items() for rl in allowed
                if all((rs[i] == 1) if c == "1" else (rs[i] == xs[i]) for i, c in enumerate(rl[:-1]))]
        if not fits:
            listed = "; ".join(f"input {lay}: r1 {', '.join(rl)}" for lay, rl in layouts.items())
            raise self.fail("r1", f"shape {rs} is not a layout rotary_mode={mode!r} supports for input {xs} "
                                  f"(supported: {listed})")

        def bn_ok(lay: str) -> bool:
            dims = dict(zip(lay, xs))
            b, n = dims.get("B", 1), dims["N"]
            return b < BN_LIMIT and n < BN_LIMIT if mode == HALF else b * n < BN_LIMIT
        if not any(bn_ok(lay) for lay, _ in fits):
            rule = "B and N must each be < 1000" if mode == HALF else "B * N must be < 1000"
            raise self.fail("input", f"{rule} in rotary_mode={mode!r}; shape {xs} as "
                                     f"{' or '.join(sorted({lay for lay, _ in fits}))} breaks it")

    def _check_legacy(self, xs, rs, mode: str, rotate, chip) -> None:
        where = f"on {chip.name} (the page's jit_compile=True kernel)"
        if mode != HALF:
            raise self.fail("rotary_mode", f"only 'half' is supported {where}, got {mode!r}")
        if rotate is not None:
            raise self.fail("rotate", f"is not supported {where}")
        if len(xs) != 4:
            raise self.fail("input", f"must be 4-D {where}, got shape {xs}")
        if xs[-1] != LEGACY_HEAD_DIM:
            raise self.fail("input", f"the last dimension D must be {LEGACY_HEAD_DIM} {where}, got {xs[-1]}")
        fits = [lay for lay, allowed in R_LAYOUTS[HALF].items() if len(lay) == 4
                if any(all((rs[i] == 1) if c == "1" else (rs[i] == xs[i]) for i, c in enumerate(rl[:-1]))
                       for rl in allowed)]
        if not fits:
            raise self.fail("r1", f"shape {rs} is not a supported layout for input {xs} {where}")
        if not any(max(dict(zip(lay, xs))["B"], dict(zip(lay, xs))["N"]) <= LEGACY_BN_MAX for lay in fits):
            raise self.fail("input", f"B and N must each be <= {LEGACY_BN_MAX} {where}, got shape {xs}")
        bcast = math.prod(n for n, t in zip(xs[:-1], rs[:-1]) if t == 1)
        if bcast > LEGACY_BROADCAST_MAX:
            raise self.fail("r1", f"broadcasts over {bcast} elements of input {xs}; at most "
                                  f"{LEGACY_BROADCAST_MAX} are supported {where}")

    tables, x_arg = ("r1", "r2"), "input"

    def compute(self, spec: RopeSpec, a: Args):
        x32 = fp32(a.input.data)
        # the adapter casts r1/r2 of another dtype to the input's dtype before the kernel runs
        cos = fp32(D.cast(a.r1.data, spec.dtype))
        sin = fp32(D.cast(a.r2.data, spec.dtype))
        if spec.rotate_dtype is not None:
            rot = np.matmul(x32, fp32(a.rotate.data))
        elif spec.mode == HALF:
            rot = rotate_half(x32)
        else:
            rot = rotate_interleaved(x32)
        return (D.cast(x32 * cos + rot * sin, spec.outputs[0].dtype),)

    def rope_inputs(self, spec):
        inputs, steps, temps = super().rope_inputs(spec)
        if spec.rotate_dtype is not None:
            inputs.append(RowOperand("out0", spec.dtype.itemsize))    # x @ rotate, from the cube
        return inputs, steps, temps

    def rotation(self, spec):
        return None if spec.rotate_dtype is not None else super().rotation(spec)

    def plan(self, spec: RopeSpec, chip, tiling):
        dt = spec.dtype
        kernels = []
        for name, rdt in zip(self.tables, spec.table_dtypes):
            if rdt is not dt:
                # the adapter first casts the table to the input's dtype (a Cast kernel into scratch);
                # the rope kernel then reads a table of the input's dtype, addressed here as r1/r2
                n = math.prod(spec.table_shape)
                cast = ElementwiseKernel(n, (EOperand(name, rdt.itemsize),), (EOperand("workspace", dt.itemsize),),
                                         (VectorStep("unary", D.float32.name),)).plan(f"{self.name}.cast_{name}", chip)
                cast.workspace_bytes = dt.nbytes(n)
                kernels.append(cast)
        if spec.rotate_dtype is not None:
            # x @ rotate on the cube, written into the output buffer, which the rope kernel reads back
            d = spec.x_shape[-1]
            m = math.prod(spec.x_shape) // d
            problem = MatmulProblem(batch=1, m=m, n=d, k=d, a=MatmulOperand("input", m, d, dt),
                                    b=MatmulOperand("rotate", d, d, dt), out="out0", out_dtype=dt)
            mm = matmul_plan(f"{self.name}.rotate_matmul", chip, problem)
            kernels += mm if isinstance(mm, list) else [mm]
        plan = super().plan(spec, chip, tiling)
        return kernels + [plan] if kernels else plan


# ----------------------------------------------------------------------------------------------
# npu_interleave_rope
# ----------------------------------------------------------------------------------------------
class NpuInterleaveRope(_Rope):
    name = "npu_interleave_rope"

    def infer(self, a: Args, chip):
        x = self.tensor(a, "x")
        cos = self.tensor(a, "cos")
        sin = self.tensor(a, "sin")
        self.check_dtype("x", x, (D.float16, D.bfloat16))
        for arg, t in (("cos", cos), ("sin", sin)):
            if t.dtype is not x.dtype:
                raise TypeError(f"{self.name}: argument '{arg}' has dtype {t.dtype.name}; it must be x's dtype "
                                f"({x.dtype.name})")
            # base formats (ND, NCHW...) store the same bytes; a private format differs from them
            if t.format != x.format and (F.is_fractal(t.format) or F.is_fractal(x.format)):
                raise self.fail(arg, f"must have x's format ({x.format.name}), got {t.format.name}")
        if x.ndim != 4:
            raise self.fail("x", f"must be 4-D (B, N, S, D), got shape {x.shape}")
        if x.shape[-1] != INTERLEAVE_ROPE_HEAD_DIM:
            raise self.fail("x", f"D (the last dimension) must be {INTERLEAVE_ROPE_HEAD_DIM}, got shape {x.shape}")
        b, _, s, d = x.shape
        if cos.ndim != 4:
            raise self.fail("cos", f"must be 4-D (B, 1, S, D), got shape {cos.shape}")
        cb, cn, cs, cd = cos.shape
        if cd != d:
            raise self.fail("cos", f"D (the last dimension) must be {INTERLEAVE_ROPE_HEAD_DIM}, got shape {cos.shape}")
        if cn != 1:
            raise self.fail("cos", f"N (dimension 1) must be 1, got shape {cos.shape}")
        if cb != b:
            raise self.fail("cos", f"B (dimension 0) must equal x's B = {b}, got shape {cos.shape}")
        if cs not in (1, s):
            raise self.fail("cos", f"S (dimension 2) must be 1 or x's S = {s}, got shape {cos.shape}")
        if sin.shape != cos.shape:
            raise self.fail("sin", f"must have the shape of cos {cos.shape}, got {sin.shape}")
        return RopeSpec(outputs=(TensorMeta(x.shape, x.dtype, _out_format(x)),), device_work=x.numel > 0,
                        dtype=x.dtype, x_shape=x.shape, table_shape=cos.shape)

    tables, x_arg = ("cos", "sin"), "x"

    def compute(self, spec: RopeSpec, a: Args):
        x32 = fp32(a.x.data)
        q = np.concatenate((x32[..., 0::2], x32[..., 1::2]), axis=-1)    # (B,N,S,D/2,2) -> pairs transposed
        out = q * fp32(a.cos.data) + rotate_half(q) * fp32(a.sin.data)
        return (D.cast(out, spec.outputs[0].dtype),)

    def rope_inputs(self, spec):
        # de-interleave the pairs (a gather), then rotate the halves as in "half" mode
        inputs, _, temps = super().rope_inputs(spec)
        return inputs, [RowStep("gather", "float32")], temps + D.float32.itemsize / 2


OPS = (NpuRotaryMul(), NpuInterleaveRope())
