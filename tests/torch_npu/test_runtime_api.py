"""Runtime functions: creation, float status."""
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu


def test_empty_with_format_defaults_and_padding():
    with Simulator():
        t = torch_npu.empty_with_format((100, 30))
        assert t.dtype.name == "float32" and t.npu_format == 2 and t.numpy().shape == (100, 30)
        nz = torch_npu.empty_with_format((100, 30), "float16", None, None, None, 29)   # documented positional form
        assert nz.storage_shape == (2, 112, 16) and nz.nbytes == 2 * 112 * 16 * 2


def test_empty_with_format_rules():
    with Simulator():
        with pytest.raises(ValueError, match="pin_memory"):
            torch_npu.empty_with_format((2,), pin_memory=True)
        with pytest.raises(ValueError, match="dimensions must be >= 0"):
            torch_npu.empty_with_format((2, -1))
        with pytest.raises(TypeError, match="argument 'size'"):
            torch_npu.empty_with_format((2, 1.5))
        with pytest.raises(ValueError, match="base_addr_aligned_kb"):
            torch_npu.empty_with_format((2,), base_addr_aligned_kb=17)
        with pytest.warns(UserWarning, match="stored as ND"):
            assert torch_npu.empty_with_format((7,), acl_format=29).npu_format == 2


def test_base_addr_alignment():
    with Simulator():
        torch_npu.empty_with_format((3,), "float16")
        t = torch_npu.empty_with_format((5,), "float16", base_addr_aligned_kb=16)
        assert t.address % (16 * 1024) == 0


def test_empty_with_format_counts_against_hbm():
    with Simulator("Ascend910B4", mode="meta") as sim:
        a = torch_npu.empty_with_format((4 << 30,), "float32")          # 16 GiB
        assert sim.memory_stats()["allocated_bytes"] >= 16 << 30
        from ascend_sim.runtime import NPUOutOfMemoryError
        with pytest.raises(NPUOutOfMemoryError, match="out of memory"):
            torch_npu.empty_with_format((5 << 30,), "float32")           # 20 GiB more than 32 GiB
        del a


def test_float_status_cycle_on_a2():
    with Simulator("Ascend910B2"):
        buf = torch_npu.npu_alloc_float_status(np.zeros(3, np.float32))
        assert buf.shape == (8,) and buf.dtype.name == "float32" and not buf.numpy().any()
        torch_npu.npu_dtype_cast(np.array([1.0, 2.0], np.float32), "float16")       # fine
        assert torch_npu.npu_get_float_status(buf).numpy()[0] == 0
        torch_npu.npu_dtype_cast(np.array([1e6], np.float32), "float16")           # finite -> inf
        st = torch_npu.npu_get_float_status(buf)
        assert st.dtype.name == "int32" and st.numpy()[0] != 0
        torch_npu.npu_dtype_cast(np.array([1.0], np.float32), "float16")            # sticky
        assert torch_npu.npu_get_float_status(buf).numpy()[0] != 0
        cleared = torch_npu.npu_clear_float_status(buf)
        assert cleared.shape == (8,) and not cleared.numpy().any()
        assert torch_npu.npu_get_float_status(buf).numpy()[0] == 0


def test_nonfinite_inputs_do_not_raise_the_flag():
    with Simulator():
        buf = torch_npu.npu_alloc_float_status(np.zeros(1, np.float32))
        torch_npu.npu_dtype_cast(np.array([np.inf, 1.0], np.float32), "float16")
        assert torch_npu.npu_get_float_status(buf).numpy()[0] == 0


def test_float_status_on_910_writes_the_buffer():
    with Simulator("Ascend910A"):
        buf = torch_npu.npu_alloc_float_status(np.zeros(1, np.float32))
        torch_npu.npu_dtype_cast(np.array([1e6], np.float32), "float16")
        out = torch_npu.npu_get_float_status(buf)
        assert out is buf and buf.numpy()[0] != 0


def test_float_status_mode_rule():
    with Simulator():
        buf = torch_npu.npu_alloc_float_status(np.zeros(1, np.float32))
        with pytest.raises(ValueError, match="mode' must be 0"):
            torch_npu.npu_get_float_status(buf, 2)


@pytest.mark.parametrize("dtype", [np.uint32, "uint32", np.dtype("uint16"), np.complex64])
@pytest.mark.parametrize("mode", ["full", "meta"])
def test_empty_with_format_non_ascend_dtype_names_the_op(dtype, mode):
    """Issue 11 fuzz finding: a uint32 dtype (no Ascend dtype) must name the op and the argument.
    The host function does; the fuzz test's Ascend 950 stand-in for it now names it the same."""
    with Simulator(mode=mode):
        with pytest.raises(TypeError, match=r"^empty_with_format: argument 'dtype': .*(not an Ascend dtype|unknown dtype name)"):
            torch_npu.empty_with_format([2, 3], dtype=dtype)


def test_numbers_beyond_host_memory_are_an_out_of_memory_error_naming_the_op(monkeypatch):
    """Fuzz finding: empty_with_swapped_memory(2**40) in full mode (host-swapped memory has no HBM
    bound) raised numpy's MemoryError from the host copy of its numbers."""
    from ascend_sim.runtime.memory import NPUOutOfMemoryError
    zeros = np.zeros

    def small_host(shape, dtype=float):           # this host holds at most 1 GiB, whatever machine runs it
        if np.prod(shape, dtype=np.float64) * np.dtype(dtype).itemsize > 2 ** 30:
            raise MemoryError("Unable to allocate")
        return zeros(shape, dtype=dtype)
    monkeypatch.setattr(np, "zeros", small_host)
    with Simulator():
        with pytest.raises(NPUOutOfMemoryError, match=r"^empty_with_swapped_memory: the numbers of shape "
                                                      r"\(1099511627776,\)"):
            torch_npu.empty_with_swapped_memory(2 ** 40)
        assert torch_npu.empty_with_swapped_memory([4]).shape == (4,)
