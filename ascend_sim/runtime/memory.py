"""Device memory: the simulated HBM address space and a caching allocator over it.

What is modelled: torch_npu's NPU caching allocator, closely enough that capacity, addresses and
reuse behave as users see them:

* requests get the allocator's padding (ChipSpec ``memory.alloc_pad_bytes``, 32 B before Ascend 950)
  and are rounded up to its granularity (``memory.alloc_alignment``, 512 B);
* small requests (<= 1 MiB) share 2 MiB segments; requests under 10 MiB get a 20 MiB segment;
  larger ones a segment rounded up to 2 MiB (torch_npu NPUCachingAllocator kSmallSize,
  kSmallBuffer, kMinLargeAlloc, kLargeBuffer, kRoundLarge); a large block is split only when more
  than 1 MiB would remain, a small one when at least the granularity remains;
* blocks live in segments reserved from the device; a freed block goes back to a per-stream cache
  and is reused (best fit, split when larger) by later requests on the same stream, without
  touching the device;
* ``record_stream(block, s)``: the block is also used by stream ``s``; when it is freed it stays
  unavailable until the work queued on ``s`` up to that moment has run (here: until the device's
  queued work is simulated by ``synchronize``). ``erase_stream`` takes ``s`` off again, so the block
  can be reused as soon as it is freed;
* when a request does not fit, cached free segments are released to the device and the request is
  retried; if it still does not fit, :class:`NPUOutOfMemoryError` says how much was asked,
  the capacity, and how much is allocated and cached.

Invariants: allocated + cached + pending == reserved <= capacity; segments never overlap;
every address is a multiple of the alignment.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any


class NPUOutOfMemoryError(RuntimeError):
    """Raised when the simulated device's HBM cannot hold an allocation."""


@dataclass(eq=False)
class Block:
    """A piece of a segment. ``allocated`` blocks belong to a tensor."""

    address: int
    size: int
    segment: "Segment"
    stream: Any
    allocated: bool = False
    requested: int = 0
    stream_uses: set = field(default_factory=set)
    pending_on: dict = field(default_factory=dict)   # stream -> task count that must have run
    kind: str = "device"

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(eq=False)
class Segment:
    address: int
    size: int
    small: bool = False
    blocks: list = field(default_factory=list)   # sorted by address, tile the segment


class AddressSpace:
    """First-fit allocator of segments in [base, base + capacity) (the device's aclrtMalloc)."""

    def __init__(self, capacity: int, alignment: int, base: int = 0):
        self.capacity = capacity
        self.alignment = alignment
        self.base = base
        self._free: list[tuple[int, int]] = [(base, capacity)]   # sorted (address, size)
        self.reserved = 0

    def reserve(self, size: int) -> int | None:
        for i, (addr, avail) in enumerate(self._free):
            if avail >= size:
                if avail == size:
                    del self._free[i]
                else:
                    self._free[i] = (addr + size, avail - size)
                self.reserved += size
                return addr
        return None

    def release(self, addr: int, size: int) -> None:
        self.reserved -= size
        i = bisect.bisect(self._free, (addr, size))
        self._free.insert(i, (addr, size))
        # merge neighbours so large segments can be had again
        merged: list[tuple[int, int]] = []
        for a, s in self._free:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((a, s))
        self._free = merged


class CachingAllocator:
    """Per-device caching allocator (see the module docstring for the semantics)."""

    # Segment policy of torch_npu's NPUCachingAllocator (software, not hardware: the constants
    # live here, next to the policy they belong to).
    SMALL_REQUEST = 1 << 20       # kSmallSize: requests up to 1 MiB come from small segments
    SMALL_SEGMENT = 2 << 20       # kSmallBuffer
    MIN_LARGE_ALLOC = 10 << 20    # kMinLargeAlloc: below this a large request gets a kLargeBuffer
    LARGE_SEGMENT = 20 << 20      # kLargeBuffer
    LARGE_ROUND = 2 << 20         # kRoundLarge
    LARGE_SPLIT_REMAINDER = 1 << 20  # a large block is split only if more than this remains

    def __init__(self, capacity: int, alignment: int, *, pad: int = 0, name: str = "device"):
        if capacity <= 0 or alignment <= 0 or pad < 0:
            raise ValueError("CachingAllocator: capacity and alignment must be positive, pad >= 0")
        self.name = name
        self.alignment = alignment
        self.pad = pad
        self.space = AddressSpace(capacity, alignment)
        self.capacity = capacity
        self.segments: list[Segment] = []
        self._free_blocks: list[Block] = []   # cached, not allocated, not pending
        self._pending: list[Block] = []
        self.allocated_bytes = 0
        self.max_allocated_bytes = 0
        self.num_allocs = 0

    # ----- public -----
    def round_size(self, nbytes: int) -> int:
        a = self.alignment
        n = nbytes + self.pad
        return max(a, (n + a - 1) // a * a)

    def allocate(self, nbytes: int, stream: Any) -> Block:
        if nbytes < 0:
            raise ValueError(f"allocate: negative size {nbytes}")
        size = self.round_size(nbytes)
        block = self._from_cache(size, stream)
        if block is None:
            block = self._new_segment(size, stream)
        if block is None:
            self.empty_cache()
            block = self._new_segment(size, stream)
        if block is None:
            raise NPUOutOfMemoryError(
                f"NPU out of memory on {self.name}: tried to allocate {_fmt(nbytes)} "
                f"(rounded to {_fmt(size)}); capacity {_fmt(self.capacity)}, "
                f"{_fmt(self.allocated_bytes)} allocated by tensors, "
                f"{_fmt(self.space.reserved - self.allocated_bytes)} reserved but not allocated "
                f"(cached or waiting on other streams), "
                f"{_fmt(self.capacity - self.space.reserved)} free")
        block.allocated = True
        block.requested = nbytes
        block.stream = stream
        block.stream_uses = set()
        self.allocated_bytes += block.size
        self.max_allocated_bytes = max(self.max_allocated_bytes, self.allocated_bytes)
        self.num_allocs += 1
        return block

    def free(self, block: Block, progress=None) -> None:
        """Return a block. ``progress(stream) -> int`` gives how many tasks a stream has queued, so
        a block used by other streams waits until those tasks have run."""
        if not block.allocated:
            return
        block.allocated = False
        self.allocated_bytes -= block.size
        others = {s for s in block.stream_uses if s is not block.stream}
        if others and progress is not None:
            block.pending_on = {s: progress(s) for s in others}
            self._pending.append(block)
        else:
            self._insert_free(block)

    def record_stream(self, block: Block, stream: Any) -> None:
        if stream is not block.stream:
            block.stream_uses.add(stream)

    def erase_stream(self, block: Block, stream: Any) -> None:
        block.stream_uses.discard(stream)
        if block.pending_on.pop(stream, None) is not None and not block.pending_on:
            self._pending.remove(block)
            self._insert_free(block)

    def process_events(self, completed) -> None:
        """``completed(stream) -> int``: tasks of that stream that have run. Frees pending blocks."""
        still = []
        for b in self._pending:
            b.pending_on = {s: n for s, n in b.pending_on.items() if completed(s) < n}
            if b.pending_on:
                still.append(b)
            else:
                self._insert_free(b)
        self._pending = still

    def empty_cache(self) -> None:
        """Release every segment with no allocated or pending block back to the device."""
        keep = []
        for seg in self.segments:
            if any(b.allocated or b.pending_on for b in seg.blocks):
                keep.append(seg)
            else:
                for b in seg.blocks:
                    self._free_blocks.remove(b)
                self.space.release(seg.address, seg.size)
        self.segments = keep

    @property
    def reserved_bytes(self) -> int:
        return self.space.reserved

    def stats(self) -> dict[str, int]:
        return {"allocated_bytes": self.allocated_bytes, "reserved_bytes": self.reserved_bytes,
                "max_allocated_bytes": self.max_allocated_bytes, "capacity": self.capacity,
                "segments": len(self.segments), "pending_blocks": len(self._pending)}

    # ----- internals -----
    def _is_small(self, size: int) -> bool:
        return size <= self.SMALL_REQUEST

    def _from_cache(self, size: int, stream: Any) -> Block | None:
        small = self._is_small(size)
        best = None
        for b in self._free_blocks:
            if (b.stream is stream and b.size >= size and b.segment.small == small
                    and (best is None or b.size < best.size)):
                best = b
        if best is None:
            return None
        self._free_blocks.remove(best)
        self._split(best, size)
        return best

    def _new_segment(self, size: int, stream: Any) -> Block | None:
        small = self._is_small(size)
        if small:
            seg_size = self.SMALL_SEGMENT
        elif size < self.MIN_LARGE_ALLOC:
            seg_size = self.LARGE_SEGMENT
        else:
            seg_size = (size + self.LARGE_ROUND - 1) // self.LARGE_ROUND * self.LARGE_ROUND
        addr = self.space.reserve(seg_size)
        if addr is None and not small and seg_size != size:
            seg_size = size   # near capacity: take exactly what is asked
            addr = self.space.reserve(seg_size)
        if addr is None:
            return None
        seg = Segment(addr, seg_size, small)
        block = Block(addr, seg_size, seg, stream)
        seg.blocks.append(block)
        self.segments.append(seg)
        self._split(block, size)
        return block

    def _split(self, block: Block, size: int) -> None:
        rest = block.size - size
        limit = self.alignment if block.segment.small else self.LARGE_SPLIT_REMAINDER + 1
        if rest >= limit:
            tail = Block(block.address + size, rest, block.segment, block.stream)
            block.size = size
            seg = block.segment
            seg.blocks.insert(seg.blocks.index(block) + 1, tail)
            self._free_blocks.append(tail)

    def _insert_free(self, block: Block) -> None:
        # merge with free neighbours in the same segment (same stream), as the allocator does
        seg = block.segment
        i = seg.blocks.index(block)
        for j in (i + 1, i - 1):
            if 0 <= j < len(seg.blocks):
                nb = seg.blocks[j]
                if nb in self._free_blocks and nb.stream is block.stream:
                    self._free_blocks.remove(nb)
                    lo, hi = (block, nb) if nb.address > block.address else (nb, block)
                    lo.size += hi.size
                    seg.blocks.remove(hi)
                    block = lo
                    i = seg.blocks.index(block)
        self._free_blocks.append(block)


class HostSwapSpace:
    """Host memory mapped for the device (empty_with_swapped_memory): not counted against HBM."""

    def __init__(self, alignment: int, base: int = 1 << 48):
        self.alignment = alignment
        self._next = base
        self.allocated_bytes = 0

    def allocate(self, nbytes: int, stream: Any) -> Block:
        size = max(self.alignment, (nbytes + self.alignment - 1) // self.alignment * self.alignment)
        seg = Segment(self._next, size)
        b = Block(self._next, size, seg, stream, allocated=True, requested=nbytes, kind="host_swapped")
        seg.blocks.append(b)
        self._next += size
        self.allocated_bytes += size
        return b

    def free(self, block: Block, progress=None) -> None:
        if block.allocated:
            block.allocated = False
            self.allocated_bytes -= block.size


def _fmt(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.2f} {unit} ({n} B)"
    return f"{n} B"
