"""Simulated time of the memory/format ops (the engine fills the report rows)."""
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu

MiB = 1 << 20


def test_copy_memory_of_256mib_is_hbm_bound():
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        dst = torch_npu.empty_with_format((128 * MiB,), "float16")
        src = torch_npu.empty_with_format((128 * MiB,), "float16")
        torch_npu.copy_memory_(dst, src)
        (row,) = [r for r in sim.report().ops if r.name == "copy_memory_"]
    moved = row.bytes_read + row.bytes_written
    assert moved == 2 * 256 * MiB
    # HBM carries the reads and the write-backs L2 evicts: its rate is the chip's HBM bandwidth
    gbps = row.hbm_bytes / (row.duration_us * 1e3)
    assert gbps == pytest.approx(sim.chip.memory.hbm_bandwidth_GBps, rel=0.05)
    assert row.bound == "hbm" and row.core_type == "AIV" and row.block_dim == sim.chip.cores.aiv


def test_meta_and_full_mode_take_the_same_time():
    def run(mode):
        with Simulator(mode=mode, trace="ops") as sim:
            x = torch_npu.empty_with_format((1000, 300), "float16")
            torch_npu.npu_format_cast(x, 29)
            torch_npu.npu_dtype_cast(x, "float32")
            torch_npu.one_(x)
            return [(r.name, r.duration_us, r.bytes_read, r.bytes_written) for r in sim.report().ops]
    assert run("full") == run("meta")


def test_every_kernel_row_has_times_and_bytes():
    with Simulator(trace="ops") as sim:
        x = np.ones((256, 256), np.float16)
        torch_npu.npu_format_cast(x, 29)
        torch_npu.npu_dtype_cast(x, "float32")
        buf = torch_npu.npu_alloc_float_status(x)
        torch_npu.npu_get_float_status(buf)
        rows = sim.report().ops
    assert [r.name for r in rows] == ["npu_format_cast", "npu_dtype_cast", "npu_alloc_float_status",
                                      "npu_get_float_status"]
    for r in rows:
        assert r.duration_us > 0 and r.launch_us > 0 and r.core_type == "AIV" and r.bytes_written > 0
    cast = rows[1]
    assert cast.bytes_read == 256 * 256 * 2 and cast.bytes_written == 256 * 256 * 4


def test_nd_to_nz_writes_the_padded_storage():
    with Simulator(trace="ops") as sim:
        torch_npu.npu_format_cast(np.ones((100, 30), np.float16), 29)
        (r,) = sim.report().ops
    assert r.bytes_written == 2 * 112 * 16 * 2       # NZ storage (2, 112, 16) fp16


def test_relabel_queues_no_kernel():
    with Simulator(trace="ops") as sim:
        x = torch_npu.empty_with_format((2, 3, 4, 5), "float32")
        torch_npu.npu_format_cast(x, 2)
        assert sim.report().ops == []
