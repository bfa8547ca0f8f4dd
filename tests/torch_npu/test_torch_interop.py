"""torch in, torch out (bf16 included), when torch is installed."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is optional; install the 'torch' extra to run these")

from ascend_sim import Simulator, torch_npu  # noqa: E402


def test_torch_in_torch_out_shares_format():
    with Simulator():
        x = torch.randn(8, 100, 30, dtype=torch.float16)
        y = torch_npu.npu_format_cast(x, 29)
        assert isinstance(y, torch.Tensor) and y.dtype == torch.float16 and tuple(y.shape) == (8, 100, 30)
        assert torch.equal(y, x)
        assert torch_npu.get_npu_format(y) == 29


def test_bf16_round_trip_is_bit_exact():
    with Simulator():
        x = torch.randn(5, 7, dtype=torch.float32)
        y = torch_npu.npu_dtype_cast(x, torch.bfloat16)
        assert y.dtype == torch.bfloat16
        assert torch.equal(y.view(torch.int16), x.to(torch.bfloat16).view(torch.int16))
        z = torch_npu.npu_dtype_cast(y, torch.float32)
        assert torch.equal(z, y.to(torch.float32))


def test_documented_dtype_cast_example():
    with Simulator():
        out = torch_npu.npu_dtype_cast(torch.tensor([0, 0.5, -1.0]), dtype=torch.int)
        assert out.dtype == torch.int32 and out.tolist() == [0, 0, -1]


def test_in_place_ops_write_the_torch_tensor():
    with Simulator():
        x = torch.zeros(2, 3)
        r = torch_npu.one_(x)
        assert (x == 1).all() and torch.equal(r, x)


def test_numpy_in_gives_npu_tensor_out():
    with Simulator():
        y = torch_npu.npu_dtype_cast(np.zeros(3, np.float32), torch.float16)
        assert not isinstance(y, torch.Tensor) and y.dtype.name == "float16"
