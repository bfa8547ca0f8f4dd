"""Tasks carry what the engine needs in typed fields; ``attrs`` only what the report shows."""
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim import dtypes as D
from ascend_sim.isa import KernelPlan, ProgramBuilder
from ascend_sim.runtime import Task
from ascend_sim.runtime.stream import TASK_KINDS
from ascend_sim.tensor import TensorMeta


def mmad_plan(chip, name="mmad"):
    b = ProgramBuilder(chip, "AIC")
    b.mmad(128, 256, 64, "float16")
    return KernelPlan(name, "AIC", [[b.build()]])


def test_kinds_and_their_required_fields():
    assert set(TASK_KINDS) == {"kernel", "prefetch", "collective", "host", "event_record", "event_wait"}
    with Simulator() as sim:
        s = sim.current_stream
        with pytest.raises(ValueError, match="kind must be one of"):
            Task("x", "kernal", s)
        for kind, field in (("kernel", "plan"), ("prefetch", "byte_range"), ("collective", "collective"),
                            ("event_wait", "wait_for")):
            with pytest.raises(ValueError, match=f"needs its {field}"):
                Task("x", kind, s)


def test_a_task_without_host_launch_starts_without_the_launch_cost():
    with Simulator(trace="ops") as sim:
        s = sim.current_stream
        first = sim.submit(Task("a", "kernel", s, plan=mmad_plan(sim.chip), attrs={"k": 1}))
        later = sim.submit(Task("b", "kernel", s, plan=mmad_plan(sim.chip), host_launch=False))
        sim.synchronize()
    assert first.record.launch_us == pytest.approx(sim.chip.runtime.kernel_launch_us)
    assert later.record.launch_us == 0.0
    # no launch between them: the second starts once its block is placed on the freed core
    dispatch_us = sim.chip.runtime.block_dispatch_cycles / sim.chip.cores.aic_mhz
    assert later.record.start_us == pytest.approx(first.record.end_us + dispatch_us, abs=1e-6)
    assert first.record.attrs == {"k": 1, "cores_used": 1}


def test_workspace_and_plan_are_let_go_once_run():
    with Simulator(trace="ops") as sim:
        dev = sim.current_device
        ws = dev.new_tensor(TensorMeta((1 << 20,), D.uint8))
        held = sim.memory_stats()["allocated_bytes"]
        t = sim.submit(Task("a", "kernel", sim.current_stream, plan=mmad_plan(sim.chip), workspace=ws))
        del ws
        assert t.workspace is not None                       # held while queued
        sim.synchronize()
        assert t.workspace is None and t.plan is None and t.record.duration_us > 0
        assert sim.memory_stats()["allocated_bytes"] <= held - (1 << 20)     # its memory is free again


def test_prefetch_range_is_typed_and_the_row_shows_its_bytes():
    with Simulator(trace="ops") as sim:
        w = torch_npu.empty_with_format((4096, 1024), "float16")
        torch_npu.npu_prefetch(w, None, 1 << 20, 4096)
        task = sim.current_device.prefetch_stream.tasks[-1]
        assert task.byte_range == (w.address + 4096, 1 << 20)
        rows = [r for r in sim.report().ops if r.name == "npu_prefetch"]
    assert rows[0].attrs == {"bytes": 1 << 20}
    assert not any(k.startswith("_") for r in sim.report().ops for k in r.attrs)


def test_fused_op_attrs_hold_no_engine_data():
    with Simulator(world_size=2, trace="ops") as sim:
        import ascend_sim.distributed as dist

        def fn(r):
            x1 = np.ones((64, 128), np.float16)
            x2 = np.ones((128, 64), np.float16)
            torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name())
        sim.spmd(fn)
        ops = sim.report().ops
    comm = [o for o in ops if o.stream == "hccl"]
    assert comm and all(o.attrs["op"] == "npu_mm_all_reduce_base" for o in comm)
    assert not any(k.startswith("_") for o in ops for k in o.attrs)
