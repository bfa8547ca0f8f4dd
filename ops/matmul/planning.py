"""The matmul family's kernels, from the spec: the cube template (:mod:`..templates.cube`) with
operand layouts for every sub-view an op needs -- transposed-batch rows a leading dimension
apart, broadcast batches, a group's rows or K columns inside a larger x, an expert of a stacked
weight, a region of the workspace -- and the grouped scheduler for grouped matmuls (every group in
one cube kernel). Dtypes the cube cannot multiply run on the vector units; a grouped matmul's
weight antiquant and dequant epilogues are AIV kernels before / after the cube, sharing the
call's one GM workspace."""
from __future__ import annotations

import math


from ..templates.cube import Layout, Operand
from ..templates.gemm import (GemmSide, antiquant_prepass, dequant_epilogue, gemm_plans, gemm_tiling,
                              grouped_cube_plan, matrix_bytes, zero_k_fill)
from ..templates.rows import RowOperand
from ..templates.vector import grouped_vector_kernel
from ..templates.matmul import MatmulProblem, default_tiling
from .checks import F32, BmmSpec, LinearSpec, TransposeBmmSpec
from .grouped_checks import I32, GmmSpec, Group, groups_of


# ----- npu_bmmV2 -----
def _bmm_sides(spec: BmmSpec):
    # summed batch axes are folded into K (torch_npu permutes them next to K and reshapes)
    fold = math.prod(spec.batch[i] for i in spec.reduce) if spec.reduce else 1
    keep = lambda bt: tuple(d for i, d in enumerate(bt) if i not in spec.reduce)   # noqa: E731
    A = GemmSide("self", spec.dtype, spec.m, spec.k * fold, keep(spec.self_batch), nz=spec.self_nz)
    B = GemmSide("mat2", spec.dtype, spec.k * fold, spec.n, keep(spec.mat2_batch), nz=spec.mat2_nz)
    return keep(spec.batch), A, B


def bmm_tiling(spec: BmmSpec, chip):
    return gemm_tiling(chip, *_bmm_sides(spec))


def bmm_plans(name: str, spec: BmmSpec, chip, tiling):
    batch, A, B = _bmm_sides(spec)
    return gemm_plans(name, chip, batch, A, B, "out0", spec.outputs[0].dtype, tiling=tiling)


# ----- npu_linear -----
def _linear_sides(spec: LinearSpec):
    A = GemmSide("input", spec.dtype, spec.m, spec.k, nz=spec.input_nz)
    B = GemmSide("weight", spec.dtype, spec.k, spec.n, transposed=True, nz=spec.weight_nz)
    return A, B


def linear_tiling(spec: LinearSpec, chip):
    return gemm_tiling(chip, (), *_linear_sides(spec))


def linear_plans(name: str, spec: LinearSpec, chip, tiling):
    A, B = _linear_sides(spec)
    return gemm_plans(name, chip, (), A, B, "out0", spec.outputs[0].dtype,
                      bias=None if spec.bias is None else "bias",
                      bias_itemsize=4.0 if spec.bias is None else spec.bias.itemsize, tiling=tiling)


# ----- npu_transpose_batchmatmul -----
def _tbmm_sides(spec: TransposeBmmSpec):
    dt = F32 if F32 in (spec.x_dtype, spec.w_dtype) else spec.x_dtype
    b, m, k, n = spec.b, spec.m, spec.k, spec.n
    it = dt.itemsize
    # input (M, B, K) with perm_x1 [1, 0, 2]: batch b's rows start at b*K and are B*K apart
    a_at = Layout(ld=b * k * it, batch_stride=int(k * it)) if spec.perm_x1 == (1, 0, 2) else None
    A = GemmSide("input", dt, m, k, (b,), layout=a_at)
    B = GemmSide("weight", dt, k, n, (b,), transposed=spec.perm_x2 == (0, 2, 1), nz=spec.weight_nz)
    return dt, A, B


def tbmm_tiling(spec: TransposeBmmSpec, chip):
    _, A, B = _tbmm_sides(spec)
    return gemm_tiling(chip, (spec.b,), A, B)


def tbmm_plans(name: str, spec: TransposeBmmSpec, chip, tiling):
    dt, A, B = _tbmm_sides(spec)
    out = spec.outputs[0].dtype
    oit = out.itemsize
    m, n = spec.m, spec.n
    inner = spec.b // spec.split     # output slab i holds batches i*inner.. side by side, N columns each
    out_at = Layout(ld=inner * n * oit, batch_offsets=tuple(int(((bi // inner) * m * inner + bi % inner) * n * oit)
                                                             for bi in range(spec.b)))
    return gemm_plans(name, chip, (spec.b,), A, B, "out0", out, scale="scale" if spec.scale else None,
                      tiling=tiling, out_layout=out_at, single="its output rows are B*N apart")


# ----- npu_grouped_matmul -----
def _planned_groups(spec: GmmSpec) -> list[Group]:
    """The non-empty groups, from the sizes resolved into the spec (the real or the assumed ones)."""
    if spec.sizes is None:
        raise ValueError("npu_grouped_matmul: a group_list tensor's sizes are not in the spec; plan the spec "
                         "the op's resolve_work returns")
    return [g for g in groups_of(spec, list(spec.sizes), list(spec.slots)) if g.m > 0 and g.k > 0]


def _empty_k_groups(spec: GmmSpec) -> list[Group]:
    """Groups with rows and columns but K = 0 (an empty x, an expert with no tokens along K):
    their output is 0 (+ bias), written by a vector fill -- there is no cube work."""
    return [g for g in groups_of(spec, list(spec.sizes), list(spec.slots)) if g.m > 0 and g.k == 0 and g.n > 0]


def grouped_tiling(spec: GmmSpec, chip):
    """One tiling for every group: the tiler's choice for the average group."""
    groups = _planned_groups(spec)
    if not groups:
        return None
    kg = spec.kgroups if spec.mode == "int4" else 1
    total_m = sum(g.m for g in groups)
    rep = MatmulProblem(1, max(1, total_m // len(groups)), groups[0].n, groups[0].k // kg,
                        Operand("x", 1, 1, spec.x_dt), Operand("w", 1, 1, spec.x_dt), "y", spec.out_dt)
    return default_tiling(chip, rep)


def grouped_plans(name: str, spec: GmmSpec, chip, tiling):
    groups, empty_k = _planned_groups(spec), _empty_k_groups(spec)
    if not groups and not empty_k:
        return None
    kg = spec.kgroups if spec.mode == "int4" else 1
    ws_bytes = 0
    pre, post = [], []
    w_region = {}
    if spec.mode == "antiquant" and groups:    # dequantise every weight matrix into the workspace first (NZ fp16/bf16)
        parts = []
        mats = [(0, e) for e in range(spec.n_experts)] if spec.stacked else [(i, 0) for i in range(len(spec.w_shapes))]
        for wi, e in mats:
            w_region[(wi, e)] = ws_bytes
            parts.append(_antiquant_part(name, spec, chip, wi, e, ws_bytes))
            ws_bytes += matrix_bytes(chip, spec.ks[0] if len(spec.ks) == 1 else spec.ks[wi], spec.ns[wi], spec.x_dt,
                                     True)
        pre.append(grouped_vector_kernel(name + ".antiquant", chip, parts))
    to_ws = spec.mode in ("dequant", "pertoken", "int4")     # the cube leaves int32 partials in the workspace
    out_region = {}
    if to_ws:
        for o, shape in enumerate(spec.out_shapes):
            out_region[o] = ws_bytes
            ws_bytes += math.prod(shape) * 4 * kg
    if empty_k:                       # zeros (+ bias) where the cube writes: the output or its partials
        pre.append(grouped_vector_kernel(name + ".fill", chip, [_fill_part(name, spec, chip, g, to_ws, out_region, kg)
                                                                for g in empty_k]))
    problems = [_group_problem(spec, chip, g, to_ws, w_region, out_region, kg) for g in groups]
    cube = [grouped_cube_plan(name, chip, problems, tiling)] if groups else []
    if to_ws:
        post = [grouped_vector_kernel(name + ".dequant", chip,          # one epilogue kernel for all outputs
                                     [_dequant_part(name, spec, chip, o, shape, out_region[o], kg)
                                      for o, shape in enumerate(spec.out_shapes)])]
    plans = pre + cube + post
    for p in plans:
        if "workspace" in p.tensors:
            p.workspace_bytes = ws_bytes
    return plans


def _fill_part(name: str, spec: GmmSpec, chip, g: Group, to_ws: bool, out_region: dict, kg: int):
    """The K = 0 group ``g``'s rows, filled where :func:`_group_problem` would place its product."""
    if to_ws:
        out_name, out_dt, at = "workspace", I32, out_region[g.out] + g.orow0 * g.n * 4 * kg
    else:
        out_name, out_dt, at = f"out{g.out}", spec.out_dt, (g.orow0 * g.n + g.oslot * g.m * g.n) * spec.out_dt.itemsize
    bias = None if not spec.bias_item else ("bias[0]" if spec.stacked else f"bias[{g.param}]")
    bias_at = int((g.param if spec.stacked else 0) * g.n * (spec.bias_item or 4.0))
    return zero_k_fill(g.m * (kg if to_ws else 1), g.n, out_name, out_dt, bias=bias, bias_itemsize=spec.bias_item or 4.0,
                       bias_offset=bias_at, out_layout=Layout(offset=int(at))).part(name + ".fill", chip)


def _antiquant_part(name: str, spec: GmmSpec, chip, wi: int, e: int, at: int):
    """Weight ``wi`` (expert ``e`` of a stacked one) dequantised to the workspace at ``at``."""
    k = spec.ks[0] if len(spec.ks) == 1 else spec.ks[wi]
    n = spec.ns[wi]
    ag = spec.aq_groups[0 if spec.stacked else wi]
    s_item = spec.x_dt.itemsize
    # per channel: one row of scales shared by every weight row; per group: a row's share;
    # expert e of a stacked weight and its parameter rows sit e matrices / e rows in
    p_at = int(e * max(ag, 1) * n * s_item)

    def sc(t):
        return RowOperand(t, s_item, "shared", n, offset=p_at) if not ag else \
            RowOperand(t, s_item * ag / k, "row", offset=p_at)

    w = RowOperand(f"weight[{wi}]", spec.w_dt.itemsize, offset=int(matrix_bytes(chip, k, n, spec.w_dt, False) * e))
    return antiquant_prepass(k, n, w, scale=sc(f"antiquant_scale[{wi}]"),
                             offset=sc(f"antiquant_offset[{wi}]") if spec.aq_offset else None,
                             out=RowOperand("workspace", spec.x_dt.itemsize, offset=at)).part(name + ".antiquant", chip)


def _dequant_part(name: str, spec: GmmSpec, chip, o: int, shape: tuple, at: int, kg: int):
    """Output ``o``'s epilogue: the int32 partials at ``at`` in the workspace -> the output."""
    n = shape[-1]
    i = 0 if spec.stacked or spec.scenario != "MMM" else o
    return dequant_epilogue(math.prod(shape[:-1]), n, f"out{o}", spec.out_dt, partial_at=at, partials=kg,
                            scale=(f"scale[{i}]", spec.scale_item, n * kg),
                            pertoken=(f"per_token_scale[{i}]", 4.0) if spec.per_token else None,
                            act=spec.act != 0).part(name + ".dequant", chip)


def _group_problem(spec: GmmSpec, chip, g: Group, to_ws: bool, w_region: dict, out_region: dict,
                   kg: int) -> MatmulProblem:
    """Group ``g`` as one GEMM problem, its operands laid out where they are."""
    x_it = spec.x_dt.itemsize
    K, n = spec.ks[g.x], g.n
    gk = g.k // kg
    # A: the group's rows (m grouping) or columns (k grouping, K-groups of int4) inside x
    A = Operand(f"x[{g.x}]", g.m, gk, spec.x_dt,
                layout=Layout(offset=int((g.row0 * K + g.col0) * x_it), ld=K * x_it,
                              batch_stride=int(gk * x_it) if kg > 1 else 0))
    # B: the weight (an expert's slot, a K-group's rows), or its dequantised copy in the workspace
    if spec.mode == "antiquant":
        b_name, b_dt, b_nz, b_tr = "workspace", spec.x_dt, True, False
        b_base = w_region[(g.w, g.slot)]
    else:
        b_name, b_dt, b_nz, b_tr = f"weight[{g.w}]", spec.w_dt, spec.w_nz[g.w], spec.w_transposed
        b_base = g.slot * matrix_bytes(chip, *((n, K) if b_tr else (K, n)), b_dt, b_nz) + g.wrow0 * int(n * b_dt.itemsize)
    b_batch = matrix_bytes(chip, *((n, gk) if b_tr else (gk, n)), b_dt, b_nz) if kg > 1 else 0
    B = Operand(b_name, gk, n, b_dt, b_tr, b_nz, Layout(offset=int(b_base), batch_stride=b_batch))
    if to_ws:
        out_name, out_dt = "workspace", I32
        out_at = Layout(offset=int(out_region[g.out] + g.orow0 * n * 4 * kg),
                        batch_stride=g.m * n * out_dt.itemsize if kg > 1 else 0)
    else:
        out_name, out_dt = f"out{g.out}", spec.out_dt
        out_at = Layout(offset=int((g.orow0 * n + g.oslot * g.m * n) * out_dt.itemsize))
    bias_name = None if not spec.bias_item else ("bias[0]" if spec.stacked else f"bias[{g.param}]")
    bias_item = spec.bias_item or 4.0
    scale_name = None
    if spec.mode == "fixpipe":
        scale_name = "scale[0]" if spec.stacked else f"scale[{g.param}]"
    at_param = g.param if spec.stacked else 0
    return MatmulProblem(kg, g.m, n, gk, A, B, out_name, out_dt, bias=bias_name, bias_itemsize=bias_item,
                         scale=scale_name, out_layout=out_at, bias_offset=int(at_param * n * bias_item),
                         scale_offset=int(at_param * n * 8))


__all__ = ["bmm_plans", "bmm_tiling", "linear_plans", "linear_tiling", "tbmm_plans", "tbmm_tiling",
           "grouped_plans", "grouped_tiling"]
