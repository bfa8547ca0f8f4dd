"""The caching allocator: rounding, reuse, out-of-memory, record_stream / erase_stream."""
import numpy as np
import pytest

from ascend_sim import Simulator
from ascend_sim.dtypes import float16, float32
from ascend_sim.runtime import NPUOutOfMemoryError
from ascend_sim.runtime.memory import CachingAllocator
from ascend_sim.tensor import TensorMeta

MiB = 1 << 20


def test_sizes_get_the_pad_and_are_rounded_to_512():
    a = CachingAllocator(1 << 30, 512, pad=32)
    assert a.round_size(1) == 512
    assert a.round_size(480) == 512       # 480 + 32 = 512
    assert a.round_size(481) == 1024
    assert a.round_size(0) == 512


@pytest.mark.parametrize("request_bytes, segment", [
    (1000, 2 * MiB),              # small: a 2 MiB segment
    (3 * MiB, 20 * MiB),          # large under 10 MiB: a 20 MiB segment
    (11 * MiB + 5, 12 * MiB),     # larger: rounded up to 2 MiB
])
def test_segment_sizes_follow_the_allocator_policy(request_bytes, segment):
    a = CachingAllocator(1 << 30, 512, pad=0)
    a.allocate(request_bytes, object())
    assert a.reserved_bytes == segment


def test_large_request_is_carved_from_a_cached_large_segment():
    a = CachingAllocator(1 << 30, 512, pad=0)
    s = object()
    a.allocate(3 * MiB, s)
    a.allocate(11 * MiB, s)       # fits in the 17 MiB left of the 20 MiB segment
    assert a.reserved_bytes == 20 * MiB


def test_addresses_are_aligned_and_disjoint():
    a = CachingAllocator(1 << 30, 512, pad=32)
    s = object()
    blocks = [a.allocate(n, s) for n in (100, 5000, 3 * MiB, 700, 12 * MiB)]
    spans = sorted((b.address, b.end) for b in blocks)
    assert all(b.address % 512 == 0 for b in blocks)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))


def test_freed_block_is_reused_on_the_same_stream():
    a = CachingAllocator(1 << 30, 512)
    s1, s2 = object(), object()
    b = a.allocate(4096, s1)
    addr = b.address
    a.free(b)
    assert a.allocate(4096, s1).address == addr
    assert a.allocated_bytes == 4096


def test_free_block_not_reused_by_another_stream():
    a = CachingAllocator(1 << 30, 512)
    s1, s2 = object(), object()
    b = a.allocate(4096, s1)
    addr = b.address
    a.free(b)
    assert a.allocate(4096, s2).address != addr


def test_out_of_memory_names_the_sizes():
    with Simulator("Ascend910B4") as sim:        # 32 GiB
        dev = sim.current_device
        keep = dev.new_tensor(TensorMeta((8 << 30,), float16))   # 16 GiB
        with pytest.raises(NPUOutOfMemoryError) as e:
            dev.new_tensor(TensorMeta((10 << 30,), float16))     # 20 GiB more
        msg = str(e.value)
        assert "20.00 GiB" in msg and "capacity 32.00 GiB" in msg and "16.00 GiB" in msg
        del keep


def test_cached_memory_is_released_before_out_of_memory():
    with Simulator("Ascend910B4", mode="meta") as sim:
        dev = sim.current_device
        t = dev.new_tensor(TensorMeta((12 << 30,), float16))     # 24 GiB
        del t                                                    # cached, still reserved
        assert dev.allocator.reserved_bytes >= 24 << 30
        t2 = dev.new_tensor(TensorMeta((6 << 30,), float32))     # 24 GiB, other size: needs the cache freed
        assert dev.allocator.allocated_bytes >= 24 << 30
        del t2


def test_record_stream_holds_memory_until_the_stream_has_run():
    with Simulator() as sim:
        dev = sim.current_device
        side = dev.new_stream("side")
        t = dev.new_tensor(TensorMeta((1024,), float32), np.zeros(1024, np.float32))
        addr = t.address
        t.record_stream(side)
        from ascend_sim.runtime import Task
        sim.submit(Task("work", "host", side))        # work queued on the side stream
        del t
        u = dev.new_tensor(TensorMeta((1024,), float32))
        assert u.address != addr                      # still pending on 'side'
        sim.synchronize()
        v = dev.new_tensor(TensorMeta((1024,), float32))
        assert v.address == addr                      # reusable once 'side' has run


def test_erase_stream_lets_memory_be_reused_at_once():
    from ascend_sim import torch_npu
    with Simulator() as sim:
        dev = sim.current_device
        side = dev.new_stream("side")
        t = dev.new_tensor(TensorMeta((1024,), float32), np.zeros(1024, np.float32))
        addr = t.address
        t.record_stream(side)
        from ascend_sim.runtime import Task
        sim.submit(Task("work", "host", side))
        torch_npu.erase_stream(t, side)
        del t
        assert dev.new_tensor(TensorMeta((1024,), float32)).address == addr


def test_erase_stream_checks_its_arguments():
    from ascend_sim import torch_npu
    with Simulator() as sim:
        t = sim.current_device.new_tensor(TensorMeta((4,), float32))
        with pytest.raises(TypeError, match="erase_stream: argument 'stream' must be a Stream"):
            torch_npu.erase_stream(t, "stream1")
        with pytest.raises(TypeError, match="erase_stream: argument 'tensor'"):
            torch_npu.erase_stream([1, 2], sim.current_stream)


def test_swapped_memory_is_not_counted_against_hbm():
    from ascend_sim import torch_npu
    with Simulator("Ascend910B4", mode="meta") as sim:
        t = torch_npu.empty_with_swapped_memory((40 << 30,), dtype="int8")   # 40 GiB > 32 GiB HBM
        assert sim.current_device.allocator.allocated_bytes == 0
        assert t.block.kind == "host_swapped"
