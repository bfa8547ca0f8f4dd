"""The tiling of a vector-template op -- rows (npu_rms_norm), elementwise (npu_silu), TransData
(npu_format_cast) -- is printed, overridden and checked through the one interface."""
import dataclasses
import math

import pytest

from ascend_sim import torch_npu
from ascend_sim.isa import ISAError
from ascend_sim.ops.study import plan_for, tiling_for
from ascend_sim.ops.templates.elementwise import ElementwiseTiling
from ascend_sim.ops.templates.rows import RowTiling
from ascend_sim.ops.templates.transdata import TransDataTiling

CHIP = "Ascend910B2"
ROWS, COLS = 1024, 4096      # small: these tests follow a tiling to the plan and the report, no scale effect
SILU_N = 1 << 22


def e(*shape, dtype="float16"):
    return torch_npu.empty_with_format(shape, dtype)


CASES = {
    "rows": ("npu_rms_norm", RowTiling, dict(self=((ROWS, COLS), "float16"), gamma=((COLS,), "float16")),
             lambda: torch_npu.npu_rms_norm(e(ROWS, COLS), e(COLS)),
             RowTiling(rows_per_tile=2, block_dim=8, col_chunk=COLS)),
    "elementwise": ("npu_silu", ElementwiseTiling, dict(self=((SILU_N,), "float16")),
                    lambda: torch_npu.npu_silu(e(SILU_N)), ElementwiseTiling(tile_elems=4096, block_dim=8)),
    "transdata": ("npu_format_cast", TransDataTiling, dict(input=((ROWS, COLS), "float16"), acl_format=29),
                  lambda: torch_npu.npu_format_cast(e(ROWS, COLS), 29), TransDataTiling(tile_bytes=16384, block_dim=8)),
}


def _stores(plan):
    return sum(1 for blk in plan.blocks for p in blk for i in p.name if p.names[i] == "MTE3.ub_to_gm")


@pytest.mark.parametrize("family", sorted(CASES))
def test_the_own_tiling_is_typed_and_a_user_tiling_reaches_plan_and_report(family, tiled_rows):
    op, kind, args, call, mine = CASES[family]
    own = tiling_for(op, CHIP, **args)
    assert isinstance(own, kind) and own != mine
    (plan,) = plan_for(op, CHIP, mine, **args)
    assert plan.tiling == mine and plan.block_dim == 8
    (default,), (changed,) = tiled_rows(call, op), tiled_rows(call, op, mine)
    assert changed.attrs["tiling"] == str(plan.tiling) != default.attrs["tiling"]
    assert changed.block_dim == 8 and default.block_dim > 8
    # a function of the op's own choice is the same override
    (again,) = tiled_rows(call, op, lambda t: dataclasses.replace(t, **{f.name: getattr(mine, f.name)
                                                                      for f in dataclasses.fields(mine)}))
    assert again.duration_us == changed.duration_us


def test_the_tile_sizes_decide_the_stores():
    """Independent counts: every tile ends in one store per output."""
    _, _, args, _, mine = CASES["elementwise"]
    (plan,) = plan_for("npu_silu", CHIP, mine, **args)
    assert _stores(plan) == math.ceil(SILU_N / mine.tile_elems)
    _, _, args, _, mine = CASES["rows"]
    (plan,) = plan_for("npu_rms_norm", CHIP, mine, **args)
    assert _stores(plan) == 2 * ROWS // mine.rows_per_tile            # y and rstd per tile
    _, _, args, _, mine = CASES["transdata"]
    (plan,) = plan_for("npu_format_cast", CHIP, mine, **args)
    # ND -> NZ: a 16 KiB tile holds whole 16-row bands of n0-column chunks: 16 x 512 fp16
    assert _stores(plan) == (ROWS // 16) * (COLS // 512)
    assert sum(a.payload for blk in plan.blocks for p in blk for a in p.accesses if a.write) == ROWS * COLS * 2


@pytest.mark.parametrize("family", sorted(CASES))
def test_a_tiling_that_does_not_fit_ub_is_an_error_naming_ub(family, tiled_rows):
    op, _, args, call, mine = CASES[family]
    big = {"rows": dict(rows_per_tile=64), "elementwise": dict(tile_elems=1 << 20),
           "transdata": dict(tile_bytes=1 << 20)}[family]
    with pytest.raises(ISAError, match="UB"):
        tiled_rows(call, op, dataclasses.replace(mine, **big))
    with pytest.raises(ISAError, match="UB"):
        plan_for(op, CHIP, dataclasses.replace(mine, **big), **args)


def test_a_tiling_of_another_family_is_refused(tiled_rows):
    op, _, _, call, _ = CASES["transdata"]
    with pytest.raises(TypeError, match="npu_format_cast: tiling must be a TransDataTiling"):
        tiled_rows(call, op, RowTiling(1, 1, 16))
