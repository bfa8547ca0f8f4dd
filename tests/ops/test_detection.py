"""npu_random_choice_with_mask: an AI CPU task whose work (and, for count=0, output shape) depends
on the values -- planned from them in full mode, from a declared assumption in meta mode."""
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.hw import get_chip
from ascend_sim.ops import OpError

OP = "npu_random_choice_with_mask"


def true_coords(x):
    return {tuple(int(i) for i in c) for c in zip(*np.nonzero(x))}


@pytest.mark.parametrize("shape", [(37,), (6, 9), (2, 3, 4, 5)])
def test_returns_distinct_true_coordinates_and_a_mask(shape):
    x = np.random.default_rng(1).random(shape) < 0.3
    count = 5
    with Simulator(trace="ops"):
        y, mask = torch_npu.npu_random_choice_with_mask(x, count, 3, 4)
    y, mask = np.asarray(y.data), np.asarray(mask.data)
    assert y.shape == (count, len(shape)) and y.dtype == np.int32 and mask.shape == (count,)
    assert mask.all()
    chosen = [tuple(r) for r in y]
    assert len(set(chosen)) == count and set(chosen) <= true_coords(x)


def test_fewer_true_elements_than_count_pads_with_zeros_and_false():
    x = np.array([0, 1, 0, 0, 1, 0], bool)
    with Simulator(trace="ops"):
        y, mask = torch_npu.npu_random_choice_with_mask(x, 4)
    y, mask = np.asarray(y.data), np.asarray(mask.data)
    assert mask.tolist() == [True, True, False, False]
    assert sorted(y[:2, 0].tolist()) == [1, 4] and (y[2:] == 0).all()


def test_count_0_returns_every_true_element_and_the_seed_fixes_the_order():
    x = np.random.default_rng(2).random((8, 8)) < 0.5
    with Simulator(trace="ops"):
        a, _ = torch_npu.npu_random_choice_with_mask(x, 0, 7, 1)
        b, _ = torch_npu.npu_random_choice_with_mask(x, 0, 7, 1)
        c, _ = torch_npu.npu_random_choice_with_mask(x, 0, 8, 1)
    assert a.shape == (int(x.sum()), 2)
    assert {tuple(r) for r in np.asarray(a.data)} == true_coords(x)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)


def _row(x, count=16, assume=None, mode="full"):
    with Simulator(mode=mode, trace="ops") as sim:
        if assume is not None:
            sim.assume(OP, nonzero_ratio=assume)
        t = torch_npu.empty_with_format(x, "bool") if mode == "meta" else x
        out = torch_npu.npu_random_choice_with_mask(t, count)
        (row,) = sim.report().ops
    return row, out


def test_full_mode_plans_from_the_real_number_of_true_elements():
    rng = np.random.default_rng(0)
    sparse, dense = rng.random(1 << 16) < 0.05, rng.random(1 << 16) < 0.9
    (r_sparse, _), (r_dense, _) = _row(sparse), _row(dense)
    assert r_sparse.core_type == r_dense.core_type == "AI_CPU"
    assert "assumed" not in r_sparse.attrs
    # the per-candidate work (collect + draw/swap) is the difference, at the chip's AI CPU rates
    chip = get_chip("Ascend910B2")
    per_candidate = (max(chip.aicpu.cycles_per_elem["copy"], 4 / chip.aicpu.bytes_per_cycle)
                     + max(chip.aicpu.cycles_per_elem["hash"], 4 / chip.aicpu.bytes_per_cycle))
    extra = (int(dense.sum()) - int(sparse.sum())) * per_candidate / chip.cores.aicpu_mhz
    assert r_dense.duration_us - r_sparse.duration_us == pytest.approx(extra, rel=1e-6)


def test_meta_mode_plans_from_the_declared_assumption_and_says_so():
    n = 1 << 16
    r_default, (y_default, _) = _row((n,), count=0, mode="meta")
    r_tenth, (y_tenth, _) = _row((n,), count=0, assume=0.1, mode="meta")
    assert r_default.attrs["assumed"] == "nonzero_ratio=1.0" and r_tenth.attrs["assumed"] == "nonzero_ratio=0.1"
    assert y_default.shape == (n, 1) and y_tenth.shape == (round(0.1 * n), 1)
    assert r_tenth.duration_us < r_default.duration_us
    # a full-mode call with the same number of true elements takes the same time
    x = np.zeros(n, bool)
    x[: round(0.1 * n)] = True
    r_full, _ = _row(x, count=0)
    assert r_full.duration_us == pytest.approx(r_tenth.duration_us, rel=1e-9)


def test_bad_input_names_the_op_the_argument_and_the_rule():
    with Simulator(trace="ops") as sim:
        with pytest.raises(TypeError, match=f"{OP}: argument 'x' has dtype float32; allowed: bool"):
            torch_npu.npu_random_choice_with_mask(np.zeros(4, np.float32))
        with pytest.raises(OpError, match=f"{OP}: argument 'count': must be >= 0"):
            torch_npu.npu_random_choice_with_mask(np.zeros(4, bool), -1)
        with pytest.raises(OpError, match=f"{OP}: argument 'x': must have 1 to 5 dimensions, got 6"):
            torch_npu.npu_random_choice_with_mask(np.zeros((1,) * 6, bool))
        with pytest.raises(ValueError, match=f"{OP}: unknown assumption\\(s\\) keep_ratio; it accepts: nonzero_ratio"):
            sim.assume(OP, keep_ratio=0.5)
        with pytest.raises(ValueError, match="unknown assumption.*does not depend on values"):
            sim.assume("npu_silu", ratio=0.5)
