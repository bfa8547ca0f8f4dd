"""One tiling interface for every template family: print it, change it, sweep it.

For an op of each family -- matmul, flash attention, rows, elementwise, TransData --
``ascend_sim.ops.study.tiling_for`` gives the tiling the op picks, ``sim.tiling(op, t)`` plans real
calls with a user tiling (an object of the same type, or a function of the op's own choice), and
``plan_for`` builds the kernels for a tiling without running anything.
"""
import dataclasses

import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.isa import ISAError
from ascend_sim.ops.study import plan_for, tiling_for
from ascend_sim.ops.templates.elementwise import ElementwiseTiling
from ascend_sim.ops.templates.rows import RowTiling

CHIP = "Ascend910B2"


def e(*shape, dtype="float16"):
    return torch_npu.empty_with_format(shape, dtype)


FAMILIES = {
    # family: (op, study arguments, the call, a change of the op's own tiling)
    "matmul": ("npu_linear", dict(input=((2048, 2048), "float16"), weight=((2048, 2048), "float16")),
               lambda: torch_npu.npu_linear(e(2048, 2048), e(2048, 2048)),
               lambda t: dataclasses.replace(t, base_m=64, base_n=64)),
    "flash attention": ("npu_fusion_attention",
                        dict(query=((1, 2, 1024, 128), "float16"), key=((1, 2, 1024, 128), "float16"),
                             value=((1, 2, 1024, 128), "float16"), head_num=2, input_layout="BNSD"),
                        lambda: torch_npu.npu_fusion_attention(e(1, 2, 1024, 128), e(1, 2, 1024, 128),
                                                               e(1, 2, 1024, 128), 2, "BNSD"),
                        lambda t: dataclasses.replace(t, q_tile=64, kv_tile=64)),
    "rows": ("npu_rms_norm", dict(self=((4096, 4096), "float16"), gamma=((4096,), "float16")),
             lambda: torch_npu.npu_rms_norm(e(4096, 4096), e(4096)),
             lambda t: dataclasses.replace(t, rows_per_tile=1)),
    "elementwise": ("npu_silu", dict(self=((1 << 22,), "float16")),
                    lambda: torch_npu.npu_silu(e(1 << 22)),
                    lambda t: dataclasses.replace(t, tile_elems=t.tile_elems // 4)),
    "transdata": ("npu_format_cast", dict(input=((4096, 4096), "float16"), acl_format=29),
                  lambda: torch_npu.npu_format_cast(e(4096, 4096), 29),
                  None),
}


def _same(planned, mine) -> bool:
    """The plan ran ``mine`` (a plan records the blocks it really used, which may be fewer)."""
    if type(planned) is not type(mine):
        return False
    if hasattr(mine, "block_dim") and planned.block_dim <= (mine.block_dim or planned.block_dim):
        planned = dataclasses.replace(planned, block_dim=mine.block_dim)
    return planned == mine


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_user_tiling_reaches_the_kernel(family, tiled_rows):
    op, args, call, change = FAMILIES[family]
    own = tiling_for(op, CHIP, **args)
    assert own is not None and dataclasses.is_dataclass(own)
    if change is None:       # a field every tiling has: the blocks it spreads over
        change = lambda t: dataclasses.replace(t, **{f: 1 for f in ("block_dim",) if hasattr(t, f)})  # noqa: E731
    mine = change(own)
    assert mine != own
    # the study helper builds the kernels with it, and says so in the plan
    plans = plan_for(op, CHIP, mine, **args)
    assert any(_same(p.tiling, mine) for p in plans)
    default, changed = tiled_rows(call, op)[0], tiled_rows(call, op, mine)[0]
    assert changed.attrs.get("tiling") != default.attrs.get("tiling")
    assert changed.duration_us != default.duration_us
    # a function of the op's own choice is the same override
    assert tiled_rows(call, op, change)[0].duration_us == changed.duration_us


def test_a_tiling_of_the_wrong_type_is_an_error_naming_the_op(tiled_rows):
    op, _, call, _ = FAMILIES["rows"]
    with pytest.raises(TypeError, match="npu_rms_norm: tiling must be a RowTiling"):
        tiled_rows(call, op, ElementwiseTiling(1024, 1))[0]


def test_a_tiling_that_does_not_fit_names_the_buffer(tiled_rows):
    op, args, call, _ = FAMILIES["elementwise"]
    with pytest.raises(ISAError, match="UB"):
        tiled_rows(call, op, lambda t: dataclasses.replace(t, tile_elems=1 << 24))[0]
    op, args, _, _ = FAMILIES["rows"]
    assert isinstance(tiling_for(op, CHIP, **args), RowTiling)


def test_the_override_ends_with_its_block_and_is_per_simulator(tiled_rows):
    op, _, call, change = FAMILIES["elementwise"]
    with Simulator(CHIP, mode="meta", trace="ops") as sim:
        with sim.tiling(op, change):
            call()
        call()
        first, second = [r for r in sim.report().ops if r.name == op]
    assert first.attrs["tiling"] != second.attrs["tiling"]
    assert tiled_rows(call, op)[0].attrs["tiling"] == second.attrs["tiling"]
