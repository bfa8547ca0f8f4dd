"""The world of ranks: SPMD threads, process groups and the rendezvous collectives need.

What is modelled: ``sim.spmd(fn)`` runs ``fn(rank)`` for every rank at once, each in its own host
thread with its own device current, as ``torchrun`` would start one process per NPU. A collective
is a meeting: every rank of the group must arrive at the same call, in the same order; the last to
arrive computes the result for all (the numbers a real collective would produce) and wakes the
others.

Ranks that disagree never hang: a meeting whose ranks called different collectives, shapes,
dtypes, reductions or roots raises :class:`CollectiveMismatchError` in every rank naming the ranks
and their calls; a rank that returns (or fails) while others wait for it raises the same, naming it;
and if every running rank is waiting and no meeting can complete, the waits are reported as a
deadlock.
"""
from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any, Callable


class CollectiveMismatchError(RuntimeError):
    """Ranks of a group disagree about a collective (or one never came)."""


@dataclass(frozen=True)
class ProcessGroup:
    ranks: tuple[int, ...]
    name: str

    @property
    def size(self) -> int:
        return len(self.ranks)

    def rank_of(self, global_rank: int) -> int:
        return self.ranks.index(global_rank)

    def __repr__(self) -> str:
        return f"ProcessGroup({self.name!r}, ranks={list(self.ranks)})"


@dataclass(eq=False)
class _Meeting:
    group: ProcessGroup
    seq: int
    calls: dict[int, tuple] = field(default_factory=dict)       # rank -> call description
    payloads: dict[int, Any] = field(default_factory=dict)
    results: dict[int, Any] | None = None
    shared: Any = None
    error: BaseException | None = None

    def describe(self) -> str:
        return f"{self.group.name} collective #{self.seq}"


WORLD_GROUP = "hccl_world_group"


class World:
    def __init__(self, world_size: int):
        self.size = world_size
        self.cond = threading.Condition()
        self.groups: dict[str, ProcessGroup] = {WORLD_GROUP: ProcessGroup(tuple(range(world_size)), WORLD_GROUP)}
        self._meetings: dict[tuple[str, int], _Meeting] = {}
        self._seq: dict[tuple[str, int], int] = {}
        self._running: set[int] = set()
        self._ended: dict[int, str] = {}       # rank -> "returned" / "failed: ..."
        self._waiting: dict[int, _Meeting] = {}
        self.in_spmd = False

    # ----- groups -----
    def new_group(self, ranks=None, name: str | None = None) -> ProcessGroup:
        ranks = tuple(range(self.size)) if ranks is None else tuple(sorted(int(r) for r in ranks))
        if not ranks or len(set(ranks)) != len(ranks) or any(not 0 <= r < self.size for r in ranks):
            raise ValueError(f"new_group: ranks must be distinct ranks in [0, {self.size}), got {list(ranks)}")
        name = name or f"group_{'_'.join(map(str, ranks))}"
        g = self.groups.get(name)
        if g is not None and g.ranks != ranks:
            raise ValueError(f"new_group: the name {name!r} already names ranks {list(g.ranks)}")
        g = self.groups[name] = ProcessGroup(ranks, name)
        return g

    def group(self, g) -> ProcessGroup:
        if g is None:
            return self.groups[WORLD_GROUP]
        if isinstance(g, ProcessGroup):
            return g
        if isinstance(g, str):
            found = self.groups.get(g)
            if found is None:
                raise ValueError(f"unknown process group / hcom name {g!r}; known: {', '.join(self.groups)}")
            return found
        raise TypeError(f"group must be a ProcessGroup, a group name or None, got {type(g).__name__}")

    # ----- spmd -----
    def run(self, fn: Callable[[int], Any], enter_device: Callable[[int], Any]) -> list[Any]:
        """Run fn(rank) on every rank in threads; returns results in rank order, raises the first
        failure (naming its rank)."""
        results: list[Any] = [None] * self.size
        errors: dict[int, BaseException] = {}

        def body(rank: int):
            try:
                with enter_device(rank):
                    results[rank] = fn(rank)
                self._end(rank, "returned")
            except BaseException as e:     # noqa: BLE001 - reported to the caller below
                errors[rank] = e
                self._end(rank, f"failed ({type(e).__name__}: {e})")

        self.in_spmd = True
        with self.cond:
            self._running = set(range(self.size))
            self._ended = {}
        threads = []
        for r in range(self.size):
            ctx = contextvars.copy_context()
            th = threading.Thread(target=ctx.run, args=(body, r), name=f"ascend-sim-rank{r}", daemon=True)
            threads.append(th)
            th.start()
        for th in threads:
            th.join()
        self.in_spmd = False
        self._meetings.clear()
        self._seq.clear()
        if errors:
            # the root cause first: a rank that failed on its own, not one that was told another failed
            first = min(errors, key=lambda r: (isinstance(errors[r], CollectiveMismatchError), r))
            e = errors[first]
            raise type(e)(f"rank {first}: {e}") if isinstance(e, CollectiveMismatchError) else e
        return results

    def _end(self, rank: int, how: str) -> None:
        with self.cond:
            self._running.discard(rank)
            self._ended[rank] = how
            self.cond.notify_all()

    # ----- meetings -----
    def meet(self, group: ProcessGroup, rank: int, call: tuple, payload: Any,
             combine: Callable[[dict[int, Any]], tuple[dict[int, Any], Any]]) -> tuple[Any, Any]:
        """Join this rank's call to the group's next meeting. ``call`` describes what the rank asks
        for (it must be equal on every rank); ``combine(payloads by rank)`` -> (result by rank,
        shared object) runs once, in the last rank to arrive. Returns (this rank's result, shared)."""
        if rank not in group.ranks:
            raise ValueError(f"rank {rank} is not in {group!r}")
        if group.size == 1 or not self.in_spmd:
            if group.size > 1:
                raise RuntimeError(f"{call[0]} over {group.size} ranks must be called inside sim.spmd(fn), "
                                   "which runs every rank")
            results, shared = combine({rank: payload})
            return results[rank], shared
        with self.cond:
            key = (group.name, rank)
            seq = self._seq.get(key, 0)
            self._seq[key] = seq + 1
            m = self._meetings.get((group.name, seq))
            if m is None:
                m = self._meetings[(group.name, seq)] = _Meeting(group, seq)
            m.calls[rank] = call
            m.payloads[rank] = payload
            if len(m.calls) == group.size and m.error is None:
                first = m.calls[group.ranks[0]]
                bad = [r for r in group.ranks if m.calls[r] != first]
                if bad:
                    lines = "; ".join(f"rank {r}: {_show(m.calls[r])}" for r in group.ranks)
                    m.error = CollectiveMismatchError(f"{m.describe()}: ranks disagree ({lines})")
                else:
                    try:
                        m.results, m.shared = combine(dict(m.payloads))
                    except BaseException as e:    # noqa: BLE001 - every rank gets it
                        m.error = e
                self.cond.notify_all()
            self._waiting[rank] = m
            try:
                while m.results is None and m.error is None:
                    self._check(m)
                    self.cond.wait(timeout=0.5)
            finally:
                self._waiting.pop(rank, None)
            if m.error is not None:
                raise m.error
            return m.results[rank], m.shared

    def _check(self, m: _Meeting) -> None:
        """Fail the meeting if a rank it needs has ended, or if no running rank can move."""
        missing = [r for r in m.group.ranks if r not in m.calls]
        gone = [r for r in missing if r in self._ended]
        if gone:
            lines = "; ".join(f"rank {r}: {_show(c)}" for r, c in sorted(m.calls.items()))
            m.error = CollectiveMismatchError(
                f"{m.describe()}: rank(s) {gone} {self._ended[gone[0]]} without joining it ({lines})")
            self.cond.notify_all()
            return
        if self._running and all(r in self._waiting for r in self._running):
            stuck = [mm for mm in set(self._waiting.values()) if len(mm.calls) < mm.group.size]
            if stuck and all(mm.results is None and mm.error is None for mm in set(self._waiting.values())):
                lines = "; ".join(f"rank {r} waits in {w.describe()} ({_show(w.calls[r])}) for ranks "
                                  f"{[x for x in w.group.ranks if x not in w.calls]}"
                                  for r, w in sorted(self._waiting.items()))
                err = CollectiveMismatchError(f"collectives deadlock: {lines}")
                for mm in stuck:
                    mm.error = err
                self.cond.notify_all()


def _show(call: tuple) -> str:
    name, *rest = call
    return f"{name}({', '.join(map(str, rest))})"
