"""npu_grouped_matmul's value-dependent work: a group_list tensor's sizes steer the plan -- the real
ones in full mode (group_list_type 0 cumulative, 1 counts; m-axis and k-axis grouping), a declared
assumption in meta mode (routing="uniform" or group_sizes=(...)) that the report row shows; a
List[int] group_list is host data, planned as given in both modes."""
import math

import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.hw import get_chip
from ascend_sim.isa.program import GM
from ascend_sim.ops import Args, get_op
from ascend_sim.ops.study import as_tensor

OP = "npu_grouped_matmul"
CHIP = "Ascend910B2"
M, K, N, E = 1024, 512, 768, 4          # a MoE layer's expert GEMMs: M tokens over E experts
EVEN, SKEWED = (256, 256, 256, 256), (16, 32, 48, 928)
F16 = np.float16


def group_list(sizes, group_list_type=0):
    """The group_list tensor's numbers for ``sizes``: cumulative ends (type 0) or the counts (type 1)."""
    return np.array(np.cumsum(sizes) if group_list_type == 0 else sizes, np.int64)


def moe_row(sizes=None, *, mode="full", assume=None, group_list_type=0):
    """One m-axis grouped matmul over a stacked (E, K, N) weight; its report row. Full mode: the
    group_list holds ``sizes``; meta mode: no numbers, ``assume`` goes to sim.assume."""
    with Simulator(CHIP, mode=mode, trace="ops") as sim:
        if assume:
            sim.assume(OP, **assume)
        e = torch_npu.empty_with_format
        if mode == "meta":
            x, w, gl = e((M, K), "float16"), e((E, K, N), "float16"), e((E,), "int64")
        else:
            x, w, gl = np.zeros((M, K), F16), np.zeros((E, K, N), F16), group_list(sizes, group_list_type)
        (y,) = torch_npu.npu_grouped_matmul([x], [w], group_list=gl, group_type=0, group_list_type=group_list_type,
                                            split_item=3)
        assert y.shape == (M, N)
        (row,) = sim.report().ops
    return row


def resolved_plan(sizes, *, group_type=0, group_list_type=1, kernels=1):
    """The op's cube kernel for a full-mode call whose group_list holds ``sizes``, through the
    protocol (infer -> compute -> resolve_work -> plan): m-axis over E experts, or k-axis (group_type 2)
    over one (K, N) weight. ``kernels`` > 1: all of the call's kernels, the cube kernel last."""
    chip, op = get_chip(CHIP), get_op(OP)
    w_shape = (E, K, N) if group_type == 0 else (K, N)
    a = Args(x=[as_tensor(np.zeros((M, K), F16))], weight=[as_tensor(np.zeros(w_shape, F16))],
             group_list=as_tensor(group_list(sizes, group_list_type)), group_type=group_type,
             group_list_type=group_list_type, split_item=3)
    spec = op.infer(a, chip)
    spec = op.resolve_work(spec, a, op.compute(spec, a), {})
    assert spec.sizes == tuple(sizes) and spec.assumed == ""
    plans = op.plan(spec, chip, op.default_tiling(spec, chip))
    if kernels > 1:
        assert len(plans) == kernels
        return plans
    (plan,) = plans
    return plan


def per_group(plan, tensor, sizes, position):
    """(payload bytes, accesses) of ``tensor``'s GM accesses per group, the group found from
    ``position(access)``: the access's first index along the grouped axis."""
    ends = np.cumsum(sizes)
    nbytes, count = [0] * len(sizes), [0] * len(sizes)
    for block in plan.blocks:
        for prog in block:
            for kind, arg in zip(prog.kind, prog.arg):
                if kind == GM and prog.accesses[arg].tensor == tensor:
                    acc = prog.accesses[arg]
                    g = int(np.searchsorted(ends, position(acc), side="right"))
                    nbytes[g] += acc.payload
                    count[g] += 1
    return nbytes, count


# ============================================================================ full mode: the real sizes
def test_full_mode_times_follow_the_real_group_sizes():
    even, skewed = moe_row(EVEN), moe_row(SKEWED)
    assert "assumed" not in even.attrs and "assumed" not in skewed.attrs
    assert even.flops == skewed.flops == 2 * M * K * N          # the same rows in all ...
    # ... but the skewed routing's small groups fill partial tiles: more tiles, a longer kernel
    assert skewed.duration_us > even.duration_us
    # cumulative ends and counts are the same sizes: the same plan
    assert moe_row(SKEWED, group_list_type=1).duration_us == pytest.approx(skewed.duration_us, rel=1e-12)


@pytest.mark.parametrize("sizes", [SKEWED, (0, 64, 0, 960), (100, 200, 300, 400)])
def test_full_mode_per_group_work_follows_the_real_sizes(sizes):
    plan = resolved_plan(sizes)
    t = plan.tiling
    assert plan.flops == 2 * sum(sizes) * K * N
    # each group's output rows are written once, in ceil(size / base_m) x ceil(N / base_n) tiles
    row_of = lambda acc: acc.offset // (N * 2)                        # noqa: E731
    written, tiles = per_group(plan, "out0", sizes, row_of)
    assert written == [s * N * 2 for s in sizes]
    assert tiles == [math.ceil(s / t.base_m) * math.ceil(N / t.base_n) for s in sizes]
    # each output tile streams its expert's K x base_n weight columns; an expert with no rows is never read
    expert_read, _ = per_group(plan, "weight[0]", [K * N * 2] * E, lambda acc: acc.offset)
    assert expert_read == [tl * K * t.base_n * 2 for tl in tiles]
    assert [b > 0 for b in expert_read] == [s > 0 for s in sizes]


def test_k_axis_groups_follow_the_real_sizes():
    """group_type 2: the groups split K; group i multiplies K-columns of x by K-rows of the weight."""
    sizes = (64, 128, 320)
    plan = resolved_plan(sizes, group_type=2)
    t = plan.tiling
    assert plan.flops == 2 * M * K * N
    w_rows, _ = per_group(plan, "weight[0]", sizes, lambda acc: acc.offset // (N * 2))
    x_cols, _ = per_group(plan, "x[0]", sizes, lambda acc: acc.offset % (K * 2) // 2)
    assert w_rows == [k * N * 2 * math.ceil(M / t.base_m) for k in sizes]      # read once per row tile
    assert x_cols == [k * M * 2 * math.ceil(N / t.base_n) for k in sizes]      # read once per column tile
    # an empty K-group has no cube work; its (M, N) slot of the output is zeros, written by a
    # vector fill before the cube kernel (the front door's rule: a K = 0 product writes its zeros)
    fill, cube = resolved_plan((256, 0, 256), group_type=2, kernels=2)
    assert cube.flops == 2 * M * K * N and fill.core_type == "AIV" and fill.flops == 0


# ============================================================================ meta mode: the assumption
def test_meta_mode_plans_the_uniform_routing_by_default_and_says_so():
    meta = moe_row(mode="meta")
    assert meta.attrs["assumed"] == "routing=uniform"
    full = moe_row(EVEN)                                           # 1024 rows over 4 experts: 256 each
    assert meta.duration_us == pytest.approx(full.duration_us, rel=1e-12)
    assert (meta.bytes_read, meta.bytes_written) == (full.bytes_read, full.bytes_written)
    assert moe_row(mode="meta", assume=dict(routing="uniform")).duration_us == pytest.approx(meta.duration_us,
                                                                                              rel=1e-12)


def test_meta_mode_with_assumed_group_sizes_takes_the_time_of_those_real_sizes():
    meta = moe_row(mode="meta", assume=dict(group_sizes=SKEWED))
    assert meta.attrs["assumed"] == f"group_sizes={SKEWED}"
    full = moe_row(SKEWED)
    assert meta.duration_us == pytest.approx(full.duration_us, rel=1e-12)
    assert (meta.bytes_read, meta.bytes_written) == (full.bytes_read, full.bytes_written)
    assert meta.duration_us != pytest.approx(moe_row(mode="meta").duration_us, rel=1e-6)
    # the sizes may leave rows of x unused, as a real group_list may
    partial = moe_row(mode="meta", assume=dict(group_sizes=(16, 16, 16, 16)))
    assert partial.flops == 2 * 64 * K * N


@pytest.mark.parametrize("assume, rule", [
    (dict(group_sizes=(512, 512, 0)), "assumption group_sizes: has 3 sizes; this call has 4 groups"),
    (dict(group_sizes=(512, 512, 1, 0)), "assumption group_sizes: its groups cover 1025 rows; x's rows has only 1024"),
    (dict(group_sizes=(-1, 513, 256, 256)), "assumption group_sizes: group sizes must be non-negative"),
    (dict(group_sizes=(256.0, 256, 256, 256)), "assumption group_sizes: must be a tuple of ints"),
    (dict(group_sizes=1024), "assumption group_sizes: must be a tuple of ints"),
    (dict(routing="zipf"), "assumption routing must be one of \\['uniform'\\]"),
])
def test_a_bad_assumption_names_the_op_and_the_assumption(assume, rule):
    with pytest.raises(ValueError, match=f"{OP}: {rule}"):
        moe_row(mode="meta", assume=assume)


def test_unknown_assumptions_are_refused_when_set():
    with Simulator(CHIP, mode="meta") as sim, \
            pytest.raises(ValueError, match=f"{OP}: unknown assumption\\(s\\) keep_ratio; it accepts: group_sizes, "
                                            "routing"):
        sim.assume(OP, keep_ratio=0.5)


# ============================================================================ List[int]: host data
def test_a_list_group_list_is_planned_as_given_in_both_modes():
    ws = [(K, N)] * 2

    def row(mode, gl):
        with Simulator(CHIP, mode=mode, trace="ops") as sim:
            sim.assume(OP, group_sizes=(512, 512))         # no effect: the list is host data
            e = torch_npu.empty_with_format
            if mode == "meta":
                x, w = e((M, K), "float16"), [e(s, "float16") for s in ws]
            else:
                x, w = np.zeros((M, K), F16), [np.zeros(s, F16) for s in ws]
            torch_npu.npu_grouped_matmul([x], w, group_list=gl, split_item=0)
            (r,) = sim.report().ops
        return r

    skewed_full, skewed_meta = row("full", [64, M]), row("meta", [64, M])
    assert "assumed" not in skewed_full.attrs and "assumed" not in skewed_meta.attrs
    assert skewed_meta.duration_us == pytest.approx(skewed_full.duration_us, rel=1e-12)
    assert row("meta", [512, M]).duration_us != pytest.approx(skewed_meta.duration_us, rel=1e-6)
