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

