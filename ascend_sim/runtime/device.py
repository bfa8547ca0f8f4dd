"""A simulated NPU device: its memory, streams, float status and queued work.

What is modelled: what the ACL runtime keeps per device -- HBM capacity with a caching allocator,
host-swapped memory, a default stream plus user streams, the current stream, and the overflow
("float status") flag that the hardware raises when an op turns finite inputs into inf/NaN.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np

from ..hw import ChipSpec
from ..tensor import NPUTensor, TensorMeta
from .memory import CachingAllocator, HostSwapSpace
from .stream import Stream, Task


class Device:
    def __init__(self, sim: Any, index: int, chip: ChipSpec):
        self.sim = sim
        self.index = index
        self.chip = chip
        self.allocator = CachingAllocator(chip.memory.hbm_bytes, chip.memory.alloc_alignment,
                                          pad=chip.memory.alloc_pad_bytes, name=f"npu:{index} ({chip.name})")
        self.swap = HostSwapSpace(chip.memory.alloc_alignment)
        self.streams: list[Stream] = [Stream(self, 0)]
        self._current_stream = self.streams[0]
        self.float_status = False     # the overflow flag, sticky until cleared

    # ----- streams -----
    @property
    def default_stream(self) -> Stream:
        return self.streams[0]

    @property
    def current_stream(self) -> Stream:
        return self._current_stream

    def new_stream(self, name: str | None = None, priority: int = 0) -> Stream:
        s = Stream(self, len(self.streams), name, priority)
        self.streams.append(s)
        return s

    @property
    def comm_stream(self) -> Stream:
        """The stream the device's communication engine runs collectives on (made on first use)."""
        return self._named_stream("hccl")

    @property
    def prefetch_stream(self) -> Stream:
        """The stream npu_prefetch's L2 fills run on (made on first use)."""
        return self._named_stream("prefetch")

    def _named_stream(self, name: str) -> Stream:
        for s in self.streams:
            if s.name == name:
                return s
        return self.new_stream(name)

    @contextlib.contextmanager
    def use_stream(self, stream: Stream):
        if stream.device is not self:
            raise ValueError(f"stream {stream} belongs to device {stream.device.index}, not {self.index}")
        prev, self._current_stream = self._current_stream, stream
        try:
            yield stream
        finally:
            self._current_stream = prev

    def submit(self, task: Task) -> Task:
        return task.stream.submit(task)

    def pending_tasks(self) -> int:
        return sum(s.queued - s.completed for s in self.streams)

    # ----- memory -----
    def new_tensor(self, meta: TensorMeta, data: np.ndarray | None = None, *, swapped: bool = False,
                   stream: Stream | None = None, align_kb: int = 0) -> NPUTensor:
        """Allocate a tensor's storage (accounted against HBM, or host-swapped memory) and wrap it.
        ``align_kb`` > 0 over-allocates by that many KiB and starts the tensor on such a boundary."""
        stream = stream or self._current_stream
        space = self.swap if swapped else self.allocator
        extra = align_kb * 1024
        block = space.allocate(meta.nbytes + extra, stream)
        t = NPUTensor(meta.shape, meta.dtype, meta.format, data=data, device=self, block=block)
        if extra:
            t.offset = (-block.address) % extra
        weakref.finalize(t, _release, weakref.ref(self), space, block)
        return t

    def reallocate(self, tensor: NPUTensor, meta: TensorMeta) -> None:
        """Give ``tensor`` new storage for ``meta`` (in-place format change)."""
        space = self.swap if tensor.block.kind == "host_swapped" else self.allocator
        old = tensor.block
        block = space.allocate(meta.nbytes, self._current_stream)
        tensor._set_meta(meta)
        tensor.block = block
        space.free(old, self._progress)
        weakref.finalize(tensor, _release, weakref.ref(self), space, block)

    def record_stream(self, tensor: NPUTensor, stream: Stream) -> None:
        self.allocator.record_stream(tensor.block, stream)

    def erase_stream(self, tensor: NPUTensor, stream: Stream) -> None:
        self.allocator.erase_stream(tensor.block, stream)

    def _progress(self, stream: Stream) -> int:
        return stream.queued

    def after_run(self) -> None:
        """Called once the engine has run queued work: blocks waiting on streams may be reused."""
        self.allocator.process_events(lambda s: s.completed)

    def memory_stats(self) -> dict[str, int]:
        st = self.allocator.stats()
        st["swapped_bytes"] = self.swap.allocated_bytes
        return st

    def synchronize(self) -> None:
        self.sim.synchronize()

    def __repr__(self) -> str:
        return f"npu:{self.index}"


def _release(device_ref, space, block) -> None:
    dev = device_ref()
    space.free(block, dev._progress if dev is not None else None)
