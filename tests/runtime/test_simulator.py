"""Simulator, devices, streams, events, reports."""
import numpy as np
import pytest

from ascend_sim import Simulator, current_simulator, torch_npu
from ascend_sim.runtime import Event


def test_with_makes_the_simulator_current_and_restores():
    outer = current_simulator()
    with Simulator("Ascend910B3") as sim:
        assert current_simulator() is sim
        with Simulator("Ascend910A") as inner:
            assert current_simulator() is inner
        assert current_simulator() is sim
    assert current_simulator() is outer


def test_default_simulator_is_an_910b2():
    assert current_simulator().chip.name == "Ascend910B2"


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        Simulator(mode="fast")
    with pytest.raises(ValueError, match="world_size must be a positive integer"):
        Simulator(world_size=0)
    with pytest.raises(ValueError, match="valid presets"):
        Simulator(chip="H100")
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\)"):
        with Simulator(world_size=2).device(2):
            pass


def test_device_context_selects_the_rank():
    with Simulator(world_size=4) as sim:
        with sim.device(3):
            t = torch_npu.empty_with_format((16,), "float16")
            assert t.device.index == 3
        assert torch_npu.empty_with_format((16,), "float16").device.index == 0


def test_spmd_runs_every_rank_on_its_device():
    with Simulator(world_size=3) as sim:
        got = sim.spmd(lambda rank: (rank, sim.current_device.index))
    assert got == [(0, 0), (1, 1), (2, 2)]


def test_ops_queue_on_the_current_stream_and_report_rows():
    with Simulator() as sim:
        s = sim.new_stream("side")
        x = np.ones((4, 16), np.float16)
        torch_npu.one_(x)
        with sim.stream(s):
            torch_npu.npu_dtype_cast(x, "float32")
        rep = sim.report()
    assert [(r.name, r.stream) for r in rep.ops] == [("one_", "default"), ("npu_dtype_cast", "side")]
    row = rep.ops[1]
    for field in ("name", "device", "stream", "start_us", "duration_us", "launch_us", "core_type",
                  "block_dim", "bytes_read", "bytes_written", "l2_hit_rate", "bound"):
        assert hasattr(row, field)
    assert row.input_shapes == [[4, 16]] and row.output_dtypes == ["float32"]


def test_events_record_their_stream_position():
    with Simulator() as sim:
        dev = sim.current_device
        s = sim.new_stream()
        ev = Event()
        ev.record(dev.default_stream)
        ev.wait(s)
        assert [t.kind for t in s.tasks] == ["event_wait"]
        assert s.tasks[0].wait_for is ev.task
        assert not ev.query()
        sim.synchronize()
        assert ev.query()


def test_meta_mode_has_shapes_but_no_numbers():
    with Simulator(mode="meta"):
        t = torch_npu.empty_with_format((1 << 20, 8192), "bfloat16", acl_format=29)
        assert t.storage_shape == (512, 1 << 20, 16)
        assert t.nbytes == 16 << 30
        with pytest.raises(RuntimeError, match="meta mode"):
            t.numpy()


def test_deterministic_flag():
    with Simulator() as sim:
        x = np.zeros(3, np.float32)
        assert torch_npu.npu.enable_deterministic_with_backward(x) is x
        assert sim.deterministic and torch_npu.npu.are_deterministic_algorithms_enabled()
        torch_npu.npu.disable_deterministic_with_backward(x)
        assert not sim.deterministic


def test_report_exports(tmp_path):
    import csv

    from ascend_sim.traces import read_chrome_trace
    with Simulator(trace="pipe") as sim:
        x = np.ones((256, 256), np.float16)
        torch_npu.npu_format_cast(x, 29)
        torch_npu.npu_silu(x)
        rep = sim.report()
    trace = read_chrome_trace(rep.to_chrome_trace(str(tmp_path / "t.json")))
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    with open(rep.to_kernel_details(str(tmp_path / "kernel_details.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert [r["Name"] for r in rows] == ["npu_format_cast", "npu_silu"]
    with open(rep.to_op_statistic(str(tmp_path / "op_statistic.csv"))) as f:
        assert len(list(csv.DictReader(f))) == 2
    import matplotlib
    matplotlib.use("Agg")
    for ax in (rep.plot_timeline(), rep.plot_roofline(), rep.plot_utilization()):
        assert ax is not None


def test_scopes_label_report_rows():
    with Simulator(trace="ops") as sim:
        x = np.ones((64, 64), np.float16)
        with sim.scope("layer0"):
            with sim.scope("q_proj"):
                torch_npu.npu_linear(x, x)
            torch_npu.npu_silu(x)
        torch_npu.npu_silu(x)
        rows = sim.report().ops
    assert [r.attrs.get("scope") for r in rows] == ["layer0/q_proj", "layer0", None]
    assert "layer0/q_proj/npu_linear" in sim.report().table()
