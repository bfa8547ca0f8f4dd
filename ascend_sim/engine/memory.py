"""The memory system of one device: the L2 cache and the shared bandwidth of L2 and HBM.

L2 (:class:`L2Cache`): physically addressed, the preset's capacity, 512-byte lines, LRU. A line
is tracked by the stamp of its last use in one array over the device's address space (0 =
absent), so a lookup of a tile is a handful of vectorised numpy operations whatever the tensor's
size. LRU eviction is lazy: every access appends (stamp, lines) to a log; when the cache is over
capacity the oldest log records are dropped, and a line is evicted only if its stamp is still the
one that record set (a later use refreshed it otherwise). Reads count hits; writes allocate
(write-back cache with write-allocate).

Bandwidth (:class:`FluidNetwork`): L2 and HBM are fluid resources shared by every active transfer
of the device (cores, prefetches, the communication engine). A transfer is a flow of payload bytes
with its own cap (the core's path rate for its access pattern) and a demand on each resource per
payload byte (bus bytes / payload on L2; the same times the miss fraction on HBM for reads, and
on HBM for writes, whose lines are written back). Rates are max-min fair (progressive filling):
all unfrozen flows rise together until a flow reaches its cap or a resource saturates; those
flows freeze and the rest continue. Rates are recomputed whenever a flow starts or ends; between
such events every flow moves at a constant rate, so completion times are exact.

Invariant: the sum over flows of rate x demand never exceeds a resource's capacity.
"""
from __future__ import annotations

import collections
from typing import Callable

import numpy as np
import simpy


class L2Cache:
    def __init__(self, capacity_bytes: int, line_bytes: int):
        self.line = int(line_bytes)
        self.capacity = max(1, int(capacity_bytes) // self.line)
        self.stamps = np.zeros(1 << 16, np.int64)
        self.present = 0
        self.clock = 0
        self._log: collections.deque = collections.deque()

    def lines(self, base: int, offset: int, rows: int, row_bytes: int, stride: int) -> np.ndarray:
        """Line indices touched by a 2-D access (unique, ascending)."""
        L = self.line
        start = base + offset
        if rows == 1 or stride == row_bytes:          # one contiguous run
            return np.arange(start // L, (start + rows * row_bytes - 1) // L + 1, dtype=np.int64)
        starts = start + np.arange(rows, dtype=np.int64) * stride
        first = starts // L
        last = (starts + row_bytes - 1) // L
        span = int((last - first).max()) + 1
        idx = (first[:, None] + np.arange(span, dtype=np.int64)[None, :])
        idx = idx[idx <= last[:, None]]
        if stride < (span + 1) * L:            # rows may share lines
            idx = np.unique(idx)
        return idx

    def _grow(self, top: int) -> None:
        n = len(self.stamps)
        while n <= top:
            n *= 2
        grown = np.zeros(n, np.int64)
        grown[:len(self.stamps)] = self.stamps
        self.stamps = grown

    def access(self, idx: np.ndarray, count_hits: bool = True) -> int:
        """Touch lines; returns how many were present. Misses are filled (evicting LRU lines)."""
        if len(idx) == 0:
            return 0
        top = int(idx[-1])
        if top >= len(self.stamps):
            self._grow(top)
        self.clock += 1
        s = self.clock
        old = self.stamps[idx]
        hits = int(np.count_nonzero(old))
        self.stamps[idx] = s
        self.present += len(idx) - hits
        self._log.append((s, idx))
        if self.present > self.capacity:
            self._evict()
        return hits

    def _evict(self) -> None:
        target = self.capacity
        log = self._log
        stamps = self.stamps
        while self.present > target and log:
            s, idx = log.popleft()
            mine = stamps[idx] == s
            n = int(np.count_nonzero(mine))
            if n:
                stamps[idx[mine]] = 0
                self.present -= n

    def resident_fraction(self, idx: np.ndarray) -> float:
        if len(idx) == 0:
            return 0.0
        top = int(idx[-1])
        if top >= len(self.stamps):
            return float(np.count_nonzero(self.stamps[idx[idx < len(self.stamps)]])) / len(idx)
        return float(np.count_nonzero(self.stamps[idx])) / len(idx)

    def clear(self) -> None:
        self.stamps[:] = 0
        self.present = 0
        self._log.clear()


class Flow:
    __slots__ = ("remaining", "rate", "cap", "demand", "event", "limiter", "limited", "on_done")

    def __init__(self, payload: float, cap: float, demand: tuple, event, on_done):
        self.remaining = float(payload)
        self.rate = 0.0
        self.cap = float(cap)
        self.demand = demand          # per resource, demand per payload byte
        self.event = event
        self.limiter = -1             # -1: its own cap; otherwise the saturated resource index
        self.limited = [0.0] * (len(demand) + 1)
        self.on_done = on_done


class FluidNetwork:
    """Max-min fair sharing of resources (bytes per cycle) among flows; see the module docstring."""

    EPS = 1e-6

    def __init__(self, env: simpy.Environment, names: tuple[str, ...], capacities: tuple[float, ...]):
        self.env = env
        self.names = names
        self.capacity = tuple(float(c) for c in capacities)
        self.flows: list[Flow] = []
        self._last = 0.0
        self._version = 0
        self.moved = [0.0] * len(names)      # bytes each resource carried
        self._samples: list[tuple[float, tuple]] = []   # (time, bytes/cycle used per resource)

    def start(self, payload: float, cap: float, demand: tuple, on_done: Callable | None = None) -> simpy.Event:
        ev = self.env.event()
        if payload <= 0:
            ev.succeed(None)
            return ev
        self._advance()
        self.flows.append(Flow(payload, cap, demand, ev, on_done))
        self._reallocate()
        self._schedule()
        return ev

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            moved = self.moved
            for f in self.flows:
                b = f.rate * dt
                f.remaining -= b
                f.limited[f.limiter] += dt
                for r, d in enumerate(f.demand):
                    moved[r] += b * d
        self._last = now

    def _reallocate(self) -> None:
        flows = self.flows
        if not flows:
            return
        cap_left = list(self.capacity)
        nres = len(cap_left)
        load = [0.0] * nres
        for f in flows:
            for r, d in enumerate(f.demand):
                load[r] += d
        order = sorted(flows, key=lambda f: f.cap)
        i, n = 0, len(order)
        while i < n:
            if order[i] is None:
                i += 1
                continue
            # the level at which each resource saturates with all unfrozen flows at one rate
            lam, which = order[i].cap, -1
            for r in range(nres):
                if load[r] > self.EPS:
                    lr = cap_left[r] / load[r]
                    if lr < lam:
                        lam, which = lr, r
            if which < 0:            # flow i reaches its cap first
                f = order[i]
                f.rate, f.limiter = f.cap, -1
                for r, d in enumerate(f.demand):
                    cap_left[r] -= d * f.cap
                    load[r] -= d
                order[i] = None
                i += 1
            else:                    # resource `which` saturates: freeze every flow that uses it
                for j in range(i, n):
                    f = order[j]
                    if f is not None and f.demand[which] > self.EPS:
                        f.rate, f.limiter = lam, which
                        for r, d in enumerate(f.demand):
                            cap_left[r] -= d * lam
                            load[r] -= d
                        order[j] = None
                cap_left[which] = 0.0
                load[which] = 0.0

    def _sample(self) -> None:
        """Remember resource usage when it changes by more than 1% of a capacity (for counters)."""
        used = [0.0] * len(self.capacity)
        for f in self.flows:
            for r, d in enumerate(f.demand):
                used[r] += f.rate * d
        last = self._samples[-1][1] if self._samples else None
        if last is None or any(abs(u - v) > 0.01 * c for u, v, c in zip(used, last, self.capacity)):
            if self._samples and self._samples[-1][0] == self.env.now:
                self._samples[-1] = (self.env.now, tuple(used))
            else:
                self._samples.append((self.env.now, tuple(used)))

    def take_samples(self) -> list[tuple[float, tuple]]:
        out, self._samples = self._samples, []
        return out

    def _schedule(self) -> None:
        self._sample()
        if not self.flows:
            return
        self._version += 1
        v = self._version
        dt = min(f.remaining / f.rate if f.rate > 0 else float("inf") for f in self.flows)
        if dt == float("inf"):
            raise RuntimeError("FluidNetwork: active flows but no bandwidth (a resource has zero capacity)")
        ev = self.env.timeout(max(dt, 0.0))
        ev.callbacks.append(lambda _e, v=v: self._wake(v))

    def _wake(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        done = [f for f in self.flows if f.remaining <= self.EPS * max(1.0, f.rate)]
        if not done:   # floating point: finish the closest one
            done = [min(self.flows, key=lambda f: f.remaining)]
        for f in done:
            self.flows.remove(f)
        self._reallocate()
        self._schedule()
        for f in done:
            if f.on_done is not None:
                f.on_done(f)
            f.event.succeed(f)

    @property
    def busy(self) -> bool:
        return bool(self.flows)
