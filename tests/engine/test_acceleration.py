"""The accelerated paths against the full instruction-level run (issue 10).

* block classes: blocks identical up to their GM offsets are planned once (the other members
  record their GM accesses only) and simulated once; the plan equals the one built in full, and
  the simulated time stays within BOUND of the run that simulates every block on its own
  (``accelerate=False``);
* same-instant re-balances are batched: exact (max-min fair rates worked by hand);
* the L2 model keeps per-line state in pages made when first touched, and a run longer than the
  cache leaves exactly its last ``capacity`` lines.
"""
import numpy as np
import pytest
import simpy

from ascend_sim import Simulator, torch_npu
from ascend_sim.dtypes import float16
from ascend_sim.engine.memory import FluidNetwork, L2Cache
from ascend_sim.hw import get_chip
from ascend_sim.isa import GM
from ascend_sim.ops.templates import flash_attention as fa_template
from ascend_sim.ops.templates.cube.tile import TileCopy
from ascend_sim.ops.templates.matmul import MatmulProblem, Operand, matmul_plan

BOUND = 0.01     # the accelerated paths' stated bound against the full run


def e(*shape, dtype="float16"):
    return torch_npu.empty_with_format(shape, dtype)


def _programs_equal(a, b):
    """Same instructions and the same GM accesses (offsets included)."""
    return a.timing_key() == b.timing_key() and [x.offset for x in a.accesses] == [x.offset for x in b.accesses]


def _gemm_plan(chip, m, n, k):
    p = MatmulProblem(1, m, n, k, Operand("a", m, k, float16), Operand("b", k, n, float16), "c", float16)
    return matmul_plan("gemm", chip, p)


def test_a_gemm_planned_by_classes_equals_the_plan_built_in_full(monkeypatch):
    chip = get_chip("Ascend910B2")
    shared = _gemm_plan(chip, 1000, 1100, 600)          # edge tiles in M and N: more than one class
    firsts = {id(b[0].kind) for b in shared.blocks}
    assert 1 < len(firsts) < shared.block_dim           # some blocks share their representative's columns
    monkeypatch.setattr(TileCopy, "position_independent", False)
    full = _gemm_plan(chip, 1000, 1100, 600)
    assert len({id(b[0].kind) for b in full.blocks}) == full.block_dim
    assert all(_programs_equal(x[0], y[0]) for x, y in zip(shared.blocks, full.blocks))


def test_flash_attention_planned_by_classes_equals_the_plan_built_in_full(monkeypatch):
    def plan():
        with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
            torch_npu.npu_fusion_attention(e(1, 1024, 4, 128), e(1, 1024, 4, 128), e(1, 1024, 4, 128), 4, "BSND",
                                           atten_mask=e(2048, 2048, dtype="bool"), scale=0.088, sparse_mode=3)
            (task,) = [t for d in sim.devices for s in d.streams for t in s.pending()]
            return task.plan
    shared = plan()
    real = fa_template.class_programs
    monkeypatch.setattr(fa_template, "class_programs", lambda chip, core, items, shape, emit:
                        real(chip, core, items, None, emit))
    full = plan()
    assert len({id(b[0].kind) for b in shared.blocks}) < shared.block_dim
    for x, y in zip(shared.blocks, full.blocks):
        assert all(_programs_equal(p, q) for p, q in zip(x, y))


@pytest.mark.parametrize("op", ["rms_norm", "cast"])
def test_vector_kernels_planned_by_classes_equal_the_plans_built_in_full(monkeypatch, op):
    import ascend_sim.ops.templates.vector as vector_template

    def plan():
        with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
            if op == "rms_norm":
                torch_npu.npu_rms_norm(e(1000, 4096), e(4096))       # rows that do not split evenly
            else:
                torch_npu.npu_dtype_cast(e(3 << 20), "float32")
            (task,) = [t for d in sim.devices for s in d.streams for t in s.pending()]
            return task.plan
    shared = plan()
    real = vector_template.class_programs
    monkeypatch.setattr(vector_template, "class_programs", lambda chip, core, items, shape, emit:
                        real(chip, core, items, None, emit))
    full = plan()
    assert len({id(b[0].kind) for b in shared.blocks}) < shared.block_dim == full.block_dim
    assert all(_programs_equal(x[0], y[0]) for x, y in zip(shared.blocks, full.blocks))


def _timed(build, accelerate, trace="ops"):
    with Simulator("Ascend910B2", mode="meta", trace=trace, memoize=False, accelerate=accelerate) as sim:
        build()
        rep = sim.report()
        return rep, sim.engine_stats()


CASES = {
    "gemm 1024^3": lambda: torch_npu.npu_linear(e(1024, 1024), e(1024, 1024)),
    "gemm with edge tiles": lambda: torch_npu.npu_linear(e(1000, 600), e(1100, 600)),
    "rms_norm 4096x4096": lambda: torch_npu.npu_rms_norm(e(4096, 4096), e(4096)),
    "cast 16 Mi elements": lambda: torch_npu.npu_dtype_cast(e(16 << 20), "float32"),
    "fusion attention causal": lambda: torch_npu.npu_fusion_attention(
        e(1, 2048, 8, 128), e(1, 2048, 8, 128), e(1, 2048, 8, 128), 8, "BSND",
        atten_mask=e(2048, 2048, dtype="bool"), scale=0.088, sparse_mode=3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_classes_stay_within_the_bound_of_the_full_run(case):
    full, fs = _timed(CASES[case], False)
    fast, ks = _timed(CASES[case], True)
    assert ks["instructions"] < fs["instructions"] == fs["effective_instructions"] == ks["effective_instructions"]
    for a, b in zip(full.ops, fast.ops):
        assert abs(b.duration_us - a.duration_us) <= BOUND * a.duration_us
        assert (a.bytes_read, a.bytes_written, a.l2_bytes) == (b.bytes_read, b.bytes_written, b.l2_bytes)
        assert a.attrs["cores_used"] == b.attrs["cores_used"]
        assert abs(a.hbm_bytes - b.hbm_bytes) <= 0.01 * a.hbm_bytes


def test_the_pipe_trace_of_a_class_shows_every_core():
    full, _ = _timed(CASES["gemm 1024^3"], False, trace="pipe")
    fast, _ = _timed(CASES["gemm 1024^3"], True, trace="pipe")
    lanes = lambda rep: {i.lane for i in rep.timeline.intervals}  # noqa: E731
    assert lanes(fast) == lanes(full)
    assert len({lane.split(".")[0] for lane in lanes(fast) if lane.startswith("AIC")}) == get_chip("Ascend910B2").cores.aic
    assert len(fast.timeline.intervals) == len(full.timeline.intervals)


def test_blocks_that_cannot_start_together_run_one_by_one():
    """More blocks than cores: the members would not start at one instant, so no class is used."""
    from ascend_sim.ops.templates.matmul import MatmulTiling
    chip = get_chip("Ascend910B2")
    p = MatmulProblem(1, 1024, 1024, 256, Operand("a", 1024, 256, float16), Operand("b", 256, 1024, float16), "c",
                      float16)
    plan = matmul_plan("gemm", chip, p, MatmulTiling(block_dim=2 * chip.cores.aic))
    from ascend_sim.runtime import Task
    stats = {}
    for acc in (False, True):
        with Simulator(chip, mode="meta", trace="ops", memoize=False, accelerate=acc) as sim:
            t = sim.submit(Task("gemm", "kernel", sim.current_device.default_stream, plan=plan,
                                addresses={"a": 0, "b": 1 << 30, "c": 2 << 30}))
            sim.synchronize()
            stats[acc] = (t.record.duration_us, sim.engine_stats()["instructions"])
    assert stats[True] == stats[False] and stats[True][1] == plan.instruction_count()


# ----- same-instant re-balances -----
def _finish_times(flows, capacity):
    env = simpy.Environment()
    net = FluidNetwork(env)
    r = net.add_resource("R", capacity)
    done = {}

    def one(name, payload, cap, count):
        yield net.start(payload, cap, ((r, 1.0),), count=count)
        done[name] = env.now

    for name, payload, cap, count in flows:
        env.process(one(name, payload, cap, count))
    env.run()
    return done


def test_flows_started_together_get_max_min_fair_rates():
    # capacity 10: the capped flow gets 2, the two others 4 each (finish at 25); then the capped
    # one stays at its cap: 100 / 2 = 50
    done = _finish_times([("capped", 100, 2.0, 1), ("a", 100, float("inf"), 1), ("b", 100, float("inf"), 1)], 10.0)
    assert done == pytest.approx({"capped": 50.0, "a": 25.0, "b": 25.0})


def test_a_flow_standing_for_two_transfers_is_two_flows():
    two = _finish_times([("x", 100, float("inf"), 2), ("y", 60, float("inf"), 1)], 9.0)
    three = _finish_times([("x1", 100, float("inf"), 1), ("x2", 100, float("inf"), 1), ("y", 60, float("inf"), 1)],
                          9.0)
    # three flows at 3 each: y is done at 20; then x at 4.5 each: 60 more bytes take 13.33
    assert two["y"] == pytest.approx(three["y"]) == pytest.approx(20.0)
    assert two["x"] == pytest.approx(three["x1"]) == pytest.approx(20.0 + 40.0 / 4.5)


# ----- L2 -----
def test_a_run_longer_than_the_cache_keeps_its_last_lines():
    l2 = L2Cache(64 * 512, 512)                 # 64 lines
    old = l2.lines(0, 0, 1, 16 * 512, 16 * 512)  # 16 dirty lines, written first
    l2.access(old, write=True)
    run = l2.lines(1 << 20, 0, 1, 100 * 512, 100 * 512)
    assert l2.access(run, write=False) == 0
    assert l2.present == 64
    assert l2.resident_fraction(run[-64:]) == 1.0 and l2.resident_fraction(run[:-64]) == 0.0
    assert l2.resident_fraction(old) == 0.0
    assert l2.take_writeback() == 16 * 512      # the old dirty lines were written back


def test_l2_state_lives_in_pages_of_the_lines_used():
    l2 = L2Cache(1 << 20, 512)
    far = 60 << 30                               # near the top of a 64 GiB device
    l2.access(l2.lines(far, 0, 4, 1024, 4096))
    l2.access(l2.lines(0, 0, 1, 4096, 4096))
    assert len(l2._lines.pages) == 2
    assert l2.resident_fraction(l2.lines(far, 0, 4, 1024, 4096)) == 1.0
    assert l2.resident_fraction(l2.lines(far // 2, 0, 1, 4096, 4096)) == 0.0
    assert len(l2._lines.pages) == 2             # a query makes no page


def test_members_of_a_class_see_the_l2_as_one_after_another():
    a, b = L2Cache(1 << 20, 512), L2Cache(1 << 20, 512)
    offsets = [0, 512, 4096, 8192]               # members 0 and 1 overlap by one line
    touched, hits = a.access_members(0, offsets, 2, 1024, 2048)
    alone = [(len(idx), b.access(idx)) for idx in (b.lines(0, o, 2, 1024, 2048) for o in offsets)]
    assert list(zip(touched.tolist(), hits.tolist())) == alone
    assert a.present == b.present
    probe = b.lines(0, 0, 1, 16384, 16384)
    assert a.resident_fraction(probe) == b.resident_fraction(probe)


def test_class_programs_share_instructions_not_accesses():
    plan = _gemm_plan(get_chip("Ascend910B2"), 2048, 2048, 512)
    b0, b1 = plan.blocks[0][0], plan.blocks[1][0]
    assert b0.kind is b1.kind
    assert [k for k in b0.kind if k == GM] and [a.offset for a in b0.accesses] != [a.offset for a in b1.accesses]
    assert np.isclose(plan.flops, 2.0 * 2048 * 2048 * 512)


# ----- steady-state loops -----
LOOP_CASES = {
    # L2-resident key tiles: the tile loop converges and jumps
    "fusion attention S8192 N1": lambda: torch_npu.npu_fusion_attention(
        e(1, 8192, 1, 128), e(1, 8192, 1, 128), e(1, 8192, 1, 128), 1, "BSND", scale=0.088),
    # a vector tile loop that fits in L2
    "cast 16 Mi elements": CASES["cast 16 Mi elements"],
}


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_a_converged_loop_jumps_and_stays_within_the_bound(case):
    full, fs = _timed(LOOP_CASES[case], False)
    fast, ks = _timed(LOOP_CASES[case], True)
    assert ks["extrapolated_instructions"] > 0 and fs["extrapolated_instructions"] == 0
    (a,), (b,) = full.ops, fast.ops
    assert abs(b.duration_us - a.duration_us) <= BOUND * a.duration_us
    assert (a.bytes_read, a.bytes_written, a.l2_bytes) == (b.bytes_read, b.bytes_written, b.l2_bytes)
    assert abs(a.hbm_bytes - b.hbm_bytes) <= 0.01 * a.hbm_bytes
    for lane in ("CUBE", "VECTOR", "MTE2"):      # busy time extrapolated with the iterations
        if lane in a.pipe_busy_us:
            assert b.pipe_busy_us[lane] == pytest.approx(a.pipe_busy_us[lane], rel=BOUND)


def test_a_loop_does_not_jump_while_l2_evicts():
    """128 Mi elements cast (768 MiB through a 192 MiB L2): every loop runs to its end."""
    _, ks = _timed(lambda: torch_npu.npu_dtype_cast(e(128 << 20), "float32"), True)
    assert ks["extrapolated_instructions"] == 0


def test_a_loop_does_not_jump_beside_other_work():
    """An L2 prefetch on its own stream runs beside it: the interference is not periodic, so no jump."""
    def two_streams():
        w, x = e(32 << 20), e(16 << 20)
        torch_npu.npu_prefetch(w, None, w.nbytes)
        torch_npu.npu_dtype_cast(x, "float32")
    alone, ka = _timed(LOOP_CASES["cast 16 Mi elements"], True)
    _, ks = _timed(two_streams, True)
    assert ka["extrapolated_instructions"] > 0 and ks["extrapolated_instructions"] == 0


def test_marked_periods_repeat_the_same_instructions():
    from ascend_sim.engine.steady import periods_equal
    plan = _gemm_plan(get_chip("Ascend910B2"), 256, 256, 8192)
    prog = plan.blocks[0][0]
    (period, starts), = [v for v in prog.loops.values() if len(v[1]) > 8][:1]
    lo, hi = starts[2], starts[2 + period]
    assert periods_equal(prog, lo, hi, starts[2 + 2 * period] - lo)
    assert not periods_equal(prog, starts[0], starts[period], starts[2] - starts[0])  # warm-up differs


def test_a_run_of_lines_is_the_same_access_as_its_index_list():
    rng = np.random.default_rng(3)
    a, b = L2Cache(200 * 512, 512), L2Cache(200 * 512, 512)
    for _ in range(300):
        first = int(rng.integers(0, 1 << 16))
        end = first + int(rng.integers(1, 400))          # some runs longer than the 200-line cache
        write = bool(rng.random() < 0.5)
        assert a.access_range(first, end, write=write) == b.access(np.arange(first, end), write=write)
        assert a.take_writeback() == b.take_writeback() and a.present == b.present
        probe = int(rng.integers(0, 1 << 16))
        assert a.resident_fraction_range(probe, probe + 64) == b.resident_fraction(np.arange(probe, probe + 64))
