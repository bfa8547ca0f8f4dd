"""The timing engine: a SimPy model of devices, their AI Cores, L2, HBM, kernel launch and streams.

What is modelled, from the ChipSpec alone:

* **Host launch.** Each kernel costs the host ``runtime.kernel_launch_us`` in submission order; the
  device may start a kernel only once it has been launched. Launches overlap device execution, so
  small kernels are launch-bound and large ones hide it.
* **Streams.** One process per stream runs its tasks in order; an event wait holds the stream until
  the recorded task has finished. Streams run at once and share cores and memory.
* **Blocks.** A kernel's blocks are placed on free cores of the right type, in order, as cores free
  up (MIX blocks take 1 AIC + ``mix_ratio`` AIV); each placement costs ``block_dispatch_cycles``.
* **Pipes.** Every pipe of a block is a process running its queue in order with a local clock: on-
  core work advances the clock by its cycles and completes after its latency; ``set_flag`` fires
  when the pipe's earlier work has completed; ``wait_flag`` holds the pipe until then. Double
  buffering and its stalls emerge from the flags. A pipe joins global time only to start a GM
  transfer, which then shares L2/HBM bandwidth with every other transfer (see memory.py).
* **Deadlock.** A wait that no set answers leaves its pipe waiting when nothing else can happen;
  the engine then raises :class:`DeadlockError` naming device, core, pipe, flag and instruction.
* **What repeats is timed once** (``accelerate=True``): blocks identical up to their GM offsets
  that start together are one *block class*, simulated once (each transfer a flow standing for
  every member; L2 sees every member's lines; the pipe trace shows every core); marked tile loops
  in steady state jump whole periods (steady.py); a kernel met again under the same L2 residency
  is replayed (``memoize``). ``accelerate=False`` runs every block and iteration one by one.

Time is in cycles of the AIC clock (AIV programs are scaled by the clock ratio); microseconds
appear only in the records. The same program gives the same cycles every time.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import simpy

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import BARRIER, COMPUTE, GM, LANE_NAMES, SET, WAIT, XSET, XWAIT, Pipe
from ascend_sim.timeline import Counter, Flow, Interval, OpRecord, Timeline

from .memory import FluidNetwork, L2Cache
from .steady import JumpCoordinator, LoopRun

# A prefetch is simulated in pieces of this many bytes, so an op that starts reading while it is
# under way finds the pieces already in L2. A modelling granularity, not a hardware number: finer
# pieces cost wall time and change no steady-state rate.
PREFETCH_PIECE_BYTES = 2 << 20


class DeadlockError(RuntimeError):
    """A wait_flag (or cross-core wait) that no set answers."""


@dataclass
class OpStats:
    """What one kernel did, summed over its blocks."""

    bytes_read: int = 0
    bytes_written: int = 0
    l2_bytes: float = 0.0       # bus bytes through L2
    hbm_bytes: float = 0.0      # bus bytes to or from HBM
    read_lines: int = 0
    hit_lines: int = 0
    busy: dict = field(default_factory=lambda: collections.defaultdict(float))   # pipe lane -> cycles
    limited: list = field(default_factory=lambda: [0.0, 0.0, 0.0])              # L2, HBM, own cap
    first: float = float("inf")
    last: float = 0.0
    cores: set = field(default_factory=set)


class _Flags:
    """Counting flags of one block: key -> queue of the times they were set."""

    __slots__ = ("sets", "waiters")

    def __init__(self):
        self.sets: dict = collections.defaultdict(collections.deque)
        self.waiters: dict = {}

    def set(self, key, t: float) -> None:
        w = self.waiters.pop(key, None)
        if w is not None:
            w.succeed(t)
        else:
            self.sets[key].append(t)

    def take(self, key):
        q = self.sets.get(key)
        if q:
            return q.popleft()
        return None


class DeviceModel:
    """Per-device state: core pools, L2, bandwidth network, host clock."""

    def __init__(self, engine: "Engine", index: int):
        chip = engine.chip
        env = engine.env
        self.engine = engine
        self.index = index
        c = chip.cores
        self.aic = simpy.Store(env)
        self.aiv = simpy.Store(env)
        self.aicpu = simpy.Store(env)
        for i in range(c.aic):
            self.aic.put(f"AIC{i}" if not c.coupled else f"AICore{i}")
        # vector work runs on AIV cores; on coupled chips also on the AI Cores' vector units
        for i in range(c.aiv):
            self.aiv.put(f"AIV{i}")
        for i in range(c.aicpu):
            self.aicpu.put(f"AICPU{i}")
        self.l2 = L2Cache(chip.memory.l2_bytes, chip.memory.l2_line_bytes)
        per_cycle = 1e9 / (c.aic_mhz * 1e6)       # GB/s -> bytes per (AIC) cycle
        self.net = engine.net
        self.res_l2 = self.net.add_resource(f"npu{index}.L2", chip.memory.l2_bandwidth_GBps * per_cycle, sampled=True)
        self.res_hbm = self.net.add_resource(f"npu{index}.HBM", chip.memory.hbm_bandwidth_GBps * per_cycle,
                                             sampled=True)
        self.host_clock = 0.0
        self.active: dict = {}      # running kernels -> [disturbed?]: did anything run beside them
        # reads that missed at this instant: (time, [(lines filled, the filling flow's event)])
        self.filling: tuple[float, list] = (-1.0, [])
        self.hbm_counter = Counter(index, "HBM GB/s")
        self.l2_bw_counter = Counter(index, "L2 GB/s")
        self.l2_counter = Counter(index, "L2 hit rate")


class Engine:
    def __init__(self, chip: ChipSpec, n_devices: int, trace: str = "pipe", memoize: bool | None = None,
                 topology=None, accelerate: bool = True):
        if trace not in ("ops", "core", "pipe"):
            raise ValueError(f"trace must be 'ops', 'core' or 'pipe', got {trace!r}")
        self.chip = chip
        self.trace = trace
        # Replaying kernels needs no per-instruction trace; by default it is on when none is kept.
        self.memoize = (trace != "pipe") if memoize is None else memoize
        if self.memoize and trace == "pipe":
            raise ValueError("memoize=True replays kernels without their instructions: use trace='ops' or 'core'")
        # block classes and steady-state loop jumps (False: every block and iteration on its own,
        # the reference the accelerated paths are tested against)
        self.accelerate = accelerate
        self._memo: dict = {}
        self._coords: dict = {}        # running kernel (task id) -> its JumpCoordinator
        self._inflight: dict = {}      # memo key -> the same kernel being simulated on another device now
        self.replayed = 0
        self.followed = 0
        self.topology = topology
        self._links: dict[str, int] = {}       # link resource name -> network resource
        self._collectives: dict[int, dict] = {}
        self._launches: dict[int, tuple[float, float]] = {}    # task id -> its host launch (cycles)
        self.env = simpy.Environment()
        self.net = FluidNetwork(self.env)     # every device's L2 and HBM, and the links between them
        self.devices = [DeviceModel(self, i) for i in range(n_devices)]
        self.timeline = Timeline(chip=chip.name)
        self.mhz = chip.cores.aic_mhz
        self._done: dict[int, simpy.Event] = {}
        self._waiting: dict = {}
        self.instructions = 0          # instructions run one by one
        self.extrapolated = 0          # instructions of loop iterations jumped over (steady.py), x members
        self.effective = 0             # instructions the kernels simulated hold, however they were timed
        m = chip.memory
        self._lat_read = m.l2_read_latency_cycles
        self._lat_write = m.l2_write_latency_cycles
        self._lat_miss = m.hbm_extra_latency_cycles
        self._scale = {"AIC": 1.0, "AIV": chip.cores.aic_mhz / chip.cores.aiv_mhz}
        self.timeline.counters = [c for d in self.devices for c in (d.hbm_counter, d.l2_bw_counter, d.l2_counter)]

    # ----- time units -----
    def us(self, cycles: float) -> float:
        return cycles / self.mhz

    def cycles(self, us: float) -> float:
        return us * self.mhz

    # ----- running -----
    def run(self, tasks: list) -> list[OpRecord]:
        """Simulate ``tasks`` (the pending tasks of every stream, in submission order)."""
        env = self.env
        records: list[OpRecord] = []
        by_stream: dict = collections.defaultdict(list)
        for t in sorted(tasks, key=lambda t: t.id):
            by_stream[t.stream].append(t)
            dm = self.devices[t.stream.device.index]
            if t.kind in ("kernel", "prefetch", "collective"):
                # the host launches tasks one after another, from where it stands
                dm.host_clock = max(dm.host_clock, env.now)
                launch = self.cycles(self.chip.runtime.kernel_launch_us) if t.host_launch else 0.0
                self._launches[t.id] = (dm.host_clock, dm.host_clock + launch)
                dm.host_clock += launch
        for stream, ts in by_stream.items():
            env.process(self._stream(self.devices[stream.device.index], ts, records))
        env.run()
        unfinished = [t for t in tasks if not self._event(t).processed]
        if unfinished:
            self._raise_deadlock(unfinished)
        to_gbps = self.mhz * 1e6 / 1e9
        counters = {}
        for dm in self.devices:
            dm.host_clock = max(dm.host_clock, env.now)
            counters[dm.res_hbm] = dm.hbm_counter
            counters[dm.res_l2] = dm.l2_bw_counter
        for t, res, used in self.net.take_samples():
            c = counters.get(res)
            if c is not None:
                if c.times_us and c.times_us[-1] == self.us(t):
                    c.values[-1] = used * to_gbps
                else:
                    c.times_us.append(self.us(t))
                    c.values.append(used * to_gbps)
        records.sort(key=lambda r: (r.start_us, r.task_id))
        self.timeline.ops.extend(records)
        return records

    def _event(self, task) -> simpy.Event:
        ev = self._done.get(task.id)
        if ev is None:
            ev = self._done[task.id] = self.env.event()
        return ev

    def _raise_deadlock(self, unfinished) -> None:
        lines = []
        for (dev, core, pipe), (what, idx, op) in sorted(self._waiting.items(), key=str):
            lines.append(f"device {dev}, core {core}, pipe {LANE_NAMES[Pipe(pipe)]}: {what} at instruction #{idx} "
                         f"of {op}")
        names = ", ".join(sorted({t.name for t in unfinished}))
        raise DeadlockError("deadlock: these waits are never answered by a set:\n  " +
                            ("\n  ".join(lines) if lines else "(tasks waiting on each other: " + names + ")"))

    def _record(self, task, dm: DeviceModel) -> OpRecord:
        return OpRecord(
            name=task.name, device=dm.index, stream=task.stream.name, task_id=task.id,
            input_shapes=[list(m.shape) for m in task.inputs], input_dtypes=[m.dtype.name for m in task.inputs],
            input_formats=[m.format.name for m in task.inputs],
            output_shapes=[list(m.shape) for m in task.outputs], output_dtypes=[m.dtype.name for m in task.outputs],
            output_formats=[m.format.name for m in task.outputs],
            attrs=dict(task.attrs))

    def _stream(self, dm: DeviceModel, tasks: list, records: list):
        env = self.env
        for t in tasks:
            rec = self._record(t, dm)
            t.record = rec
            if t.kind == "event_wait":
                yield self._event(t.wait_for)
                rec.start_us = self.us(env.now)
                src = t.wait_for
                if src.stream is not t.stream and src.record is not None:
                    self.timeline.flows.append(Flow("event", src.stream.device.index, f"stream:{src.stream.name}",
                                                    src.record.start_us, dm.index, f"stream:{t.stream.name}",
                                                    rec.start_us))
            elif t.kind in ("event_record", "host"):
                rec.start_us = self.us(env.now)
                if t.kind == "host":
                    records.append(rec)
            elif t.kind == "prefetch":
                yield from self._launched(t, rec)
                start = env.now
                for other in dm.active.values():
                    other[0] = True
                dm.active[t.id] = [True]        # a kernel starting while the fill runs is not alone
                base, nbytes = t.byte_range
                try:
                    moved = yield from self.prefetch(dm, base, nbytes, PREFETCH_PIECE_BYTES)
                finally:
                    del dm.active[t.id]
                rec.start_us = self.us(start)
                rec.duration_us = self.us(env.now - start)
                rec.core_type = "CMO"
                rec.bytes_read = nbytes
                rec.hbm_bytes = int(moved)
                rec.l2_bytes = nbytes
                rec.bound = "hbm" if moved else "l2"
                self.timeline.intervals.append(Interval(f"stream:{t.stream.name}", dm.index, rec.start_us,
                                                        rec.end_us, t.name))
                records.append(rec)
            elif t.kind == "collective":
                yield from self._launched(t, rec)
                yield from self._collective(dm, t, rec)
                records.append(rec)
            elif t.kind == "kernel":
                ready = env.now
                yield from self._launched(t, rec)
                yield from self._kernel(dm, t, rec)
                rec.wait_us = max(0.0, rec.start_us - self.us(max(ready, self._launches[t.id][1])))
                records.append(rec)
            else:
                raise ValueError(f"unknown task kind {t.kind!r}")
            self._launches.pop(t.id, None)
            self._event(t).succeed()

    def _launched(self, task, rec: OpRecord):
        """Wait until the host has launched ``task`` (its launch interval was set in run())."""
        launch_start, launch_end = self._launches[task.id]
        if self.env.now < launch_end:
            yield self.env.timeout(launch_end - self.env.now)
        rec.launch_us = self.us(launch_end - launch_start)

    # ----- kernels -----
    def _kernel(self, dm: DeviceModel, task, rec: OpRecord):
        env = self.env
        plan = task.plan
        st = OpStats()
        t0 = env.now
        memo_key = None
        mine = [bool(dm.active)]            # disturbed from the start if something else runs
        for other in dm.active.values():
            other[0] = True
        dm.active[task.id] = mine
        try:
            if plan.core_type == "AI_CPU":
                from .aicpu import run_task     # typed work items -> time (engine/aicpu.py)
                yield from run_task(self, dm, plan, st)
            else:
                self.effective += plan.instruction_count()
                lead = None
                if self.memoize:
                    memo_key = (id(plan), self._fingerprint(dm, task, plan))
                    hit = self._memo.get(memo_key)
                    running = self._inflight.get(memo_key)
                    if hit is not None:
                        yield from self._replay(dm, task, plan, hit[1], st)
                        self.replayed += 1
                        memo_key = None
                    elif (running is not None and running["start"] == env.now and not mine[0]
                          and running["device"] is not dm):
                        # SPMD: the same kernel started at this instant on another idle device; follow it
                        yield from self._follow(dm, task, plan, running, st)
                        self.followed += 1
                        memo_key = None
                    elif running is None:
                        # the first device to run this kernel now leads it; another device that
                        # cannot follow (it started later, or is disturbed) runs it on its own and
                        # leaves the lead's entry alone
                        lead = self._inflight[memo_key] = {"start": env.now, "device": dm, "done": env.event()}
                if memo_key is not None or not self.memoize:
                    classes = self._start_classes(dm, plan)
                    # the kernel's block runs jump together (steady.py)
                    self._coords[task.id] = JumpCoordinator(plan.block_dim if classes is None else len(classes))
                    if classes is None:
                        blocks = [env.process(self._block(dm, task, [i], st)) for i in range(plan.block_dim)]
                    else:
                        blocks = [env.process(self._block(dm, task, members, st, cores)) for members, cores in classes]
                    yield simpy.AllOf(env, blocks)
                    del self._coords[task.id]
                    if lead is not None:
                        del self._inflight[memo_key]
                        lead["done"].succeed(st)
        finally:
            del dm.active[task.id]
        if st.first == float("inf"):
            st.first = st.last = t0
        if memo_key is not None and not mine[0]:
            self._memo[memo_key] = (plan, st)       # ran alone: its timing can be replayed
        rec.start_us = self.us(st.first)
        rec.duration_us = self.us(st.last - st.first)
        rec.core_type = plan.core_type
        rec.block_dim = plan.block_dim if plan.core_type != "AI_CPU" else 1
        rec.bytes_read = st.bytes_read
        rec.bytes_written = st.bytes_written
        rec.l2_hit_rate = (st.hit_lines / st.read_lines) if st.read_lines else None
        rec.l2_bytes = int(st.l2_bytes)
        rec.hbm_bytes = int(st.hbm_bytes)
        rec.flops = plan.flops
        rec.pipe_busy_us = {k: self.us(v) for k, v in st.busy.items()}
        rec.bound = self._bound(st, rec)
        rec.attrs["cores_used"] = len(st.cores)
        if plan.tiling is not None:
            rec.attrs["tiling"] = str(plan.tiling)
        self.timeline.intervals.append(Interval(f"stream:{task.stream.name}", dm.index, rec.start_us,
                                                rec.end_us, task.name))
        if st.read_lines:
            dm.l2_counter.times_us.append(rec.end_us)
            dm.l2_counter.values.append(rec.l2_hit_rate)

    # ----- memoisation: a kernel simulated once is replayed when it meets the same conditions -----
    @staticmethod
    def _ranges(plan) -> dict:
        """Per GM tensor of a plan: the byte range its accesses span, and whether it is read and
        written. Computed once per plan."""
        r = getattr(plan, "_gm_ranges", None)
        if r is None:
            r = {}
            for blk in plan.blocks:
                for prog in blk:
                    for acc in prog.accesses:
                        lo = acc.offset
                        hi = acc.offset + (acc.rows - 1) * acc.stride + acc.row_bytes
                        e = r.get(acc.tensor)
                        if e is None:
                            r[acc.tensor] = [lo, hi, not acc.write, acc.write]
                        else:
                            e[0], e[1] = min(e[0], lo), max(e[1], hi)
                            e[2] |= not acc.write
                            e[3] |= acc.write
            plan._gm_ranges = r
        return r

    def _lines_of(self, dm: DeviceModel, task, name: str, lo: int, hi: int):
        """The run of L2 lines [first, end) bytes [lo, hi) of tensor ``name`` sit in, or None."""
        base = task.addresses.get(name)
        return None if base is None else dm.l2.run(base + lo, hi - lo)

    def _fingerprint(self, dm: DeviceModel, task, plan) -> tuple:
        """The L2 residency of each tensor the kernel reads, in tenths: what decides its hits."""
        fp = []
        for name, (lo, hi, reads, _) in sorted(self._ranges(plan).items()):
            if reads:
                run = self._lines_of(dm, task, name, lo, hi)
                fp.append(-1 if run is None else round(dm.l2.resident_fraction_range(*run) * 10))
        return tuple(fp)

    def _follow(self, dm: DeviceModel, task, plan, running: dict, st: OpStats):
        """Take the timing of the identical kernel another device is simulating from this same
        instant (SPMD ranks in lockstep): hold this device's cores until it is done, then leave L2
        as the kernel would."""
        cores = yield from self._hold_cores(dm, plan)
        lead: OpStats = yield running["done"]
        if self.env.now < lead.last:
            yield self.env.timeout(lead.last - self.env.now)
        st.first, st.last = lead.first, max(lead.last, self.env.now)
        self._copy_stats(lead, st)
        self._touch(dm, task, plan)
        for c in dict.fromkeys(cores):
            self._release(dm, plan, [c])

    def _copy_stats(self, src: OpStats, st: OpStats) -> None:
        for k in ("bytes_read", "bytes_written", "read_lines", "hit_lines", "l2_bytes", "hbm_bytes"):
            setattr(st, k, getattr(src, k))
        st.busy.update(src.busy)
        st.limited = list(src.limited)
        st.cores = set(src.cores)

    def _touch(self, dm: DeviceModel, task, plan) -> None:
        """Leave L2 as the kernel would: its tensors' lines used (written ones dirty)."""
        for name, (lo, hi, reads, writes) in self._ranges(plan).items():
            run = self._lines_of(dm, task, name, lo, hi)
            if run is not None:
                dm.l2.access_range(*run, write=writes)
        self._write_back(dm)

    def _replay(self, dm: DeviceModel, task, plan, memo: OpStats, st: OpStats):
        """Run a memoised kernel as one fluid flow on L2/HBM at its recorded rate (slower if other
        work contends), holding the cores it used; then leave L2 as the kernel would."""
        env = self.env
        cores = yield from self._hold_cores(dm, plan)
        yield env.timeout(self.chip.runtime.block_dispatch_cycles)
        st.first = env.now
        duration = memo.last - memo.first
        if memo.l2_bytes > 0 and duration > 0:
            yield dm.net.start(memo.l2_bytes, memo.l2_bytes / duration,
                               ((dm.res_l2, 1.0), (dm.res_hbm, memo.hbm_bytes / memo.l2_bytes)))
        if env.now < st.first + duration:
            yield env.timeout(st.first + duration - env.now)
        st.last = env.now
        self._touch(dm, task, plan)
        self._copy_stats(memo, st)
        seen = set()
        for c in cores:
            if c not in seen:
                seen.add(c)
                self._release(dm, plan, [c])

    def _bound(self, st: OpStats, rec: OpRecord) -> str:
        if rec.launch_us > rec.duration_us:
            return "launch"
        if not st.busy:
            return ""
        lane, _ = max(st.busy.items(), key=lambda kv: kv[1])
        if lane in ("MTE2", "MTE3", "FIXP"):
            l2, hbm, own = st.limited
            if hbm >= max(l2, own) and hbm > 0:
                return "hbm"
            if l2 >= own and l2 > 0:
                return "l2"
        return {"CUBE": "cube", "VECTOR": "vector", "MTE1": "mte1", "MTE2": "mte2", "MTE3": "mte3",
                "FIXP": "fixpipe", "SCALAR": "scalar", "AICPU": "aicpu"}.get(lane, lane.lower())

    def _block_pools(self, dm: DeviceModel, plan) -> list:
        """The core pools one block of ``plan`` takes a core from, in order: AIC and AIV kernels one
        (vector work on the AI Cores of a coupled chip without AIVs), MIX 1 AIC + ``mix_ratio`` AIV
        (on a coupled chip the AI Core alone: its own vector unit serves)."""
        c = self.chip.cores
        if plan.core_type == "AIC":
            return [dm.aic]
        if plan.core_type == "AIV":
            return [dm.aic if c.coupled and not c.aiv else dm.aiv]
        return [dm.aic] if c.coupled else [dm.aic] + [dm.aiv] * plan.mix_ratio

    def _block_cores(self, plan, taken: list) -> list:
        """A block's cores, one per program, from the cores ``taken`` from its pools."""
        if plan.core_type == "MIX" and self.chip.cores.coupled:
            return taken * (1 + plan.mix_ratio)
        return taken

    def _acquire(self, dm: DeviceModel, plan):
        taken = []
        for pool in self._block_pools(dm, plan):
            taken.append((yield pool.get()))
        return self._block_cores(plan, taken)

    def _release(self, dm: DeviceModel, plan, cores) -> None:
        seen = set()
        for c in cores:
            if c in seen:
                continue
            seen.add(c)
            pool = dm.aicpu if c.startswith("AICPU") else dm.aiv if c.startswith("AIV") else dm.aic
            if pool.get_queue:
                pool.put(c)             # a kernel waits for a core: the put hands it over
            else:
                pool.items.append(c)    # nobody waits: back in the pool at once (no event)

    # ----- block classes -----
    @staticmethod
    def block_classes(plan) -> list[list[int]]:
        """The plan's blocks grouped by :meth:`Program.timing_key`: blocks whose programs differ only
        in where their GM accesses point. Computed once per plan."""
        c = getattr(plan, "_block_classes", None)
        if c is None:
            groups: dict = {}
            for bi, blk in enumerate(plan.blocks):
                groups.setdefault(tuple(p.timing_key() for p in blk), []).append(bi)
            c = plan._block_classes = list(groups.values())
        return c

    def _start_classes(self, dm: DeviceModel, plan):
        """[(members, their cores)] when every block of ``plan`` can start at this instant on a free
        core (then a class's members run in lockstep and one simulation serves them all); None
        otherwise (more blocks than free cores, another kernel waiting for cores, no class with more
        than one member): each block is simulated on its own."""
        if not self.accelerate:
            return None
        classes = self.block_classes(plan)
        if len(classes) == plan.block_dim:
            return None
        cores = self._take_now(dm, plan)
        if cores is None:
            return None
        return [(members, [cores[m] for m in members]) for members in classes]

    def _take_now(self, dm: DeviceModel, plan):
        """The cores of every block of ``plan`` (one list per block, as :meth:`_acquire` gives them),
        taken at this instant if they are all free and no other kernel waits for cores; else None."""
        pools = self._block_pools(dm, plan)
        need = collections.Counter(id(p) for p in pools)
        if any(p.get_queue or len(p.items) < need[id(p)] * plan.block_dim for p in pools):
            return None
        # the cores _acquire would give, taken now (no other process between)
        return [self._block_cores(plan, [p.items.pop(0) for p in pools]) for _ in range(plan.block_dim)]

    def _hold_cores(self, dm: DeviceModel, plan):
        """Every block's cores (a generator): at once when they are free, else one by one."""
        now = self._take_now(dm, plan)
        if now is not None:
            return [c for cores in now for c in cores]
        cores = []
        for _ in range(plan.block_dim):
            cores.extend((yield from self._acquire(dm, plan)))
        return cores

    def _block(self, dm: DeviceModel, task, members: list[int], st: OpStats, cores_of=None):
        """Blocks ``members`` of the task's plan: one block, or a block class whose members started
        together on ``cores_of`` (one core list each): simulated once, each GM transfer a flow
        standing for every member, L2 touched by every member's lines, busy time and bytes counted
        per member, and the pipe trace drawn on every member's cores."""
        env = self.env
        plan = task.plan
        if cores_of is None:
            cores_of = [(yield from self._acquire(dm, plan))]
        yield env.timeout(self.chip.runtime.block_dispatch_cycles)
        start = env.now
        st.first = min(st.first, start)
        xflags = _Flags()           # cross-core flags: shared by the block's cores
        procs = []
        rep = plan.blocks[members[0]]
        n_aiv = sum(1 for p in rep if p.core == "AIV")
        coord = self._coords[task.id]
        loops = LoopRun(self, dm, task, rep, members, st, coord) if self.accelerate and rep[0].loops else None
        run_token = loops if loops is not None else object()
        coord.join(run_token)
        disturbed = dm.active.get(task.id, [True])
        coupled = self.chip.cores.coupled
        for pi, prog in enumerate(rep):
            flags = _Flags()        # set_flag/wait_flag join the pipes of one core only
            labels = []
            for cores in cores_of:
                st.cores.add(cores[pi])
                labels.append(cores[pi] if not coupled or prog.core == "AIC" else f"{cores[pi]}.vec{pi}")
            accesses = [plan.blocks[m][pi].accesses for m in members] if len(members) > 1 else None
            scale = self._scale[prog.core]
            per_pipe: dict[int, list[int]] = collections.defaultdict(list)
            for i, p in enumerate(prog.pipe):
                per_pipe[p].append(i)
            for pipe, idxs in per_pipe.items():
                procs.append(env.process(self._pipe(dm, task, prog, pipe, idxs, scale, labels, flags, xflags,
                                                    pi, n_aiv, st, accesses, loops, disturbed)))
        yield simpy.AllOf(env, procs)
        coord.leave(run_token)
        end = max([p.value for p in procs] + [env.now])
        if end > env.now:
            yield env.timeout(end - env.now)
        st.last = max(st.last, env.now)
        for cores in cores_of:
            self._release(dm, plan, cores)
            if self.trace == "core":
                self.timeline.intervals.append(Interval(str(cores[0]), dm.index, self.us(start), self.us(end),
                                                        task.name))

    def _pipe(self, dm: DeviceModel, task, prog, pipe: int, idxs: list[int], scale: float, labels: list,
              flags: _Flags, xflags: _Flags, prog_index: int, n_aiv: int, st: OpStats, accesses=None,
              loops=None, disturbed=None):
        """One pipe's queue, for one block or a block class (``labels``: each member's core;
        ``accesses``: each member's GM accesses, None for one block; ``loops``: the run's
        :class:`~.steady.LoopRun`, which may move the pipe over converged iterations). Flags are
        kept in unshifted time (the pipe's clock less what jumps added). Returns the time its last
        instruction completes."""
        env = self.env
        kinds, cycles, lats, args, names = prog.kind, prog.cycles, prog.latency, prog.arg, prog.name
        t = env.now          # the pipe's local clock: when it can issue its next instruction
        done = t             # when everything issued so far has completed
        lane = LANE_NAMES[Pipe(pipe)]
        record = self.trace == "pipe"
        intervals = self.timeline.intervals
        dev = dm.index
        label = labels[0]
        lane_names = [f"{lb}.{lane}" for lb in labels]
        members = len(labels)
        busy = 0.0
        shift = 0.0          # cycles added by loop jumps
        marks = loops.marks(prog_index, pipe, idxs) if loops is not None else ()
        mi, n_marks = 0, len(marks)
        next_mark = marks[0][0] if marks else -1
        who = (prog_index, pipe)
        q, n = 0, len(idxs)
        ran = 0
        while q < n:
            if q == next_mark:
                _, lid, it = marks[mi]
                mi += 1
                jump = loops.at(lid, who, it, t, busy, disturbed[0])
                if jump is not None:        # converged: on to iteration jump[0], jump[1] cycles later
                    target, dt, extra = jump
                    while mi < n_marks and not (marks[mi][1] == lid and marks[mi][2] == target):
                        mi += 1
                    q = marks[mi][0]
                    t += dt
                    done += dt
                    shift += dt
                    busy += extra
                next_mark = marks[mi][0] if mi < n_marks else -1
                continue
            i = idxs[q]
            q += 1
            ran += 1
            k = kinds[i]
            if k == COMPUTE:
                c = cycles[i] * scale
                s = t
                t += c
                e = t + lats[i] * scale
                if e > done:
                    done = e
                busy += c
                if record:
                    for ln in lane_names:
                        intervals.append(Interval(ln, dev, s / self.mhz, t / self.mhz, prog.names[names[i]]))
            elif k == GM:
                if t > env.now:
                    yield env.timeout(t - env.now)
                s = env.now
                acc = prog.accesses[args[i]]
                accs = (acc,) if accesses is None else [a[args[i]] for a in accesses]
                lat = yield from self._transfer(dm, task, accs, scale, st)
                t = env.now
                e = t + lat + lats[i] * scale
                if e > done:
                    done = e
                busy += t - s
                if record:
                    for ln in lane_names:
                        intervals.append(Interval(ln, dev, s / self.mhz, t / self.mhz, prog.names[names[i]],
                                                  {"bytes": acc.payload, "tensor": acc.tensor}))
            elif k == SET:
                flags.set(args[i], done - shift)
            elif k == WAIT:
                key = args[i]
                v = flags.take(key)
                if v is None:
                    ev = env.event()
                    flags.waiters[key] = ev
                    wkey = (dev, label, pipe)
                    self._waiting[wkey] = (f"wait_flag {LANE_NAMES[Pipe(key[0])]}->{LANE_NAMES[Pipe(key[1])]} "
                                           f"event id {key[2]}", i, task.name)
                    v = yield ev
                    del self._waiting[wkey]
                v += shift
                if v > t:
                    t = v
            elif k == BARRIER:
                if done > t:
                    t = done
            elif k == XSET:
                src_core, fid = args[i]
                if src_core == "AIC":      # to every AIV of the block
                    for a in range(n_aiv):
                        xflags.set(("AIC", fid, a + 1), done - shift)
                else:                      # one AIV's signal to the AIC
                    xflags.set(("AIV", fid, prog_index), done - shift)
            elif k == XWAIT:
                from_core, fid = args[i]
                keys = [("AIC", fid, prog_index)] if from_core == "AIC" else \
                    [("AIV", fid, a + 1) for a in range(n_aiv)]
                for key in keys:           # an AIC waits for every AIV of its block
                    v = xflags.take(key)
                    if v is None:
                        ev = env.event()
                        xflags.waiters[key] = ev
                        wkey = (dev, label, pipe)
                        self._waiting[wkey] = (f"cross_wait from {from_core} flag id {fid}", i, task.name)
                        v = yield ev
                        del self._waiting[wkey]
                    v += shift
                    if v > t:
                        t = v
                    if record:
                        for lb, ln in zip(labels, lane_names):
                            self.timeline.flows.append(Flow(f"cross-core flag {fid}", dev, f"{from_core}->{lb}",
                                                            v / self.mhz, dev, ln, t / self.mhz))
        st.busy[lane] += busy * members
        self.instructions += ran
        return max(t, done)

    def _transfer(self, dm: DeviceModel, task, accs, scale: float, st: OpStats):
        """Run one GM transfer through L2/HBM -- ``accs``: the access of each member of a block class
        (one for a single block), the same but for offsets. L2 sees every member's lines; members
        that filled the same number of lines from HBM are one flow standing for them all (the flow
        a lone block's transfer would be, ``count`` times), and the class, in lockstep, goes on
        when the slowest has finished. Returns the latency after the last byte."""
        acc = accs[0]
        base = task.addresses.get(acc.tensor)
        if base is None:
            raise KeyError(f"{task.name}: the plan addresses tensor {acc.tensor!r}, which the task does not have "
                           f"(it has {', '.join(task.addresses)})")
        l2 = dm.l2
        members = len(accs)
        per_payload = acc.bus_bytes / acc.payload
        if members > 1:
            touched, hits = l2.access_members(base, [a.offset for a in accs], acc.rows, acc.row_bytes, acc.stride,
                                              write=acc.write)
        else:
            idx = l2.lines(base, acc.offset, acc.rows, acc.row_bytes, acc.stride)
            touched, hits = (len(idx),), (l2.access(idx, write=acc.write),)
        missed = None
        merged = []          # fills another transfer started at this instant for lines this one reads
        if acc.write:        # write-back: HBM sees the lines when they are evicted
            by_fill = {0: members}
            lat = self._lat_write
            st.bytes_written += acc.payload * members
        else:
            merged = self._merged_fills(dm, l2.last_lines())
            by_fill: dict[int, int] = {}      # lines filled from HBM -> members
            for n, h in zip(touched, hits):
                miss = int(n - h)
                by_fill[miss] = by_fill.get(miss, 0) + 1
                st.read_lines += int(n)
                st.hit_lines += int(h)
            # a miss fills its whole line from HBM, whatever part of it the access wanted; a class
            # waits for HBM if any member missed, and so does a read of lines another transfer
            # began to fill at this instant (the L2 merges the requests: the data is not there yet)
            lat = self._lat_read + (self._lat_miss if max(by_fill) or merged else 0.0)
            st.bytes_read += acc.payload * members
            st.hbm_bytes += sum(miss * count for miss, count in by_fill.items()) * l2.line
            missed = l2.last_missed() if max(by_fill) else None
        st.l2_bytes += acc.bus_bytes * members
        st.hbm_bytes += self._write_back(dm, members)
        cap = acc.payload / (acc.path_cycles * scale)
        net, res_l2, res_hbm, limited = dm.net, dm.res_l2, dm.res_hbm, st.limited
        flows = [net.start(acc.payload, cap, ((res_l2, per_payload), (res_hbm, miss * l2.line / acc.payload)),
                           count=count) for miss, count in by_fill.items()]
        if not acc.write and missed is not None:
            dm.filling[1].append((missed, flows[list(by_fill).index(max(by_fill))]))
        for ev, count in zip(flows, by_fill.values()):
            flow = yield ev
            if flow is not None:
                lim = flow.limited
                limited[0] += lim.get(res_l2, 0.0) * count
                limited[1] += lim.get(res_hbm, 0.0) * count
                limited[2] += lim.get(-1, 0.0) * count
        for ev in merged:
            if not ev.processed:
                yield ev
        return lat

    def _merged_fills(self, dm: DeviceModel, lines: np.ndarray) -> list:
        """The fill flows started at this instant by other reads for any of ``lines``."""
        now = self.env.now
        if dm.filling[0] != now:
            dm.filling = (now, [])
            return []
        out = []
        if len(lines) == 0:
            return out
        lo, hi = int(lines.min()), int(lines.max())
        for filled, ev in dm.filling[1]:
            if ev.processed or filled[-1] < lo or filled[0] > hi:
                continue
            pos = np.minimum(np.searchsorted(filled, lines), len(filled) - 1)
            if (filled[pos] == lines).any():
                out.append(ev)
        return out

    # ----- collectives: the communication engine of each device, over the topology's links -----
    def _link(self, name: str) -> int:
        r = self._links.get(name)
        if r is None:
            res = self.topology.resources[name]
            r = self._links[name] = self.net.add_resource(name, res.bandwidth_GBps * 1e3 / self.mhz)
        return r

    def _collective(self, dm: DeviceModel, task, rec: OpRecord):
        """A rank's part of a collective: wait until every rank has reached it, then run the
        schedule (one process for all ranks) and finish together."""
        call = task.collective
        state = self._collectives.get(id(call))
        if state is None:
            state = self._collectives[id(call)] = {"arrived": set(), "done": self.env.event(), "call": call,
                                                   "start": None}
        state["arrived"].add(dm.index)
        for other in dm.active.values():
            other[0] = True
        dm.active[task.id] = [True]            # a kernel starting while it runs is not alone
        if len(state["arrived"]) == len(call.ranks):
            state["start"] = self.env.now
            self.env.process(self._run_schedule(state))
        yield state["done"]
        del dm.active[task.id]
        del_after = all(i in state.setdefault("left", set()) or i == dm.index for i in call.ranks)
        state["left"].add(dm.index)
        rec.start_us = self.us(state["start"])
        rec.duration_us = self.us(self.env.now - state["start"])
        rec.core_type = "HCCL"
        rec.block_dim = 0
        sent = sum(t.nbytes for step in call.steps for t in step if t.src == dm.index)
        got = sum(t.nbytes for step in call.steps for t in step if t.dst == dm.index)
        rec.bytes_read, rec.bytes_written = sent, got
        rec.hbm_bytes = sent + got + sum(t.nbytes for step in call.steps for t in step
                                         if t.dst == dm.index and t.reduce)
        rec.bound = state.get("bound", "latency")
        rec.attrs.update({"algorithm": call.algorithm, "ranks": len(call.ranks), "message_bytes": call.nbytes})
        self.timeline.intervals.append(Interval("Communication", dm.index, rec.start_us, rec.end_us,
                                                f"{task.name} ({call.algorithm})"))
        if del_after:
            del self._collectives[id(call)]

    def _run_schedule(self, state):
        env = self.env
        call = state["call"]
        limited = collections.defaultdict(float)
        for step in call.steps:
            procs = [env.process(self._send(t, limited)) for t in step]
            if procs:
                yield simpy.AllOf(env, procs)
        if limited:
            lim = max(limited.items(), key=lambda kv: kv[1])[0]
            state["bound"] = "link" if lim == "link" else lim
        state["done"].succeed()

    def _send(self, t, limited):
        """One transfer: the route's latency, then the bytes through sender HBM, the links and
        receiver HBM (read again there when the receiver reduces)."""
        names, lat_us = self.topology.route(t.src, t.dst)
        if lat_us:
            yield self.env.timeout(self.cycles(lat_us))
        if t.nbytes <= 0:
            return
        src, dst = self.devices[t.src], self.devices[t.dst]
        demand = [(src.res_hbm, 1.0), (dst.res_hbm, 2.0 if t.reduce else 1.0)] + [(self._link(n), 1.0) for n in names]
        flow = yield self.net.start(t.nbytes, float("inf"), demand)
        if flow is not None:
            for r, dt in flow.limited.items():
                key = "hbm" if r in (src.res_hbm, dst.res_hbm) else "link" if r >= 0 else "dma"
                limited[key] += dt

    def _write_back(self, dm: DeviceModel, members: int = 1) -> int:
        """Start the HBM writes of dirty lines L2 just evicted (nobody waits for them, but they
        take HBM bandwidth from everyone); returns their bytes. After a block class's transfer:
        each member's own write-back, as its transfer alone would have started it."""
        if members == 1:
            wb = dm.l2.take_writeback()
            if wb:
                dm.net.start(wb, float("inf"), ((dm.res_hbm, 1.0),))
            return wb
        sizes: dict[int, int] = {}
        for b in dm.l2.take_member_writebacks():
            if b:
                sizes[b] = sizes.get(b, 0) + 1
        for b, count in sizes.items():
            dm.net.start(b, float("inf"), ((dm.res_hbm, 1.0),), count=count)
        return sum(b * count for b, count in sizes.items())

    # ----- prefetch into L2 (npu_prefetch) -----
    def prefetch(self, dm: DeviceModel, base: int, nbytes: int, piece: int):
        """Bring [base, base + nbytes) into L2 from HBM piece by piece (a generator); returns the
        bytes that came from HBM. Lines already in L2 cost nothing but a refresh of their age."""
        off = 0
        moved = 0.0
        while off < nbytes:
            n = min(piece, nbytes - off)
            run = dm.l2.run(base + off, n)
            miss = 1.0 - dm.l2.resident_fraction_range(*run)
            if miss > 0:
                yield dm.net.start(n * miss, float("inf"), ((dm.res_l2, 1.0), (dm.res_hbm, 1.0)))
                moved += n * miss
            dm.l2.access_range(*run)
            moved += self._write_back(dm)
            off += n
        return moved
