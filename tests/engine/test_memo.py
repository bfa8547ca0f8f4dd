"""Memoisation: a replayed kernel stays within the stated bound of the full instruction-level run.

Bound (stated in ascend_sim.engine and the README): total time within 2% of the full run, for
repeated kernels alone on their device and when another stream contends for HBM.
"""
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.dtypes import float16
from ascend_sim.ops.templates.elementwise import Operand as EOp, elementwise_plan
from ascend_sim.ops.templates.matmul import MatmulProblem, Operand, matmul_plan
from ascend_sim.ops.templates.rows import RowOperand, RowStep, row_plan
from ascend_sim.runtime import Task

BOUND = 0.02


def layers(memo: bool, n: int, contend: bool):
    with Simulator("Ascend910B2", mode="meta", trace="ops", memoize=memo) as sim:
        dev, chip = sim.current_device, sim.chip
        M, H = 1024, 4096
        e = lambda *s: torch_npu.empty_with_format(s, "float16")  # noqa: E731
        x, y, g = e(M, H), e(M, H), e(H)
        ws = [e(H, H) for _ in range(n)]
        src, dst = e(32 << 20), e(32 << 20)
        side = dev.new_stream("side")
        mm = matmul_plan("mm", chip, MatmulProblem(1, M, H, H, Operand("a", M, H, float16),
                                                   Operand("b", H, H, float16), "c", float16))
        norm = row_plan("norm", chip, M, H, [RowOperand("x", 2), RowOperand("g", 2, "shared")], [RowOperand("y", 2)],
                        [RowStep("binary", "float32"), RowStep("reduce_sum", "float32"), RowStep("binary", "float32")])
        cp = elementwise_plan("copy", chip, 32 << 20, [EOp("src", 2)], [EOp("dst", 2)], [])
        for i in range(n):
            sim.submit(Task("norm", "kernel", dev.default_stream, plan=norm,
                            addresses={"x": x.address, "g": g.address, "y": y.address}))
            sim.submit(Task("mm", "kernel", dev.default_stream, plan=mm,
                            addresses={"a": y.address, "b": ws[i].address, "c": x.address}))
            if contend and i % 2:
                sim.submit(Task("copy", "kernel", side, plan=cp, addresses={"src": src.address, "dst": dst.address}))
        rep = sim.report()
        return rep.total_us, sim.engine.replayed, [(r.name, r.bytes_read, r.bytes_written) for r in rep.ops]


@pytest.mark.parametrize("contend", [False, True])
def test_replay_stays_within_the_bound(contend):
    full, replayed_full, rows_full = layers(False, 8, contend)
    memo, replayed, rows = layers(True, 8, contend)
    assert replayed_full == 0 and replayed > 0
    assert abs(memo - full) / full <= BOUND
    assert sorted(rows) == sorted(rows_full)          # the same ops moved the same bytes


def test_memoize_needs_a_trace_without_instructions():
    with pytest.raises(ValueError, match="memoize=True replays kernels"):
        Simulator(trace="pipe", memoize=True).engine


def test_spmd_ranks_following_a_leader_stay_within_the_bound():
    from ascend_sim.workloads import LlamaConfig, run_model
    cfg = LlamaConfig.preset("llama3-8b")
    runs = {}
    for memo in (False, True):
        sim = Simulator("Ascend910B2", world_size=4, mode="meta", trace="ops", memoize=memo)
        runs[memo] = (run_model(sim, cfg, tp=4, phase="prefill", seq=256, layers=2), sim.engine)
    full, fast = runs[False][0], runs[True][0]
    assert runs[True][1].followed > 0
    assert abs(fast.total_us - full.total_us) / full.total_us <= BOUND
