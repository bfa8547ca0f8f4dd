"""NPUTensor: metadata, data, storage layout."""
import numpy as np
import pytest

from ascend_sim.formats import Format
from ascend_sim import Simulator, torch_npu
from ascend_sim.tensor import NPUTensor, TensorMeta, contiguous


def test_logical_and_storage_views():
    data = np.arange(100 * 30, dtype=np.float16).reshape(1, 100, 30)
    t = NPUTensor(data.shape, "float16", Format.FRACTAL_NZ, data=data)
    assert t.shape == (1, 100, 30) and t.npu_format == 29
    assert t.storage_shape == (1, 2, 112, 16)
    assert t.nbytes == 2 * 112 * 16 * 2
    st = t.storage()
    # element (m, n) lives in column block n // 16, row m, lane n % 16
    assert st[0, 1, 99, 13] == data[0, 99, 16 + 13]
    assert st[0, 1, 99, 14] == 0 and st[0, 0, 100, 0] == 0       # padding
    assert np.array_equal(np.asarray(t), data)


def test_meta_tensor_has_no_numbers():
    t = NPUTensor((4, 4), "bfloat16")
    assert t.is_meta and t.nbytes == 32
    with pytest.raises(RuntimeError, match="meta mode"):
        t.numpy()


def test_data_must_match_the_description():
    with pytest.raises(ValueError, match="does not match shape"):
        NPUTensor((2, 2), "float32", data=np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="does not match float16"):
        NPUTensor((2, 2), "float16", data=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="NC1HWC0"):
        NPUTensor((2, 2, 2), "float16", Format.NC1HWC0)


def test_tensor_meta_sizes_include_padding():
    m = TensorMeta((2, 20, 7, 7), __import__("ascend_sim").dtypes.float16, Format.NC1HWC0)
    assert m.storage_shape == (2, 2, 7, 7, 16)
    assert m.nbytes == 2 * 2 * 7 * 7 * 16 * 2


def test_view_shares_storage_and_checks_sizes():
    from ascend_sim import Simulator, torch_npu
    with Simulator():
        t = torch_npu.empty_with_format((6, 8), "float32")
        v = t.view(2, 3, -1)
        assert v.shape == (2, 3, 8) and v.address == t.address
        v.numpy()[0, 0, 0] = 5.0
        assert t.numpy()[0, 0] == 5.0                        # same numbers
        assert t.view(48).view(6, 8).shape == (6, 8)
        with pytest.raises(ValueError, match="has 40 elements"):
            t.view(5, 8)
        nz = torch_npu.npu_format_cast(t, 29)
        with pytest.raises(ValueError, match="stored in fractals"):
            nz.view(48)

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
