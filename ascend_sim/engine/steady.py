"""Steady-state extrapolation of tile loops: a loop whose per-iteration timing has converged is
jumped over instead of simulated to its end.

What is modelled. A template marks its tile loops (``ProgramBuilder.begin_loop`` / ``iteration``:
the K loop of a cube core, a vector block's tile loop, flash attention's key-tile loop) with the
loop's *period*: the iterations after which the instructions repeat (the ring of buffers it
cycles through). While a block (or a block class) runs, every coupled pipe notes its local clock
at each iteration start. When, for every such pipe, the last three periods took the same time D
(within ``TOLERANCE`` of D) and the periods ahead repeat the same instructions, the block proposes
to skip J whole periods; each pipe, on reaching the first skipped iteration, moves on to the
iteration J periods later with its clock J x D later. What the skipped iterations would have done
is still done, over the jump's time, in ``TOUCH_CHUNKS`` ordered pieces: their GM bytes are
counted exactly, L2 sees the lines each piece touches, and flows carry their L2/HBM bandwidth and
the write-backs of the lines they evict, so other work sees the same traffic. Pipe busy time grows
by J periods'.

Flags stay consistent across the jump: a flag set is kept in the setter's unshifted time and a
wait adds its own pipe's shift, so a set made before the jump and waited for after it arrives J x D
later, as the set J periods on would have.

When a loop may jump: the block runs of its kernel all propose the same period time, none of their
pipes has reached its first skipped iteration, and they jump the same time together
(:class:`JumpCoordinator`: contention between them stays as it was); every block of the kernel has
started; nothing else runs on the device (its interference is not periodic); and L2 will not evict
before the loop ends (once it evicts, the write-backs in flight when a jump lands are not the steady
ones). A loop may jump again once it has run three more equal periods; the last period is run.

Bound: the extrapolated part is exact when the loop is periodic; the check allows each period to
differ from the last by ``TOLERANCE`` of its length, so the error is below TOLERANCE of the skipped
time (tests/engine/test_acceleration.py holds the whole kernel within 1% of the full run).
"""
from __future__ import annotations

import bisect

import numpy as np

from ascend_sim.isa import BARRIER, COMPUTE, GM

from .memory import row_lines

TOLERANCE = 1e-3          # a period may differ from the previous one by this fraction of its length
CONVERGED_PERIODS = 3     # periods of equal length seen before a jump
L2_FULL_SLACK = 0.01      # L2 within this fraction of its capacity counts as full (it may evict)
TOUCH_CHUNKS = 16         # pieces in which L2 sees a jump's skipped iterations (a modelling grain)


def periods_equal(prog, lo: int, hi: int, width: int) -> bool:
    """Instructions [lo, hi) and [lo + width, hi + width) of ``prog`` are the same (but for GM
    offsets): what decides timing repeats."""
    end = hi + width
    if end > len(prog.kind):
        return False
    for col in (prog.kind, prog.pipe, prog.cycles, prog.latency, prog.name):
        if col[lo:hi] != col[lo + width:end]:
            return False
    kinds = prog.kind
    arg = prog.arg
    acc = prog.accesses
    for i in range(lo, hi):
        if kinds[i] == GM:
            a, b = acc[arg[i]], acc[arg[i + width]]
            if (a.rows, a.row_bytes, a.stride, a.write, a.bus_bytes, a.path_cycles, a.tensor) != \
                    (b.rows, b.row_bytes, b.stride, b.write, b.bus_bytes, b.path_cycles, b.tensor):
                return False
        elif arg[i] != arg[i + width]:
            return False
    return True


def coupled_pipes(prog) -> frozenset:
    """Pipes of ``prog`` that move data or sync with others. A pipe of on-core work only (the
    scalar unit's bookkeeping) runs on at its own pace: it is simulated in full and takes no part
    in a jump. Computed once per program."""
    c = getattr(prog, "_coupled", None)
    if c is None:
        c = prog._coupled = frozenset(p for k, p in zip(prog.kind, prog.pipe) if k not in (COMPUTE, BARRIER))
    return c


class LoopRun:
    """The marked loops of one block run (a block, or a block class simulated once): the pipes'
    clocks at each iteration start, the convergence check and the jump (see the module docstring).
    A loop id of a MIX block is one loop of all its programs (flash attention's key tiles on the
    AIC and both AIVs): it qualifies only if every program marks it alike, and all jump together."""

    def __init__(self, engine, dm, task, rep: list, members: list[int], st, coord: "JumpCoordinator"):
        self.engine, self.dm, self.task, self.rep, self.members, self.st = engine, dm, task, rep, members, st
        self.coord = coord
        self.loops: dict = {}        # loop id -> state
        ids = set(rep[0].loops)
        for prog in rep[1:]:
            ids &= set(prog.loops)
        for lid in ids:
            shapes = {(prog.loops[lid][0], len(prog.loops[lid][1])) for prog in rep}
            if len(shapes) != 1:
                continue
            ((period, n),) = shapes
            if n >= (CONVERGED_PERIODS + 2) * period:
                # every coupled pipe of the block passes the loop's marks
                pipes = sum(len(coupled_pipes(prog)) for prog in rep)
                self.loops[lid] = {"period": period, "n": n, "times": {}, "arrived": {}, "pipes": pipes,
                                   "skip": None, "done": False, "reached": -1}

    def marks(self, pi: int, pipe: int, idxs: list[int]) -> list[tuple[int, int, int]]:
        """(position in this pipe's queue, loop id, iteration) of every iteration start the pipe
        passes, in order."""
        out = []
        if pipe not in coupled_pipes(self.rep[pi]):
            return out
        for lid, lp in self.loops.items():
            for k, pos in enumerate(self.rep[pi].loops[lid][1]):
                out.append((bisect.bisect_left(idxs, pos), lid, k))
        out.sort(key=lambda x: (x[0], x[2]))
        return out

    def at(self, lid: int, who, k: int, t: float, busy: float, disturbed: bool):
        """Pipe ``who`` reached iteration ``k`` of loop ``lid`` at local time ``t`` with ``busy``
        cycles so far. Returns (iteration to go on at, cycles to add, busy cycles to add) when the
        pipe jumps now, else None."""
        lp = self.loops[lid]
        skip = lp["skip"]
        if skip is not None and k == skip[0]:
            s0, s1, dt, per_busy = skip
            if lp["jumped"] == 0:                    # the jump begins: the skipped work's traffic now
                self._skipped(lid, s0, s1, dt)
            lp["jumped"] += 1
            if lp["jumped"] == lp["pipes"]:          # every pipe is over: the loop may jump again later
                lp["skip"] = None
            return s1, dt, (s1 - s0) // lp["period"] * per_busy[who]
        lp["times"].setdefault(who, {})[k] = (t, busy)
        if k > lp["reached"]:
            lp["reached"] = k
        if lp["done"]:
            return None
        n = lp["arrived"][k] = lp["arrived"].get(k, 0) + 1
        if n == lp["pipes"]:
            del lp["arrived"][k]
            lp.setdefault("present", {})[k] = self.dm.l2.present
            self._decide(lid, lp, k, disturbed)
        return None

    def _decide(self, lid: int, lp, k: int, disturbed: bool) -> None:
        P = lp["period"]
        if k < CONVERGED_PERIODS * P or lp["skip"] is not None:
            return
        if disturbed:                      # other work on the device: its interference is not periodic
            lp["done"] = True
            return
        d = None
        per_busy = {}
        for who, rec in lp["times"].items():
            pts = [rec.get(k - i * P) for i in range(CONVERGED_PERIODS + 1)]
            if None in pts:
                return
            spans = [pts[i][0] - pts[i + 1][0] for i in range(CONVERGED_PERIODS)]
            if d is None:
                d = spans[0]
            if d <= 0 or any(abs(x - d) > TOLERANCE * d for x in spans):
                return
            per_busy[who] = pts[0][1] - pts[1][1]
        # the first iteration no pipe has reached, in phase with k
        s0 = k + P * (-(-(lp["reached"] + 1 - k) // P))
        # whole periods from s0 on repeating the one before s0, on every program; the last such
        # period is run (the landing), the ones before it are skipped
        same = 0
        while s0 + (same + 1) * P < lp["n"] and all(self._repeats(prog.loops[lid][1], prog, s0, same, P)
                                                   for prog in self.rep):
            same += 1
        j = same - 1
        # L2 must not evict over the jump, before or after it: it fills so slowly (lines per period,
        # as measured) that it will not be full before the loop ends. (Once it evicts, the
        # write-backs in flight when a jump lands are not the steady ones, and the periods after
        # it differ by up to a period's time: a full cache is simulated to the end.)
        l2 = self.dm.l2
        seen = lp["present"]
        full = l2.capacity * (1.0 - L2_FULL_SLACK)     # evictions keep a full cache a few lines short
        growth = seen[k] - seen.get(k - P, 0)
        if l2.present + max(0, growth) * ((lp["n"] - k) / P + 1) > full:
            lp["done"] = True
            return
        if j >= 1:
            self.coord.propose(self, lid, (d, s0, j, per_busy))

    def commit(self, lid: int, d: float, s0: int, j: int, per_busy: dict) -> None:
        """Jump ``j`` periods of loop ``lid`` from iteration ``s0`` (the kernel's runs agreed)."""
        lp = self.loops[lid]
        P = lp["period"]
        s1 = s0 + j * P
        lp["skip"] = (s0, s1, j * d, per_busy)
        lp["jumped"] = 0

    def _skipped(self, lid: int, s0: int, s1: int, dt: float) -> None:
        """Do what iterations [s0, s1) of loop ``lid`` would have done, over the jump's time (from
        when the first pipe jumps)."""
        self.engine.env.process(self._skipped_work(lid, s0, s1, dt))

    def _skipped_work(self, lid: int, s0: int, s1: int, dt: float):
        """The skipped iterations in TOUCH_CHUNKS pieces, in order, each at its share of the jump's
        time: L2 sees the piece's lines (each once; LRU order, and so which evictions are dirty,
        follows the iterations to that grain), a flow per member carries its bytes through L2 and
        HBM at the piece's rate, and the dirty lines it evicts go to HBM as write-backs do."""
        env, dm = self.engine.env, self.dm
        m = len(self.members)
        edges = sorted({s0 + (s1 - s0) * c // TOUCH_CHUNKS for c in range(TOUCH_CHUNKS + 1)})
        for a, b in zip(edges, edges[1:]):
            piece = dt * (b - a) / (s1 - s0)
            bus = fill = wb = 0
            for pi, prog in enumerate(self.rep):
                starts = prog.loops[lid][1]
                moved = self._account(pi, prog, starts[a], starts[b])
                bus += moved[0]
                fill += moved[1]
                wb += moved[2]
            if bus > 0:
                dm.net.start(bus / m, bus / m / piece, ((dm.res_l2, 1.0), (dm.res_hbm, fill / bus)), count=m)
            if wb > 0:
                dm.net.start(wb / m, float("inf"), ((dm.res_hbm, 1.0),), count=m)
            yield env.timeout(piece)

    @staticmethod
    def _repeats(starts, prog, s0: int, q: int, P: int) -> bool:
        """Period q after s0 repeats the period just before s0."""
        lo, hi = starts[s0 - P], starts[s0]
        return starts[s0 + (q + 1) * P] - starts[s0 + q * P] == hi - lo and \
            periods_equal(prog, lo, hi, starts[s0 + q * P] - lo)

    def _account(self, pi: int, prog, lo: int, hi: int) -> tuple[int, int, int]:
        """What instructions [lo, hi) of program ``pi`` would have done, for every member: GM bytes,
        L2 lines (each tensor's, once), HBM fills and write-backs. Returns (L2 bus bytes, bytes
        filled from HBM, bytes written back)."""
        eng, dm, st = self.engine, self.dm, self.st
        member_accs = [self.task.plan.blocks[m][pi].accesses for m in self.members]
        nmem = len(self.members)
        groups: dict = {}
        bus = 0
        kinds, arg = prog.kind, prog.arg
        for i in range(lo, hi):
            if kinds[i] != GM:
                continue
            a = prog.accesses[arg[i]]
            bus += a.bus_bytes * nmem
            if a.write:
                st.bytes_written += a.payload * nmem
            else:
                st.bytes_read += a.payload * nmem
            g = groups.setdefault((a.tensor, a.rows, a.row_bytes, a.stride, a.write), [])
            g.extend(acc[arg[i]].offset for acc in member_accs)
        st.l2_bytes += bus
        l2 = dm.l2
        L = l2.line
        fill = 0
        for (tensor, rows, row_bytes, stride, write), offs in groups.items():
            base = self.task.addresses[tensor]
            o = np.unique(np.asarray(offs, dtype=np.int64))
            grid, dense = row_lines((base + o)[:, None] + np.arange(rows, dtype=np.int64)[None, :] * stride,
                                    row_bytes, L)
            idx = np.unique(grid if dense else grid[grid >= 0])
            hits = l2.access(idx, write=write)
            if not write:
                st.read_lines += len(idx)
                st.hit_lines += hits
                fill += (len(idx) - hits) * L
        wb = l2.take_writeback()
        st.hbm_bytes += fill + wb
        eng.extrapolated += (hi - lo) * nmem
        return bus, fill, wb


class JumpCoordinator:
    """The block runs of one kernel jump together or not at all: a jump is made when every run
    still going has proposed one for the same period length, each from an iteration none of its
    pipes has reached; all then jump the same time (the fewest periods any of them can), so
    their phases, and the contention between them, stay as they were."""

    def __init__(self, runs: int):
        self.runs = runs               # block runs the kernel has (blocks, or block classes)
        self.started = 0
        self.active: set = set()       # block runs of the kernel still going (LoopRun or a token)
        self.proposals: dict = {}      # LoopRun -> (loop id, (period time, s0, periods, busy))

    def join(self, run) -> None:
        self.started += 1
        self.active.add(run)

    def propose(self, run: LoopRun, lid: int, prop) -> None:
        self.proposals[run] = (lid, prop)
        if self.started < self.runs:   # blocks still waiting for cores: what they will meet is not periodic
            return
        d = prop[0]
        agreed = []
        for r in self.active:
            p = self.proposals.get(r)
            if p is None:
                return
            plid, (pd, ps0, pj, _) = p
            if abs(pd - d) > TOLERANCE * d or r.loops[plid]["reached"] >= ps0 or \
                    r.loops[plid]["skip"] is not None:
                return
            agreed.append((r, plid, p[1]))
        j = min(p[2] for _, _, p in agreed)
        for r, plid, (pd, ps0, _, busy) in agreed:
            r.commit(plid, pd, ps0, j, busy)
        self.proposals.clear()

    def leave(self, run) -> None:
        self.active.discard(run)
        self.proposals.pop(run, None)
