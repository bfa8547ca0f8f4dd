"""AI CPU tasks on the timing engine: typed work items -> time, from the chip's AI CPU model.

What is modelled (ChipSpec.aicpu, cores.aicpu_mhz, runtime.aicpu_task_us): a task holds one AI
CPU core of its device for its start/completion cost plus the sum over its work items of
``max(compute, streaming)`` cycles of that core, where compute is ``cycles_per_elem[work] * n``
(``* log2 n`` for "sort") and streaming is the item's bytes / ``bytes_per_cycle``. Tasks queue
for the device's AI CPU cores (``cores.aicpu`` of them). Not modelled: the AI CPU's memory
traffic does not load the L2/HBM bandwidth the AI Cores share, and one task runs on one core.
"""
from __future__ import annotations

import math

from ascend_sim.hw import ChipSpec


def item_cycles(chip: ChipSpec, item) -> float:
    """AI CPU cycles of one work item (isa.AICpuWork)."""
    m = chip.aicpu
    n = item.elems
    compute = m.cycles_per_elem[item.work] * n
    if item.work == "sort" and n > 1:
        compute *= math.log2(n)
    return max(compute, item.bytes / m.bytes_per_cycle)


def task_cycles(chip: ChipSpec, plan) -> float:
    """Duration of an AI_CPU plan in cycles of the AI Core clock (the engine's unit)."""
    work = sum(item_cycles(chip, w) for w in plan.aicpu_work)
    return chip.runtime.aicpu_task_us * chip.cores.aic_mhz + work * chip.cores.aic_mhz / chip.cores.aicpu_mhz


def run_task(engine, dm, plan, st):
    """Run an AI_CPU kernel on one of the device's AI CPU cores (a SimPy generator)."""
    env = engine.env
    core = yield dm.aicpu.get()
    t = task_cycles(engine.chip, plan)
    st.first = env.now
    yield env.timeout(t)
    st.last = env.now
    st.cores.add(core)
    dm.aicpu.put(core)
    st.busy["AICPU"] += t
