"""The row template: tiles that fit UB, chunked multi-pass rows, shared and per-row operands."""
import pytest

from ascend_sim.hw import get_chip
from ascend_sim.isa import ISAError
from ascend_sim.ops.templates.rows import RowOperand, RowStep, RowTiling, default_tiling, row_plan
from ascend_sim.runtime import Simulator, Task

GiB = 1 << 30


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def run(chip, plan):
    sim = Simulator(chip, trace="ops")
    t = sim.submit(Task(plan.name, "kernel", sim.current_device.default_stream, plan=plan,
                        addresses={"x": 0, "gamma": GiB, "out0": 2 * GiB, "out1": 3 * GiB}))
    sim.synchronize()
    return t.record


INPUTS = [RowOperand("x", 2), RowOperand("gamma", 2, "shared")]
OUTPUTS = [RowOperand("out0", 2), RowOperand("out1", 4, "per_row")]
STEPS = [RowStep("binary", "float32"), RowStep("reduce_sum", "float32"), RowStep("unary", "float32", "row")]


def test_rows_that_fit_are_read_once(chip):
    rows, cols = 1000, 1000
    rec = run(chip, row_plan("norm", chip, rows, cols, INPUTS, OUTPUTS, STEPS, passes=3))
    blocks = rec.block_dim
    assert rec.bytes_read == rows * cols * 2 + blocks * cols * 2        # x once, gamma once per block
    assert rec.bytes_written == rows * cols * 2 + rows * 4


def test_long_rows_are_chunked_and_read_once_per_pass(chip):
    rows, cols = 4, 262144                                             # 512 KiB rows: more than UB
    plan = row_plan("softmax", chip, rows, cols, INPUTS, OUTPUTS, STEPS, passes=3)
    assert plan.tiling.col_chunk < cols
    rec = run(chip, plan)
    # every pass streams each row of x again, and the gamma piece of each chunk with it
    x_bytes, gamma_bytes = rows * cols * 2, rows * cols * 2
    assert rec.bytes_read == 3 * x_bytes + 3 * gamma_bytes
    assert rec.bytes_written == rows * cols * 2 + rows * 4


def test_user_tiling_that_does_not_fit_ub_is_an_error(chip):
    with pytest.raises(ISAError, match="needs .* bytes of UB"):
        row_plan("norm", chip, 1024, 4096, INPUTS, OUTPUTS, STEPS, tiling=RowTiling(64, 8, 4096))


def test_default_tiling_spreads_rows_over_vector_cores(chip):
    t = default_tiling(chip, 4800, 256, INPUTS, OUTPUTS)
    assert t.block_dim == chip.vector_cores and t.rows_per_tile * t.block_dim >= 4800 // 10



def _gm(plan, tensor):
    """(offset, rows, row bytes, stride) of every access of ``tensor``, block after block."""
    return [(a.offset, a.rows, a.row_bytes, a.stride) for blk in plan.blocks for p in blk for a in p.accesses
            if a.tensor == tensor]


def test_operands_with_layouts_address_a_sub_matrix(chip):
    """x: rows 10.. and columns 20..67 of a (.., 256) fp16 matrix; gamma 8 bytes into its tensor;
    out1 (one fp32 per row): a column of a matrix whose rows are 64 bytes apart, 12 bytes in."""
    base, ld = (10 * 256 + 20) * 2, 256 * 2
    inputs = [RowOperand("x", 2, offset=base, ld_bytes=ld), RowOperand("gamma", 2, "shared", offset=8)]
    outputs = [RowOperand("out0", 2), RowOperand("out1", 4, "per_row", offset=12, ld_bytes=64)]
    plan = row_plan("norm", chip, 64, 48, inputs, outputs, STEPS, tiling=RowTiling(16, 2, 48))
    # two blocks of 32 rows, tiles of 16: rows 0, 16 | 32, 48; each tile's 16 rows of 96 bytes, ld apart
    assert _gm(plan, "x") == [(base + r0 * ld, 16, 96, ld) for r0 in (0, 16, 32, 48)]
    assert _gm(plan, "gamma") == [(8, 1, 96, 96)] * 2                        # once per block
    assert _gm(plan, "out0") == [(r0 * 96, 1, 1536, 1536) for r0 in (0, 16, 32, 48)]   # dense: one run
    assert _gm(plan, "out1") == [(12 + r0 * 64, 16, 4, 64) for r0 in (0, 16, 32, 48)]
    # rows cut into chunks of 24 columns: each chunk's piece of the row, 48 bytes further for the second
    chunked = row_plan("norm", chip, 64, 48, inputs, outputs, STEPS, passes=1, tiling=RowTiling(16, 2, 24))
    assert _gm(chunked, "x") == [(base + r0 * ld + c0 * 2, 16, 48, ld) for r0 in (0, 16, 32, 48) for c0 in (0, 24)]
    assert _gm(chunked, "gamma") == [(8 + c0 * 2, 1, 48, 48) for _ in range(4) for c0 in (0, 24)]
    # the defaults are the dense layout from byte 0
    dense = row_plan("norm", chip, 64, 48, INPUTS, OUTPUTS, STEPS, tiling=RowTiling(16, 2, 48))
    assert _gm(dense, "x") == [(r0 * 96, 1, 1536, 1536) for r0 in (0, 16, 32, 48)]
    assert _gm(dense, "out1") == [(r0 * 4, 1, 64, 64) for r0 in (0, 16, 32, 48)]


def test_row_operand_batches(chip):
    """Rows in batches of 8, each batch 1000 bytes after the previous, 4 bytes in: a tile is
    addressed from its first row (row 16: batch 2, row 0 of it; row 52: batch 6, row 4)."""
    scale = RowOperand("s", 4, "per_row", offset=4, batch_rows=8, batch_stride=1000)
    x = RowOperand("x", 2, offset=100, batch_rows=8, batch_stride=4096)
    plan = row_plan("scale", chip, 64, 48, [x, scale], [RowOperand("out0", 2)], STEPS, tiling=RowTiling(4, 4, 48))
    firsts = [r0 for lo in (0, 16, 32, 48) for r0 in range(lo, lo + 16, 4)]
    assert _gm(plan, "s") == [(4 + r0 // 8 * 1000 + r0 % 8 * 4, 1, 16, 16) for r0 in firsts]
    assert _gm(plan, "x") == [(100 + r0 // 8 * 4096 + r0 % 8 * 96, 1, 384, 384) for r0 in firsts]
