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


def test_one_kernel_on_two_devices_at_different_instants_runs_on_both():
    """The same plan starts on device 1 while device 0 still runs it, at another instant (so device
    1 cannot follow it): each runs it on its own, and the lead's bookkeeping stays its own (this
    used to end in a KeyError when the first device finished)."""
    from ascend_sim.hw import get_chip
    chip = get_chip("Ascend910B2")
    gemm = matmul_plan("gemm", chip, MatmulProblem(1, 2048, 2048, 2048, Operand("a", 2048, 2048, float16),
                                                   Operand("b", 2048, 2048, float16), "c", float16))
    short = elementwise_plan("copy", chip, 1 << 16, [EOp("x", 2)], [EOp("y", 2)], [])
    sim = Simulator(chip, world_size=2, trace="ops")
    addrs = {"a": 0, "b": 1 << 30, "c": 2 << 30, "x": 3 << 30, "y": 4 << 30}
    d0, d1 = sim.devices
    first = sim.submit(Task("gemm", "kernel", d0.default_stream, plan=gemm, addresses=addrs))
    sim.submit(Task("copy", "kernel", d1.default_stream, plan=short, addresses=addrs))
    later = sim.submit(Task("gemm", "kernel", d1.default_stream, plan=gemm, addresses=addrs))
    sim.synchronize()
    a, b = first.record, later.record
    assert b.start_us > a.start_us and b.start_us < a.start_us + a.duration_us     # they overlap
    assert b.duration_us == pytest.approx(a.duration_us, rel=0.02)


@pytest.mark.parametrize("phase", ["prefill", "decode", "both"])
def test_the_readme_70b_estimate_runs_in_every_phase(phase, tmp_path, capsys):
    """The README's llama3-70b TP=8 configuration (one layer here; benchmarks/speed.py runs all 80):
    two devices replaying and following the same kernels used to end in a KeyError."""
    import json

    from ascend_sim.cli import main
    cfg = tmp_path / "model.json"
    cfg.write_text(json.dumps({"preset": "llama3-70b", "tp": 8, "phase": phase, "seq": 2048, "context": 4096,
                               "weight_format": "NZ", "layers": 1}))
    assert main(["estimate", str(cfg)]) == 0
    out = capsys.readouterr().out
    for what in (["prefill of 2048 tokens"] if phase != "decode" else []) + \
            (["one decode step at context 4096"] if phase != "prefill" else []):
        assert what in out
