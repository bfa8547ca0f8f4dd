"""ChipSpec: every number the chip model uses, each with its source.

What is modelled: one Ascend device (die) as the timing model sees it -- AI Cores by type, clocks,
cube and vector throughput, the on-core buffers and the data paths between them, L2, HBM, kernel
launch and the links to other devices. Parameters live here and nowhere else (gem5's split of
parameters from the models that use them): isa/ turns them into instruction costs, the engine into
resources. No hardware constant may appear anywhere else in the code.

Invariants kept by :meth:`ChipSpec.validate` (run on construction):

* every count is a positive integer (vector-only cores may be 0 only on coupled chips, where each
  AI Core carries its own vector unit), every size, rate and clock is positive, latencies >= 0;
* every leaf number has an entry in ``sources`` (its dotted path -> where it comes from);
* buffer alignments divide buffer sizes.

A what-if chip is a copy with fields replaced (:meth:`ChipSpec.derive`), or a TOML file
(:mod:`ascend_sim.hw.toml_io`).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

FAMILIES = ("A2", "A3", "910", "310P", "950")


@dataclass(frozen=True)
class Path:
    """One data path of an AI Core: a DMA/MTE or FIXPIPE route between two storages."""

    bytes_per_cycle: float
    latency_cycles: float


@dataclass(frozen=True)
class Link:
    """One kind of device-to-device link (per NPU)."""

    bandwidth_GBps: float  # per link, per direction
    latency_us: float
    count: int             # links of this kind per NPU


@dataclass(frozen=True)
class Cores:
    aic: int          # cores that hold a cube unit (AIC on split chips, AI Cores on coupled ones)
    aiv: int          # vector-only cores (AIV on split chips, extra vector cores on 310P)
    aicpu: int
    coupled: bool     # True: every AI Core carries cube and vector (910, 310P); False: AIC/AIV split
    aic_mhz: float
    aiv_mhz: float
    aicpu_mhz: float


@dataclass(frozen=True)
class Cube:
    """The cube unit. MMAD of (m, k) x (k, n) costs ceil(m/m0) ceil(n/n0) ceil(k/k_per_cycle)
    cycles, where k_per_cycle = macs_per_cycle / (m0 * n0) for the input dtype."""

    macs_per_cycle: dict[str, int]   # keyed by input dtype name
    m0: int
    n0: int
    issue_latency_cycles: float      # fixed cost of one MMAD instruction
    fixpipe_elems_per_cycle: float   # L0C -> GM/L1 conversion rate
    fixpipe_latency_cycles: float


@dataclass(frozen=True)
class Vector:
    """The vector unit: instructions work in repeats of ``repeat_bytes``; the throughput of an
    instruction depends on its op class and element width ("b16"/"b32").

    ``instrs`` costs the instructions that HARDWARE.md 8.1 describes one by one (vgather, vcmp,
    vsel, the sort32 region sort and the mrgsort4 merge): per instruction name
    ``{"head_latency", "b16", "b32", "tail_latency"}`` -- the head paid when the V queue was
    empty, the cycles per repeat by element width, and the tail until a dependent instruction
    may read. What one repeat is, is the instruction's own (see isa.ProgramBuilder): 256 bytes
    of output for vgather/vcmp/vsel, one ``sort_region_elems`` region for sort32 and mrgsort4.
    """

    repeat_bytes: int
    max_repeat: int
    elems_per_cycle: dict[str, dict[str, float]]   # op class -> {"b16": .., "b32": ..}
    latency_cycles: dict[str, float]               # op class -> fixed latency
    scalar_cycles_per_instr: float                 # scalar pipe: one instruction
    instrs: dict[str, dict[str, float]]            # instruction -> head_latency, b16, b32, tail_latency
    sort_region_elems: int                         # sort32: elements one repeat sorts (with their indices)
    merge_ways: int                                # mrgsort4: sorted lists one instruction merges
    sort_pair_bytes: int                           # a sorted element: (value, uint32 index) structure


@dataclass(frozen=True)
class Buffers:
    """On-core buffer sizes (bytes) and address alignments (bytes). 0 = the chip has none."""

    l1: int
    l0a: int
    l0b: int
    l0c: int
    ub: int
    bt: int
    fb: int
    align: dict[str, int]


@dataclass(frozen=True)
class Memory:
    l2_bytes: int
    l2_line_bytes: int
    l2_bandwidth_GBps: float
    l2_read_latency_cycles: float
    l2_write_latency_cycles: float
    hbm_extra_latency_cycles: float  # added to an L2 access that misses
    hbm_bytes: int
    hbm_bandwidth_GBps: float
    burst_bytes: int                 # transfers of whole, aligned bursts move at full rate
    block_bytes: int                 # smallest access (one 32-byte block)
    alloc_alignment: int             # device allocator granularity
    alloc_pad_bytes: int             # bytes the allocator adds to every request
    atomic_rmw_factor: float         # L2 traffic of an atomic-add store per byte stored (read-modify-write)


@dataclass(frozen=True)
class Runtime:
    kernel_launch_us: float     # host-side launch of one kernel task
    block_dispatch_cycles: float  # device-side start of one block on a core
    aicpu_task_us: float        # AI CPU task start + completion
    event_ids: int              # set_flag/wait_flag event ids per pipe pair
    cross_core_flag_ids: int    # AIC <-> AIV flag ids
    npus_per_server: int


@dataclass(frozen=True)
class AICpu:
    """The AI CPU (ARM cores on the SoC, HARDWARE.md 5) as the task model sees it. An AI CPU
    task is a list of typed work items; one item of ``n`` elements of work class ``c`` takes
    ``cycles_per_elem[c] * n`` cycles of one AI CPU core (times log2(n) for "sort", a comparison
    sort), or its bytes / ``bytes_per_cycle`` if streaming them takes longer. The task's start
    and completion cost is ``runtime.aicpu_task_us``; the clock is ``cores.aicpu_mhz``."""

    cycles_per_elem: dict[str, float]   # work class -> cycles per element ("sort": per element per log2 n)
    bytes_per_cycle: float              # one core's streaming rate to and from memory


@dataclass(frozen=True)
class ChipSpec:
    name: str
    family: str
    soc_version: str
    cores: Cores
    cube: Cube
    vector: Vector
    buffers: Buffers
    paths: dict[str, Path]
    memory: Memory
    runtime: Runtime
    links: dict[str, Link]
    aicpu: AICpu
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    description: str = ""

    def __post_init__(self):
        self.validate()

    # ----- derived quantities (never stored, so they cannot disagree with their inputs) -----
    def cube_peak_tflops(self, dtype: str = "float16") -> float:
        """Dense cube peak in TFLOPS (2 flops per MAC) over all cube cores."""
        macs = self.cube.macs_per_cycle.get(dtype)
        if macs is None:
            raise ValueError(f"{self.name}: the cube has no {dtype} mode; it has: "
                             f"{', '.join(self.cube.macs_per_cycle)}")
        return self.cores.aic * self.cores.aic_mhz * 1e6 * macs * 2 / 1e12

    def cube_fractal(self, dtype) -> tuple[int, int, int]:
        """(m0, k0, n0) of the cube's fractal for an input dtype: k0 is one 32-byte block of it
        (16 fp16/bf16, 8 fp32, 32 int8, 64 int4; HARDWARE.md 2.2)."""
        from ..dtypes import get_dtype
        d = get_dtype(dtype)
        if d.name not in self.cube.macs_per_cycle:
            raise ValueError(f"{self.name}: the cube has no {d.name} mode; it has: "
                             f"{', '.join(self.cube.macs_per_cycle)}")
        return (self.cube.m0, d.c0, self.cube.n0)

    def cube_k_per_cycle(self, dtype: str) -> float:
        return self.cube.macs_per_cycle[dtype] / (self.cube.m0 * self.cube.n0)

    @property
    def vector_cores(self) -> int:
        """Cores with a vector unit (AIV; on coupled chips also every AI Core)."""
        return self.cores.aiv + (self.cores.aic if self.cores.coupled else 0)

    def cycles_to_us(self, cycles: float, core: str = "aic") -> float:
        mhz = self.cores.aic_mhz if core == "aic" else self.cores.aiv_mhz
        return cycles / mhz

    # ----- checking -----
    def validate(self) -> None:
        errors: list[str] = []
        if self.family not in FAMILIES:
            errors.append(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        c = self.cores
        for f in ("aic", "aicpu"):
            v = getattr(c, f)
            if not isinstance(v, int) or v <= 0:
                errors.append(f"cores.{f} must be a positive integer, got {v!r}")
        if not isinstance(c.aiv, int) or c.aiv < 0 or (c.aiv == 0 and not c.coupled):
            errors.append(f"cores.aiv must be a positive integer on a split (non-coupled) chip, got {c.aiv!r}")
        for path, v in _leaves(self):
            if path.startswith(("sources", "description")) or isinstance(v, (str, bool)):
                continue
            if path.startswith("cores.a") and path.endswith(("aic", "aiv", "aicpu")):
                continue  # checked above
            if "latency" in path:
                if v < 0:
                    errors.append(f"{path} must be >= 0, got {v}")
            elif path == "memory.alloc_pad_bytes" or (path.startswith("buffers.")
                                                      and not path.startswith("buffers.align")):
                if v < 0:
                    errors.append(f"{path} (a buffer size) must be >= 0, got {v}")
            elif v <= 0:
                errors.append(f"{path} must be positive, got {v}")
        for name, cost in self.vector.instrs.items():
            keys = set(cost)
            if keys != {"head_latency", "b16", "b32", "tail_latency"}:
                errors.append(f"vector.instrs.{name} must give head_latency, b16, b32 and tail_latency, got "
                              f"{sorted(keys)}")
        if self.vector.merge_ways < 2:
            errors.append(f"vector.merge_ways must be >= 2, got {self.vector.merge_ways}")
        b = self.buffers
        for name, a in b.align.items():
            size = getattr(b, name, None)
            if size and size % a:
                errors.append(f"buffers.{name} ({size} B) is not a multiple of its alignment {a} B")
        missing = [p for p, _ in _leaves(self) if not p.startswith(("sources", "description", "name",
                                                                     "family", "soc_version"))
                   and p not in self.sources and _parent_source(p, self.sources) is None]
        if missing:
            errors.append("no source for: " + ", ".join(missing))
        if errors:
            raise ValueError(f"invalid ChipSpec {self.name!r}:\n  " + "\n  ".join(errors))

    # ----- deriving what-if chips -----
    def derive(self, name: str | None = None, **changes: Any) -> "ChipSpec":
        """A copy with fields replaced. Nested fields use dotted paths, written with '__' in keyword
        form: ``chip.derive("fast-hbm", memory__hbm_bandwidth_GBps=3200)`` or
        ``chip.derive(**{"paths.gm_to_ub.bytes_per_cycle": 256})``. Each changed field's source
        becomes "what-if (derived from <preset>)"."""
        data = to_dict(self)
        sources = dict(self.sources)
        for key, value in changes.items():
            path = key.replace("__", ".")
            _set_path(data, path, value, self.name)
            sources[path] = f"what-if (derived from {self.name})"
        data["sources"] = sources
        data["name"] = name or f"{self.name}-whatif"
        return from_dict(data)


def _parent_source(path: str, sources: Mapping[str, str]) -> str | None:
    """A source given for a group (e.g. 'buffers' or 'cube.macs_per_cycle') covers its leaves."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        s = sources.get(".".join(parts[:i]))
        if s is not None:
            return s
    return None


def _leaves(obj: Any, prefix: str = ""):
    """(dotted path, value) of every scalar leaf of a spec."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name == "sources":
                continue
            yield from _leaves(getattr(obj, f.name), f"{prefix}{f.name}.")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], obj


def to_dict(spec: ChipSpec) -> dict:
    """Plain nested dict (what TOML stores)."""
    return copy.deepcopy(dataclasses.asdict(spec))


_GROUPS = {"cores": Cores, "cube": Cube, "vector": Vector, "buffers": Buffers, "memory": Memory,
           "runtime": Runtime, "aicpu": AICpu}


def from_dict(data: Mapping[str, Any]) -> ChipSpec:
    """Build (and validate) a ChipSpec from a nested dict; unknown or missing keys are errors."""
    data = dict(data)
    expected = {f.name for f in dataclasses.fields(ChipSpec)}
    unknown = set(data) - expected
    if unknown:
        raise ValueError(f"ChipSpec: unknown fields {sorted(unknown)}; valid: {sorted(expected)}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(ChipSpec):
        if f.name not in data:
            if f.name in ("sources", "description"):
                continue
            raise ValueError(f"ChipSpec: missing field {f.name!r}")
        v = data[f.name]
        if f.name in _GROUPS:
            kwargs[f.name] = _build(_GROUPS[f.name], v, f.name)
        elif f.name == "paths":
            kwargs[f.name] = {k: _build(Path, p, f"paths.{k}") for k, p in v.items()}
        elif f.name == "links":
            kwargs[f.name] = {k: _build(Link, p, f"links.{k}") for k, p in v.items()}
        else:
            kwargs[f.name] = v
    return ChipSpec(**kwargs)


def _build(cls, values: Mapping[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    missing = names - set(values)
    if unknown or missing:
        raise ValueError(f"ChipSpec.{where}: unknown fields {sorted(unknown)}, missing {sorted(missing)}; "
                         f"valid: {sorted(names)}")
    return cls(**values)


def _set_path(data: dict, path: str, value: Any, chip: str) -> None:
    parts = path.split(".")
    node = data
    for p in parts[:-1]:
        if not isinstance(node, dict) or p not in node:
            raise ValueError(f"derive({chip}): no field {path!r}")
        node = node[p]
    if not isinstance(node, dict) or (parts[-1] not in node and len(parts) < 3):
        raise ValueError(f"derive({chip}): no field {path!r}")
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    node[parts[-1]] = value
