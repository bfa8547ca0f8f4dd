"""The memory system of one device: the L2 cache and the shared bandwidth of L2 and HBM.

L2 (:class:`L2Cache`): physically addressed, the preset's capacity, 512-byte lines, LRU,
write-back with write-allocate. A line is tracked by the stamp of its last use (0 = absent) in
pages of the address space made when first touched, so a lookup of a tile is a handful of
vectorised numpy operations whatever the tensor's size, and memory follows the lines used. LRU eviction is lazy: every access appends (stamp, lines)
to a log; when the cache is over capacity the oldest log records are dropped, and a line is
evicted only if its stamp is still the one that record set (a later use refreshed it otherwise).
Reads count hits. Writes mark their lines dirty; a dirty line costs HBM a write-back when it is
evicted (:meth:`L2Cache.take_writeback` hands the engine those bytes), so data that is written
and read again while it fits in L2 never touches HBM.

Bandwidth (:class:`FluidNetwork`): L2 and HBM are fluid resources shared by every active transfer
of the device (cores, prefetches, the communication engine). A transfer is a flow of payload bytes
with its own cap (the core's path rate for its access pattern) and a demand on each resource per
payload byte: bus bytes / payload on L2; on HBM, for reads the whole lines its misses fill (a read
of 32 bytes that misses costs HBM a 512-byte line); writes load HBM only later, when their dirty
lines are evicted (a background flow of the evicted bytes). Rates are max-min fair (progressive filling):
all unfrozen flows rise together until a flow reaches its cap or a resource saturates; those
flows freeze and the rest continue. Rates are recomputed once per instant at which flows start or
end (after every other event of that instant, so blocks in lockstep cost one re-balance, not one
per transfer); between such instants every flow moves at a constant rate, so completion times are
exact. A flow may stand for ``count`` identical transfers (the members of a block class).

Invariant: the sum over flows of rate x demand never exceeds a resource's capacity.
"""
from __future__ import annotations

import collections
import heapq
from typing import Callable

import numpy as np
import simpy


class _Pages:
    """Per-line state of an address space -- LRU stamp (0 = absent) and dirty bit -- in pages of
    ``2**BITS`` lines made when first touched: memory follows the lines used, not the highest
    address, and an operation costs O(lines it names)."""

    BITS = 18

    def __init__(self):
        self.pages: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def split(self, idx: np.ndarray, create: bool = True, ascending: bool = True) -> list:
        """[(stamps, dirty, local lines, positions in idx or None for all of it)] per page ``idx``
        touches (arrays None for a page never touched, when not ``create``). ``ascending``: idx
        is sorted (the pages are then slices of it)."""
        B = self.BITS
        mask = (1 << B) - 1
        if ascending:
            p0, p1 = int(idx[0]) >> B, int(idx[-1]) >> B
            if p0 == p1:
                return [self._page(p0, create) + (idx & mask, None)]
            cuts = np.searchsorted(idx, np.arange(p0 + 1, p1 + 1, dtype=np.int64) << B).tolist()
            out = []
            for pg, a, b in zip(range(p0, p1 + 1), [0] + cuts, cuts + [len(idx)]):
                if b > a:
                    out.append(self._page(pg, create) + (idx[a:b] & mask, slice(a, b)))
            return out
        p = idx >> B
        p0, p1 = int(p.min()), int(p.max())
        if p0 == p1:
            return [self._page(p0, create) + (idx & mask, None)]
        order = np.argsort(p, kind="stable")
        ps = p[order]
        cuts = (np.flatnonzero(ps[1:] != ps[:-1]) + 1).tolist()
        out = []
        for a, b in zip([0] + cuts, cuts + [len(idx)]):
            pos = order[a:b]
            out.append(self._page(int(ps[a]), create) + (idx[pos] & mask, pos))
        return out

    def _page(self, p: int, create: bool) -> tuple:
        pg = self.pages.get(p)
        if pg is None:
            if not create:
                return None, None
            pg = self.pages[p] = (np.zeros(1 << self.BITS, np.int32), np.zeros(1 << self.BITS, np.bool_))
        return pg

    @staticmethod
    def get(parts, n: int, which: int) -> np.ndarray:
        """Stamps (which=0) or dirty bits (1) of the lines ``parts`` came from, in their order."""
        out = None
        for part in parts:
            arr, loc, pos = part[which], part[2], part[3]
            v = np.zeros(len(loc), np.int32 if which == 0 else np.bool_) if arr is None else arr[loc]
            if pos is None:
                return v
            if out is None:
                out = np.empty(n, v.dtype)
            out[pos] = v
        return out

    @staticmethod
    def put(parts, values, which: int) -> None:
        """Set stamps (which=0) or dirty bits (1): one value, or one per line in ``parts``' order."""
        scalar = np.ndim(values) == 0
        for part in parts:
            arr, loc, pos = part[which], part[2], part[3]
            arr[loc] = values if scalar or pos is None else values[pos]

    def clear(self) -> None:
        self.pages.clear()


def row_lines(starts: np.ndarray, row_bytes: int, line: int) -> tuple[np.ndarray, bool]:
    """The lines of rows of ``row_bytes`` starting at byte addresses ``starts`` (any shape): an array
    of shape ``starts.shape + (span,)``, -1 past a row's last line, and whether every row covers all
    ``span`` lines (no -1)."""
    first = starts // line
    last = (starts + row_bytes - 1) // line
    span = int((last - first).max()) + 1
    idx = first[..., None] + np.arange(span, dtype=np.int64)
    dense = bool((last - first == span - 1).all())
    if not dense:
        idx = np.where(idx <= last[..., None], idx, -1)
    return idx, dense


class L2Cache:
    def __init__(self, capacity_bytes: int, line_bytes: int):
        self.line = int(line_bytes)
        self.capacity = max(1, int(capacity_bytes) // self.line)
        self._lines = _Pages()
        self.present = 0
        self._writeback = 0
        self._wb_members: list[int] = []
        self._last = (np.zeros(0, np.int64), np.zeros(0, bool), True)
        self.clock = 0
        self._log: collections.deque = collections.deque()

    def lines(self, base: int, offset: int, rows: int, row_bytes: int, stride: int) -> np.ndarray:
        """Line indices touched by a 2-D access (unique, ascending)."""
        L = self.line
        start = base + offset
        if rows == 1 or stride == row_bytes:          # one contiguous run
            return np.arange(start // L, (start + rows * row_bytes - 1) // L + 1, dtype=np.int64)
        grid, dense = row_lines(start + np.arange(rows, dtype=np.int64) * stride, row_bytes, L)
        idx = grid.ravel() if dense else grid[grid >= 0]
        if stride < (grid.shape[-1] + 1) * L:            # rows may share lines
            idx = np.unique(idx)
        return idx

    def run(self, address: int, nbytes: int) -> tuple[int, int]:
        """The run of lines [first, end) bytes [address, address + nbytes) sit in (one line at least)."""
        L = self.line
        return address // L, (address + max(1, nbytes) - 1) // L + 1

    def access_members(self, base: int, offsets, rows: int, row_bytes: int, stride: int,
                       write: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The same 2-D access (see :meth:`lines`) by several members of a block class at
        ``offsets``, in member order, as one vectorised step: (lines touched, lines present) per
        member. A line an earlier member just brought in is a hit for the later ones, and LRU
        order, evictions and write-backs are as if each member's access had been made on its own,
        one after another."""
        L = self.line
        offsets = np.asarray(offsets, dtype=np.int64)
        m = len(offsets)
        starts = (base + offsets)[:, None] + np.arange(rows, dtype=np.int64)[None, :] * stride
        idx, dense = row_lines(starts, row_bytes, L)
        span = idx.shape[-1]
        idx = idx.reshape(m, -1)
        if rows > 1 and stride < (span + 1) * L:          # rows of a member may share lines
            idx.sort(axis=1)
            dup = np.zeros(idx.shape, dtype=bool)
            dup[:, 1:] = idx[:, 1:] == idx[:, :-1]
            idx[dup] = -1
            dense = False
        lo, hi = starts[:, 0] // L, (starts[:, -1] + row_bytes - 1) // L
        order = np.argsort(lo, kind="stable")
        disjoint = bool((hi[order[:-1]] < lo[order[1:]]).all())   # no line is two members'
        if dense:
            flat = idx.ravel()
            owner = np.repeat(np.arange(m), idx.shape[1])
            touched = np.full(m, idx.shape[1], dtype=np.int64)
        else:
            valid = idx >= 0
            owner = np.broadcast_to(np.arange(m)[:, None], idx.shape)[valid]
            flat = idx[valid]
            touched = np.bincount(owner, minlength=m)
        pages = self._lines
        c0 = self.clock + 1
        if disjoint:
            uniq = flat
            parts = pages.split(flat, ascending=False)
            old = pages.get(parts, len(flat), 0) != 0
            hits = np.bincount(owner, weights=old, minlength=m).astype(np.int64)
            new = touched - hits
            pages.put(parts, c0 + owner, 0)
            self._last = (flat, old, False)
        else:
            uniq, first_at = np.unique(flat, return_index=True)
            parts = pages.split(uniq)
            old = pages.get(parts, len(uniq), 0) != 0
            present = np.ones(len(flat), dtype=bool)           # later members' repeats are hits
            present[first_at] = old
            hits = np.bincount(owner, weights=present, minlength=m).astype(np.int64)
            new = np.bincount(owner[first_at[~old]], minlength=m)
            # member i's lines get stamp c0 + i (a line several members touch keeps the last one's)
            _, last_r = np.unique(flat[::-1], return_index=True)
            pages.put(parts, c0 + owner[len(flat) - 1 - last_r], 0)
            self._last = (uniq, old, True)
        self.clock += m
        if write:
            pages.put(parts, True, 1)
        # then, member by member, what its own access would have evicted (dirty lines: its write-back)
        wb = self._wb_members
        wb.clear()
        per_member = list(idx) if dense else np.split(flat, np.cumsum(touched)[:-1])
        log = self._log
        cap = self.capacity
        for i, lines in enumerate(per_member):
            log.append((c0 + i, lines))
            self.present += int(new[i])
            if self.present > cap:
                self._evict()
                wb.append(self._writeback * L)
                self._writeback = 0
            else:
                wb.append(0)
        return touched, hits

    def last_lines(self) -> np.ndarray:
        """Every line the last access (or members' access) touched (ascending when it was one access)."""
        return self._last[0]

    def last_missed(self) -> np.ndarray:
        """The lines the last access (or members' access) filled from HBM, ascending."""
        lines, was, ascending = self._last
        missed = lines[~was]
        return missed if ascending else np.sort(missed)

    def take_member_writebacks(self) -> list[int]:
        """Bytes each member of the last :meth:`access_members` call evicted dirty (HBM owes them)."""
        out, self._wb_members = self._wb_members, []
        return out

    def access(self, idx: np.ndarray, write: bool = False) -> int:
        """Touch lines (ascending); returns how many were present. Misses are filled (evicting LRU
        lines); ``write`` marks the lines dirty. Of a run longer than the cache only the last
        ``capacity`` lines stay: the ones before are evicted by the run itself (dirty ones cost a
        write-back), so the cost is bounded by the cache, not the run."""
        if len(idx) == 0:
            return 0
        pages = self._lines
        hits = 0
        if len(idx) > self.capacity:
            head, idx = idx[:-self.capacity], idx[-self.capacity:]
            hp = pages.split(head)
            was = pages.get(hp, len(head), 0) != 0
            hits = int(np.count_nonzero(was))
            self._writeback += len(head) if write else int(np.count_nonzero(pages.get(hp, len(head), 1) & was))
            pages.put(hp, 0, 0)
            pages.put(hp, False, 1)
            self.present -= hits
        self.clock += 1
        s = self.clock
        B = pages.BITS
        p0 = int(idx[0]) >> B
        if p0 == int(idx[-1]) >> B:              # one page (most accesses): its arrays directly
            st, dt = pages._page(p0, True)
            loc = idx & ((1 << B) - 1)
            was = st[loc] != 0
            st[loc] = s
            if write:
                dt[loc] = True
        else:
            parts = pages.split(idx)
            was = pages.get(parts, len(idx), 0) != 0
            pages.put(parts, s, 0)
            if write:
                pages.put(parts, True, 1)
        self._last = (idx, was, True)
        h = int(np.count_nonzero(was))
        hits += h
        self.present += len(idx) - h
        self._log.append((s, idx))
        if self.present > self.capacity:
            self._evict()
        return hits

    def _evict(self) -> None:
        target = self.capacity
        log = self._log
        pages = self._lines
        B = pages.BITS
        mask = (1 << B) - 1
        while self.present > target and log:
            s, idx = log.popleft()
            if type(idx) is tuple:               # a run of lines: page slices
                for st, dt, a, b in self._range_pages(idx[0], idx[1], False):
                    seg = st[a:b]
                    mine = seg == s
                    self._drop(seg, dt[a:b], mine, int(np.count_nonzero(mine)))
                continue
            p0 = int(idx[0]) >> B
            if p0 == int(idx[-1]) >> B:          # one page (most records): no split
                pg = pages.pages.get(p0)
                if pg is None:
                    continue
                st, dt = pg
                loc = idx & mask
                gone = loc[st[loc] == s]
                self._drop(st, dt, gone, len(gone))
                continue
            mine = pages.get(pages.split(idx, create=False), len(idx), 0) == s
            n = int(np.count_nonzero(mine))
            if n:
                gone = pages.split(idx[mine])
                nd = int(np.count_nonzero(pages.get(gone, n, 1)))
                if nd:
                    self._writeback += nd
                    pages.put(gone, False, 1)
                pages.put(gone, 0, 0)
                self.present -= n

    # ----- contiguous runs of lines (a kernel's whole tensors, prefetch pieces): page slices -----
    def _range_pages(self, first: int, end: int, create: bool):
        """(stamps, dirty, a, b) of each page lines [first, end) cover: its slice [a, b) (pages never
        touched are skipped unless ``create``)."""
        B = self._lines.BITS
        for p in range(first >> B, ((end - 1) >> B) + 1):
            st, dt = self._lines._page(p, create)
            if st is not None:
                yield st, dt, max(first, p << B) - (p << B), min(end, (p + 1) << B) - (p << B)

    def access_range(self, first: int, end: int, write: bool = False) -> int:
        """Touch lines [first, end) as :meth:`access` would (a run longer than the cache keeps its
        last ``capacity`` lines); returns how many were present. Costs O(pages), no index arrays."""
        if end <= first:
            return 0
        hits = 0
        if end - first > self.capacity:
            head_end = end - self.capacity
            for st, dt, a, b in self._range_pages(first, head_end, True):
                seg, dseg = st[a:b], dt[a:b]
                was = seg != 0
                h = int(np.count_nonzero(was))
                hits += h
                self._writeback += (b - a) if write else int(np.count_nonzero(dseg & was))
                seg[:] = 0
                dseg[:] = False
                self.present -= h
            first = head_end
        self.clock += 1
        s = self.clock
        h = 0
        for st, dt, a, b in self._range_pages(first, end, True):
            h += int(np.count_nonzero(st[a:b]))
            st[a:b] = s
            if write:
                dt[a:b] = True
        hits += h
        self.present += (end - first) - h
        self._log.append((s, (first, end)))
        if self.present > self.capacity:
            self._evict()
        return hits

    def resident_fraction_range(self, first: int, end: int) -> float:
        if end <= first:
            return 0.0
        n = sum(int(np.count_nonzero(st[a:b])) for st, _, a, b in self._range_pages(first, end, False))
        return n / (end - first)

    def _drop(self, st: np.ndarray, dt: np.ndarray, where, n: int) -> None:
        """Evict the ``n`` lines ``where`` (a mask or indices) selects in page arrays: dirty ones
        owe HBM a write."""
        if n:
            nd = int(np.count_nonzero(dt[where]))
            if nd:
                self._writeback += nd
                dt[where] = False
            st[where] = 0
            self.present -= n

    def take_writeback(self) -> int:
        """Bytes of dirty lines evicted since the last call (HBM owes them a write)."""
        n, self._writeback = self._writeback, 0
        return n * self.line

    def resident_fraction(self, idx: np.ndarray) -> float:
        if len(idx) == 0:
            return 0.0
        return float(np.count_nonzero(self._lines.get(self._lines.split(idx, create=False), len(idx), 0))) / len(idx)

    def clear(self) -> None:
        self._lines.clear()
        self.present = 0
        self._writeback = 0
        self._log.clear()


class Flow:
    """One transfer. Its progress is kept by its group: it is done when the group's progress
    reaches ``finish``."""

    __slots__ = ("finish", "group", "event", "limited", "on_done", "payload", "count")

    def __init__(self, payload: float, event, on_done, count: int = 1):
        self.payload = payload
        self.count = count        # identical transfers this flow stands for (a block class's members)
        self.finish = 0.0
        self.group = None
        self.event = event
        self.limited = None       # {resource index, or -1 for its own cap: time spent limited by it}
        self.on_done = on_done


class _Group:
    """Flows with the same cap and demands: they always get the same rate, so one progress
    counter (payload bytes per flow moved so far) serves them all."""

    __slots__ = ("key", "cap", "demand", "progress", "heap", "rate", "limiter", "limited", "seq", "n")

    def __init__(self, key):
        self.key = key
        self.cap, self.demand = key     # demand: ((resource, bytes per payload byte), ...)
        self.progress = 0.0
        self.heap: list = []
        self.rate = 0.0
        self.limiter = -1
        self.limited: dict = collections.defaultdict(float)
        self.seq = 0
        self.n = 0                      # transfers in the group (a flow may stand for several)


# The same-instant re-balance runs after every ordinary event of its instant (simpy sorts events at
# one time by priority: URGENT 0, NORMAL 1).
_LAST = 2

# Demands are kept to 1/64 of a byte per payload byte, so flows that differ only in the last
# percent of their L2 hit fraction share a group (and a rate computation). A modelling resolution,
# not a hardware number: it moves a flow's HBM load by at most 1/128 of its payload.
DEMAND_RESOLUTION = 64


class FluidNetwork:
    """Max-min fair sharing of resources (bytes per cycle) among flows; see the module docstring.

    Resources are added with :meth:`add_resource` (a device's L2 and HBM, a link direction...);
    a flow names the resources it loads, so one network serves a whole cluster."""

    EPS = 1e-6

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.names: list[str] = []
        self.capacity: list[float] = []
        self.groups: dict = {}
        self._last = 0.0
        self._version = 0
        self.moved: list[float] = []                     # bytes each resource carried
        self._sampled: list[int] = []                    # resources whose usage is kept over time
        self._sampled_set: set[int] = set()
        self._samples: list[tuple[float, int, float]] = []   # (time, resource, bytes/cycle used)
        self._last_sample: dict[int, float] = {}
        self._used: list[float] = []
        # connected parts of the network: a union-find over resources (parts only merge while flows
        # are active, and start afresh when the network is idle), with the groups of each part
        self._parent: dict[int, int] = {}
        self._members: dict[int, set] = {}
        self._dirty: set[int] = set()          # resources whose flows changed at this instant
        self._flush_pending = False

    def add_resource(self, name: str, capacity: float, sampled: bool = False) -> int:
        if capacity <= 0:
            raise ValueError(f"FluidNetwork: resource {name} needs a positive capacity, got {capacity}")
        self.names.append(name)
        self.capacity.append(float(capacity))
        self.moved.append(0.0)
        self._used.append(0.0)
        if sampled:
            self._sampled.append(len(self.names) - 1)
            self._sampled_set.add(len(self.names) - 1)
        return len(self.names) - 1

    @property
    def busy(self) -> bool:
        return bool(self.groups)

    def start(self, payload: float, cap: float, demand, on_done: Callable | None = None, count: int = 1) -> simpy.Event:
        """Start a flow of ``payload`` bytes capped at ``cap`` bytes/cycle, loading each resource of
        ``demand`` ((resource, bytes per payload byte), ...); the event fires with the Flow when done.
        ``count``: the flow stands for that many identical transfers (each at the flow's rate)."""
        ev = self.env.event()
        if payload <= 0:
            ev.succeed(None)
            return ev
        self._advance()
        q = DEMAND_RESOLUTION
        key = (float(cap), tuple((int(r), round(d * q) / q) for r, d in demand if round(d * q) > 0))
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = _Group(key)
            self._join(g)
        f = Flow(payload, ev, on_done, count)
        f.group = g
        f.finish = g.progress + payload
        f.limited = dict(g.limited)
        g.seq += 1
        g.n += count
        heapq.heappush(g.heap, (f.finish, g.seq, f))
        self._touch(r for r, _ in g.demand)
        return ev

    def _touch(self, resources) -> None:
        """Note resources whose flows changed; their parts of the network are re-balanced once, after
        every other event of this instant (blocks in lockstep start and end transfers together)."""
        self._dirty.update(resources)
        if not self._flush_pending:
            self._flush_pending = True
            ev = simpy.Event(self.env)
            ev.callbacks.append(self._flush)
            ev._ok, ev._value = True, None
            self.env.schedule(ev, priority=_LAST, delay=0)

    def _flush(self, _event=None) -> None:
        self._flush_pending = False
        touched, self._dirty = self._dirty, set()
        self._advance()
        self._reallocate(touched)
        self._schedule(touched)

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            moved = self.moved
            for g in self.groups.values():
                b = g.rate * dt
                g.progress += b
                g.limited[g.limiter] += dt
                c = g.n
                for r, d in g.demand:
                    moved[r] += b * d * c
        self._last = now

    def _find(self, r: int) -> int:
        parent = self._parent
        root = parent.setdefault(r, r)
        while parent[root] != root:
            root = parent[root]
        while parent[r] != root:          # path compression
            parent[r], r = root, parent[r]
        return root

    def _join(self, g: _Group) -> None:
        """Put a new group's resources in one part of the network."""
        roots = {self._find(r) for r, _ in g.demand}
        root = max(roots, key=lambda x: len(self._members.get(x, ())))
        members = self._members.setdefault(root, set())
        for other in roots - {root}:
            self._parent[other] = root
            members |= self._members.pop(other, set())
        members.add(g.key)

    def _component(self, resources) -> list:
        """The groups in the parts of the network ``resources`` belong to: max-min fair shares of
        parts that share no resource are independent, so only those parts change."""
        keys: set = set()
        for root in {self._find(r) for r in resources}:
            keys |= self._members.get(root, set())
        groups = [self.groups[k] for k in keys if k in self.groups]
        return groups, {r for g in groups for r, _ in g.demand} | set(resources)

    def _reallocate(self, resources=None) -> None:
        """Progressive filling over the groups touching ``resources`` (all when None): raise every
        unfrozen group's rate together until one reaches its cap or a resource saturates; freeze
        those; repeat."""
        if resources is None:
            groups, res = list(self.groups.values()), set(range(len(self.capacity)))
        else:
            groups, res = self._component(resources)
        cap_left = list(self.capacity)
        load: dict[int, float] = collections.defaultdict(float)
        users: dict[int, list] = collections.defaultdict(list)
        order = sorted(groups, key=lambda g: g.cap)
        for i, g in enumerate(order):
            c = g.n
            for r, d in g.demand:
                load[r] += d * c
                users[r].append(i)
        used = self._used
        for r in res:
            used[r] = 0.0
        eps = self.EPS
        live = [True] * len(order)
        i, n = 0, len(order)
        while i < n:
            if not live[i]:
                i += 1
                continue
            lam, which = order[i].cap, -1
            for r, l in load.items():
                if l > eps:
                    lr = cap_left[r] / l
                    if lr < lam:
                        lam, which = lr, r
            freeze = [i] if which < 0 else [j for j in users[which] if live[j]]
            for j in freeze:
                g = order[j]
                rate = g.cap if which < 0 else lam
                g.rate, g.limiter = rate, which
                c = g.n
                for r, d in g.demand:
                    u = d * rate * c
                    cap_left[r] -= u
                    used[r] += u
                    load[r] -= d * c
                live[j] = False
            if which >= 0:
                cap_left[which] = 0.0
                load[which] = 0.0

    def _sample(self, resources=None) -> None:
        """Remember the usage of sampled resources among ``resources`` when it changed by more than
        1% of their capacity (for counters): (time, resource, bytes/cycle)."""
        last = self._last_sample
        for r in self._sampled if resources is None else resources:
            if r in self._sampled_set:
                u = self._used[r]
                prev = last.get(r)
                if prev is None or abs(u - prev) > 0.01 * self.capacity[r]:
                    last[r] = u
                    self._samples.append((self.env.now, r, u))

    def take_samples(self) -> list[tuple[float, int, float]]:
        """[(time, resource, bytes/cycle used), ...] since the last call, in time order."""
        out, self._samples = self._samples, []
        return out

    def _schedule(self, resources=None) -> None:
        self._sample(resources)
        if not self.groups:
            return
        self._version += 1
        v = self._version
        dt = float("inf")
        for g in self.groups.values():
            if g.rate > 0:
                d = (g.heap[0][0] - g.progress) / g.rate
                if d < dt:
                    dt = d
        if dt == float("inf"):
            raise RuntimeError("FluidNetwork: active flows but no bandwidth (a resource has zero capacity)")
        ev = self.env.timeout(max(dt, 0.0))
        ev.callbacks.append(lambda _e, v=v: self._wake(v))

    def _wake(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        done = []
        touched: set[int] = set()
        for key, g in list(self.groups.items()):
            tol = self.EPS * max(1.0, g.rate)
            while g.heap and g.heap[0][0] - g.progress <= tol:
                f = heapq.heappop(g.heap)[2]
                g.n -= f.count
                done.append(f)
                touched.update(r for r, _ in g.demand)
        if not done:   # floating point: finish the closest one
            g = min(self.groups.values(), key=lambda g: (g.heap[0][0] - g.progress) / g.rate if g.rate else 1e300)
            f = heapq.heappop(g.heap)[2]
            g.n -= f.count
            done.append(f)
            touched.update(r for r, _ in g.demand)
        for key, g in list(self.groups.items()):
            if not g.heap:
                del self.groups[key]
                self._members.get(self._find(g.demand[0][0]), set()).discard(key)
        if not self.groups:          # idle: every part of the network starts afresh
            self._parent.clear()
            self._members.clear()
        self._version += 1           # the old wake-up is spent; the flush schedules the next
        self._touch(touched)
        for f in done:
            g = f.group
            f.limited = {k: v - f.limited.get(k, 0.0) for k, v in g.limited.items()}
            if f.on_done is not None:
                f.on_done(f)
            f.event.succeed(f)
