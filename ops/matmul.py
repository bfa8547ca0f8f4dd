"""Matmul ops: npu_bmmV2, npu_linear, npu_transpose_batchmatmul, npu_grouped_matmul -- and the
GEMM plumbing the quantised matmuls (:mod:`.quant_matmul`) share.

Semantics follow the op-plugin pages (26.1.0) ``(beta)torch_npu-npu_bmmV2``,
``(beta)torch_npu-npu_linear``, ``torch_npu-npu_transpose_batchmatmul`` and
``torch_npu-npu_grouped_matmul``:

* npu_bmmV2(self, mat2, output_sizes): a batched matmul with broadcast batch dims. A non-empty
  ``output_sizes`` (what the op's backward passes) may put 1 on batch axes where the broadcast
  result is larger: those axes are summed, inside the accumulation (torch_npu folds them into K).
  fp16 and fp32 accumulate in fp32; int32 has no cube mode and wraps modulo 2^32.
* npu_linear(input, weight, bias): ``input @ weight.T + bias``; the result has input's dtype
  (int8 results wrap like torch's integer matmul).
* npu_transpose_batchmatmul: ``Y = permute(permute(input, perm_x1) @ permute(weight, perm_x2),
  perm_y)``; with ``scale`` (packed int64 from npu_trans_quant_param) the fp16 product is
  requantised to int8 in shape (M, 1, B*N); ``batch_split_factor`` s > 1 gives (s, M, B*N/s),
  batch b = i*(B/s)+j landing in slab i at columns j*N.. (the TransposeBatchMatMul kernel's layout).
* npu_grouped_matmul: ``y_i = x_i @ w_i`` per group, m-axis (group_type 0), k-axis (2) or no
  grouping (-1), every split_item / group_list / group_list_type form the page documents, with the
  per-group quantisation (per-channel int64 scale via FIXPIPE, per-channel float scale, per-token
  scale, int4 x int4 with per-k-group scales) and fake-quantisation (weight antiquant) variants,
  bias and act_type (ReLU, GELU-tanh, FastGELU, SiLU; per-token scenarios only).

Numerics: one host computation per op. Float GEMMs multiply fp32 upcasts (numpy float32 matmul,
i.e. fp32 accumulation) and round once to the output dtype; integer GEMMs are exact (float64 BLAS
when every partial sum is below 2^53, int64 otherwise).

Timing: the cube template (:mod:`.templates.matmul`) builds the GEMM kernels. Where the template
has no parameter for a layout the op needs (operands that start inside a larger tensor, rows a
leading dimension apart, broadcast batches, groups of different sizes), the plan is composed:

* :func:`relayout` moves a tensor's GM accesses of a built plan to where the data really is
  (recomputing each access's bus bytes and path cycles for its new alignment);
* :func:`merge_kernels` joins the per-group cube programs into one kernel: group after group on
  every core, each group's tiles dealt round-robin starting at the core after the previous
  group's last tile, with flag waits between groups so a group starts on free buffers;
* dtypes the chip's cube cannot multiply (int32 anywhere, fp32 on 310P/910) run on the vector
  units (:func:`vector_matmul_plan`), as multiply-accumulates in 32-bit lanes;
* vector pre-passes and epilogues (a grouped matmul's weight antiquant, per-token / bf16
  dequant) are separate AIV kernels before or after the cube kernel, handing data through GM
  workspace. The front door gives each kernel of an op its own workspace, so the second kernel
  reads a region the first did not write (an L2 miss where the hardware would hit): a known
  pessimism until one workspace is shared by all kernels of a call.
  (npu_weight_quant_batchmatmul instead runs as one MIX kernel; see :mod:`.quant_matmul`.)
* the output of npu_bmmV2 is ND, also for fp16 (torch_npu allocates an fp16 result in FRACTAL_NZ
  when internal formats are on; ND is what users see with them off, the A2 default since 2.8).

A grouped matmul whose group sizes are a device tensor is planned with the rows spread evenly
over the groups (the plan never looks at numbers, so meta and full mode take the same time); a
``List[int]`` group_list is host data and is planned as given.

Studies: :func:`plan_for` returns the kernels an op would run for given argument shapes, with a
user :class:`MatmulTiling`; :func:`tiling_for` returns the tiling the op picks by itself.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.isa import GM, SET, WAIT, Buf, ISAError, KernelPlan, Pipe, Program, ProgramBuilder
from ascend_sim.tensor import NPUTensor, TensorMeta

from .base import Args, LegacyOp as Op
from .templates.matmul import MatmulProblem, MatmulTiling, Operand as CubeOperand, default_tiling, matmul_plan
from .templates.rows import RowOperand, RowStep, row_plan

F16, BF16, F32, I8, I32, I64, I4 = D.float16, D.bfloat16, D.float32, D.int8, D.int32, D.int64, D.int4
INT4_PER_INT32 = 8
INNER_LIMIT = 65536           # npu_grouped_matmul / quant matmuls: last dims must stay below this
EXACT_FLOAT64 = 2 ** 53       # integers below this add exactly in float64


# ============================================================================================
# Numerics shared by the matmul ops
# ============================================================================================
def float_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fp32-accumulated product of any float inputs (upcast once), broadcasting batch dims."""
    return np.matmul(np.asarray(a).astype(np.float32), np.asarray(b).astype(np.float32))


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product (int64), broadcasting batch dims."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.size == 0 or b.size == 0:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    bound = float(np.abs(a).max()) * float(np.abs(b).max()) * a.shape[-1]
    if bound < EXACT_FLOAT64:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def wrap_int32(v: np.ndarray) -> np.ndarray:
    """int64 -> int32 modulo 2^32, as 32-bit integer hardware lanes wrap."""
    return np.asarray(v, dtype=np.int64).astype(np.int32)


def activation(v: np.ndarray, act_type: int) -> np.ndarray:
    """npu_grouped_matmul's act_type on fp32 values: 1 ReLU, 2 GELU (tanh form), 4 FastGELU, 5 SiLU."""
    if act_type == 0:
        return v
    with np.errstate(over="ignore"):
        if act_type == 1:
            return np.maximum(v, 0).astype(np.float32)
        if act_type == 2:
            c = np.float32(math.sqrt(2.0 / math.pi))
            return (0.5 * v * (1 + np.tanh(c * (v + np.float32(0.044715) * v ** 3)))).astype(np.float32)
        if act_type == 4:   # FastGelu: x / (1 + exp(-1.702|x|)) * exp(0.851 (x - |x|))
            av = np.abs(v)
            return (v / (1 + np.exp(np.float32(-1.702) * av)) * np.exp(np.float32(0.851) * (v - av))).astype(np.float32)
        if act_type == 5:
            return (v / (1 + np.exp(-v))).astype(np.float32)
    raise ValueError(f"act_type {act_type}")


def broadcast_batch(op: Op, a_batch: Sequence[int], b_batch: Sequence[int], a_arg: str, b_arg: str) -> tuple:
    """Right-aligned broadcast of two batch shapes; OpError naming both arguments if impossible."""
    n = max(len(a_batch), len(b_batch))
    a = (1,) * (n - len(a_batch)) + tuple(a_batch)
    b = (1,) * (n - len(b_batch)) + tuple(b_batch)
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y and x != 1 and y != 1:
            raise op.fail(b_arg, f"batch dims {tuple(b_batch)} cannot be broadcast with {a_arg}'s {tuple(a_batch)} "
                                 f"(axis {i - n}: {x} vs {y})")
        out.append(max(x, y))
    return tuple(out)


def aligned(batch: Sequence[int], n: int) -> tuple:
    return (1,) * (n - len(batch)) + tuple(batch)


def matrix_format(op: Op, arg: str, t: NPUTensor) -> bool:
    """True if a matmul operand is FRACTAL_NZ; ND-like base formats give False; others fail."""
    if t.format == F.Format.FRACTAL_NZ:
        return True
    if F.is_fractal(t.format):
        raise op.fail(arg, f"format {t.format.name} is not supported (ND or FRACTAL_NZ)")
    return False


# ============================================================================================
# Composing cube plans
# ============================================================================================
def matrix_bytes(rows: int, cols: int, dtype: D.DType, nz: bool) -> int:
    """GM bytes of one stored rows x cols matrix (NZ pads rows to 16 and cols to C0)."""
    if nz:
        return dtype.nbytes(-(-rows // 16) * 16 * (-(-cols // dtype.c0)) * dtype.c0)
    return dtype.nbytes(rows * cols)


def relayout(plan: KernelPlan, chip, tensor: str, locate: Callable[[int], int], *, stride: int | None = None,
             rename: str | None = None, out_itemsize: float | None = None) -> KernelPlan:
    """Move every GM access of ``tensor`` in ``plan`` to ``locate(offset)`` (row stride ``stride``
    when given; renamed to ``rename``), recomputing its bus bytes and path cycles. FIXPIPE writes
    keep their element-rate cap (``out_itemsize``: bytes per output element)."""
    cap = None if out_itemsize is None else chip.cube.fixpipe_elems_per_cycle * out_itemsize
    for blk in plan.blocks:
        for prog in blk:
            builder = None
            for i, kind in enumerate(prog.kind):
                if kind != GM:
                    continue
                acc = prog.accesses[prog.arg[i]]
                if acc.tensor != tensor:
                    continue
                if builder is None:
                    builder = ProgramBuilder(chip, prog.core)
                new = builder.gm_access(prog.names[prog.name[i]], acc.path, rename or tensor, int(locate(acc.offset)),
                                        acc.rows, acc.row_bytes, acc.stride if stride is None else stride, acc.write,
                                        cap if acc.path == "l0c_to_gm" else None)
                prog.accesses[prog.arg[i]] = new
                prog.cycles[i] = new.path_cycles
    if rename:
        plan.tensors = tuple(dict.fromkeys(rename if t == tensor else t for t in plan.tensors))
    return plan


def shift(base: int) -> Callable[[int], int]:
    return lambda off: base + off


def batch_locator(batch_bytes: int, place: Callable[[int], int]) -> Callable[[int], int]:
    """Template batch ``bi`` (laid out ``batch_bytes`` apart) -> ``place(bi)`` + the same offset within."""
    def locate(off: int) -> int:
        bi, rem = divmod(off, batch_bytes)
        return place(bi) + rem
    return locate


def rows_locator(row_bytes: int, ld_bytes: int, base: int = 0, batch_bytes: int | None = None,
                 place: Callable[[int], int] = lambda bi: 0) -> Callable[[int], int]:
    """ND rows written ``row_bytes`` apart by the template that really sit ``ld_bytes`` apart (a
    sub-matrix of a wider one), per template batch (``batch_bytes`` apart) at ``base + place(bi)``."""
    def locate(off: int) -> int:
        bi, rem = divmod(off, batch_bytes) if batch_bytes else (0, off)
        r, c = divmod(rem, row_bytes)
        return base + place(bi) + r * ld_bytes + c
    return locate


def _concat(core: str, parts: list[Program]) -> Program:
    """One program running ``parts`` in turn; between parts every flag a part set but never
    waited for is waited for, so the next part finds its buffers free."""
    out = Program(core)
    for j, p in enumerate(parts):
        names = [out.name_id(n) for n in p.names]
        base = len(out.accesses)
        out.accesses.extend(p.accesses)
        out.kind.extend(p.kind)
        out.pipe.extend(p.pipe)
        out.name.extend(names[i] for i in p.name)
        out.cycles.extend(p.cycles)
        out.latency.extend(p.latency)
        out.arg.extend(a + base if k == GM else a for k, a in zip(p.kind, p.arg))
        out.flops += p.flops
        if j == len(parts) - 1:
            break
        pending: collections.Counter = collections.Counter()
        for k, a in zip(p.kind, p.arg):
            if k == SET:
                pending[a] += 1
            elif k == WAIT:
                pending[a] -= 1
        wid = out.name_id("wait_flag")
        for key, count in pending.items():
            for _ in range(count):
                out.kind.append(WAIT)
                out.pipe.append(key[1])
                out.name.append(wid)
                out.cycles.append(0.0)
                out.latency.append(0.0)
                out.arg.append(key)
    return out


def merge_kernels(name: str, chip, plans: list[KernelPlan]) -> KernelPlan:
    """Join kernels of one core type (one program per block) into one kernel on that type's cores
    of ``chip``: part after part on every core, each part's blocks dealt round-robin from the core
    after the previous part's last block."""
    if len(plans) == 1:
        plans[0].name = name
        return plans[0]
    cores = chip.cores.aic if plans[0].core_type == "AIC" else chip.vector_cores
    lanes: list[list[Program]] = [[] for _ in range(cores)]
    start = 0
    for p in plans:
        for j, blk in enumerate(p.blocks):
            lanes[(start + j) % cores].append(blk[0])
        start = (start + p.block_dim) % cores
    core = plans[0].blocks[0][0].core
    blocks = [[_concat(core, lane)] for lane in lanes if lane]
    tensors = tuple(dict.fromkeys(t for p in plans for t in p.tensors))
    tiling = plans[0].tiling
    if isinstance(tiling, MatmulTiling):
        tiling = replace(tiling, block_dim=len(blocks))
    return KernelPlan(name, plans[0].core_type, blocks, tensors=tensors, tiling=tiling,
                      flops=sum(p.flops for p in plans))


def share_workspace(plans: list[KernelPlan]) -> list[KernelPlan]:
    """Every kernel of an op that addresses the GM workspace declares it, so that the front door
    gives each of them one. (It allocates one per kernel, not one per op: data one kernel leaves
    in its workspace is not where the next kernel reads -- see the module docstring.)"""
    size = max((p.workspace_bytes for p in plans if p is not None), default=0)
    for p in plans:
        if p is not None and "workspace" in p.tensors:
            p.workspace_bytes = max(p.workspace_bytes, size)
    return plans


# ============================================================================================
# GEMM plans: the cube template with batch broadcasting, or the vector fallback
# ============================================================================================
@dataclass(frozen=True)
class GemmSide:
    """One GEMM operand as a plan sees it: plan tensor name, cube dtype (int4 for packed words),
    the matrix as the product uses it (A: M x K, B: K x N), its batch dims aligned to the output's
    (1 = broadcast), whether it is stored transposed and whether it is FRACTAL_NZ."""

    name: str
    dtype: D.DType
    rows: int
    cols: int
    batch: tuple = ()
    transposed: bool = False
    nz: bool = False

    @property
    def stored(self) -> tuple[int, int]:
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    @property
    def batch_bytes(self) -> int:
        r, c = self.stored
        return matrix_bytes(r, c, self.dtype, self.nz)


def _batch_index_map(out_batch: tuple, side_batch: tuple) -> Callable[[int], int]:
    """Output batch (linear) -> the operand's batch (linear), broadcasting its size-1 dims."""
    strides = []
    s = 1
    for d in reversed(side_batch):
        strides.append(s)
        s *= d
    strides = strides[::-1]

    def index(bi: int) -> int:
        j = 0
        for d_out, d_side, st in zip(reversed(out_batch), reversed(side_batch), reversed(strides)):
            bi, r = divmod(bi, d_out)
            if d_side != 1:
                j += r * st
        return j
    return index


def has_cube_mode(chip, dtype: D.DType) -> bool:
    return dtype.name in chip.cube.macs_per_cycle


def gemm_plans(name: str, chip, out_batch: tuple, a: GemmSide, b: GemmSide, out: str, out_dtype: D.DType, *,
               bias: str | None = None, bias_itemsize: float = 4.0, scale: str | None = None,
               scale_per_tensor: bool = False, tiling: MatmulTiling | None = None) -> list[KernelPlan]:
    """The kernel(s) of ``out[batch] = a[batch] @ b[batch]`` (+bias, dequant scale), operands
    broadcast over ``out_batch``: one cube kernel (two with split_k), or the vector fallback."""
    batch = math.prod(out_batch)
    m, k, n = a.rows, a.cols, b.cols
    if not has_cube_mode(chip, a.dtype):
        if tiling is not None:
            raise ISAError(f"{name}: the cube of {chip.name} has no {a.dtype.name} mode; this GEMM runs on the vector "
                           "units and takes no MatmulTiling")
        return [vector_matmul_plan(name, chip, out_batch, a, b, out, out_dtype, bias=bias, bias_itemsize=bias_itemsize)]
    operands, partial = [], []
    for s in (a, b):
        n_side = math.prod(s.batch)
        operands.append(CubeOperand(s.name, s.rows, s.cols, s.dtype, s.transposed, s.nz,
                                    0 if n_side == 1 else s.batch_bytes))
        partial.append(n_side not in (1, batch))
    problem = MatmulProblem(batch, m, n, k, operands[0], operands[1], out, out_dtype, bias=bias,
                            bias_itemsize=bias_itemsize, scale=scale, scale_per_tensor=scale_per_tensor,
                            out_batch_stride=m * n * out_dtype.itemsize if batch > 1 else 0)
    plans = matmul_plan(name, chip, problem, tiling)
    plans = list(plans) if isinstance(plans, (list, tuple)) else [plans]
    for s, part in zip((a, b), partial):
        if part:        # broadcast on some batch axes only: batch bi reads the operand's own batch
            idx = _batch_index_map(out_batch, aligned(s.batch, len(out_batch)))
            locate = batch_locator(s.batch_bytes, lambda bi, i=idx, bb=s.batch_bytes: i(bi) * bb)
            relayout(plans[0], chip, s.name, locate)
    return share_workspace(plans)


# ----- the vector fallback: multiply-accumulate on the AIV lanes -----
_VEC_TILE_ROWS = 16          # output rows per UB tile (one cube fractal's worth, a natural vector tile)


def vector_matmul_plan(name: str, chip, out_batch: tuple, a: GemmSide, b: GemmSide, out: str, out_dtype: D.DType, *,
                       bias: str | None = None, bias_itemsize: float = 4.0) -> KernelPlan:
    """A GEMM on the vector cores for dtypes the cube lacks: each block takes output tiles of
    16 rows x up to one 256-byte repeat of columns, streams K in chunks of A rows and B columns
    through UB (double-buffered), multiply-accumulates in 32-bit lanes, and stores the tile."""
    batch = math.prod(out_batch)
    m, n, k = a.rows, b.cols, a.cols
    it = a.dtype.itemsize
    acc_item = 4
    tc = max(1, min(n, int(chip.vector.repeat_bytes // acc_item)))
    tr = min(m, _VEC_TILE_ROWS)
    acc_bytes = math.ceil(tr * tc * acc_item / 32) * 32
    per_k = (tr + tc) * it
    kc = max(1, min(k, int((chip.buffers.ub - 2 * acc_bytes - 2 * 32) // (2 * per_k))))
    a_idx = _batch_index_map(out_batch, aligned(a.batch, len(out_batch)))
    b_idx = _batch_index_map(out_batch, aligned(b.batch, len(out_batch)))
    tiles = [(bi, r0, c0) for bi in range(batch) for r0 in range(0, m, tr) for c0 in range(0, n, tc)]
    blocks_n = max(1, min(chip.vector_cores, len(tiles)))
    slot = math.ceil(kc * per_k / 32) * 32
    blocks = []
    V, M2, M3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3
    for blk in range(blocks_n):
        bld = ProgramBuilder(chip, "AIV")
        j = 0
        for t_i, (bi, r0, c0) in enumerate(tiles[blk::blocks_n]):
            rows, cols = min(tr, m - r0), min(tc, n - c0)
            a_base = a_idx(bi) * m * k * it
            b_base = b_idx(bi) * k * n * it
            acc_addr = 2 * slot + (t_i % 2) * acc_bytes
            if bias:
                bld.load_gm(Buf.UB, acc_addr, bias, int(c0 * bias_itemsize), 1, max(1, int(cols * bias_itemsize)))
            for k0 in range(0, k, kc):
                kk = min(kc, k - k0)
                buf = j % 2
                if j >= 2:
                    bld.wait_flag(V, M2, buf)
                bld.load_gm(Buf.UB, buf * slot, a.name, int(a_base + (r0 * k + k0) * it), rows, max(1, int(kk * it)),
                            max(1, int(k * it)))
                bld.load_gm(Buf.UB, buf * slot + math.ceil(tr * kc * it / 32) * 32, b.name,
                            int(b_base + (k0 * n + c0) * it), kk, max(1, int(cols * it)), max(1, int(n * it)))
                bld.set_flag(M2, V, buf)
                bld.wait_flag(M2, V, buf)
                if k0 == 0 and t_i >= 2:
                    bld.wait_flag(M3, V, t_i % 2)          # the accumulator's last tile is stored
                # kk multiply-accumulates into the tile's accumulator, issued as one long instruction
                # (its element count is the MAC count, not a UB range: no operand range to check)
                bld.vector("fma", "float32" if a.dtype.is_float else "int32", rows * cols * kk, addrs=())
                bld.set_flag(V, M2, buf)
                j += 1
            bld.set_flag(V, M3, t_i % 2)
            bld.wait_flag(V, M3, t_i % 2)
            bld.store_gm(acc_addr, out, int((bi * m * n + r0 * n + c0) * out_dtype.itemsize), rows,
                         max(1, int(cols * out_dtype.itemsize)), max(1, int(n * out_dtype.itemsize)))
            bld.set_flag(M3, V, t_i % 2)
        blocks.append([bld.build()])
    tensors = tuple(x for x in (a.name, b.name, out, bias) if x)
    return KernelPlan(name, "AIV", blocks, tensors=tensors, flops=2.0 * batch * m * n * k)


# ----- vector pre-pass and epilogue kernels around the cube -----
def dequant_epilogue_plan(name: str, chip, rows: int, cols: int, out: str, out_dtype: D.DType, *,
                          partial: str = "workspace", partials: int = 1, scale: tuple | None = None,
                          pertoken: tuple | None = None, bias: tuple | None = None, extra: list[tuple] = (),
                          act: bool = False, offset: tuple | None = None) -> KernelPlan:
    """The AIV kernel that turns the cube's int32/fp32 partials (``partials`` per output element,
    e.g. one per K group) into the output: widen, scale per column (``scale`` = (tensor, itemsize,
    cols)), per row (``pertoken`` = (tensor, itemsize, per-row count)), add a float bias, activate,
    round. ``extra`` inputs: (tensor, itemsize, kind, cols) read alongside."""
    inputs = [RowOperand(partial, 4.0 * partials)]
    steps = [RowStep("unary", "float32", count=partials)]                     # int32 -> fp32
    if scale is not None:
        inputs.append(RowOperand(scale[0], scale[1], "shared", cols=scale[2]))
        steps.append(RowStep("binary", "float32", count=partials))
    if offset is not None:
        inputs.append(RowOperand(offset[0], offset[1], "shared", cols=offset[2]))
        steps.append(RowStep("fma", "float32", count=partials))
    if partials > 1:
        steps.append(RowStep("binary", "float32", count=partials - 1))        # sum the groups
    if pertoken is not None:
        inputs.append(RowOperand(pertoken[0], pertoken[1], "per_row"))
        steps.append(RowStep("binary", "float32"))
    if bias is not None:
        inputs.append(RowOperand(bias[0], bias[1], "shared", cols=cols))
        steps.append(RowStep("binary", "float32"))
    for e in extra:
        inputs.append(RowOperand(*e))
    if act:
        steps += [RowStep("exp", "float32"), RowStep("div", "float32"), RowStep("binary", "float32")]
    steps.append(RowStep("unary", "float32"))                                 # round to the output
    return row_plan(name, chip, rows, cols, inputs, [RowOperand(out, out_dtype.itemsize)], steps, temps_bytes=4.0)


def antiquant_prepass_plan(name: str, chip, rows: int, cols: int, weight: str, w_itemsize: float, *,
                           scale: tuple, offset: tuple | None, out: str = "workspace",
                           out_itemsize: float = 2.0) -> KernelPlan:
    """The AIV kernel dequantising a low-bit weight (``rows`` x ``cols``) to fp16/bf16 in GM
    for the cube: widen, add the offset, multiply by the scale, round. ``scale``/``offset`` =
    (tensor, itemsize, kind, cols) as row operands (per-channel: shared; per-group: a row share)."""
    inputs = [RowOperand(weight, w_itemsize), RowOperand(*scale)]
    steps = [RowStep("unary", "float32")]
    if offset is not None:
        inputs.append(RowOperand(*offset))
        steps.append(RowStep("binary", "float32"))
    steps += [RowStep("binary", "float32"), RowStep("unary", "float32")]
    return row_plan(name, chip, rows, cols, inputs, [RowOperand(out, out_itemsize)], steps, temps_bytes=4.0)


# ============================================================================================
# npu_bmmV2
# ============================================================================================
class NpuBmmV2(Op):
    name = "npu_bmmV2"
    DTYPES = (F16, F32, I32)

    def _shapes(self, a: Args):
        s, m2 = self.tensor(a, "self"), self.tensor(a, "mat2")
        for arg, t in (("self", s), ("mat2", m2)):
            if t.ndim < 2:
                raise self.fail(arg, f"must have 2 or more dimensions; got shape {t.shape}")
            self.check_dtype(arg, t, self.DTYPES)
            matrix_format(self, arg, t)
        if s.dtype is not m2.dtype:
            raise TypeError(f"{self.name}: argument 'mat2' has dtype {m2.dtype.name}; it must have self's dtype "
                            f"{s.dtype.name}")
        if s.shape[-1] != m2.shape[-2]:
            raise self.fail("mat2", f"its rows ({m2.shape[-2]}) must equal self's last dimension ({s.shape[-1]})")
        batch = broadcast_batch(self, s.shape[:-2], m2.shape[:-2], "self", "mat2")
        infer = (*batch, s.shape[-2], m2.shape[-1])
        sizes = a.get("output_sizes")
        sizes = [] if sizes is None else sizes
        if not isinstance(sizes, (list, tuple)) or not all(isinstance(v, (int, np.integer)) for v in sizes):
            raise TypeError(f"{self.name}: argument 'output_sizes' must be a list of ints, got {sizes!r}")
        sizes = tuple(int(v) for v in sizes)
        reduce: tuple = ()
        if sizes:
            if len(sizes) > len(infer):
                raise self.fail("output_sizes", f"{sizes} has more dimensions than the product {infer}")
            exp = aligned(sizes, len(infer))
            reduce = tuple(i for i, (e, f) in enumerate(zip(exp, infer)) if e != f)
            sb, mb = aligned(s.shape[:-2], len(batch)), aligned(m2.shape[:-2], len(batch))
            for i in reduce:
                if i >= len(batch) or exp[i] != 1:
                    raise self.fail("output_sizes", f"{sizes} differs from the product's shape {infer} on axis {i}; "
                                                    "only batch axes may differ, and only as 1 (summed)")
                if sb[i] != mb[i]:
                    raise self.fail("output_sizes", f"cannot sum batch axis {i}: it is broadcast ({sb[i]} vs {mb[i]}), "
                                                    "and torch_npu folds summed axes into K")
        return s, m2, batch, infer, (sizes or infer), reduce

    def infer(self, a: Args, chip):
        s, _, _, _, out, _ = self._shapes(a)
        return (TensorMeta(tuple(out), s.dtype),)

    def compute(self, a: Args, outs):
        s, m2, _, _, _, reduce = self._shapes(a)
        if s.dtype is I32:
            prod = int_matmul(s.data, m2.data)
            if reduce:
                prod = prod.sum(axis=reduce, keepdims=True)
            return (wrap_int32(prod).reshape(outs[0].shape),)
        prod = float_matmul(s.data, m2.data)
        if reduce:
            prod = prod.sum(axis=reduce, keepdims=True, dtype=np.float32)
        return (D.cast(prod.reshape(outs[0].shape), outs[0].dtype),)

    def _plans(self, a: Args, outs, chip, tiling=None):
        s, m2, batch, infer, _, reduce = self._shapes(a)
        m, k, n = s.shape[-2], s.shape[-1], m2.shape[-1]
        # summed batch axes are folded into K (torch_npu permutes them next to K and reshapes)
        fold = math.prod(batch[i] for i in reduce) if reduce else 1
        keep = lambda bt: tuple(d for i, d in enumerate(bt) if i not in reduce)
        sb, mb = aligned(s.shape[:-2], len(batch)), aligned(m2.shape[:-2], len(batch))
        A = GemmSide("self", s.dtype, m, k * fold, keep(sb), nz=matrix_format(self, "self", s))
        B = GemmSide("mat2", m2.dtype, k * fold, n, keep(mb), nz=matrix_format(self, "mat2", m2))
        return gemm_plans(self.name, chip, keep(batch), A, B, "out0", outs[0].dtype, tiling=tiling)

    def plan(self, a: Args, outs, chip):
        return self._plans(a, outs, chip)


# ============================================================================================
# npu_linear
# ============================================================================================
class NpuLinear(Op):
    name = "npu_linear"
    DTYPES = (F32, F16, I32, I8)
    BIAS_DTYPES = (F32, F16, I32)

    def infer(self, a: Args, chip):
        x, w = self.tensor(a, "input"), self.tensor(a, "weight")
        for arg, t in (("input", x), ("weight", w)):
            if t.ndim != 2:
                raise self.fail(arg, f"must be 2-D; got shape {t.shape}")
            self.check_dtype(arg, t, self.DTYPES)
            matrix_format(self, arg, t)
        if x.dtype is not w.dtype:
            raise TypeError(f"{self.name}: argument 'weight' has dtype {w.dtype.name}; it must have input's dtype "
                            f"{x.dtype.name}")
        if x.shape[1] != w.shape[1]:
            raise self.fail("weight", f"its second dimension ({w.shape[1]}) must equal input's ({x.shape[1]}): "
                                      "weight is (out_features, in_features)")
        bias = self.tensor(a, "bias", optional=True)
        if bias is not None:
            self.check_dtype("bias", bias, self.BIAS_DTYPES)
            if bias.ndim != 1 or bias.shape[0] != w.shape[0]:
                raise self.fail("bias", f"must be 1-D of length out_features={w.shape[0]}; got shape {bias.shape}")
            if F.is_fractal(bias.format):
                raise self.fail("bias", f"format must be ND; got {bias.format.name}")
        return (TensorMeta((x.shape[0], w.shape[0]), x.dtype),)

    def compute(self, a: Args, outs):
        x, w, bias = a.input, a.weight, a.get("bias")
        integer = x.dtype.is_integer and (bias is None or bias.dtype.is_integer)
        if integer:
            acc = int_matmul(x.data, w.data.T)
            if bias is not None:
                acc = acc + bias.data.astype(np.int64)
            return (D.cast(acc, outs[0].dtype),)
        acc = float_matmul(x.data, w.data.T)
        if bias is not None:
            acc = acc + bias.data.astype(np.float32)
        return (D.cast(acc, outs[0].dtype),)

    def _plans(self, a: Args, outs, chip, tiling=None):
        x, w, bias = a.input, a.weight, a.get("bias")
        m, k = x.shape
        n = w.shape[0]
        A = GemmSide("input", x.dtype, m, k, nz=matrix_format(self, "input", x))
        B = GemmSide("weight", w.dtype, k, n, transposed=True, nz=matrix_format(self, "weight", w))
        return gemm_plans(self.name, chip, (), A, B, "out0", outs[0].dtype, bias=None if bias is None else "bias",
                          bias_itemsize=4.0 if bias is None else bias.dtype.itemsize, tiling=tiling)

    def plan(self, a: Args, outs, chip):
        return self._plans(a, outs, chip)


# ============================================================================================
# npu_transpose_batchmatmul
# ============================================================================================
class NpuTransposeBatchmatmul(Op):
    name = "npu_transpose_batchmatmul"
    DTYPES = (F16, BF16, F32)
    PERM_X1 = ((0, 1, 2), (1, 0, 2))
    PERM_X2 = ((0, 1, 2), (0, 2, 1))     # [0, 2, 1]: the meta function and aclnn accept it (CANN >= 8.5)
    PERM_Y = ((1, 0, 2),)
    DIM_LIMIT = 65536

    def _perm(self, a: Args, arg: str, default, allowed):
        v = a.get(arg)
        p = tuple(default) if v is None else tuple(int(x) for x in v)
        if p not in allowed:
            raise self.fail(arg, f"must be one of {[list(x) for x in allowed]}; got {list(p)}")
        return p

    def _shapes(self, a: Args):
        x, w = self.tensor(a, "input"), self.tensor(a, "weight")
        for arg, t in (("input", x), ("weight", w)):
            if t.ndim != 3:
                raise self.fail(arg, f"must be 3-D; got shape {t.shape}")
            self.check_dtype(arg, t, self.DTYPES)
            if t.shape[-1] > self.DIM_LIMIT - 1:
                raise self.fail(arg, f"last dimension {t.shape[-1]} exceeds 65535")
            if matrix_format(self, arg, t) and arg == "input":
                raise self.fail(arg, "must be ND")
        if BF16 in (x.dtype, w.dtype) and x.dtype is not w.dtype:
            raise TypeError(f"{self.name}: argument 'weight' has dtype {w.dtype.name} and input {x.dtype.name}: "
                            "bfloat16 cannot be "
                            "mixed with another dtype")
        p1 = self._perm(a, "perm_x1", (0, 1, 2), self.PERM_X1)
        p2 = self._perm(a, "perm_x2", (0, 1, 2), self.PERM_X2)
        self._perm(a, "perm_y", (1, 0, 2), self.PERM_Y)
        if a.get("bias") is not None:
            raise self.fail("bias", "is not supported yet (the page says: use its default, None)")
        b, m, k = (x.shape[p1.index(i)] for i in range(3))
        wb, wk, n = (w.shape[p2.index(i)] for i in range(3))
        if wb != b:
            raise self.fail("weight", f"batch {wb} must equal input's batch {b}")
        if wk != k:
            raise self.fail("weight", f"reduction dimension {wk} must equal input's K={k}")
        if not 1 <= b < self.DIM_LIMIT:
            raise self.fail("input", f"batch B={b} must lie in [1, 65536)")
        if not 1 <= n < self.DIM_LIMIT:
            raise self.fail("weight", f"N={n} must lie in [1, 65536)")
        if k % 16 or n % 16:
            raise self.fail("weight" if n % 16 else "input", f"K={k} and N={n} must both be multiples of 16")
        if p1 == (1, 0, 2) and not 1 <= k * b < self.DIM_LIMIT:
            raise self.fail("input", f"K*B={k * b} must lie in [1, 65536) when perm_x1 is [1, 0, 2]")
        bsf = self.int_arg(a, "batch_split_factor", lo=1) if a.get("batch_split_factor") is not None else 1
        scale = self.tensor(a, "scale", optional=True)
        if scale is not None:
            self.check_dtype("scale", scale, [I64])
            if scale.ndim != 1 or scale.shape[0] != b * n:
                raise self.fail("scale", f"must be 1-D of length B*N={b * n}; got shape {scale.shape}")
            if not b * n < self.DIM_LIMIT:
                raise self.fail("scale", f"B*N={b * n} must lie in [1, 65536)")
            if x.dtype is not F16 or w.dtype is not F16:
                raise TypeError(f"{self.name}: argument 'scale' requires float16 input and weight (fp16 -> int8)")
            if bsf != 1:
                raise self.fail("batch_split_factor", f"must be 1 when scale is given; got {bsf}")
        if p2 == (0, 2, 1) and (scale is not None or bsf != 1 or p1 != (1, 0, 2)):
            raise self.fail("perm_x2", "[0, 2, 1] requires perm_x1 [1, 0, 2], no scale and batch_split_factor 1")
        if bsf > b or b % bsf:
            raise self.fail("batch_split_factor", f"must lie in [1, B={b}] and divide B; got {bsf} (the kernel splits "
                                                  "the batch; the page's 'N' is B)")
        return x, w, p1, p2, b, m, k, n, bsf, scale

    def infer(self, a: Args, chip):
        x, w, p1, p2, b, m, k, n, bsf, scale = self._shapes(a)
        if scale is not None:
            return (TensorMeta((m, 1, b * n), I8),)
        if bsf > 1:
            return (TensorMeta((bsf, m, b * n // bsf), x.dtype),)
        return (TensorMeta((m, b, n), x.dtype),)

    def compute(self, a: Args, outs):
        from .quant import quant_param_offset, quant_param_scale, to_int8_saturated
        x, w, p1, p2, b, m, k, n, bsf, scale = self._shapes(a)
        y = float_matmul(np.transpose(x.data, p1), np.transpose(w.data, p2))      # (B, M, N) fp32
        y = np.transpose(y, (1, 0, 2))                                            # perm_y: (M, B, N)
        if scale is not None:
            flat = y.reshape(m, b * n) * quant_param_scale(scale.data) + quant_param_offset(scale.data)
            return (to_int8_saturated(flat).reshape(m, 1, b * n),)
        if bsf > 1:
            y = y.reshape(m, bsf, (b // bsf) * n).transpose(1, 0, 2)
        return (D.cast(np.ascontiguousarray(y), outs[0].dtype),)

    def _plans(self, a: Args, outs, chip, tiling=None):
        x, w, p1, p2, b, m, k, n, bsf, scale = self._shapes(a)
        dt = F32 if F32 in (x.dtype, w.dtype) else x.dtype
        out_dt = outs[0].dtype
        A = GemmSide("input", dt, m, k, (b,))
        B = GemmSide("weight", dt, k, n, (b,), transposed=p2 == (0, 2, 1), nz=matrix_format(self, "weight", w))
        plans = gemm_plans(self.name, chip, (b,), A, B, "out0", out_dt, scale=None if scale is None else "scale",
                           tiling=tiling)
        if len(plans) > 1:
            raise ISAError(f"{self.name}: split_k is not supported: its output rows are B*N apart")
        cube = plans[0]
        it, oit = dt.itemsize, out_dt.itemsize
        if p1 == (1, 0, 2):          # input (M, B, K): batch b's rows start at b*K and are B*K apart
            relayout(cube, chip, "input", rows_locator(int(k * it), int(b * k * it), batch_bytes=int(m * k * it),
                                                       place=lambda bi: int(bi * k * it)), stride=int(b * k * it))
        inner = b // bsf             # output slab i holds batches i*inner.. side by side, N columns each
        relayout(cube, chip, "out0",
                 rows_locator(int(n * oit), int(inner * n * oit), batch_bytes=int(m * n * oit),
                              place=lambda bi: int(((bi // inner) * m * inner + bi % inner) * n * oit)),
                 stride=int(inner * n * oit), out_itemsize=oit)
        return plans

    def plan(self, a: Args, outs, chip):
        return self._plans(a, outs, chip)

    def attrs(self, a: Args) -> dict:
        return {"batch_split_factor": a.get("batch_split_factor", 1)}


# ============================================================================================
# npu_grouped_matmul
# ============================================================================================
GMM_MAX_LIST = 128            # x / weight list length; also group_list length for types 1 and 2
GMM_MAX_GROUPS = 1024         # groups of a single stacked weight
GMM_ACT_TYPES = (0, 1, 2, 4, 5)


@dataclass
class _Group:
    """One GEMM of a grouped matmul: where its A, B and output live."""

    x: int          # index into the x list
    row0: int       # first row of the group inside x[x] (m-axis grouping)
    col0: int       # first column inside x[x] (k-axis grouping)
    m: int
    k: int
    n: int
    w: int          # index into the weight list
    slot: int       # expert of a stacked (E, K, N) weight; 0 for a 2-D weight
    wrow0: int      # first weight row (k-axis grouping)
    out: int        # output index
    orow0: int      # first output row
    oslot: int      # output batch (k-axis grouping: one (M, N) result per group)
    param: int      # index of the group's bias / scale / antiquant parameters


@dataclass
class _Gmm:
    """The static facts of one npu_grouped_matmul call (everything but group_list's values)."""

    xs: list
    ws: list
    scenario: str             # "MMM", "SMM", "SMS", "MMS", "SSS", "KSPLIT"
    legacy: bool              # group_list is a List[int] (the older API)
    gl_kind: str              # "none", "list", "tensor"
    gl_type: int
    n_groups: int
    x_dt: D.DType             # logical dtypes (int4 for packed int32 words)
    w_dt: D.DType
    out_dt: D.DType
    mode: str                 # "float", "int32", "fixpipe", "dequant", "pertoken", "int4", "antiquant"
    act: int
    stacked: bool             # one (E, K, N) weight
    w_transposed: bool        # int4 words packed along K ((K/8, N) as torch shows a transposed (N, K/8))
    ks: list                  # K of each x
    ns: list                  # N of each weight
    aq_groups: list           # antiquant K-groups per weight (0: per-channel)
    kgroups: int              # int4: scale K-groups
    out_shapes: list


def _logical_k(t: NPUTensor, int4: bool) -> int:
    return t.shape[-1] * (INT4_PER_INT32 if int4 else 1)


class NpuGroupedMatmul(Op):
    name = "npu_grouped_matmul"
    FLOATS = (F16, BF16, F32)

    # ----- argument helpers -----
    def _tensor_list(self, a: Args, arg: str, *, optional: bool = True) -> list | None:
        v = a.get(arg)
        if v is None:
            if optional:
                return None
            raise TypeError(f"{self.name}: argument '{arg}' is required (a list of tensors)")
        if isinstance(v, NPUTensor) or not isinstance(v, (list, tuple)):
            raise TypeError(f"{self.name}: argument '{arg}' must be a list of tensors, got {type(v).__name__}")
        if not v:
            if optional:
                return None
            raise self.fail(arg, "must not be empty")
        for i, t in enumerate(v):
            if not isinstance(t, NPUTensor):
                raise TypeError(f"{self.name}: argument '{arg}[{i}]' must be a tensor, got {type(t).__name__}")
        if len(v) > GMM_MAX_LIST:
            raise self.fail(arg, f"has {len(v)} tensors; at most {GMM_MAX_LIST}")
        return list(v)

    def _int(self, a: Args, arg: str, default: int) -> int:
        if a.get(arg) is None:
            return default
        return self.int_arg(a, arg)

    # ----- static checks -----
    def _spec(self, a: Args, chip) -> _Gmm:
        xs = self._tensor_list(a, "x", optional=False)
        ws = self._tensor_list(a, "weight", optional=False)
        for arg in ("offset", "activation_input", "activation_quant_scale", "activation_quant_offset"):
            if a.get(arg) is not None:
                raise self.fail(arg, "only None is supported")
        for arg in ("x_dtype", "weight_dtype", "scale_dtype", "per_token_scale_dtype"):
            if a.get(arg) is not None:
                raise self.fail(arg, "must be None (the hifloat8 / MX formats it selects are not on this page)")
        split = self._int(a, "split_item", 0)
        if split not in (0, 1, 2, 3):
            raise self.fail("split_item", f"must be 0, 1, 2 or 3; got {split}")
        single_y = split in (2, 3)
        gl = a.get("group_list")
        if gl is None:
            gl_kind = "none"
        elif isinstance(gl, NPUTensor):
            gl_kind = "tensor"
        elif isinstance(gl, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                   for v in gl):
            gl_kind = "list"
        else:
            raise TypeError(f"{self.name}: argument 'group_list' must be a List[int] or an int64 tensor")
        gt = a.get("group_type")
        gl_type = self._int(a, "group_list_type", 0)
        act = self._int(a, "act_type", 0)
        legacy = gl_kind == "list"
        if legacy:
            if gt is not None:
                raise self.fail("group_type", "must be None when group_list is a List[int]")
            if gl_type != 0:
                raise self.fail("group_list_type", "must be left at its default when group_list is a List[int]")
            if act != 0:
                raise self.fail("act_type", "must be left at its default when group_list is a List[int]")
            gt = 0 if len(gl) else -1
        else:
            if gt is None:
                raise self.fail("group_type", "must be -1, 0 or 2 unless group_list is a List[int]")
            gt = self.int_arg(a, "group_type")
            if gt not in (-1, 0, 2):
                raise self.fail("group_type", f"must be -1 (no grouping), 0 (m axis) or 2 (k axis); got {gt}")
            if gl_type not in (0, 1, 2):
                raise self.fail("group_list_type", "must be 0 (cumsum), 1 (sizes) or 2 ([index, size] pairs); got "
                                                   f"{gl_type}")
        if act not in GMM_ACT_TYPES:
            raise self.fail("act_type", f"must be one of {GMM_ACT_TYPES} (0 none, 1 ReLU, 2 GELU-tanh, 4 FastGELU, "
                                        f"5 SiLU; 3 is not supported); got {act}")
        p310 = chip is not None and chip.family == "310P"

        # ----- dtypes -----
        x_dtype = xs[0].dtype
        w_dtype = ws[0].dtype
        for arg, lst, dt in (("x", xs, x_dtype), ("weight", ws, w_dtype)):
            for i, t in enumerate(lst):
                if t.dtype is not dt:
                    raise TypeError(f"{self.name}: argument '{arg}[{i}]' has dtype {t.dtype.name}; every tensor of "
                                    f"'{arg}' must have {arg}[0]'s dtype {dt.name}")
        allowed_x = (F16,) if p310 else (F16, F32, BF16, I8, I32)
        self.check_dtype("x[0]", xs[0], allowed_x)
        self.check_dtype("weight[0]", ws[0], (F16,) if p310 else (F16, F32, BF16, I8, I32))
        if x_dtype in self.FLOATS and w_dtype is x_dtype:
            mode, x_dt, w_dt = "float", x_dtype, w_dtype
        elif x_dtype in (F16, BF16) and w_dtype in (I8, I32):
            mode, x_dt, w_dt = "antiquant", x_dtype, (I4 if w_dtype is I32 else I8)
        elif x_dtype is I8 and w_dtype is I8:
            mode, x_dt, w_dt = "int8", I8, I8
        elif x_dtype is I32 and w_dtype is I32:
            mode, x_dt, w_dt = "int4", I4, I4
        else:
            raise TypeError(f"{self.name}: argument 'weight' has dtype {w_dtype.name}; with x {x_dtype.name} that "
                            "is not a "
                            "documented combination")
        if legacy and mode == "int4":
            raise TypeError(f"{self.name}: argument 'group_list' must be a tensor for int4 inputs")
        if legacy and mode == "antiquant" and w_dt is I4:
            raise TypeError(f"{self.name}: argument 'group_list' must be a tensor for int4 weights")

        # ----- shapes and scenario -----
        x_int4 = x_dt is I4
        for i, t in enumerate(xs):
            if F.is_fractal(t.format):
                raise self.fail(f"x[{i}]", f"format must be ND; got {t.format.name}")
            if t.ndim < 2 or t.ndim > 6:
                raise self.fail(f"x[{i}]", f"must have 2 to 6 dimensions; got shape {t.shape}")
            if t.shape[-1] >= INNER_LIMIT:
                raise self.fail(f"x[{i}]", f"last dimension {t.shape[-1]} must be below {INNER_LIMIT}")
        for i, t in enumerate(ws):
            matrix_format(self, f"weight[{i}]", t)
            if t.ndim not in (2, 3):
                raise self.fail(f"weight[{i}]", f"must be 2-D or 3-D; got shape {t.shape}")
            if t.shape[-1] >= INNER_LIMIT:
                raise self.fail(f"weight[{i}]", f"last dimension {t.shape[-1]} must be below {INNER_LIMIT}")
        stacked = len(ws) == 1 and ws[0].ndim == 3
        if any(t.ndim == 3 for t in ws) and not stacked:
            raise self.fail("weight", "a 3-D weight must be the only tensor of the list (one stacked (E, K, N) weight)")
        ks = [_logical_k(t, x_int4) for t in xs]
        x_rows = [math.prod(t.shape[:-1]) for t in xs]
        w_int4 = w_dt is I4
        # int4 words are packed along N, or (shown as (K/8, N)) along K for a transposed weight
        w_transposed = bool(w_int4 and ws[0].shape[-2] * INT4_PER_INT32 == ks[0] and ws[0].shape[-2] != ks[0])
        ns, wks = [], []
        for t in ws:
            if w_int4 and w_transposed:
                ns.append(t.shape[-1])
                wks.append(t.shape[-2] * INT4_PER_INT32)
            else:
                ns.append(t.shape[-1] * (INT4_PER_INT32 if w_int4 else 1))
                wks.append(t.shape[-2])
        single_x = len(xs) == 1
        n_w = ws[0].shape[0] if stacked else len(ws)

        if gt == -1:
            if gl_kind != "none":
                raise self.fail("group_list", "must be None when group_type is -1 (no grouping)")
            if single_y:
                raise self.fail("split_item", "must be 0 or 1 when group_type is -1 (one output per group)")
            scenario = "MMM"
        elif gt == 2:
            if gl_kind != "tensor":
                raise self.fail("group_list", "is required (an int64 tensor) when group_type is 2 (k-axis grouping)")
            if mode != "float":
                raise TypeError(f"{self.name}: argument 'group_type' 2 (k-axis grouping) supports "
                                "float16/bfloat16/float32 "
                                "only; quantisation needs group_type -1 or 0")
            if not single_x or len(ws) != 1 or stacked or xs[0].ndim != 2:
                raise self.fail("weight", "group_type 2 takes one 2-D x (M, K) and one 2-D weight (K, N)")
            if not single_y:
                raise self.fail("split_item", "must be 2 or 3 when group_type is 2 (one output tensor)")
            scenario = "KSPLIT"
        else:
            if stacked:
                if not single_x:
                    raise self.fail("x", "a stacked (E, K, N) weight takes a single x")
                scenario = "SSS"
            elif single_x:
                scenario = "SMS" if single_y else "SMM"
            else:
                scenario = "MMS" if single_y else "MMM"
            if scenario == "SMM" and not legacy:
                raise self.fail("split_item", "must be 2 or 3 when x is one tensor and group_list a tensor (single "
                                              "output)")
            if scenario in ("SSS", "SMS", "SMM") and gl_kind == "none":
                raise self.fail("group_list", "is required when x is a single tensor split into groups")
            if scenario == "SSS" and not single_y:
                raise self.fail("split_item", "must be 2 or 3 with a stacked weight (single output)")
        if p310 and scenario != "SSS":
            raise self.fail("group_type", f"{chip.name} supports only group_type 0 with single x, weight and y")
        if scenario in ("SMS", "SMM", "MMS", "SSS", "KSPLIT") and any(t.ndim != 2 for t in xs):
            raise self.fail("x", "every x tensor must be 2-D when groups share an x or an output")
        if scenario == "MMM" and len(xs) != len(ws):
            raise self.fail("weight", f"has {len(ws)} tensors; one per x tensor ({len(xs)}) when each group is "
                                      "separate")
        if scenario == "MMS" and len(xs) != len(ws):
            raise self.fail("weight", f"has {len(ws)} tensors; one per x tensor ({len(xs)})")
        if scenario == "MMM" and len({t.ndim for t in xs}) != 1:
            raise self.fail("x", "every x tensor must have the same number of dimensions")
        if scenario == "MMM" and gl_kind == "list" and any(t.ndim != 2 for t in xs):
            raise self.fail("group_list", "must be omitted when x tensors have more than 2 dimensions")
        if single_y and len(set(ns)) != 1:
            raise self.fail("weight", f"every weight must have the same N for a single output; got {ns}")
        # K of every (x, weight) pair
        if scenario in ("MMM", "MMS"):
            pairs = list(zip(range(len(xs)), range(len(ws))))
        else:
            pairs = [(0, i) for i in range(len(ws))]
        for xi, wi in pairs:
            if ks[xi] != wks[wi]:
                raise self.fail(f"weight[{wi}]", f"K={wks[wi]} must equal x[{xi}]'s K={ks[xi]}")

        # ----- number of groups and group_list form -----
        if scenario == "SSS":
            n_groups = n_w if gl_type != 2 else None
            if n_w > GMM_MAX_GROUPS:
                raise self.fail("weight", f"{n_w} experts exceed the {GMM_MAX_GROUPS} groups supported")
        elif scenario == "KSPLIT":
            n_groups = None
        else:
            n_groups = len(ws) if scenario != "MMM" else len(xs)
        if gl_kind == "tensor":
            g = gl
            self.check_dtype("group_list", g, [I64])
            if gl_type == 2:
                if mode != "int8" or gt != 0:
                    raise self.fail("group_list_type", "2 is supported only for int8 x and weight with group_type 0")
                if g.ndim != 2 or g.shape[1] != 2:
                    raise self.fail("group_list", "must be (E, 2) [[index, size], ...] for group_list_type 2; got "
                                                  f"{g.shape}")
                count = g.shape[0]
            else:
                if g.ndim != 1:
                    raise self.fail("group_list", f"must be 1-D; got shape {g.shape}")
                count = g.shape[0]
                if gl_type == 1 and count == 1 and scenario != "SSS":
                    raise self.fail("group_list", "must not have length 1 when group_list_type is 1")
            if n_groups is not None and gl_type != 2 and count != n_groups:
                raise self.fail("group_list", f"has {count} entries; one per group ({n_groups}) is required")
            limit = GMM_MAX_GROUPS if scenario in ("SSS", "KSPLIT") else GMM_MAX_LIST
            if count > limit:
                raise self.fail("group_list", f"has {count} entries; at most {limit}")
            if n_groups is None:
                n_groups = count
        elif gl_kind == "list":
            if len(gl) == 1:
                raise self.fail("group_list", "a List[int] group_list must not have length 1")
            if any(v < 0 for v in gl) or any(b <= a_ for a_, b in zip(gl, gl[1:])):
                raise self.fail("group_list", f"must be a non-negative strictly increasing sequence; got {list(gl)}")
            if len(gl) != n_groups:
                raise self.fail("group_list", f"has {len(gl)} entries; one per group ({n_groups}) is required")
        if a.get("tuning_config") is not None:
            tc = a.tuning_config
            if not isinstance(tc, (list, tuple)) or not tc or not all(isinstance(v, (int, np.integer)) for v in tc):
                raise TypeError(f"{self.name}: argument 'tuning_config' must be a non-empty list of ints")
            if mode != "int8" or not single_x or len(ws) != 1:
                raise self.fail("tuning_config", "is only for int8 quantisation with a single x and a single weight")

        # ----- quantisation parameters -----
        bias = self._param_list(a, "bias", len(ws))
        scale = self._param_list(a, "scale", len(ws))
        pts = self._param_list(a, "per_token_scale", len(xs))
        aqs = self._param_list(a, "antiquant_scale", len(ws))
        aqo = self._param_list(a, "antiquant_offset", len(ws))
        out_arg = a.get("output_dtype")
        out_req = None if out_arg is None else self.dtype_arg(a, "output_dtype")
        if legacy and pts is not None:
            raise self.fail("per_token_scale", "must be None when group_list is a List[int]")
        if mode in ("float", "antiquant", "int4") or (mode == "int8" and scale is None):
            if mode != "int4" and pts is not None:
                raise self.fail("per_token_scale", "is only for int8/int4 per-token quantisation")
        if mode != "antiquant" and (aqs is not None or aqo is not None):
            raise self.fail("antiquant_scale" if aqs is not None else "antiquant_offset",
                            "is only for float x with int8/int4 weights (fake quantisation)")
        if mode in ("float", "antiquant") and scale is not None:
            raise self.fail("scale", "is only for int8/int4 inputs")
        kgroups, aq_groups = 1, [0] * len(ws)
        if mode == "float":
            out_dt = x_dt
            want_bias = {F16: F16, BF16: F32, F32: F32}[x_dt]
            if x_dt is F32 and not legacy and not (single_x and len(ws) == 1 and single_y):
                raise TypeError(f"{self.name}: argument 'x': float32 needs a single x, a single weight and a single "
                                "output")
        elif mode == "antiquant":
            if gt == 2:
                raise self.fail("group_type", "fake quantisation needs group_type -1 or 0")
            if aqs is None:
                raise self.fail("antiquant_scale", "is required for float x with int8/int4 weights")
            out_dt = x_dt
            want_bias = {F16: F16, BF16: F32}[x_dt]
            for i, t in enumerate(aqs):
                if t.dtype is not x_dt:
                    raise TypeError(f"{self.name}: argument 'antiquant_scale[{i}]' has dtype {t.dtype.name}; it must "
                                    f"match x's {x_dt.name}")
            if aqo is not None:
                for i, (o, s_) in enumerate(zip(aqo, aqs)):
                    if o.dtype is not s_.dtype:
                        raise TypeError(f"{self.name}: argument 'antiquant_offset[{i}]' has dtype {o.dtype.name}; it "
                                        f"must match antiquant_scale's {s_.dtype.name}")
                    if o.shape != s_.shape:
                        raise self.fail(f"antiquant_offset[{i}]", f"shape {o.shape} must equal antiquant_scale's "
                                                                  f"{s_.shape}")
            for i, t in enumerate(aqs):
                aq_groups[i] = self._aq_groups(f"antiquant_scale[{i}]", t, stacked, n_w, 
                                               ns[i] if not stacked else ns[0],
                                               wks[i], w_dt)
            if stacked:
                aq_groups = [aq_groups[0]]
        elif mode == "int8":
            if gt == 2:
                raise self.fail("group_type", "quantisation needs group_type -1 or 0")
            want_bias = I32
            if scale is None:
                if out_req is not I32:
                    raise self.fail("scale", "is required for int8 inputs unless output_dtype is int32")
                mode, out_dt = "int32", I32
            else:
                sd = scale[0].dtype
                for i, t in enumerate(scale):
                    if t.dtype is not sd:
                        raise TypeError(f"{self.name}: argument 'scale[{i}]' has dtype {t.dtype.name}; every scale "
                                        "must have "
                                        f"scale[0]'s dtype {sd.name}")
                if legacy and sd is not I64:
                    raise TypeError(f"{self.name}: argument 'scale' must be int64 when group_list is a List[int]")
                if sd is I64:
                    if pts is not None:
                        raise self.fail("per_token_scale", "per-token quantisation takes a float32 or bfloat16 scale")
                    if out_req not in (None, I8):
                        raise TypeError(f"{self.name}: argument 'output_dtype' must be None or int8 with an int64 "
                                        "scale (int8 output)")
                    mode, out_dt = "fixpipe", I8
                elif sd in (BF16, F32):
                    want_out = BF16 if sd is BF16 else F16
                    if out_req is not want_out:
                        raise TypeError(f"{self.name}: argument 'output_dtype' must be {want_out.name} with a "
                                        f"{sd.name} scale")
                    mode, out_dt = ("pertoken" if pts is not None else "dequant"), want_out
                else:
                    raise TypeError(f"{self.name}: argument 'scale' has dtype {sd.name}; allowed: int64, bfloat16, "
                                    "float32")
                self._check_scales(scale, stacked, n_w, ns, 1)
        else:   # int4
            if gt == 2:
                raise self.fail("group_type", "quantisation needs group_type -1 or 0")
            want_bias = None
            if scale is None:
                raise self.fail("scale", "is required for int4 x and weight")
            for i, t in enumerate(scale):
                if t.dtype is not I64:
                    raise TypeError(f"{self.name}: argument 'scale[{i}]' must be int64 (uint64 words) for int4 inputs")
            if out_req not in (F16, BF16):
                raise TypeError(f"{self.name}: argument 'output_dtype' must be float16 or bfloat16 for int4 inputs")
            out_dt = out_req
            kgroups = self._check_scales(scale, stacked, n_w, ns, None)
            if ks[0] % kgroups:
                raise self.fail("scale", f"its {kgroups} K-groups must divide K={ks[0]}")
        if mode not in ("pertoken", "int4") and act != 0:
            raise self.fail("act_type", "activations are supported only in per-token quantisation")
        if out_req is not None and out_req is not out_dt:
            raise TypeError(f"{self.name}: argument 'output_dtype' is {out_req.name}; this scenario outputs "
                            f"{out_dt.name}")
        if bias is not None:
            if want_bias is None:
                raise self.fail("bias", "is not supported for int4 inputs")
            if scenario == "KSPLIT":
                raise self.fail("bias", "is not supported with group_type 2")
            for i, t in enumerate(bias):
                if t.dtype is not want_bias:
                    raise TypeError(f"{self.name}: argument 'bias[{i}]' has dtype {t.dtype.name}; this scenario takes "
                                    f"{want_bias.name}")
                want = (n_w, ns[0]) if stacked else (ns[i],)
                if t.shape != want:
                    raise self.fail(f"bias[{i}]", f"shape {t.shape} must be {want}")
        if pts is not None:
            for i, t in enumerate(pts):
                self.check_dtype(f"per_token_scale[{i}]", t, [F32])
                if t.shape != (x_rows[i],):
                    raise self.fail(f"per_token_scale[{i}]", f"shape {t.shape} must be ({x_rows[i]},): one per row "
                                                             "of x")
        if p310 and (out_dt is not F16 or ns[0] % 16):
            raise self.fail("weight", f"{chip.name}: float16 only, with N a multiple of 16")

        # ----- outputs -----
        if scenario == "KSPLIT":
            out_shapes = [(n_groups, xs[0].shape[0], ns[0])]
        elif single_y:
            out_shapes = [(sum(x_rows), ns[0])]
        elif scenario == "SMM":
            cum = [0] + list(gl)
            out_shapes = [(cum[i + 1] - cum[i], ns[i]) for i in range(len(ws))]
        else:
            out_shapes = [(*t.shape[:-1], ns[i]) for i, t in enumerate(xs)]
        spec = _Gmm(xs, ws, scenario, legacy, gl_kind, gl_type, n_groups, x_dt, w_dt, out_dt, mode, act, stacked,
                    w_transposed, ks, ns, aq_groups, kgroups, out_shapes)
        if gl_kind == "list":
            self._check_sizes(spec, list(gl), x_rows)
        elif gl_kind == "tensor" and gl.data is not None:
            self._sizes(a, spec, actual=True)        # value checks where the values exist (full mode)
        return spec

    def _param_list(self, a: Args, arg: str, count: int) -> list | None:
        lst = self._tensor_list(a, arg)
        if lst is not None and len(lst) != count:
            raise self.fail(arg, f"has {len(lst)} tensors; it must have {count} (one per "
                                 f"{'x' if arg == 'per_token_scale' else 'weight'} tensor)")
        return lst

    def _check_scales(self, scale, stacked, n_w, ns, kgroups) -> int:
        """Shapes of per-group quantisation scales; returns the number of K-groups (int4)."""
        g_seen = 1
        for i, t in enumerate(scale):
            n = ns[0] if stacked else ns[i]
            lead = (n_w,) if stacked else ()
            ok = t.shape == (*lead, n)
            grouped = t.ndim == len(lead) + 2 and t.shape[:len(lead)] == lead and t.shape[-1] == n
            if kgroups is None and not ok and grouped:
                g_seen = t.shape[-2]
                ok = True
            if not ok:
                want = f"{(*lead, n)}" + (f" or {(*lead, 'G', n)}" if kgroups is None else "")
                raise self.fail(f"scale[{i}]", f"shape {t.shape} must be {want}")
        return g_seen

    def _aq_groups(self, arg, t, stacked, n_w, n, k, w_dt) -> int:
        lead = (n_w,) if stacked else ()
        if t.shape == (*lead, n):
            return 0
        if t.ndim == len(lead) + 2 and t.shape[:len(lead)] == lead and t.shape[-1] == n:
            g = t.shape[-2]
            if w_dt is I8:
                raise self.fail(arg, "int8 weights support per-channel antiquantisation only")
            if g < 1 or k % g:
                raise self.fail(arg, f"its {g} per-group partitions must divide K={k}")
            return g
        raise self.fail(arg, f"shape {t.shape} must be {(*lead, n)} (per channel) or {(*lead, 'G', n)} (per group)")

    # ----- group sizes -----
    def _check_sizes(self, spec: _Gmm, gl: list, x_rows: list) -> None:
        """A List[int] group_list: cumulative ends along x's rows."""
        sizes = [b - a_ for a_, b in zip([0] + gl, gl)]
        if spec.scenario in ("MMM", "MMS"):
            if sizes != x_rows:
                raise self.fail("group_list", f"its differences {sizes} must equal each x tensor's rows {x_rows}")
        elif gl[-1] != x_rows[0]:
            raise self.fail("group_list", f"its last value {gl[-1]} must equal x's rows {x_rows[0]}")

    def _sizes(self, a: Args, spec: _Gmm, *, actual: bool) -> tuple[list[int], list[int]]:
        """(group sizes along the grouped axis, expert slot per group). ``actual``: from the
        group_list values (checked); otherwise a List[int] as given, a tensor as an even split."""
        x_rows = [math.prod(t.shape[:-1]) for t in spec.xs]
        total = spec.ks[0] if spec.scenario == "KSPLIT" else x_rows[0]
        g = spec.n_groups
        if spec.gl_kind == "list":
            gl = list(a.group_list)
            return [b - a_ for a_, b in zip([0] + gl, gl)], list(range(g))
        if spec.gl_kind == "none":
            return x_rows, list(range(len(x_rows)))
        if not actual:
            if spec.scenario == "MMS":
                return x_rows, list(range(g))
            base, extra = divmod(total, g)
            n_w = spec.ws[0].shape[0] if spec.stacked else len(spec.ws)
            return [base + (i < extra) for i in range(g)], [i % n_w for i in range(g)]
        v = np.asarray(a.group_list.data).astype(np.int64)
        axis = "K" if spec.scenario == "KSPLIT" else "x's rows"
        if spec.gl_type == 2:
            slots, sizes = v[:, 0].tolist(), v[:, 1].tolist()
            n_w = spec.ws[0].shape[0] if spec.stacked else len(spec.ws)
            if any(s < 0 or s >= n_w for s in slots):
                raise self.fail("group_list", f"group indices {slots} must lie in [0, {n_w})")
        elif spec.gl_type == 1:
            sizes, slots = v.tolist(), list(range(g))
        else:
            if (np.diff(v) < 0).any() if v.size else False:
                raise self.fail("group_list", f"must be non-decreasing for group_list_type 0; got {v.tolist()}")
            sizes, slots = np.diff(np.concatenate([[0], v])).tolist(), list(range(g))
        if any(s < 0 for s in sizes):
            raise self.fail("group_list", f"group sizes must be non-negative; got {sizes}")
        if spec.scenario == "MMS":
            if sizes != x_rows:
                raise self.fail("group_list", f"group sizes {sizes} must equal each x tensor's rows {x_rows}")
        elif sum(sizes) > total:
            raise self.fail("group_list", f"its groups cover {sum(sizes)} rows; {axis} has only {total}")
        return sizes, slots

    def _groups(self, spec: _Gmm, sizes: list[int], slots: list[int]) -> list[_Group]:
        out = []
        cum = 0
        for i, size in enumerate(sizes):
            sc = spec.scenario
            if sc == "MMM":
                out.append(_Group(i, 0, 0, size, spec.ks[i], spec.ns[i], i, 0, 0, i, 0, 0, i))
            elif sc == "SMM":
                out.append(_Group(0, cum, 0, size, spec.ks[0], spec.ns[i], i, 0, 0, i, 0, 0, i))
            elif sc == "SMS":
                out.append(_Group(0, cum, 0, size, spec.ks[0], spec.ns[i], i, 0, 0, 0, cum, 0, i))
            elif sc == "MMS":
                out.append(_Group(i, 0, 0, size, spec.ks[i], spec.ns[i], i, 0, 0, 0, cum, 0, i))
            elif sc == "SSS":
                s = slots[i]
                out.append(_Group(0, cum, 0, size, spec.ks[0], spec.ns[0], 0, s, 0, 0, cum, 0, s))
            else:   # KSPLIT
                out.append(_Group(0, 0, cum, spec.xs[0].shape[0], size, spec.ns[0], 0, 0, cum, 0, 0, i, 0))
            cum += size
        return out

    # ----- infer / compute -----
    def infer(self, a: Args, chip):
        spec = self._spec(a, chip)
        return tuple(TensorMeta(tuple(s), spec.out_dt) for s in spec.out_shapes)

    def _weight_values(self, spec: _Gmm, g: _Group) -> np.ndarray:
        """The (K, N) weight of a group as numbers (int4 words unpacked)."""
        w = spec.ws[g.w].data
        if spec.stacked:
            w = w[g.slot]
        if spec.w_dt is I4:
            from .quant import int4_values
            w = int4_values(w.T).T if spec.w_transposed else int4_values(w)
        return w[g.wrow0:g.wrow0 + g.k] if spec.scenario == "KSPLIT" else w

    def _param(self, a: Args, spec: _Gmm, arg: str, g: _Group) -> np.ndarray | None:
        lst = a.get(arg)
        if lst is None:
            return None
        return lst[0].data[g.param] if spec.stacked else lst[g.param].data

    def compute(self, a: Args, outs):
        from .quant import int4_values, quant_param_offset, quant_param_scale, to_int8_saturated
        spec = self._spec(a, None)          # infer has run the chip's checks
        sizes, slots = self._sizes(a, spec, actual=True)
        groups = self._groups(spec, sizes, slots)
        results = [np.zeros(o.shape, dtype=o.dtype.np_dtype) for o in outs]
        flat = [r.reshape(-1, r.shape[-1]) if spec.scenario != "KSPLIT" else r for r in results]
        xs = []
        for t in spec.xs:
            v = int4_values(t.data) if spec.x_dt is I4 else t.data
            xs.append(v.reshape(-1, v.shape[-1]))
        pts = a.get("per_token_scale")
        for g in groups:
            if g.m == 0:
                continue
            xg = xs[g.x][g.row0:g.row0 + g.m, g.col0:g.col0 + g.k]
            wg = self._weight_values(spec, g)
            bias = self._param(a, spec, "bias", g)
            mode = spec.mode
            if mode == "float":
                acc = float_matmul(xg, wg)
                if bias is not None:
                    acc = acc + bias.astype(np.float32)
                y = D.cast(acc, spec.out_dt)
            elif mode == "antiquant":
                s = self._param(a, spec, "antiquant_scale", g).astype(np.float32)
                o = self._param(a, spec, "antiquant_offset", g)
                wf = wg.astype(np.float32)
                if s.ndim == 2:     # per group along K
                    reps = g.k // s.shape[0]
                    s = np.repeat(s, reps, axis=0)
                    o = None if o is None else np.repeat(o.astype(np.float32), reps, axis=0)
                if o is not None:
                    wf = wf + o.astype(np.float32)
                w_deq = D.cast(wf * s, spec.x_dt)                    # the cube consumes x's dtype
                acc = float_matmul(xg, w_deq)
                if bias is not None:
                    acc = acc + bias.astype(np.float32)
                y = D.cast(acc, spec.out_dt)
            elif mode in ("int32", "fixpipe", "dequant", "pertoken"):
                acc = int_matmul(xg, wg)
                if bias is not None:
                    acc = acc + bias.astype(np.int64)
                if mode == "int32":
                    y = wrap_int32(acc)
                else:
                    sw = self._param(a, spec, "scale", g)
                    if mode == "fixpipe":
                        y = to_int8_saturated(acc.astype(np.float32) * quant_param_scale(sw) + quant_param_offset(sw))
                    else:
                        v = acc.astype(np.float32) * sw.astype(np.float32)
                        if mode == "pertoken":
                            v = v * pts[g.x].data[g.row0:g.row0 + g.m, None].astype(np.float32)
                            v = activation(v, spec.act)
                        y = D.cast(v, spec.out_dt)
            else:   # int4: per K-group partials scaled by the group's weight scale
                sw = self._param(a, spec, "scale", g)
                sf = quant_param_scale(sw).reshape(-1, g.n)
                gk = g.k // sf.shape[0]
                v = np.zeros((g.m, g.n), dtype=np.float32)
                for j in range(sf.shape[0]):
                    part = int_matmul(xg[:, j * gk:(j + 1) * gk], wg[j * gk:(j + 1) * gk])
                    v = v + part.astype(np.float32) * sf[j]
                if pts is not None:
                    v = v * pts[g.x].data[g.row0:g.row0 + g.m, None].astype(np.float32)
                y = D.cast(activation(v, spec.act), spec.out_dt)
            if spec.scenario == "KSPLIT":
                flat[0][g.oslot] = y
            else:
                flat[g.out][g.orow0:g.orow0 + g.m] = y
        return tuple(results)

    # ----- plan -----
    def _plans(self, a: Args, outs, chip, tiling=None):
        spec = self._spec(a, chip)
        sizes, slots = self._sizes(a, spec, actual=False)
        groups = [g for g in self._groups(spec, sizes, slots) if g.m > 0 and g.k > 0]
        if not groups:
            return None
        w_it = spec.w_dt.itemsize
        cube_dt = spec.x_dt
        kg = spec.kgroups if spec.mode == "int4" else 1
        if tiling is None:
            total_m = sum(g.m for g in groups)
            rep = MatmulProblem(1, max(1, total_m // len(groups)), groups[0].n, groups[0].k // kg,
                                CubeOperand("x", 1, 1, cube_dt), CubeOperand("w", 1, 1, cube_dt), "y", spec.out_dt)
            tiling = default_tiling(chip, rep)
        pre, post = [], []
        ws_bytes = 0
        # fake quantisation: dequantise every weight matrix into the workspace first (NZ fp16/bf16)
        w_region = {}
        if spec.mode == "antiquant":
            parts = []
            mats = [(0, e) for e in range(spec.ws[0].shape[0])] if spec.stacked else \
                [(i, 0) for i in range(len(spec.ws))]
            has_offset = a.get("antiquant_offset") is not None
            for wi, e in mats:
                k = spec.ks[0] if len(spec.ks) == 1 else spec.ks[wi]
                n = spec.ns[wi]
                w_region[(wi, e)] = ws_bytes
                ag = spec.aq_groups[0 if spec.stacked else wi]
                s_item = spec.x_dt.itemsize
                # per channel: one row of scales shared by every weight row; per group: a row's share
                sc = (f"antiquant_scale[{wi}]", s_item, "shared", n) if not ag else \
                    (f"antiquant_scale[{wi}]", s_item * ag / k, "row")
                off = (f"antiquant_offset[{wi}]",) + sc[1:] if has_offset else None
                p = antiquant_prepass_plan(self.name + ".antiquant", chip, k, n, f"weight[{wi}]", w_it,
                                           scale=sc, offset=off, out="workspace", out_itemsize=spec.x_dt.itemsize)
                if e:       # expert e of a stacked weight and its parameter rows
                    relayout(p, chip, f"weight[{wi}]", shift(matrix_bytes(k, n, spec.w_dt, False) * e))
                    for t in [sc[0]] + ([off[0]] if off else []):
                        relayout(p, chip, t, shift(int(e * max(ag, 1) * n * s_item)))
                relayout(p, chip, "workspace", shift(ws_bytes))
                parts.append(p)
                ws_bytes += matrix_bytes(k, n, spec.x_dt, True)
            pre.append(merge_kernels(self.name + ".antiquant", chip, parts))
        # the cube's destination for each group: the output, or int32 partials in the workspace
        to_ws = spec.mode in ("dequant", "pertoken", "int4")
        out_region = {}
        if to_ws:
            for o, shape in enumerate(spec.out_shapes):
                out_region[o] = ws_bytes
                ws_bytes += math.prod(shape) * 4 * kg
        cube_parts = []
        for g in groups:
            cube_parts.append(self._group_plan(a, spec, chip, g, tiling, to_ws, w_region, out_region, kg))
        cube = merge_kernels(self.name, chip, cube_parts)
        if to_ws:
            for o, shape in enumerate(spec.out_shapes):
                rows = math.prod(shape[:-1])
                n = shape[-1]
                s = a.get("scale")
                sname = "scale[0]" if spec.stacked else f"scale[{o if spec.scenario == 'MMM' else 0}]"
                s_cols = n * kg
                pt = a.get("per_token_scale")
                p = dequant_epilogue_plan(self.name + ".dequant", chip, rows, n, f"out{o}", spec.out_dt, partials=kg,
                                          scale=(sname, s[0].dtype.itemsize, s_cols),
                                          pertoken=(f"per_token_scale[{o if spec.scenario == 'MMM' else 0}]", 4.0)
                                          if pt is not None else None, act=spec.act != 0)
                relayout(p, chip, "workspace", shift(out_region[o]))
                post.append(p)
            post = [merge_kernels(self.name + ".dequant", chip, post)]      # one epilogue kernel for all outputs
        plans = pre + [cube] + post
        for p in plans:
            if "workspace" in p.tensors:
                p.workspace_bytes = ws_bytes
        return plans

    def _group_plan(self, a: Args, spec: _Gmm, chip, g: _Group, tiling, to_ws, w_region, out_region, kg):
        x_it = spec.x_dt.itemsize
        cube_dt = spec.x_dt
        K = spec.ks[g.x]
        n = g.n
        # operand B: the weight, or its dequantised copy in the workspace
        if spec.mode == "antiquant":
            b_name, b_dt, b_nz, b_tr = "workspace", spec.x_dt, True, False
            b_base = w_region[(g.w, g.slot)]
        else:
            b_name, b_dt = f"weight[{g.w}]", spec.w_dt
            b_nz = spec.ws[g.w].format == F.Format.FRACTAL_NZ
            b_tr = spec.w_transposed
            b_base = g.slot * matrix_bytes(*((n, K) if b_tr else (K, n)), b_dt, b_nz) + \
                g.wrow0 * int(n * b_dt.itemsize)
        gk = g.k // kg
        A = CubeOperand(f"x[{g.x}]", g.m, gk, cube_dt, batch_stride=int(g.m * gk * x_it) if kg > 1 else 0)
        B = CubeOperand(b_name, gk, n, b_dt, b_tr, b_nz, batch_stride=matrix_bytes(*((n, gk) if b_tr else (gk, n)),
                                                                                  b_dt, b_nz) if kg > 1 else 0)
        if to_ws:
            out_name, out_dt = "workspace", I32
        else:
            out_name, out_dt = f"out{g.out}", spec.out_dt
        bias = a.get("bias")
        bias_name = None if bias is None else ("bias[0]" if spec.stacked else f"bias[{g.param}]")
        bias_item = 4.0 if bias is None else bias[0].dtype.itemsize
        scale_name = None
        if spec.mode == "fixpipe":
            scale_name = "scale[0]" if spec.stacked else f"scale[{g.param}]"
        p = MatmulProblem(kg, g.m, n, gk, A, B, out_name, out_dt, bias=bias_name, bias_itemsize=bias_item,
                          scale=scale_name, out_batch_stride=g.m * n * out_dt.itemsize if kg > 1 else 0)
        plans = matmul_plan(self.name, chip, p, tiling)
        if isinstance(plans, (list, tuple)):
            if len(plans) > 1:
                raise ISAError(f"{self.name}: split_k is not supported inside a grouped matmul")
            plans = plans[0]
        cube = plans
        # A: the group's rows (m grouping) or columns (k grouping, K-groups of int4) inside x
        if kg > 1 or g.col0:
            relayout(cube, chip, f"x[{g.x}]",
                     rows_locator(int(gk * x_it), int(K * x_it), base=int((g.row0 * K + g.col0) * x_it),
                                  batch_bytes=int(g.m * gk * x_it) if kg > 1 else None,
                                  place=lambda j: int(j * gk * x_it)), stride=int(K * x_it))
        elif g.row0:
            relayout(cube, chip, f"x[{g.x}]", shift(int(g.row0 * K * x_it)))
        if b_base:
            relayout(cube, chip, b_name, shift(int(b_base)))
        if to_ws:
            relayout(cube, chip, "workspace", shift(out_region[g.out] + g.orow0 * n * 4 * kg), out_itemsize=4)
        else:
            o_it = spec.out_dt.itemsize
            base = int((g.orow0 * n + g.oslot * g.m * n) * o_it)
            if base:
                relayout(cube, chip, out_name, shift(base), out_itemsize=o_it)
        if spec.stacked and bias_name and g.param:
            relayout(cube, chip, bias_name, shift(int(g.param * n * bias_item)))
        if spec.stacked and scale_name and g.param:
            relayout(cube, chip, scale_name, shift(int(g.param * n * 8)))
        return cube

    def plan(self, a: Args, outs, chip):
        return self._plans(a, outs, chip)

    def attrs(self, a: Args) -> dict:
        return {"group_type": a.get("group_type"), "split_item": a.get("split_item", 0),
                "group_list_type": a.get("group_list_type", 0)}


# ============================================================================================
# Studies: an op's kernels for given shapes, with a user tiling
# ============================================================================================
def _as_tensor(v: Any) -> Any:
    if isinstance(v, NPUTensor):
        return v
    if isinstance(v, TensorMeta):
        return NPUTensor(v.shape, v.dtype, v.format)
    if isinstance(v, np.ndarray):
        return NPUTensor(v.shape, D.get_dtype(v.dtype), data=v)
    if isinstance(v, tuple) and len(v) in (2, 3) and isinstance(v[0], (tuple, list)) and \
            not isinstance(v[1], (tuple, list, NPUTensor)):
        return NPUTensor(tuple(v[0]), v[1], v[2] if len(v) == 3 else F.Format.ND)
    if isinstance(v, list) and v and all(isinstance(x, (NPUTensor, TensorMeta, np.ndarray, tuple)) for x in v):
        return [_as_tensor(x) for x in v]
    return v


def plan_for(op_name: str, chip, tiling: MatmulTiling | None = None, **args) -> list[KernelPlan]:
    """The kernels ``op_name`` runs for these arguments on ``chip``, its cube kernel(s) built with
    ``tiling`` (None: the op's own choice). Tensor arguments may be NPUTensors, TensorMetas,
    numpy arrays or ``(shape, dtype[, format])`` tuples; nothing is computed, nothing is queued::

        plan_for("npu_linear", get_chip("Ascend910B2"), MatmulTiling(base_m=256, base_n=128),
                 input=((4096, 4096), "float16"), weight=((4096, 4096), "float16"))
    """
    from ascend_sim.hw import get_chip
    from . import get_op
    chip = get_chip(chip) if isinstance(chip, str) else chip
    op = get_op(op_name)
    if op is None or not hasattr(op, "_plans"):
        raise ValueError(f"plan_for: {op_name!r} is not a matmul-family op; these are: "
                         f"{', '.join(sorted(o.name for o in _study_ops()))}")
    a = Args({k: _as_tensor(v) for k, v in args.items()})
    outs = op.infer(a, chip)
    plans = op._plans(a, outs, chip, tiling)
    return [] if plans is None else (list(plans) if isinstance(plans, (list, tuple)) else [plans])


def tiling_for(op_name: str, chip, **args) -> MatmulTiling | None:
    """The MatmulTiling the op's (first) cube kernel uses for these arguments (None: no cube kernel)."""
    for p in plan_for(op_name, chip, None, **args):
        if isinstance(p.tiling, MatmulTiling) and p.core_type in ("AIC", "MIX"):
            return p.tiling
    return None


def _study_ops():
    from . import REGISTRY
    return [o for o in REGISTRY.values() if hasattr(o, "_plans")]


OPS = (NpuBmmV2(), NpuLinear(), NpuTransposeBatchmatmul(), NpuGroupedMatmul())
