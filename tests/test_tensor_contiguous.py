"""0-d (rank-0) arrays keep their shape through the front door (numpy's ascontiguousarray makes them 1-d)."""
import numpy as np

from ascend_sim import Simulator, torch_npu
from ascend_sim.tensor import NPUTensor, contiguous


def test_contiguous_keeps_rank_0_and_copies_only_when_needed():
    a = np.array(3.0, np.float32)
    assert contiguous(a).shape == ()
    b = np.arange(12.0).reshape(3, 4)
    assert contiguous(b) is b
    t = contiguous(b.T)
    assert t.flags.c_contiguous and (t == b.T).all()


def test_a_rank_0_input_gives_a_rank_0_result():
    with Simulator(trace="ops"):
        y = torch_npu.npu_silu(np.array(2.0, np.float16))
    assert isinstance(y, NPUTensor) and y.shape == ()
    np.testing.assert_allclose(float(y.data), 2.0 / (1.0 + np.exp(-2.0)), rtol=1e-3)
