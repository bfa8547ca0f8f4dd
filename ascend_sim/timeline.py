"""The records a simulation leaves behind: per-op rows, lane intervals, counters, flows.

These types are plain data with no behaviour beyond small derived properties, so that the trace
exporters (``ascend_sim.traces``) can depend on them and on nothing else. Times are microseconds
here (the engine works in cycles and converts at this edge).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OpRecord:
    """One op (task) as it ran: the report row."""

    name: str
    device: int
    stream: str
    start_us: float = 0.0           # device execution start
    duration_us: float = 0.0        # device execution
    launch_us: float = 0.0          # host-side launch cost before the device could start it
    wait_us: float = 0.0            # time the op was ready to launch but waited (cores, events)
    core_type: str = ""             # "AIC", "AIV", "MIX", "AI_CPU", "" for host-only tasks
    block_dim: int = 0
    bytes_read: int = 0             # payload bytes the op read from GM
    bytes_written: int = 0          # payload bytes it wrote to GM
    l2_bytes: int = 0               # bytes moved through L2 (32-byte blocks, padding included)
    hbm_bytes: int = 0              # bytes moved to or from HBM (read misses, written lines)
    l2_hit_rate: float | None = None
    bound: str = ""                 # the unit that bound the op: "cube", "vector", "mte2", "hbm", "launch"...
    pipe_busy_us: dict[str, float] = field(default_factory=dict)   # summed over the op's cores
    flops: float = 0.0
    input_shapes: list = field(default_factory=list)
    input_dtypes: list = field(default_factory=list)
    input_formats: list = field(default_factory=list)
    output_shapes: list = field(default_factory=list)
    output_dtypes: list = field(default_factory=list)
    output_formats: list = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    task_id: int = -1

    @property
    def end_us(self) -> float:
        return self.start_us + self.duration_us


@dataclass
class Interval:
    """Something busy on a lane: an instruction run, an op span, a transfer."""

    lane: str          # e.g. "AIC3.MTE2", "stream:default", "Communication"
    device: int
    start_us: float
    end_us: float
    name: str
    args: dict[str, Any] | None = None


@dataclass
class Counter:
    device: int
    name: str          # "HBM GB/s", "L2 hit rate"
    times_us: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class Flow:
    """A dependency arrow (cross-core flag, cross-stream event)."""

    name: str
    src_device: int
    src_lane: str
    src_us: float
    dst_device: int
    dst_lane: str
    dst_us: float


@dataclass
class Timeline:
    ops: list[OpRecord] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    counters: list[Counter] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    chip: str = ""
