"""Streams, events and the tasks queued on them.

What is modelled: the ACL runtime's view of work. A stream is an ordered queue of tasks on one
device; tasks on one stream run one after another, tasks on different streams may run at once
(sharing cores and memory). An event recorded on a stream completes when the tasks queued before
it have run; a stream that waits on an event holds its later tasks until then. This is torch's
``torch.npu.Stream`` / ``torch.npu.Event`` contract, with time kept by the engine.

Invariants: a task belongs to exactly one stream and appears there once, in submission order;
``Event.record`` captures the stream's position at the moment of recording (a later wait waits for
that position, not for tasks queued afterwards).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

_task_ids = itertools.count()


TASK_KINDS = ("kernel", "prefetch", "collective", "host", "event_record", "event_wait")


@dataclass(eq=False)
class Task:
    """One unit of device work as the engine receives it. What the engine needs is in typed fields;
    ``attrs`` holds only what the report row shows (the op's options, "scope", "kernel", "op"...).

    kind:
      * "kernel" -- an op's KernelPlan (``plan``) on the AI Cores or AI CPU, its tensors at
        ``addresses``; ``workspace`` is the GM scratch tensor its call shares, held until it has run;
      * "prefetch" -- npu_prefetch's L2 fill of ``byte_range`` = (HBM address, bytes);
      * "collective" -- this rank's part of ``collective`` (an engine CollectiveCall that every
        rank's task shares), on the device's communication engine;
      * "host" -- no device work: a report row with zero duration (e.g. a metadata-only op);
      * "event_record" / "event_wait" -- ``event`` recorded here / the stream waits for ``wait_for``
        (the record task).

    host_launch: whether the host launches the task (``runtime.kernel_launch_us``); False for the
    later parts of a fused op, which is launched once.
    """

    name: str
    kind: str
    stream: "Stream"
    plan: Any = None                  # isa.KernelPlan for kernels
    inputs: tuple = ()                # TensorMeta of the inputs (for reports)
    outputs: tuple = ()
    attrs: dict = field(default_factory=dict)
    addresses: dict = field(default_factory=dict)   # plan tensor name -> HBM address
    host_launch: bool = True
    workspace: Any = None             # NPUTensor: the call's GM scratch (kernels)
    byte_range: "tuple[int, int] | None" = None     # prefetch: (address, bytes)
    collective: Any = None            # engine.collectives.CollectiveCall (collectives)
    event: "Event | None" = None
    wait_for: "Task | None" = None    # event_wait: the record task it waits for
    id: int = field(default_factory=lambda: next(_task_ids))
    index: int = -1                   # position on its stream
    record: Any = None                # the report row, filled by the engine

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"Task {self.name!r}: kind must be one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        need = {"kernel": "plan", "prefetch": "byte_range", "collective": "collective",
                "event_wait": "wait_for"}.get(self.kind)
        if need is not None and getattr(self, need) is None:
            raise ValueError(f"Task {self.name!r}: a {self.kind} task needs its {need}")

    def release(self) -> None:
        """Let go of what the task held until it ran (its plan and scratch memory)."""
        self.plan = None
        self.workspace = None


class Stream:
    """An ordered queue of tasks on one device."""

    def __init__(self, device: Any, stream_id: int, name: str | None = None, priority: int = 0):
        self.device = device
        self.id = stream_id
        self.name = name or ("default" if stream_id == 0 else f"stream{stream_id}")
        self.priority = priority
        self.tasks: list[Task] = []
        self.completed = 0          # tasks that have run (the engine advances this)

    def submit(self, task: Task) -> Task:
        task.stream = self
        task.index = len(self.tasks)
        self.tasks.append(task)
        return task

    @property
    def queued(self) -> int:
        return len(self.tasks)

    def pending(self) -> list[Task]:
        return self.tasks[self.completed:]

    def wait_event(self, event: "Event") -> None:
        event.wait(self)

    def wait_stream(self, other: "Stream") -> None:
        ev = Event()
        ev.record(other)
        ev.wait(self)

    def record_event(self, event: "Event | None" = None) -> "Event":
        event = event or Event()
        event.record(self)
        return event

    def query(self) -> bool:
        return self.completed == len(self.tasks)

    def synchronize(self) -> None:
        self.device.synchronize()

    def __repr__(self) -> str:
        return f"Stream(device={self.device.index}, id={self.id}, name={self.name!r})"

    def __hash__(self) -> int:
        return id(self)


class Event:
    """A marker in a stream. ``elapsed_time`` works after the engine has run the marked tasks."""

    def __init__(self, enable_timing: bool = True):
        self.enable_timing = enable_timing
        self.task: Task | None = None

    def record(self, stream: Stream | None = None) -> None:
        if stream is None:
            from . import current_simulator
            stream = current_simulator().current_device.current_stream
        self.task = stream.submit(Task("EventRecord", "event_record", stream, event=self))

    def wait(self, stream: Stream | None = None) -> None:
        if stream is None:
            from . import current_simulator
            stream = current_simulator().current_device.current_stream
        if self.task is None:
            return  # waiting on a never-recorded event is a no-op, as in torch
        stream.submit(Task("EventWait", "event_wait", stream, event=self, wait_for=self.task))

    def query(self) -> bool:
        return self.task is None or self.task.index < self.task.stream.completed

    def synchronize(self) -> None:
        if self.task is not None:
            self.task.stream.device.synchronize()

    @property
    def time_us(self) -> float:
        if self.task is None or self.task.record is None:
            raise RuntimeError("Event.time_us: the event has not been recorded and simulated yet "
                               "(record it, then call synchronize())")
        return self.task.record.start_us

    def elapsed_time(self, end: "Event") -> float:
        """Milliseconds between this event and ``end`` (torch's unit)."""
        return (end.time_us - self.time_us) / 1000.0
