"""The Simulator: a world of simulated NPUs that torch_npu-style calls run on.

What is modelled: the host's view of one or more Ascend devices (one per rank) -- which device and
stream are current, what work is queued where, and, when asked, the timing of that work. Calls
through ``ascend_sim.torch_npu`` compute their numbers at once (unless ``mode="meta"``) and queue a
task; ``synchronize()`` hands every queued task to the engine, which simulates it; ``report()``
returns the per-op rows.

Usage::

    with ascend_sim.Simulator(chip="Ascend910B2") as sim:
        y = torch_npu.npu_format_cast(x, 29)
        print(sim.report().ops)

Outside any ``with``, a default Simulator on Ascend910B2 serves. The current simulator and the
current device are context variables, so ranks run by ``spmd`` each see their own device.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable

from ..hw import ChipSpec, get_chip
from ..timeline import OpRecord, Timeline
from .device import Device
from .report import Report
from .stream import Event, Stream, Task
from .world import World

MODES = ("full", "meta")

_current_sim: contextvars.ContextVar["Simulator | None"] = contextvars.ContextVar("ascend_sim_current", default=None)
_scope: contextvars.ContextVar[tuple] = contextvars.ContextVar("ascend_sim_scope", default=())
_default_sim: "Simulator | None" = None


def current_simulator() -> "Simulator":
    """The simulator that ``ascend_sim.torch_npu`` calls run on now."""
    global _default_sim
    sim = _current_sim.get()
    if sim is not None:
        return sim
    if _default_sim is None:
        _default_sim = Simulator()
    return _default_sim


def reset_default_simulator() -> None:
    """Drop the default simulator (its queued work and memory)."""
    global _default_sim
    _default_sim = None


class Simulator:
    """One or more simulated devices of one chip type, and their queued work.

    Args:
        chip: a preset name (see ``ascend_sim.hw.list_chips()``), a ChipSpec or a TOML path.
        world_size: number of ranks (devices).
        mode: "full" computes numbers; "meta" keeps shapes, dtypes, formats and time only.
        trace: timeline detail kept: "pipe" (every instruction on every pipe), "core" (block spans
            per core) or "ops" (op spans only: the fastest, for big models).
        memoize: replay a kernel the engine has already simulated when it meets the same plan and
            the same L2 residency of its inputs (as one fluid flow that still shares HBM). Default:
            on unless trace="pipe" (a replay has no instructions to show).
        accelerate: time what repeats once (block classes: blocks identical up to their GM offsets
            that start together run as one; see engine.py). False simulates every block on its own:
            the reference the accelerated paths are held to (within 1%).
        topology: the links between the ranks' devices: a ``Topology`` or a description dict
            (``ascend_sim.hw.topology.from_description``); default: the chip's usual machine (A2
            servers of 8 with HCCS mesh and RoCE between them, an A3 supernode, PCIe cards).
    """

    def __init__(self, chip: "str | ChipSpec" = "Ascend910B2", world_size: int = 1, mode: str = "full",
                 trace: str = "pipe", memoize: bool | None = None, topology=None, accelerate: bool = True):
        self.chip = get_chip(chip)
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"Simulator: world_size must be a positive integer, got {world_size!r}")
        if mode not in MODES:
            raise ValueError(f"Simulator: mode must be one of {MODES}, got {mode!r}")
        if trace not in ("ops", "core", "pipe"):
            raise ValueError(f"Simulator: trace must be 'ops', 'core' or 'pipe', got {trace!r}")
        self.mode = mode
        self.trace = trace
        self.memoize = memoize
        self.accelerate = bool(accelerate)
        self.world_size = world_size
        self.devices = [Device(self, r, self.chip) for r in range(world_size)]
        from ..hw.topology import Topology, default_topology, from_description
        if topology is None:
            topology = default_topology(self.chip, world_size)
        elif isinstance(topology, dict):
            topology = from_description(topology)
        if not isinstance(topology, Topology) or topology.n_devices != world_size:
            raise ValueError(f"Simulator: topology must describe {world_size} devices")
        self.topology = topology
        self.world = World(world_size)
        self._dev_var: contextvars.ContextVar[int] = contextvars.ContextVar(f"ascend_sim_dev_{id(self)}", default=0)
        self.deterministic = False
        self._records: list[OpRecord] = []
        self._timeline = Timeline(chip=self.chip.name)
        self._tokens: list[contextvars.Token] = []
        self._engine = None
        self._tilings: dict[str, Any] = {}          # op name -> tiling, or fn(default tiling) -> tiling
        self._assumptions: dict[str, dict] = {}     # op name -> {assumption: value} for meta mode

    # ----- context -----
    def __enter__(self) -> "Simulator":
        self._tokens.append(_current_sim.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _current_sim.reset(self._tokens.pop())

    @property
    def is_meta(self) -> bool:
        return self.mode == "meta"

    @contextlib.contextmanager
    def device(self, rank: int):
        """Make ``rank``'s device current inside the block."""
        dev = self.get_device(rank)
        token = self._dev_var.set(dev.index)
        try:
            yield dev
        finally:
            self._dev_var.reset(token)

    def get_device(self, rank: int) -> Device:
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < self.world_size:
            raise ValueError(f"device: rank must be an integer in [0, {self.world_size}), got {rank!r}")
        return self.devices[rank]

    @property
    def current_device(self) -> Device:
        return self.devices[self._dev_var.get()]

    @property
    def current_stream(self) -> Stream:
        return self.current_device.current_stream

    def new_stream(self, name: str | None = None, priority: int = 0, device: int | None = None) -> Stream:
        dev = self.current_device if device is None else self.get_device(device)
        return dev.new_stream(name, priority)

    def stream(self, stream: Stream):
        """``with sim.stream(s):`` makes ``s`` the current stream of its device."""
        return stream.device.use_stream(stream)

    Event = Event

    @contextlib.contextmanager
    def scope(self, name: str):
        """Label the ops queued inside (nested scopes join with "/"): report rows carry it in
        ``attrs["scope"]`` -- which of seven npu_linear calls is the q projection."""
        token = _scope.set(_scope.get() + (str(name),))
        try:
            yield
        finally:
            _scope.reset(token)

    @staticmethod
    def current_scope() -> str:
        return "/".join(_scope.get())

    # ----- studies: tilings and meta-mode assumptions -----
    def set_tiling(self, op_name: str, tiling: Any) -> None:
        """Plan every later call of ``op_name`` with ``tiling`` (the op's tiling type, e.g.
        ``MatmulTiling(base_m=128, ...)``), or with ``tiling(default)`` when it is a function of
        the tiling the op would choose (``lambda t: dataclasses.replace(t, q_tile=64)``); None
        goes back to the op's own choice. Held by the simulator, read by every rank."""
        from .. import ops
        if ops.get_op(op_name) is None:
            raise KeyError(f"set_tiling: {op_name!r} is not an op of ascend-sim")
        if tiling is None:
            self._tilings.pop(op_name, None)
        else:
            self._tilings[op_name] = tiling

    @contextlib.contextmanager
    def tiling(self, op_name: str, tiling: Any):
        """``with sim.tiling("npu_fusion_attention", FlashAttentionTiling(...)):`` -- calls of that
        op inside the block are planned with this tiling (see :meth:`set_tiling`)."""
        before = self._tilings.get(op_name)
        self.set_tiling(op_name, tiling)
        try:
            yield
        finally:
            self.set_tiling(op_name, before)

    def tiling_override(self, op_name: str) -> Any:
        return self._tilings.get(op_name)

    def assume(self, op_name: str, **values) -> None:
        """Meta mode: plan ``op_name``'s value-dependent work from these assumptions (e.g.
        ``sim.assume("npu_moe_init_routing", routing="uniform")``); the op says which it accepts
        and report rows show what was assumed. Full mode plans from the real values."""
        from .. import ops
        op = ops.get_op(op_name)
        if op is None:
            raise KeyError(f"assume: {op_name!r} is not an op of ascend-sim")
        op.check_assumptions(values)
        self._assumptions.setdefault(op_name, {}).update(values)

    def assumptions(self, op_name: str) -> dict:
        """The meta-mode assumptions ``op_name`` plans with: its defaults, then the user's."""
        from .. import ops
        op = ops.get_op(op_name)
        return {**dict(getattr(op, "assumptions", {})), **self._assumptions.get(op_name, {})}

    # ----- ranks -----
    def spmd(self, fn: Callable[[int], Any]) -> list[Any]:
        """Run ``fn(rank)`` for every rank at once (a thread per rank, each with its device
        current); returns the results in rank order. Collectives inside rendezvous across ranks;
        ranks that disagree raise CollectiveMismatchError, never hang. ``sim.synchronize()`` and
        ``sim.report()`` inside ``fn`` are barriers of all ranks."""
        if self.world.in_spmd:
            raise RuntimeError("sim.spmd cannot be nested")

        @contextlib.contextmanager
        def rank_context(rank: int):
            # each rank runs on this simulator (current even when spmd is called outside `with`);
            # the token stays in the rank's own thread, not in the simulator's `with` stack
            token = _current_sim.set(self)
            try:
                with self.device(rank):
                    yield
            finally:
                _current_sim.reset(token)

        return self.world.run(fn, rank_context)

    # ----- work -----
    def submit(self, task: Task) -> Task:
        scope = self.current_scope()
        if scope and task.kind not in ("event_record", "event_wait"):
            task.attrs.setdefault("scope", scope)
        return task.stream.device.submit(task)

    def synchronize(self) -> None:
        """Simulate every queued task on every device (inside spmd: a barrier of all ranks)."""
        if self.world.in_spmd:
            group = self.world.group(None)
            self.world.meet(group, self.current_device.index, ("synchronize",), None,
                            lambda _p: (self._synchronize_now() or {r: None for r in group.ranks}, None))
            return
        self._synchronize_now()

    def _synchronize_now(self) -> None:
        pending = [t for d in self.devices for s in d.streams for t in s.pending()]
        if not pending:
            return
        records = self._run(pending)
        self._records.extend(records)
        self._timeline = self.engine.timeline
        for t in pending:
            t.release()         # what ran is kept as its record; plans and scratch memory are let go
        for d in self.devices:
            for s in d.streams:
                s.completed = s.queued
            d.after_run()

    @property
    def engine(self):
        """The timing engine (made on first use, kept for the simulator's life: time runs on)."""
        if self._engine is None:
            from ..engine import Engine
            self._engine = Engine(self.chip, self.world_size, trace=self.trace, memoize=self.memoize,
                                  topology=self.topology, accelerate=self.accelerate)
            self._timeline = self._engine.timeline
        return self._engine

    def engine_stats(self) -> dict[str, int]:
        """How the engine timed what it ran: instructions simulated one by one, the instructions
        the simulated kernels hold in all (replayed, followed, block classes and loop
        extrapolation count fully here), kernels replayed and followed."""
        e = self.engine
        return {"instructions": e.instructions, "effective_instructions": e.effective,
                "extrapolated_instructions": e.extrapolated, "replayed": e.replayed, "followed": e.followed}

    def _run(self, tasks: list[Task]) -> list[OpRecord]:
        return self.engine.run(tasks)

    @property
    def simulated_ops(self) -> list[OpRecord]:
        """The report rows simulated so far (no synchronize: safe on one rank inside spmd)."""
        return list(self._records)

    def report(self) -> Report:
        """Synchronize, then return every op simulated so far."""
        self.synchronize()
        return Report(list(self._records), self.chip, self._timeline)

    # ----- runtime state -----
    def memory_stats(self, device: int | None = None) -> dict[str, int]:
        dev = self.current_device if device is None else self.get_device(device)
        return dev.memory_stats()

    def empty_cache(self) -> None:
        for d in self.devices:
            d.allocator.empty_cache()

    def __repr__(self) -> str:
        return f"Simulator(chip={self.chip.name!r}, world_size={self.world_size}, mode={self.mode!r})"
