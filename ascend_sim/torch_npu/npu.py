"""``torch_npu.npu``: the deterministic pair, and the stream/event/memory helpers a torch.npu user
reaches for, acting on the current simulator."""
from __future__ import annotations

from ..runtime import Event, Stream, current_simulator
from ._dispatch import API_FUNCTIONS

enable_deterministic_with_backward = API_FUNCTIONS["enable_deterministic_with_backward"]
disable_deterministic_with_backward = API_FUNCTIONS["disable_deterministic_with_backward"]


def current_stream() -> Stream:
    return current_simulator().current_stream


def default_stream() -> Stream:
    return current_simulator().current_device.default_stream


def new_stream(name: str | None = None, priority: int = 0) -> Stream:
    """A new stream on the current device (torch.npu.Stream())."""
    return current_simulator().new_stream(name, priority)


def stream(s: Stream):
    """``with torch_npu.npu.stream(s):`` -- make ``s`` current."""
    return s.device.use_stream(s)


def synchronize() -> None:
    current_simulator().synchronize()


def set_device(rank: int) -> None:
    sim = current_simulator()
    sim.get_device(rank)
    sim._dev_var.set(rank)


def current_device() -> int:
    return current_simulator().current_device.index


def memory_allocated() -> int:
    return current_simulator().current_device.allocator.allocated_bytes


def memory_reserved() -> int:
    return current_simulator().current_device.allocator.reserved_bytes


def max_memory_allocated() -> int:
    return current_simulator().current_device.allocator.max_allocated_bytes


def empty_cache() -> None:
    current_simulator().empty_cache()


def are_deterministic_algorithms_enabled() -> bool:
    return current_simulator().deterministic


__all__ = ["enable_deterministic_with_backward", "disable_deterministic_with_backward", "Event", "Stream",
           "current_stream", "default_stream", "new_stream", "stream", "synchronize", "set_device",
           "current_device", "memory_allocated", "memory_reserved", "max_memory_allocated", "empty_cache",
           "are_deterministic_algorithms_enabled"]
