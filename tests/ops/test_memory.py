"""Format, dtype, copy and fill ops: numbers against independent references, and their rules."""
import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.formats import Format, from_storage
from ascend_sim.ops import OpError


@pytest.fixture
def sim():
    with Simulator("Ascend910B2") as s:
        yield s


def test_documented_nz_example(sim):
    x = np.random.default_rng(0).standard_normal((8, 100, 30)).astype(np.float16)
    y = torch_npu.npu_format_cast(x, 29)
    assert y.storage_shape == (8, 2, 112, 16)
    assert torch_npu.get_npu_format(y) == 29
    assert np.array_equal(y.numpy(), x)                        # the numbers are unchanged
    st = y.storage()
    assert np.array_equal(st[:, 0, :100, :], x[:, :, :16])       # first column block
    assert np.array_equal(st[:, 1, :100, :14], x[:, :, 16:])     # second, 14 real lanes
    assert not st[:, 1, :, 14:].any() and not st[:, :, 100:, :].any()   # zero padding


def test_nc1hwc0_cast_and_back(sim):
    x = np.random.default_rng(1).standard_normal((2, 19, 5, 3)).astype(np.float16)
    y = torch_npu.npu_format_cast(x, Format.NC1HWC0)
    assert y.storage_shape == (2, 2, 5, 3, 16)
    assert np.array_equal(from_storage(y.storage(), Format.NC1HWC0, x.shape, "float16"), x)
    z = torch_npu.npu_format_cast(y, "NCHW")
    assert z.npu_format == 0 and np.array_equal(z.numpy(), x)


def test_same_format_returns_the_input(sim):
    x = torch_npu.empty_with_format((32, 32), "float16", acl_format=29)
    assert torch_npu.npu_format_cast(x, 29) is x


def test_base_to_base_relabels_in_place(sim):
    x = torch_npu.empty_with_format((2, 3, 4, 5), "float32")
    assert torch_npu.get_npu_format(x) == 0                     # 4-D ND is stored as NCHW
    y = torch_npu.npu_format_cast(x, 2)
    assert y.npu_format == 2
    z = torch_npu.npu_format_cast(x, Format.NHWC)
    assert z.npu_format == 1


def test_format_cast_rank_rule(sim):
    with pytest.raises(ValueError, match="NC1HWC0"):
        torch_npu.npu_format_cast(np.zeros((3, 4), np.float16), 3)


@pytest.mark.parametrize("bad", [5, 99, "FRACTAL_Q", -1])
def test_bad_format_ids_list_the_valid_ones(sim, bad):
    with pytest.raises(ValueError) as e:
        torch_npu.npu_format_cast(np.zeros((3, 4), np.float16), bad)
    assert "FRACTAL_NZ=29" in str(e.value) and "acl_format" in str(e.value)


def test_format_cast_inplace_takes_src_format(sim):
    x = np.arange(12, dtype=np.float16).reshape(3, 4)
    t = torch_npu.empty_with_format((3, 4), "float16")
    torch_npu.copy_memory_(t, x)
    nz = torch_npu.empty_with_format((5, 5), "float16", acl_format=29)
    r = torch_npu.npu_format_cast_(t, nz)
    assert r is t and t.npu_format == 29 and t.storage_shape == (1, 16, 16)
    assert np.array_equal(t.numpy(), x)
    torch_npu.npu_format_cast_(t, 2)
    assert t.npu_format == 2


def test_copy_memory_copies_and_returns_self(sim):
    a = torch_npu.empty_with_format((3,), "int32")
    b = np.array([1, 1, 1], np.int32)
    r = torch_npu.copy_memory_(a, b)
    assert r is a and a.numpy().tolist() == [1, 1, 1]


def test_copy_memory_copies_raw_storage_not_by_shape(sim):
    dst = torch_npu.empty_with_format((2, 3), "float32")
    src = np.arange(6, dtype=np.float32).reshape(3, 2)           # same bytes, other shape: allowed
    torch_npu.copy_memory_(dst, src)
    assert dst.numpy().ravel().tolist() == list(range(6))


def test_copy_memory_rules(sim):
    dst = torch_npu.empty_with_format((4,), "float32")
    with pytest.raises(TypeError, match="same dtype"):
        torch_npu.copy_memory_(dst, np.zeros(4, np.float16))
    with pytest.raises(OpError, match="fewer than the 4"):
        torch_npu.copy_memory_(dst, np.zeros(3, np.float32))


def test_one_fills_in_place(sim):
    x = np.zeros((2, 3), np.float32)
    t = torch_npu.empty_with_format((2, 3), "bfloat16")
    r = torch_npu.one_(t)
    assert r is t and (t.numpy().astype(np.float32) == 1).all()
    torch_npu.one_(x)
    assert (x == 1).all()                                        # numpy input is written too


def test_dtype_cast_rounds_to_nearest_even(sim):
    x = np.array([1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, -0.0, 65520.0], np.float32)
    y = torch_npu.npu_dtype_cast(x, "float16").numpy()
    assert y.tolist()[:3] == [1.0, 1 + 2.0 ** -9, 0.0] and np.isinf(y[3])
    b = torch_npu.npu_dtype_cast(x, 15).numpy()                  # ScalarType id of bfloat16
    assert b.dtype == ml_dtypes.bfloat16
    assert np.array_equal(b.view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_dtype_cast_float_to_int_truncates(sim):
    y = torch_npu.npu_dtype_cast(np.array([0, 0.5, -1.0], np.float32), dtype="int32")
    assert y.numpy().tolist() == [0, 0, -1]


def test_dtype_cast_reads_packed_int4(sim):
    from ascend_sim.dtypes import pack_int4
    v = np.array([[1, -2, 3, -4, 5, -6, 7, -8]])
    y = torch_npu.npu_dtype_cast(pack_int4(v), "float16", input_dtype=285)   # torch_npu.int4
    assert y.shape == (1, 8) and y.numpy().tolist() == [[1, -2, 3, -4, 5, -6, 7, -8]]


def test_dtype_cast_bad_dtype(sim):
    with pytest.raises(ValueError, match="unknown dtype id 1000"):
        torch_npu.npu_dtype_cast(np.zeros(2, np.float32), 1000)
    with pytest.raises(TypeError, match="npu_dtype_cast: argument 'dtype'"):
        torch_npu.npu_dtype_cast(np.zeros(2, np.float32), "float13")


def test_meta_mode_gives_the_same_shapes(sim):
    full = torch_npu.npu_dtype_cast(np.zeros((3, 17), np.float32), "float16")
    with Simulator(mode="meta"):
        meta = torch_npu.npu_dtype_cast(torch_npu.empty_with_format((3, 17), "float32"), "float16")
    assert (meta.shape, meta.dtype, meta.format) == (full.shape, full.dtype, full.format) and meta.is_meta
