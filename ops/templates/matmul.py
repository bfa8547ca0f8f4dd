"""Cube matmul kernel template, single-GEMM front: GM -> L1 -> L0A/L0B -> MMAD -> L0C -> FIXPIPE -> GM.

The template itself is layered in :mod:`.cube` (kernel: block scheduling and swizzle; block: the
per-core K loop with its buffers and flags; tile: the copies, MMAD and FIXPIPE). This module
describes one GEMM as a :class:`MatmulProblem` and builds its kernel(s) with :func:`matmul_plan`.

Operands may be ND (row-major, optionally transposed) or FRACTAL_NZ in GM, each with a
:class:`~.cube.Layout` (base offset, leading dimension, batch placement). ND operands go through
MTE2's ND2NZ conversion (a slower path) with one row per matrix row, so short or unaligned rows
cost path cycles; NZ operands arrive as contiguous 512-byte fractal columns.

The tiling (:class:`MatmulTiling`) is explicit and user-overridable; :func:`default_tiling` picks
the largest fitting base tile with double buffering. A tiling that does not fit L0A, L0B, L0C or
L1 raises :class:`~ascend_sim.isa.ISAError` naming the buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ascend_sim.dtypes import DType, get_dtype
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import ISAError

from .cube import Gemm, Layout, MatmulTiling, Operand, TileCopy, check_tiling, choose_tiling, cube_kernel

__all__ = ["MatmulProblem", "MatmulTiling", "Operand", "Layout", "default_tiling", "matmul_plan", "check_tiling"]


@dataclass(frozen=True)
class MatmulProblem:
    """``out[b] = a[b] @ b[b]`` (+ bias, x dequant scale, ReLU) over ``batch`` batches. The
    output is written at ``out_layout`` (None: dense, batch after batch); bias and scale rows
    start ``bias_offset`` / ``scale_offset`` bytes into their tensors."""

    batch: int
    m: int
    n: int
    k: int
    a: Operand
    b: Operand
    out: str
    out_dtype: DType
    out_nz: bool = False
    bias: str | None = None          # per-N bias, added in L0C via the bias table
    bias_itemsize: float = 4.0
    scale: str | None = None         # per-N dequant scale (64-bit each), applied by FIXPIPE from the FB
    scale_per_tensor: bool = False   # one scale for all N
    relu: bool = False
    out_layout: Layout | None = None
    bias_offset: int = 0
    scale_offset: int = 0

    def c_operand(self, chip) -> Operand:
        layout = self.out_layout
        if layout is None:
            if self.out_nz:
                m0, n0 = chip.cube.m0, chip.cube.n0
                per = self.out_dtype.nbytes(-(-self.m // m0) * m0 * -(-self.n // n0) * n0)
            else:
                per = self.out_dtype.nbytes(self.m * self.n)
            layout = Layout(batch_stride=int(per) if self.batch > 1 else 0)
        return Operand(self.out, self.m, self.n, self.out_dtype, nz=self.out_nz, layout=layout)

    def gemm(self, chip) -> Gemm:
        return Gemm(self.batch, self.m, self.n, self.k, self.a, self.b, self.c_operand(chip), bias=self.bias,
                    bias_itemsize=self.bias_itemsize, bias_offset=self.bias_offset, scale=self.scale,
                    scale_per_tensor=self.scale_per_tensor, scale_offset=self.scale_offset, relu=self.relu)


def default_tiling(chip: ChipSpec, p: MatmulProblem) -> MatmulTiling:
    """The tiler's choice for ``p`` (see :func:`.cube.choose_tiling`)."""
    return choose_tiling(chip, p.batch, p.m, p.n, p.k, p.a.dtype)


def check_cube_mode(name: str, chip: ChipSpec, dt: DType) -> None:
    if dt.name not in chip.cube.macs_per_cycle:
        raise ISAError(f"{name}: the cube of {chip.name} has no {dt.name} mode "
                       f"(it has {', '.join(chip.cube.macs_per_cycle)})")


def matmul_plan(name: str, chip: ChipSpec, p: MatmulProblem, tiling: MatmulTiling | None = None, *,
                tile: TileCopy | None = None):
    """The cube kernel for ``p`` -- or, with split_k > 1, [the cube kernel writing fp32 partials
    into the workspace with atomic adds, the vector kernel casting them (plus bias) to the output]."""
    dt = p.a.dtype
    check_cube_mode(name, chip, dt)
    t = tiling or default_tiling(chip, p)
    check_tiling(name, chip, t, dt)
    if t.split_k > 1:
        return _split_k_plans(name, chip, p, t, tile)
    return cube_kernel(name, chip, [p.gemm(chip)], t, tile=tile)


def _split_k_plans(name: str, chip: ChipSpec, p: MatmulProblem, t: MatmulTiling, tile):
    from .elementwise import Operand as EOp, VectorStep, elementwise_plan
    if p.out_layout is not None and (p.out_layout.offset or p.out_layout.ld or p.out_layout.batch_offsets):
        raise ISAError(f"{name}: split_k is not supported for an output placed inside a larger tensor "
                       "(the vector cast kernel writes it densely)")
    f32 = get_dtype("float32")
    partial = replace(p, out="workspace", out_dtype=f32, out_nz=False, bias=None, scale=None, relu=False,
                      out_layout=None)
    cube = cube_kernel(name + ".splitk", chip, [partial.gemm(chip)], t, tile=tile)
    cube.workspace_bytes = p.batch * f32.nbytes(p.m * p.n)
    inputs = [EOp("workspace", f32.itemsize)]
    steps = [VectorStep("unary", "float32")]                 # cast to the output dtype
    if p.bias:
        steps.insert(0, VectorStep("binary", "float32"))     # + bias (broadcast over rows)
    cast = elementwise_plan(name + ".cast", chip, p.batch * p.m * p.n, inputs, [EOp(p.out, p.out_dtype.itemsize)],
                            steps)
    cast.workspace_bytes = 0
    return [cube, cast]
