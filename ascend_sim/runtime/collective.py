"""The one service that runs collectives: for ``ascend_sim.distributed`` and for the fused ops.

What is modelled: a collective is a meeting of the group's ranks (``world.meet``) followed, on each
rank, by a task on the device's communication stream ("hccl") that the engine runs over the
topology's links. Both callers describe their communication the same way -- a list of
:class:`ascend_sim.isa.CommStep` (a distributed call is a one-step list; a fused op's plan
interleaves CommSteps with its KernelPlans and WaitComms) -- and both go through two calls:

* :func:`meet` -- join the group's meeting for one call: every rank must describe the same
  steps (kind, size, algorithm, root); the last to arrive computes every rank's results (full
  mode) and, once for all ranks, each step's :class:`CollectiveCall`: the algorithm (the step's,
  or the HCCL-like default rule for the topology) and its schedule of transfers. An all_to_all_v
  step's byte matrix is assembled here from each rank's own row (what it sends).
* :func:`queue` -- this rank's tasks: kernels on the current stream (through the caller's
  ``kernel`` function), collectives on the comm stream, joined by events: a CommStep runs after
  the kernel it names (``after``) or the kernel before it, or after the work queued so far when
  it comes first; a WaitComm holds the current stream until that step is done; at the end the
  current stream waits for the communication unless the call is asynchronous. The call is
  launched once: its first task pays the host launch. A group of one rank moves nothing: its
  steps queue no task.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..engine.collectives import CollectiveCall, plan_collective
from ..isa import CommStep, KernelPlan, WaitComm
from .stream import Event, Task
from .world import ProcessGroup


def _describe(step: CommStep) -> tuple:
    """What every rank must agree on about a step (an all_to_all_v's rows are each rank's own)."""
    size = len(step.send_bytes) if step.send_bytes is not None else step.nbytes
    return (step.kind, size, step.algorithm, step.root)


def meet(sim, group: ProcessGroup, label: str, desc: tuple, part: Any,
         compute: Callable[[dict], dict] | None, steps: Sequence[CommStep]) -> tuple[Any, list[CollectiveCall]]:
    """Meet ``group`` for one call named ``label`` whose communication is ``steps``.

    ``desc`` is what else the ranks must agree on (shapes, dtypes, options); ``part`` is this
    rank's payload; ``compute({rank: part})`` -> {rank: result} runs once, in full mode only.
    Returns (this rank's result, the steps' CollectiveCalls, shared by every rank)."""
    rank = sim.current_device.index
    if rank not in group.ranks:
        raise ValueError(f"{label}: rank {rank} is not in the group {group.name!r} ({list(group.ranks)})")
    steps = tuple(steps)
    for s in steps:
        if s.send_bytes is not None and len(s.send_bytes) != group.size:
            raise ValueError(f"{label}: step {s.name or s.kind} has a {len(s.send_bytes)}-rank send_bytes matrix "
                             f"for a group of {group.size}")
    topo = sim.topology

    def combine(payloads: dict):
        results = {r: None for r in payloads} if sim.is_meta or compute is None else \
            compute({r: p for r, (p, _) in payloads.items()})
        mine = {r: s for r, (_, s) in payloads.items()}
        first = mine[group.ranks[0]]
        calls = []
        for k, s in enumerate(first):
            matrix = None if s.send_bytes is None else \
                tuple(mine[r][k].send_bytes[i] for i, r in enumerate(group.ranks))
            calls.append(plan_collective(s.kind, group.ranks, s.nbytes, topo, algorithm=s.algorithm, root=s.root,
                                         send_bytes=matrix, name=s.name or f"{label}.{s.kind}"))
        return results, calls

    call = (label, *desc, tuple(_describe(s) for s in steps))
    return sim.world.meet(group, rank, call, (part, steps), combine)


def queue(sim, items: Sequence, calls: Sequence[CollectiveCall], *,
          kernel: Callable[[KernelPlan, bool], list] | None = None, inputs: tuple = (), outputs: tuple = (),
          attrs: dict | None = None, blocking: bool = True) -> Event:
    """Queue this rank's part of a call: ``items`` (KernelPlans, CommSteps, WaitComms in order;
    ``calls`` are the CommSteps' CollectiveCalls from :func:`meet`). ``kernel(plan, host_launch)``
    submits a kernel on the current stream and returns its tasks. Collective tasks take their
    step's name and ``attrs`` for the report. Returns the event recorded on the comm stream after
    the communication (the current stream waits for it when ``blocking``)."""
    dev = sim.current_device
    cur, comm = dev.current_stream, dev.comm_stream
    start = Event()               # communication that comes first still waits for earlier work
    start.record(cur)
    after_kernel: list[Event] = []
    after_comm: list[Event] = []
    launch = True                 # a call is launched once: its later parts cost no host launch
    steps = iter(calls)
    for it in items:
        if isinstance(it, KernelPlan):
            if kernel(it, launch):
                launch = False
            ev = Event()
            ev.record(cur)
            after_kernel.append(ev)
        elif isinstance(it, CommStep):
            call = next(steps)
            dep = after_kernel[it.after] if it.after is not None else (after_kernel[-1] if after_kernel else start)
            dep.wait(comm)
            if len(call.ranks) > 1:
                sim.submit(Task(it.name or call.name, "collective", comm, inputs=tuple(inputs),
                                outputs=tuple(outputs), attrs=dict(attrs or {}), collective=call, host_launch=launch))
                launch = False
            ev = Event()
            ev.record(comm)
            after_comm.append(ev)
        elif isinstance(it, WaitComm):
            after_comm[it.step].wait(cur)
        else:
            raise TypeError(f"plan items must be KernelPlan, CommStep or WaitComm, got {type(it).__name__}")
    if not after_comm:
        start.wait(comm)
    done = after_comm[-1] if after_comm else Event()
    if not after_comm:
        done.record(comm)
    if blocking:
        done.wait(cur)
    return done
