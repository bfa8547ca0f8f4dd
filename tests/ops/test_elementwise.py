"""aten.add / aten.mul: numbers against float64 references, rules, and memory-bound time."""
import numpy as np
import pytest

from ascend_sim import Simulator, aten, torch_npu


@pytest.mark.parametrize("dt, tol", [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_add_and_mul_match_references(dt, tol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 37)).astype(dt)
    y = rng.standard_normal((37,)).astype(dt)                 # broadcasts over rows
    with Simulator():
        s = aten.add(x, y, alpha=2).numpy()
        p = aten.mul(x, y).numpy()
    ref_s = x.astype(np.float64) + 2 * y.astype(np.float64)
    ref_p = x.astype(np.float64) * y.astype(np.float64)
    np.testing.assert_allclose(s, ref_s, rtol=tol, atol=tol)
    np.testing.assert_allclose(p, ref_p, rtol=tol, atol=tol)
    assert s.dtype == dt


def test_rules():
    with Simulator():
        with pytest.raises(TypeError, match="aten.add: 'self' \\(float16\\) and 'other' \\(float32\\)"):
            aten.add(np.zeros(3, np.float16), np.zeros(3, np.float32))
        with pytest.raises(ValueError, match="does not broadcast"):
            aten.mul(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))


def test_large_add_is_hbm_bound():
    with Simulator(mode="meta", trace="ops") as sim:
        a = torch_npu.empty_with_format((64 << 20,), "float16")
        b = torch_npu.empty_with_format((64 << 20,), "float16")
        aten.add(a, b)
        (r,) = sim.report().ops
    gbps = (r.bytes_read + r.bytes_written) / (r.duration_us * 1e3)
    assert r.bound == "hbm" and gbps >= 0.9 * sim.chip.memory.hbm_bandwidth_GBps
