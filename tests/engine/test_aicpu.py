"""AI CPU tasks: time from the chip's AI CPU model (work class cycles per element)."""
import math

import pytest

from ascend_sim.isa import AICpuWork, aicpu_plan

from .conftest import run_plans


def _us(chip, cycles):
    """AI CPU cycles -> us at the AI CPU clock, plus the task start/completion cost."""
    return chip.runtime.aicpu_task_us + cycles / chip.cores.aicpu_mhz


def test_time_follows_the_work_class(chip):
    m = chip.aicpu.cycles_per_elem
    for work, n in (("copy", 4096), ("compare", 10_000), ("hash", 3000), ("arith", 777)):
        (rec,), _ = run_plans(chip, (aicpu_plan(work, chip, [AICpuWork(work, n, 1)]), {}))
        assert rec.core_type == "AI_CPU" and rec.block_dim == 1
        assert rec.duration_us == pytest.approx(_us(chip, m[work] * n), rel=1e-9)
        assert rec.pipe_busy_us["AICPU"] == pytest.approx(rec.duration_us)


def test_sort_is_n_log_n(chip):
    n = 1 << 14
    (rec,), _ = run_plans(chip, (aicpu_plan("sort", chip, [AICpuWork("sort", n, 1)]), {}))
    assert rec.duration_us == pytest.approx(_us(chip, chip.aicpu.cycles_per_elem["sort"] * n * 14), rel=1e-9)


def test_streaming_bound_items_take_their_bytes_time(chip):
    n = 1000   # copy of 1000 elements of 64 B: 64 kB at bytes_per_cycle beats 1 cycle per element
    (rec,), _ = run_plans(chip, (aicpu_plan("c", chip, [AICpuWork("copy", n, 64)]), {}))
    assert rec.duration_us == pytest.approx(_us(chip, n * 64 / chip.aicpu.bytes_per_cycle), rel=1e-9)


def test_items_add_up_and_derived_parameters_scale_the_work(chip):
    items = [AICpuWork("hash", 5000, 8), AICpuWork("copy", 200, 8)]
    (a,), _ = run_plans(chip, (aicpu_plan("u", chip, items), {}))
    fast = chip.derive(**{"aicpu.cycles_per_elem.hash": chip.aicpu.cycles_per_elem["hash"] * 2})
    (b,), _ = run_plans(fast, (aicpu_plan("u", fast, items), {}))
    hash_us = chip.aicpu.cycles_per_elem["hash"] * 5000 / chip.cores.aicpu_mhz
    copy_us = max(200 * chip.aicpu.cycles_per_elem["copy"], 200 * 8 / chip.aicpu.bytes_per_cycle) / chip.cores.aicpu_mhz
    assert a.duration_us == pytest.approx(chip.runtime.aicpu_task_us + hash_us + copy_us, rel=1e-9)
    assert b.duration_us - a.duration_us == pytest.approx(hash_us, rel=1e-9)


def test_tasks_share_the_ai_cpu_cores(chip):
    chip = chip.derive(runtime__kernel_launch_us=0.01)    # launches would otherwise serialise them
    one = chip.derive(cores__aicpu=1)
    plan = lambda c: aicpu_plan("t", c, [AICpuWork("arith", 10_000, 1)])   # noqa: E731
    recs, _ = run_plans(one, (plan(one), {}), (plan(one), {}), streams=[0, 1])
    assert recs[1].start_us == pytest.approx(recs[0].end_us)        # one core: the second waits
    recs, _ = run_plans(chip, (plan(chip), {}), (plan(chip), {}), streams=[0, 1])
    assert recs[1].start_us < recs[0].end_us and math.isclose(recs[0].duration_us, recs[1].duration_us)
