"""The engine, asserted on simulated cycles (never on wall time)."""
import pytest

from ascend_sim.engine import DeadlockError
from ascend_sim.isa import Buf, KernelPlan, Pipe, ProgramBuilder
from ascend_sim.ops.templates.elementwise import ElementwiseTiling, Operand, VectorStep, elementwise_plan
from ascend_sim.ops.templates.matmul import MatmulProblem, MatmulTiling, Operand as MOp, matmul_plan
from ascend_sim.dtypes import float16

from .conftest import run_plans

GiB = 1 << 30
MiB = 1 << 20


def test_one_mmad_costs_the_formula(chip):
    b = ProgramBuilder(chip, "AIC")
    b.mmad(128, 256, 64, "float16")
    (rec,), _ = run_plans(chip, (KernelPlan("mmad", "AIC", [[b.build()]]), {}))
    # HARDWARE.md 2.2: ceil(128/16) * ceil(256/16) * ceil(64/16) = 8 * 16 * 4 = 512 cycles
    assert rec.duration_us * chip.cores.aic_mhz == pytest.approx(512, abs=1e-6)
    assert rec.pipe_busy_us == {"CUBE": pytest.approx(512 / chip.cores.aic_mhz)}


def _gemm(chip, m, n, k, tiling):
    p = MatmulProblem(1, m, n, k, MOp("a", m, k, float16), MOp("b", k, n, float16), "c", float16)
    return matmul_plan("gemm", chip, p, tiling), {"a": 0, "b": GiB, "c": 2 * GiB}


def test_double_buffered_gemm_main_loop_is_compute_bound_at_95_percent(chip):
    (rec,), _ = run_plans(chip, _gemm(chip, 128, 256, 8192, MatmulTiling(block_dim=1)))
    cube = rec.pipe_busy_us["CUBE"]
    assert cube / rec.duration_us >= 0.95
    assert rec.bound == "cube"


def test_gemm_main_loop_with_a_small_k_step_is_mte2_bound(chip):
    # 16-wide K steps: the A tile's rows are 32 bytes, one path cycle each
    (rec,), _ = run_plans(chip, _gemm(chip, 128, 256, 8192, MatmulTiling(base_k=16, step_k=1, block_dim=1)))
    assert rec.bound == "mte2"
    assert rec.pipe_busy_us["MTE2"] > rec.pipe_busy_us["CUBE"]


def _copy(chip, nbytes, tiling=None):
    n = nbytes // 2
    return elementwise_plan("copy", chip, n, [Operand("src", 2)], [Operand("dst", 2)], [], tiling=tiling), \
        {"src": 0, "dst": 4 * GiB}


def test_1gib_copy_over_all_vector_cores_reaches_hbm_bandwidth(chip):
    (rec,), _ = run_plans(chip, _copy(chip, GiB))
    assert rec.block_dim == chip.cores.aiv
    # HBM carries the reads and the write-backs of evicted dirty lines: at its full rate
    hbm = rec.hbm_bytes / (rec.duration_us * 1e3)
    assert abs(hbm - chip.memory.hbm_bandwidth_GBps) / chip.memory.hbm_bandwidth_GBps < 0.05
    assert rec.bound == "hbm"
    # the last L2-full of written lines is still dirty in L2 when the copy ends (write-back)
    left_dirty = rec.bytes_read + rec.bytes_written - rec.hbm_bytes
    assert 0 < left_dirty <= chip.memory.l2_bytes


def test_copy_on_one_core_runs_at_the_cores_path_rate(chip):
    tiling = ElementwiseTiling(tile_elems=48 * 1024, block_dim=1)
    (rec,), _ = run_plans(chip, _copy(chip, 64 * MiB, tiling))
    # the slower of the core's paths bounds it: UB -> GM at ub_to_gm bytes per cycle
    rate = min(chip.paths["gm_to_ub"].bytes_per_cycle, chip.paths["ub_to_gm"].bytes_per_cycle)
    achieved = rec.bytes_written / (rec.duration_us * chip.cores.aic_mhz)
    assert achieved == pytest.approx(rate, rel=0.05)
    assert rec.bound == "mte3"


def _read(chip, nbytes):
    return elementwise_plan("read", chip, nbytes // 2, [Operand("src", 2)], [], [VectorStep("unary", "float16")]), \
        {"src": 0}


def test_second_read_hits_l2_when_the_tensor_fits(chip):
    size = chip.memory.l2_bytes // 3
    (first, second), _ = run_plans(chip, _read(chip, size), _read(chip, size))
    assert first.l2_hit_rate < 0.05 and second.l2_hit_rate > 0.99
    first_rate = size / first.duration_us
    second_rate = size / second.duration_us
    assert first_rate == pytest.approx(chip.memory.hbm_bandwidth_GBps * 1e3, rel=0.05)
    assert second_rate > 3 * first_rate


def test_second_read_misses_when_the_tensor_is_twice_l2(chip):
    size = 2 * chip.memory.l2_bytes
    (first, second), _ = run_plans(chip, _read(chip, size), _read(chip, size))
    assert second.l2_hit_rate < 0.05
    assert second.duration_us == pytest.approx(first.duration_us, rel=0.05)


def test_unanswered_wait_is_a_deadlock_naming_where(chip):
    b = ProgramBuilder(chip, "AIV")
    b.vector("binary", "float16", 1024)
    b.wait_flag(Pipe.MTE2, Pipe.VECTOR, 3)        # nobody sets it
    plan = KernelPlan("stuck", "AIV", [[b.build()]])
    with pytest.raises(DeadlockError) as e:
        run_plans(chip, (plan, {}))
    msg = str(e.value)
    assert "device 0" in msg and "AIV0" in msg and "VECTOR" in msg and "event id 3" in msg
    assert "instruction #1" in msg and "stuck" in msg


def _vector_kernel(chip, name, blocks, n=16 * 1024, repeat=8):
    progs = []
    for _ in range(blocks):
        b = ProgramBuilder(chip, "AIV")
        for _ in range(repeat):
            b.vector("exp", "float32", n)
        progs.append([b.build()])
    return KernelPlan(name, "AIV", progs), {}


def test_independent_kernels_on_two_streams_overlap(chip):
    # long enough (~60 us) that the second launch (20 us later) finds the first still running
    (a, b), _ = run_plans(chip, _vector_kernel(chip, "k1", 8, repeat=200), _vector_kernel(chip, "k2", 8, repeat=200),
                          streams=[0, 1])
    assert a.duration_us > 2 * chip.runtime.kernel_launch_us
    assert b.start_us < a.end_us                  # 16 blocks fit the 48 AIV at once
    assert b.duration_us == pytest.approx(a.duration_us)


def test_kernels_on_one_stream_serialise(chip):
    (a, b), _ = run_plans(chip, _vector_kernel(chip, "k1", 8, repeat=200), _vector_kernel(chip, "k2", 8, repeat=200),
                          streams=[0, 0])
    assert b.start_us >= a.end_us


def test_kernels_compete_for_cores_when_there_are_not_enough(chip):
    (a, b), _ = run_plans(chip, _vector_kernel(chip, "k1", 48, repeat=200), _vector_kernel(chip, "k2", 48, repeat=200),
                          streams=[0, 1])
    assert b.end_us >= a.end_us + 0.9 * a.duration_us


def test_events_order_streams(chip):
    from ascend_sim.runtime import Event, Simulator, Task
    sim = Simulator(chip, trace="ops")
    dev = sim.current_device
    s1 = dev.new_stream("s1")
    p1, _ = _vector_kernel(chip, "first", 4)
    p2, _ = _vector_kernel(chip, "second", 4)
    t1 = sim.submit(Task("first", "kernel", dev.default_stream, plan=p1))
    ev = Event()
    ev.record(dev.default_stream)
    ev.wait(s1)
    t2 = sim.submit(Task("second", "kernel", s1, plan=p2))
    sim.synchronize()
    assert t2.record.start_us >= t1.record.end_us
    assert ev.elapsed_time(ev) == 0.0


def test_same_program_same_cycles(chip):
    runs = []
    for _ in range(2):
        recs, _ = run_plans(chip, _gemm(chip, 512, 512, 1024, None), _copy(chip, 8 * MiB), streams=[0, 1])
        runs.append([(r.start_us, r.duration_us, r.bytes_read, r.l2_hit_rate) for r in recs])
    assert runs[0] == runs[1]


def test_launch_overhead_is_paid_by_the_host_in_order(chip):
    recs, _ = run_plans(chip, *[_vector_kernel(chip, f"k{i}", 1, n=256) for i in range(3)])
    launch = chip.runtime.kernel_launch_us
    for i, r in enumerate(recs):
        assert r.launch_us == pytest.approx(launch)
        assert r.start_us >= (i + 1) * launch          # each waits for its own launch
    assert recs[0].bound == "launch"


def test_pipe_trace_records_every_instruction(chip):
    b = ProgramBuilder(chip, "AIV")
    b.load_gm(Buf.UB, 0, "x", 0, 1, 4096)
    b.set_flag(Pipe.MTE2, Pipe.VECTOR, 0)
    b.wait_flag(Pipe.MTE2, Pipe.VECTOR, 0)
    b.vector("binary", "float16", 2048)
    plan = KernelPlan("k", "AIV", [[b.build()]])
    (rec,), sim = run_plans(chip, (plan, {"x": 0}), trace="pipe")
    lanes = {iv.lane for iv in sim.engine.timeline.intervals}
    assert {"AIV0.MTE2", "AIV0.VECTOR", "stream:default"} <= lanes
    mte2 = [iv for iv in sim.engine.timeline.intervals if iv.lane == "AIV0.MTE2"][0]
    vec = [iv for iv in sim.engine.timeline.intervals if iv.lane == "AIV0.VECTOR"][0]
    assert vec.start_us >= mte2.end_us                      # the flag orders them


def test_bytes_at_each_level(chip):
    size = 16 * MiB
    (first, second), _ = run_plans(chip, _read(chip, size), _read(chip, size))
    assert first.bytes_read == second.bytes_read == size
    assert first.l2_bytes == second.l2_bytes == size          # aligned: no padding
    assert first.hbm_bytes == pytest.approx(size, rel=0.01)   # cold: everything from HBM
    assert second.hbm_bytes == pytest.approx(0, abs=0.01 * size)


def test_mix_kernel_cross_core_flags_order_aic_and_aiv(chip):
    aic = ProgramBuilder(chip, "AIC")
    aic.mmad(128, 128, 128, "float16")
    aic.cross_set(Pipe.CUBE, 1)                       # to both AIVs
    aic.cross_wait(Pipe.CUBE, 2, "AIV")               # until both AIVs answered
    aic.mmad(128, 128, 128, "float16")
    aivs = []
    for _ in range(2):
        v = ProgramBuilder(chip, "AIV")
        v.cross_wait(Pipe.VECTOR, 1, "AIC")
        v.vector("exp", "float32", 8192)
        v.cross_set(Pipe.VECTOR, 2)
        aivs.append(v.build())
    plan = KernelPlan("mix", "MIX", [[aic.build()] + aivs])
    (rec,), sim = run_plans(chip, (plan, {}), trace="pipe")
    iv = sim.engine.timeline.intervals
    cube = sorted((i for i in iv if i.lane.endswith("CUBE")), key=lambda i: i.start_us)
    vec = [i for i in iv if i.lane.endswith("VECTOR")]
    assert len(cube) == 2 and len(vec) == 2
    assert all(v.start_us >= cube[0].end_us for v in vec)           # AIVs wait for the first MMAD
    assert cube[1].start_us >= max(v.end_us for v in vec)           # the AIC waits for both AIVs
    assert rec.core_type == "MIX" and rec.attrs["cores_used"] == 3
    assert any(f.name.startswith("cross-core") for f in sim.engine.timeline.flows)


def test_cross_stream_event_leaves_a_flow(chip):
    from ascend_sim.runtime import Event, Simulator, Task
    sim = Simulator(chip, trace="ops")
    dev = sim.current_device
    s1 = dev.new_stream("s1")
    p1, _ = _vector_kernel(chip, "first", 2)
    sim.submit(Task("first", "kernel", dev.default_stream, plan=p1))
    ev = Event()
    ev.record(dev.default_stream)
    ev.wait(s1)
    sim.synchronize()
    (flow,) = sim.engine.timeline.flows
    assert (flow.src_lane, flow.dst_lane) == ("stream:default", "stream:s1") and flow.dst_us >= flow.src_us


def test_hbm_counter_follows_the_traffic(chip):
    (rec,), sim = run_plans(chip, _copy(chip, 64 * MiB))
    hbm = next(c for c in sim.engine.timeline.counters if c.name == "HBM GB/s")
    assert hbm.times_us == sorted(hbm.times_us)
    assert max(hbm.values) == pytest.approx(chip.memory.hbm_bandwidth_GBps, rel=0.01)
    assert hbm.values[-1] == 0.0
