"""Acceptance criteria of the first op families that span ops (Ascend910B2, simulated time).

The per-family criteria (GEMM peak, elementwise bandwidth, NZ vs ND, flash-attention growth,
tilings that do not fit) live with their families; these involve several ops or the runtime.
"""
import numpy as np

from ascend_sim import Simulator, torch_npu

MiB = 1 << 20


def test_an_op_on_one_element_is_dominated_by_launch_overhead():
    with Simulator("Ascend910B2", trace="ops") as sim:
        torch_npu.npu_silu(np.ones(1, np.float16))
        (row,) = sim.report().ops
    assert row.launch_us == sim.chip.runtime.kernel_launch_us
    assert row.duration_us < 0.1 * row.launch_us and row.bound == "launch"


def _decode_matmul_after_prior_op(weight_rows: int, prefetch: bool) -> tuple[float, float]:
    """A compute-bound GEMM, then a decode-shaped npu_linear; with prefetch, the linear's weight
    is brought into L2 on the prefetch stream while the GEMM runs."""
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        e = lambda *s: torch_npu.empty_with_format(s, "float16")    # noqa: E731
        a, b = e(4096, 4096), e(4096, 4096)
        x, w = e(16, 4096), e(weight_rows, 4096)
        torch_npu.npu_bmmV2(a, b, [])                            # ~400 us on the cube, little HBM
        if prefetch:
            torch_npu.npu_prefetch(w, None, w.nbytes)
        torch_npu.npu_linear(x, w)
        rows = sim.report().ops
    lin = next(r for r in rows if r.name == "npu_linear")
    return lin.duration_us, lin.l2_hit_rate


def test_prefetch_during_a_prior_op_speeds_up_the_next_matmul():
    # a 32 MiB weight: it and the prior GEMM's 96 MiB of operands fit the 192 MiB L2 together (a
    # 128 MiB weight would not: the GEMM's reused tiles would evict the lines prefetched early)
    small = 4096
    base, base_hits = _decode_matmul_after_prior_op(small, prefetch=False)
    fast, fast_hits = _decode_matmul_after_prior_op(small, prefetch=True)
    assert fast_hits > 0.9 > base_hits
    assert fast < 0.8 * base


def test_prefetch_gains_nothing_when_the_weight_is_larger_than_l2():
    big = 4096 * 16                                              # a 512 MiB weight: more than L2
    base, _ = _decode_matmul_after_prior_op(big, prefetch=False)
    fast, hits = _decode_matmul_after_prior_op(big, prefetch=True)
    assert hits < 0.1                                            # its start was evicted by its end
    assert abs(fast - base) / base < 0.05
