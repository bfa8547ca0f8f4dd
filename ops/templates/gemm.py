"""GEMM composition for the matmul-family ops: the pieces npu_bmmV2, npu_linear, the grouped and
quantised matmuls and the fused matmul + communication ops share (so no op module imports
another's internals).

* :class:`GemmSide` + :func:`gemm_plans`: a batched GEMM whose operands broadcast over the
  output's batch dims, each side optionally placed by a :class:`~.cube.Layout` -- one cube kernel
  (two with split_k), or the vector fallback for dtypes the cube lacks
  (:func:`vector_matmul_plan`: multiply-accumulates in 32-bit lanes on the AIVs);
* the vector kernels around the cube, as row kernels (:class:`~.rows.RowKernel`: build one with
  ``.plan``, or several as one kernel with ``.part`` and :func:`~.vector.grouped_vector_kernel`):
  :func:`dequant_epilogue` (int32/fp32 partials -> output: scales, bias, activation) and
  :func:`antiquant_prepass` (a low-bit weight -> fp16/bf16 in the workspace);
* :func:`antiquant_mix_plan`: weight-quant matmuls as one MIX kernel whose vector cores
  dequantise, just ahead of their cube core, each K x N chunk it is about to load;
* GM workspace regions (:func:`ws_regions`, :func:`share_workspace`): the front door gives one
  workspace per call, shared by all of its kernels, so a region one kernel writes is where the
  next one reads it.

Every template operand carries its layout (cube: :class:`~.cube.Layout`; rows / elementwise: a
base offset, a leading dimension, batches), so no built plan is patched afterwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from ascend_sim import dtypes as D
from ascend_sim.isa import GM, Buf, ISAError, KernelPlan, Pipe, ProgramBuilder

from .cube import CrossCoreWaitCopy, GroupedScheduler, Layout, MatmulTiling, Operand, TileCopy, cube_kernel
from .matmul import MatmulProblem, check_cube_mode, check_tiling, default_tiling, matmul_plan
from .rows import RowKernel, RowOperand, RowStep

F16, I32 = D.float16, D.int32


def matrix_bytes(chip, rows: int, cols: int, dtype: D.DType, nz: bool) -> int:
    """GM bytes of one stored rows x cols matrix (NZ pads rows to the cube's m0 and cols to C0)."""
    if nz:
        m0 = chip.cube.m0
        return dtype.nbytes(-(-rows // m0) * m0 * (-(-cols // dtype.c0)) * dtype.c0)
    return dtype.nbytes(rows * cols)


def has_cube_mode(chip, dtype: D.DType) -> bool:
    return dtype.name in chip.cube.macs_per_cycle


# ============================================================================================
# One GEMM: the cube template with batch broadcasting, or the vector fallback
# ============================================================================================
@dataclass(frozen=True)
class GemmSide:
    """One GEMM operand as an op sees it: plan tensor name, cube dtype (int4 for packed words),
    the matrix as the product uses it (A: M x K, B: K x N), its batch dims aligned to the output's
    (1 = broadcast), whether it is stored transposed, whether it is FRACTAL_NZ, and where it sits
    (None: batches dense from offset 0, broadcast as ``batch`` says)."""

    name: str
    dtype: D.DType
    rows: int
    cols: int
    batch: tuple = ()
    transposed: bool = False
    nz: bool = False
    layout: Layout | None = None

    @property
    def stored(self) -> tuple[int, int]:
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    def matrix_bytes(self, chip) -> int:
        r, c = self.stored
        return matrix_bytes(chip, r, c, self.dtype, self.nz)

    def operand(self, chip, out_batch: tuple) -> Operand:
        layout = self.layout or Layout.broadcast(out_batch, self.batch, self.matrix_bytes(chip))
        return Operand(self.name, self.rows, self.cols, self.dtype, self.transposed, self.nz, layout)


def gemm_problem(chip, out_batch: tuple, a: GemmSide, b: GemmSide, out: str, out_dtype: D.DType, *,
                 out_layout: Layout | None = None, bias: str | None = None, bias_itemsize: float = 4.0,
                 scale: str | None = None, scale_per_tensor: bool = False) -> MatmulProblem:
    return MatmulProblem(math.prod(out_batch), a.rows, b.cols, a.cols, a.operand(chip, out_batch), b.operand(chip, out_batch),
                         out, out_dtype, bias=bias, bias_itemsize=bias_itemsize, scale=scale,
                         scale_per_tensor=scale_per_tensor, out_layout=out_layout)


def gemm_tiling(chip, out_batch: tuple, a: GemmSide, b: GemmSide) -> MatmulTiling | None:
    """The tiling gemm_plans picks by itself (None: the GEMM runs on the vector units)."""
    if not has_cube_mode(chip, a.dtype) or a.cols == 0:
        return None
    return default_tiling(chip, gemm_problem(chip, out_batch, a, b, "out", F16))


def gemm_plans(name: str, chip, out_batch: tuple, a: GemmSide, b: GemmSide, out: str, out_dtype: D.DType, *,
               bias: str | None = None, bias_itemsize: float = 4.0, scale: str | None = None,
               scale_per_tensor: bool = False, tiling: MatmulTiling | None = None, out_layout: Layout | None = None,
               single: str | None = None, tile: TileCopy | None = None) -> list[KernelPlan]:
    """The kernel(s) of ``out[batch] = a[batch] @ b[batch]`` (+bias, dequant scale), operands
    broadcast over ``out_batch``: one cube kernel (two with split_k), or the vector fallback.
    ``single``: the GEMM must be one cube kernel (split_k raises ISAError, the reason given).
    K = 0: the product is zeros, so the kernel is :func:`zero_k_fill` (no cube, no MatmulTiling)."""
    if a.cols == 0:
        if tiling is not None:
            raise ISAError(f"{name}: K is 0: the output is filled by a vector kernel, which takes no MatmulTiling")
        return [zero_k_fill(math.prod(out_batch) * a.rows, b.cols, out, out_dtype, bias=bias,
                            bias_itemsize=bias_itemsize, scale=scale, scale_per_tensor=scale_per_tensor,
                            out_layout=out_layout, batch_rows=a.rows).plan(name, chip)]
    if not has_cube_mode(chip, a.dtype):
        if tiling is not None:
            raise ISAError(f"{name}: the cube of {chip.name} has no {a.dtype.name} mode; this GEMM runs on the vector "
                           "units and takes no MatmulTiling")
        return [vector_matmul_plan(name, chip, out_batch, a, b, out, out_dtype, bias=bias, bias_itemsize=bias_itemsize)]
    p = gemm_problem(chip, out_batch, a, b, out, out_dtype, out_layout=out_layout, bias=bias, bias_itemsize=bias_itemsize,
                     scale=scale, scale_per_tensor=scale_per_tensor)
    if single and tiling is not None and tiling.split_k > 1:
        raise ISAError(f"{name}: split_k is not supported: {single}")
    plans = matmul_plan(name, chip, p, tiling, tile=tile)
    return share_workspace(list(plans) if isinstance(plans, (list, tuple)) else [plans])


def zero_k_fill(rows: int, n: int, out: str, out_dtype: D.DType, *, bias: str | None = None,
                bias_itemsize: float = 4.0, bias_offset: int = 0, scale: str | None = None,
                scale_per_tensor: bool = False, out_layout: Layout | None = None, batch_rows: int = 0) -> RowKernel:
    """The kernel of a K = 0 GEMM: the sum over K is empty, so every output row is 0 (+ bias, x
    scale), written by the vector cores as torch_npu's kernels zero-fill the output -- a row
    kernel over ``rows`` rows of ``n``, reading only the bias / scale row (once per block).
    ``out_layout``: rows ``ld`` apart, batches of ``batch_rows`` rows ``batch_stride`` apart; a
    batch map (batches dealt into slabs, which tile the output) is written as one dense run."""
    L = out_layout or Layout()
    mapped = bool(L.batch_offsets)
    o = RowOperand(out, out_dtype.itemsize, offset=int(L.offset), ld_bytes=int(L.ld) if L.ld and not mapped else None,
                   batch_rows=batch_rows if L.batch_stride and not mapped else 0,
                   batch_stride=int(L.batch_stride) if not mapped else 0)
    inputs, steps = [], [RowStep("unary", out_dtype.name)]          # Duplicate 0 (or copy the bias row)
    if bias:
        inputs.append(RowOperand(bias, bias_itemsize, "shared", n, offset=bias_offset))
    if scale:
        inputs.append(RowOperand(scale, 8.0, "shared", 1 if scale_per_tensor else n))
        steps.append(RowStep("binary", "float32"))
    return RowKernel(rows, n, tuple(inputs), (o,), tuple(steps))


def grouped_cube_plan(name: str, chip, problems: list[MatmulProblem], tiling: MatmulTiling) -> KernelPlan:
    """One AIC kernel for several GEMMs (groups), dealt to the cores by the grouped scheduler."""
    for p in problems:
        check_cube_mode(name, chip, p.a.dtype)
        check_tiling(name, chip, tiling, p.a.dtype)
    if tiling.split_k > 1:
        raise ISAError(f"{name}: split_k is not supported inside a grouped matmul")
    return cube_kernel(name, chip, [p.gemm(chip) for p in problems], tiling, scheduler=GroupedScheduler())


# ----- the vector fallback: multiply-accumulate on the AIV lanes -----
def vector_matmul_plan(name: str, chip, out_batch: tuple, a: GemmSide, b: GemmSide, out: str, out_dtype: D.DType, *,
                       bias: str | None = None, bias_itemsize: float = 4.0) -> KernelPlan:
    """A GEMM on the vector cores for dtypes the cube lacks: each block takes output tiles of
    m0 rows (one cube fractal's worth) x up to one vector repeat of columns, streams K in chunks
    of A rows and B columns through UB (double-buffered), multiply-accumulates in 32-bit lanes,
    and stores the tile."""
    if a.layout is not None or b.layout is not None:
        raise ISAError(f"{name}: the vector GEMM reads dense operands only")
    batch = math.prod(out_batch)
    m, n, k = a.rows, b.cols, a.cols
    it = a.dtype.itemsize
    acc_item = 4
    block = chip.memory.block_bytes
    up = lambda v: math.ceil(v / block) * block   # noqa: E731
    tc = max(1, min(n, int(chip.vector.repeat_bytes // acc_item)))
    tr = min(m, chip.cube.m0)
    acc_bytes = up(tr * tc * acc_item)
    per_k = (tr + tc) * it
    kc = max(1, min(k, int((chip.buffers.ub - 2 * acc_bytes - 2 * block) // (2 * per_k))))
    a_at = Layout.broadcast(out_batch, a.batch, m * k * it)
    b_at = Layout.broadcast(out_batch, b.batch, k * n * it)
    tiles = [(bi, r0, c0) for bi in range(batch) for r0 in range(0, m, tr) for c0 in range(0, n, tc)]
    blocks_n = max(1, min(chip.vector_cores, len(tiles)))
    slot = up(kc * per_k)
    blocks = []
    V, M2, M3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3
    for blk in range(blocks_n):
        bld = ProgramBuilder(chip, "AIV")
        j = 0
        for t_i, (bi, r0, c0) in enumerate(tiles[blk::blocks_n]):
            rows, cols = min(tr, m - r0), min(tc, n - c0)
            a_base, b_base = a_at.batch_base(bi), b_at.batch_base(bi)
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
                bld.load_gm(Buf.UB, buf * slot + up(tr * kc * it), b.name,
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


# ============================================================================================
# Vector kernels around the cube
# ============================================================================================
def dequant_epilogue_plan(name: str, chip, rows: int, cols: int, out: str, out_dtype: D.DType, **kw) -> KernelPlan:
    """The :func:`dequant_epilogue` kernel, built."""
    return dequant_epilogue(rows, cols, out, out_dtype, **kw).plan(name, chip)


def dequant_epilogue(rows: int, cols: int, out: str, out_dtype: D.DType, *, partial: str = "workspace",
                     partial_at: int = 0, partials: int = 1, scale: tuple | None = None, pertoken: tuple | None = None,
                     bias: tuple | None = None, extra: list[tuple] = (), act: bool = False,
                     offset: tuple | None = None) -> RowKernel:
    """The AIV kernel that turns the cube's int32/fp32 partials (``partials`` per output element,
    e.g. one per K group, from byte ``partial_at`` of ``partial``) into the output: widen, scale
    per column (``scale`` = (tensor, itemsize, count): a row of ``count`` values shared by every
    row, or one when count is 1), per row (``pertoken`` = (tensor, itemsize per row)), add a float
    bias, activate, round. ``extra`` inputs: RowOperand fields (tensor, itemsize, kind, cols) read
    alongside."""
    inputs = [RowOperand(partial, 4.0 * partials, offset=partial_at)]
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
    return RowKernel(rows, cols, tuple(inputs), (RowOperand(out, out_dtype.itemsize),), tuple(steps), temps_bytes=4.0)


def antiquant_prepass(rows: int, cols: int, weight: RowOperand, *, scale: RowOperand, offset: RowOperand | None,
                      out: RowOperand) -> RowKernel:
    """The AIV kernel dequantising a low-bit weight (``rows`` x ``cols``) to fp16/bf16 in GM
    for the cube: widen, add the offset, multiply by the scale, round. ``scale``/``offset``: row
    operands (per-channel: shared; per-group: a row share); each operand placed by its layout."""
    inputs = [weight, scale]
    steps = [RowStep("unary", "float32")]
    if offset is not None:
        inputs.append(offset)
        steps.append(RowStep("binary", "float32"))
    steps += [RowStep("binary", "float32"), RowStep("unary", "float32")]
    return RowKernel(rows, cols, tuple(inputs), (out,), tuple(steps), temps_bytes=4.0)


# ============================================================================================
# Weight quantisation as one MIX kernel
# ============================================================================================
@dataclass(frozen=True)
class AntiquantWeight:
    """A low-bit weight the MIX kernel's vector cores dequantise: its (k, n) shape, tensor and
    item size (int4: 0.5), whether int4 words run along n with the matrix stored (n, k), the scale
    and offset tensors (per-tensor: one value; per-channel; per group of ``group`` rows of k) and
    the item size of the dequantised dtype."""

    k: int
    n: int
    weight: str
    w_item: float
    w_rows_along_n: bool
    scale: str
    s_item: float
    s_count: int
    group: int
    offset: str | None
    o_item: float
    out_item: float


def antiquant_cube(name: str, chip, a: GemmSide, w: AntiquantWeight, out: str, out_dtype: D.DType, *,
                   tiling: MatmulTiling | None = None, out_layout: Layout | None = None, **epilogue) -> KernelPlan:
    """The cube side of the weight-quant MIX kernel: ``a @ W`` with W read from the workspace in
    NZ, each B load waiting for the vector cores' cross-core flag."""
    b = GemmSide("workspace", a.dtype, w.k, w.n, nz=True)
    (cube,) = gemm_plans(name, chip, (), a, b, out, out_dtype, tiling=tiling, out_layout=out_layout,
                         single="the weight is dequantised per cube tile", tile=CrossCoreWaitCopy("workspace"),
                         **epilogue)
    return cube


def antiquant_mix_plan(name: str, chip, cube: KernelPlan, w: AntiquantWeight) -> KernelPlan:
    """The weight-quant kernel as Ascend runs it: a MIX kernel whose AIC blocks are ``cube``
    (:func:`antiquant_cube`) and whose AIV blocks, just ahead of each of their AIC's B loads,
    dequantise exactly that K x N chunk of the low-bit weight into the workspace and raise a
    cross-core flag the AIC waits for. Both halves of a block share one GM workspace, so the
    handover stays in L2 and AIV work overlaps the cube's."""
    ratio = 1 if chip.cores.coupled else 2
    block = chip.memory.block_bytes
    m0 = chip.cube.m0
    k, n, w_item = w.k, w.n, w.w_item
    fp_c0 = int(block // w.out_item)                      # NZ column block of the dequantised dtype
    col_bytes = -(-k // m0) * m0 * block                  # bytes of one NZ column block
    up = lambda v: math.ceil(v / block) * block           # noqa: E731
    flag = 0
    V, M2, M3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3
    blocks = []
    for blk in cube.blocks:
        aic = blk[0]
        loads = [aic.accesses[a] for kd, a in zip(aic.kind, aic.arg)
                 if kd == GM and aic.accesses[a].tensor == "workspace" and not aic.accesses[a].write]
        vecs = []
        for a_idx in range(ratio):
            b = ProgramBuilder(chip, "AIV")
            j = 0
            for acc in loads:
                cb0, rr0 = acc.offset // col_bytes, (acc.offset % col_bytes) // block
                rows_all = acc.row_bytes // block
                c0 = cb0 * fp_c0
                cols = max(1, min(n, (cb0 + acc.rows) * fp_c0) - c0)
                share = -(-rows_all // ratio)
                r_lo, r_hi = rr0 + a_idx * share, min(rr0 + rows_all, rr0 + (a_idx + 1) * share)
                per_row = cols * (w_item + 4 + w.out_item)                 # weight, fp32 temp, result
                scales = up(cols * (w.s_item + (w.o_item if w.offset else 0)) * (1 + (w.group > 0)))
                sub = max(1, int((chip.buffers.ub // 2 - scales) // per_row))
                slot = up(sub * per_row) + scales
                for r0 in range(r_lo, r_hi, sub):
                    rr = min(sub, r_hi - r0)
                    base = (j % 2) * slot
                    # event ids of their own for each AIV: the engine keys intra-core flags per
                    # block, so the two AIVs of a block must not share ids
                    buf = a_idx * 2 + j % 2
                    if j >= 2:
                        b.wait_flag(V, M2, buf)
                    if w.w_rows_along_n:          # int4 words packed along K: stored (N, K)
                        b.load_gm(Buf.UB, base, w.weight, int((c0 * k + r0) * w_item), cols, max(1, int(rr * w_item)),
                                  max(1, int(k * w_item)))
                    else:
                        b.load_gm(Buf.UB, base, w.weight, int((r0 * n + c0) * w_item), rr, max(1, int(cols * w_item)),
                                  max(1, int(n * w_item)))
                    s_row = (r0 // w.group) if w.group else 0
                    s_off = int((s_row * n + c0) * w.s_item) if w.s_count > 1 else 0
                    s_len = max(1, int((cols if w.s_count > 1 else 1) * w.s_item * (1 + (w.group > 0))))
                    b.load_gm(Buf.UB, base + slot - scales, w.scale, s_off, 1, s_len)
                    if w.offset:
                        b.load_gm(Buf.UB, base + slot - scales, w.offset, int(s_off * w.o_item / w.s_item), 1,
                                  max(1, int(s_len * w.o_item / w.s_item)))
                    b.set_flag(M2, V, buf)
                    b.wait_flag(M2, V, buf)
                    if j >= 2:
                        b.wait_flag(M3, V, buf)
                    elems = rr * cols
                    b.vector("unary", "float32", elems, addrs=(base,))          # widen to fp32
                    if w.offset:
                        b.vector("binary", "float32", elems, addrs=(base,))     # + offset
                    b.vector("binary", "float32", elems, addrs=(base,))         # * scale
                    b.vector("unary", "float32", elems, addrs=(base,))          # round to fp16/bf16
                    b.set_flag(V, M2, buf)
                    b.set_flag(V, M3, buf)
                    b.wait_flag(V, M3, buf)
                    b.store_gm(base, "workspace", int(cb0 * col_bytes + r0 * block), acc.rows, int(rr * block),
                               col_bytes)
                    b.set_flag(M3, V, buf)
                    j += 1
                b.cross_set(M3, flag)     # this chunk's rows are in the workspace
            vecs.append(b.build())
        blocks.append([aic] + vecs)
    tensors = tuple(dict.fromkeys(cube.tensors + (w.weight, w.scale) + ((w.offset,) if w.offset else ())))
    return KernelPlan(name, "MIX", blocks, tensors=tensors, mix_ratio=ratio, tiling=cube.tiling, flops=cube.flops,
                      workspace_bytes=matrix_bytes(chip, k, n, D.float16, True))


# ============================================================================================
# Workspace
# ============================================================================================
def ws_regions(chip, sizes: dict[str, int]) -> dict[str, int]:
    """Byte offsets of named workspace regions laid out one after another, each starting on a burst
    (L2 line) boundary so that no region's accesses pay for a neighbour's misalignment."""
    align = chip.memory.burst_bytes
    out, at = {}, 0
    for key, size in sizes.items():
        out[key] = at
        at += -(-int(size) // align) * align
    out["_total"] = at
    return out


def share_workspace(items: list, nbytes: int | None = None) -> list:
    """Every kernel of a call that addresses the GM workspace declares the call's size (the
    largest any kernel asks for, or ``nbytes``): the front door allocates one workspace per call,
    shared by its kernels, so data one kernel leaves there is where the next one reads it."""
    kernels = [p for p in items if isinstance(p, KernelPlan)]
    size = max([p.workspace_bytes for p in kernels] + [int(nbytes or 0)])
    for p in kernels:
        if "workspace" in p.tensors:
            p.workspace_bytes = max(p.workspace_bytes, size)
    return items
