"""Instructions, per-core programs and kernel plans.

What is modelled: the instruction stream one AI Core block executes, as the engine needs it.
Every instruction has a pipe and a cost that depends on its operands and the ChipSpec only:

* on-core work (MTE1 loads, MMAD, vector ops, FIXPIPE to L1, UB copies, scalar): ``cycles`` the
  pipe is busy, plus a ``latency`` before the result is visible to a flag set after it;
* GM transfers (MTE2 in, MTE3/FIXPIPE out): a :class:`GMAccess` -- which tensor, where, how many
  rows of how many bytes at what stride. The access pattern fixes the *bus bytes* (each row is
  moved in whole 32-byte blocks, so a misaligned or short row moves more than it carries) and the
  *path cycles* (a row occupies the core's path for at least one cycle, so short rows cannot use
  the path's full width); the shared L2/HBM model adds latency and bandwidth sharing at run time;
* sync: ``set_flag``/``wait_flag`` between pipes (event ids from the chip), ``pipe_barrier``,
  and cross-core flags between the AIC and AIV blocks of a MIX kernel.

The burst/block model is the reason data formats matter: an ND weight whose rows are not 512-byte
aligned moves more pieces than an NZ one, whose fractal columns are long aligned runs.

A :class:`Program` stores instructions column by column in plain lists (no object per
instruction), so building 10^5 of them stays cheap; :class:`ProgramBuilder` emits them with their
costs and checks every operand against its buffer: an operand out of range or misaligned, or a
flag id the chip does not have, is an :class:`ISAError` naming the instruction.

A :class:`KernelPlan` is what an op hands the engine: the core type, block_dim and, per block, the
program(s) of its core(s), plus the names of the GM tensors the programs address.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ascend_sim.dtypes import get_dtype
from ascend_sim.hw import ChipSpec

from .indexed import IndexList, IndexPattern, IndexSummary, footprint, pieces, summarise
from .pipes import AIC_BUFFERS, AIV_BUFFERS, Buf, Pipe

# instruction kinds
COMPUTE, GM, SET, WAIT, BARRIER, XSET, XWAIT = range(7)
KIND_NAMES = ("compute", "gm", "set_flag", "wait_flag", "pipe_barrier", "cross_set", "cross_wait")

CORE_TYPES = ("AIC", "AIV", "MIX", "AI_CPU")


class ISAError(ValueError):
    """An instruction's operands do not fit the chip (buffer range, alignment, flag id, dtype)."""


@dataclass(frozen=True)
class GMAccess:
    """A 2-D access to a GM tensor: ``rows`` runs of ``row_bytes`` starting ``stride`` apart,
    the first at byte ``offset`` of the tensor. ``write`` for stores.

    An indexed access (gather/scatter by an index list) carries its :class:`IndexSummary` in
    ``index``; its payload, bus bytes and path cycles are those of the real rows, while
    offset/rows/row_bytes/stride describe the L2 footprint the engine is shown (the summary's
    distinct lines spread over its span, see isa/indexed.py)."""

    tensor: str
    offset: int
    rows: int
    row_bytes: int
    stride: int
    write: bool
    payload: int          # bytes the program asked for
    bus_bytes: int        # bytes moved in 32-byte blocks
    path_cycles: float    # cycles the core's path is busy (>= one per row)
    path: str             # ChipSpec.paths key
    index: IndexSummary | None = None   # indexed (gather/scatter) accesses only


@dataclass
class Program:
    """One block's instruction stream on one core, stored column-wise."""

    core: str                                   # "AIC" or "AIV"
    kind: list = field(default_factory=list)
    pipe: list = field(default_factory=list)
    name: list = field(default_factory=list)    # index into ``names``
    cycles: list = field(default_factory=list)
    latency: list = field(default_factory=list)
    arg: list = field(default_factory=list)     # flag key / GMAccess index / barrier pipe
    accesses: list = field(default_factory=list)
    names: list = field(default_factory=list)
    _name_ids: dict = field(default_factory=dict, repr=False)
    flops: float = 0.0
    # tile loops the template marked: loop id -> (period in iterations, [instruction index where
    # each iteration starts]); the engine may jump a loop in steady state (engine/steady.py)
    loops: dict = field(default_factory=dict)
    _columns_key: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.kind)

    def timing_key(self) -> tuple:
        """What decides this program's timing and trace apart from where its GM accesses point: the
        instruction columns and each access without its offset. Programs with equal keys are one
        block class (planned once, simulated once; see engine.py). Computed once per program."""
        return self._columns(), tuple((a.tensor, a.rows, a.row_bytes, a.stride, a.write, a.payload, a.bus_bytes,
                                       a.path_cycles, a.path, a.index) for a in self.accesses)

    def gm_pipes(self) -> list[int]:
        """The pipe of each GM access, in order (computed once: every member of a class asks)."""
        g = self.__dict__.get("_gm_pipes")
        if g is None:
            g = self.__dict__["_gm_pipes"] = [p for k, p in zip(self.kind, self.pipe) if k == GM]
        return g

    def _columns(self) -> tuple:
        ck = self._columns_key
        if ck is None:
            ck = self._columns_key = (self.core, tuple(self.kind), tuple(self.pipe), tuple(self.name),
                                      tuple(self.cycles), tuple(self.latency),
                                      tuple(a for k, a in zip(self.kind, self.arg) if k != GM), tuple(self.names),
                                      tuple((k, p, tuple(m)) for k, (p, m) in self.loops.items()))
        return ck

    def with_accesses(self, accesses: list) -> "Program":
        """This program with other GM accesses (the same instructions at other offsets: another
        member of its block class). The instruction columns are shared, not copied."""
        if len(accesses) != len(self.accesses):
            raise ISAError(f"Program.with_accesses: {len(accesses)} accesses for a program of {len(self.accesses)}")
        p = Program(self.core, self.kind, self.pipe, self.name, self.cycles, self.latency, self.arg, list(accesses),
                    self.names, self._name_ids, self.flops, self.loops)
        p._columns_key = self._columns()
        return p

    def name_id(self, name: str) -> int:
        i = self._name_ids.get(name)
        if i is None:
            i = self._name_ids[name] = len(self.names)
            self.names.append(name)
        return i

    def busy_cycles(self) -> dict[Pipe, float]:
        """Cycles of on-core work per pipe (GM transfers excluded: their time depends on L2/HBM)."""
        out: dict[Pipe, float] = {}
        for k, p, c in zip(self.kind, self.pipe, self.cycles):
            if k == COMPUTE:
                out[Pipe(p)] = out.get(Pipe(p), 0.0) + c
        return out

    def gm_bytes(self) -> tuple[int, int]:
        """(payload bytes read, payload bytes written)."""
        r = w = 0
        for k, a in zip(self.kind, self.arg):
            if k == GM:
                acc = self.accesses[a]
                if acc.write:
                    w += acc.payload
                else:
                    r += acc.payload
        return r, w


@dataclass
class KernelPlan:
    """Data an op hands the engine. ``blocks[i]`` holds the programs of block i: one program for AIC
    and AIV kernels, 1 AIC + ``mix_ratio`` AIV programs for MIX kernels (the AIC first)."""

    name: str
    core_type: str
    blocks: list[list[Program]]
    tensors: tuple[str, ...] = ()
    mix_ratio: int = 2
    tiling: Any = None
    flops: float = 0.0
    aicpu_work: tuple = ()              # AI_CPU kernels: typed work items (isa.AICpuWork), timed by the engine
    workspace_bytes: int = 0            # GM scratch the kernel needs, addressed as tensor "workspace"

    def __post_init__(self):
        if self.core_type not in CORE_TYPES:
            raise ISAError(f"KernelPlan {self.name}: core_type must be one of {CORE_TYPES}, got {self.core_type!r}")
        if self.core_type != "AI_CPU" and not self.blocks:
            raise ISAError(f"KernelPlan {self.name}: no blocks")
        if self.core_type == "AI_CPU" and self.blocks:
            raise ISAError(f"KernelPlan {self.name}: an AI_CPU kernel has work items, not AI Core blocks")
        if self.core_type != "AI_CPU" and self.aicpu_work:
            raise ISAError(f"KernelPlan {self.name}: aicpu_work belongs to AI_CPU kernels only")
        want = 1 + self.mix_ratio if self.core_type == "MIX" else 1
        for i, b in enumerate(self.blocks):
            if len(b) != want:
                raise ISAError(f"KernelPlan {self.name}: block {i} has {len(b)} programs, {self.core_type} needs {want}")

    @property
    def block_dim(self) -> int:
        return len(self.blocks)

    def instruction_count(self) -> int:
        return sum(len(p) for b in self.blocks for p in b)


@functools.lru_cache(maxsize=1 << 16)
def _rows_cost(phase0: int, rows: int, row_bytes: int, stride_mod: int, rate: float, block: int,
               burst: int) -> tuple[int, float]:
    """(bus bytes, path cycles) of ``rows`` rows of ``row_bytes`` whose starts sit at burst phases
    phase0, phase0 + stride_mod, ... (mod ``burst``).

    A row is moved as pieces cut at burst (L2 line) boundaries; each piece moves whole ``block``s
    and occupies the path for its bytes / rate, but at least one cycle. So a row that starts off a burst boundary costs
    an extra piece, and short rows cannot use the path's full width (CATLASS: 512-byte aligned
    rows move fastest). Row phases repeat with period burst / gcd(stride, burst): cost one period.
    """
    period = 1 if rows == 1 or stride_mod == 0 else burst // math.gcd(stride_mod, burst)
    n = min(rows, period)
    phases = (phase0 + np.arange(n, dtype=np.int64) * stride_mod) % burst
    counts = np.full(n, rows // n, dtype=np.int64)
    counts[: rows - (rows // n) * n] += 1
    bus, cyc = pieces(phases, row_bytes, rate, block, burst)
    return int((bus * counts).sum()), float((cyc * counts).sum())


@dataclass(frozen=True)
class CommStep:
    """A collective inside an op's plan (fused matmul + communication), or one that
    ``ascend_sim.distributed`` runs: done by the device's communication engine on its own stream,
    after the op's kernel number ``after`` (an index into the op's list of KernelPlans; None: after
    the kernel just before it in the list).

    kind: "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "all_to_all_v", "broadcast",
    "send", "barrier". ``nbytes`` is as ``ascend_sim.engine.collectives.schedule`` takes it (the
    uniform kinds). ``send_bytes`` (all_to_all_v only) is the matrix of bytes rank i of the group
    sends rank j (group order); a rank is the authority on its own row (what it sends), so a rank
    that knows only its own sends may leave the other rows zero -- the runtime assembles the
    matrix from every rank's row when the group meets, and the message size is its sum.
    ``algorithm`` picks one (None: the HCCL-like default rule); ``root`` is broadcast's source and
    send's sender (global ranks)."""

    kind: str
    nbytes: int
    name: str = ""
    after: int | None = None
    send_bytes: tuple[tuple[int, ...], ...] | None = None
    algorithm: str | None = None
    root: int | None = None

    def __post_init__(self):
        if (self.send_bytes is not None) != (self.kind == "all_to_all_v"):
            raise ISAError(f"CommStep {self.name or self.kind}: send_bytes is given for all_to_all_v, and only "
                           f"for it (kind {self.kind!r})")
        if self.send_bytes is not None:
            rows = tuple(tuple(int(b) for b in row) for row in self.send_bytes)
            if any(len(r) != len(rows) for r in rows) or any(b < 0 for r in rows for b in r):
                raise ISAError(f"CommStep {self.name or self.kind}: send_bytes must be a square matrix of "
                               f"non-negative byte counts, got {self.send_bytes!r}")
            object.__setattr__(self, "send_bytes", rows)


@dataclass(frozen=True)
class WaitComm:
    """In an op's plan list: the kernels after this wait for the op's CommStep number ``step``."""

    step: int


def _ceil(a: float, b: float) -> int:
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    return math.ceil(a / b - 1e-9)


class ProgramBuilder:
    """Emits a block's instructions with their costs on ``chip``. Buffer operands are (address,
    bytes) pairs inside the core's own buffers; GM operands name a tensor of the plan."""

    records_only = False        # True on an AccessRecorder: GM accesses are all that is kept

    def __init__(self, chip: ChipSpec, core: str):
        if core not in ("AIC", "AIV"):
            raise ISAError(f"ProgramBuilder: core must be 'AIC' or 'AIV', got {core!r}")
        self.chip = chip
        self.core = core
        self.prog = Program(core)
        owned = AIC_BUFFERS + AIV_BUFFERS if chip.cores.coupled else (AIC_BUFFERS if core == "AIC" else AIV_BUFFERS)
        self._buffers = {b: getattr(chip.buffers, b.spec_name) for b in owned}
        self._align = {b: chip.buffers.align.get(b.spec_name, 1) for b in owned}
        self._block = chip.memory.block_bytes

    # ----- emitting -----
    def _emit(self, kind: int, pipe: Pipe, name: str, cycles: float, latency: float, arg: Any) -> int:
        p = self.prog
        p.kind.append(kind)
        p.pipe.append(int(pipe))
        p.name.append(p.name_id(name))
        p.cycles.append(float(cycles))
        p.latency.append(float(latency))
        p.arg.append(arg)
        return len(p.kind) - 1

    def _where(self, name: str) -> str:
        return f"{name} (instruction #{len(self.prog)} on {self.core})"

    def check(self, name: str, buf: Buf, addr: int, nbytes: int) -> None:
        size = self._buffers.get(buf)
        if not size:
            raise ISAError(f"{self._where(name)}: the {self.core} of {self.chip.name} has no {buf.name}")
        if addr < 0 or nbytes < 0 or addr + nbytes > size:
            raise ISAError(f"{self._where(name)}: operand {buf.name}[{addr}, {addr + nbytes}) is out of range "
                           f"({buf.name} holds {size} bytes)")
        a = self._align[buf]
        if addr % a:
            raise ISAError(f"{self._where(name)}: operand {buf.name} address {addr} is not {a}-byte aligned")

    def _path(self, name: str, key: str):
        p = self.chip.paths.get(key)
        if p is None:
            raise ISAError(f"{self._where(name)}: {self.chip.name} has no {key} path")
        return p

    def gm_access(self, name: str, path_key: str, tensor: str, offset: int, rows: int, row_bytes: int,
                  stride: int | None, write: bool, rate_cap: float | None = None) -> GMAccess:
        if rows < 1 or row_bytes < 1 or offset < 0:
            raise ISAError(f"{self._where(name)}: GM access of {rows} rows x {row_bytes} B at offset {offset}")
        stride = row_bytes if stride is None else stride
        if rows > 1 and stride < row_bytes:
            raise ISAError(f"{self._where(name)}: GM rows overlap (stride {stride} < row {row_bytes} bytes)")
        path = self._path(name, path_key)
        rate = path.bytes_per_cycle if rate_cap is None else min(path.bytes_per_cycle, rate_cap)
        if rows > 1 and stride == row_bytes:      # one contiguous run
            row_bytes, rows = rows * row_bytes, 1
        burst = self.chip.memory.burst_bytes
        bus, cyc = _rows_cost(offset % burst, rows, row_bytes, stride % burst, float(rate), self._block, burst)
        payload = rows * row_bytes
        return GMAccess(tensor, offset, rows, row_bytes, stride if rows > 1 else row_bytes, write, payload, bus, cyc,
                        path_key)

    def _gm(self, pipe: Pipe, name: str, acc: GMAccess, latency: float) -> int:
        self.prog.accesses.append(acc)
        return self._emit(GM, pipe, name, acc.path_cycles, latency, len(self.prog.accesses) - 1)

    # ----- MTE2: GM -> L1 / UB / L0A / L0B -----
    def load_gm(self, dst: Buf, dst_addr: int, tensor: str, offset: int, rows: int, row_bytes: int,
                stride: int | None = None, *, nd2nz: bool = False, name: str | None = None) -> int:
        """MTE2 copy-in. ``nd2nz`` converts ND rows into NZ fractals on the way (GM -> L1 only)."""
        name = name or ("MTE2.nd2nz" if nd2nz else f"MTE2.gm_to_{dst.name.lower()}")
        if nd2nz and dst is not Buf.L1:
            raise ISAError(f"{self._where(name)}: ND2NZ exists on GM -> L1 only")
        self.check(name, dst, dst_addr, rows * row_bytes)
        key = "gm_to_l1_nd2nz" if nd2nz else f"gm_to_{dst.name.lower()}"
        acc = self.gm_access(name, key, tensor, offset, rows, row_bytes, stride, False)
        return self._gm(Pipe.MTE2, name, acc, self.chip.paths[key].latency_cycles)

    # ----- MTE3: UB -> GM -----
    def store_gm(self, src_addr: int, tensor: str, offset: int, rows: int, row_bytes: int,
                 stride: int | None = None, *, name: str = "MTE3.ub_to_gm") -> int:
        self.check(name, Buf.UB, src_addr, rows * row_bytes)
        acc = self.gm_access(name, "ub_to_gm", tensor, offset, rows, row_bytes, stride, True)
        return self._gm(Pipe.MTE3, name, acc, self.chip.paths["ub_to_gm"].latency_cycles)

    # ----- indexed GM rows: gather (MTE2) and scatter / scatter-add (MTE3) -----
    def indexed_access(self, name: str, path_key: str, tensor: str, offset: int, row_bytes: int, index,
                       row_stride: int | None, write: bool, *, table_rows: int | None = None,
                       atomic: str | None = None) -> GMAccess:
        """The GMAccess of rows ``index`` of a GM table (row i at ``offset + i * row_stride``),
        summarised at plan time (isa/indexed.py): cost by the row model, runs merged, an atomic
        add's read-modify-write at ``memory.atomic_rmw_factor`` times the L2 traffic."""
        if row_bytes < 1 or offset < 0:
            raise ISAError(f"{self._where(name)}: indexed GM access of rows of {row_bytes} B at offset {offset}")
        row_stride = row_bytes if row_stride is None else row_stride
        if row_stride < row_bytes:
            raise ISAError(f"{self._where(name)}: GM rows overlap (row stride {row_stride} < row {row_bytes} bytes)")
        path = self._path(name, path_key)
        m = self.chip.memory
        try:
            summary, payload, bus, cyc, hint = summarise(
                index, offset, row_bytes, row_stride, rate=float(path.bytes_per_cycle), block=self._block,
                burst=m.burst_bytes, line=m.l2_line_bytes, table_rows=table_rows)
        except (ValueError, TypeError) as e:
            raise ISAError(f"{self._where(name)}: {e}") from None
        if atomic is not None:
            bus = int(round(bus * m.atomic_rmw_factor))
            summary = dataclasses.replace(summary, atomic=get_dtype(atomic).name)
        off, rows, rb, stride = footprint(summary.span, summary.lines, hint, m.l2_line_bytes)
        return GMAccess(tensor, off, rows, rb, stride, write, payload, bus, cyc, path_key, summary)

    def _ub_rows_bytes(self, index, row_bytes: int) -> int:
        """UB bytes of ``len(index)`` rows packed at a pitch of whole UB-aligned blocks."""
        a = self._align.get(Buf.UB, 1)
        return len(index) * _ceil(row_bytes, a) * a

    def load_gm_rows(self, dst_addr: int, tensor: str, offset: int, row_bytes: int, index, *,
                     row_stride: int | None = None, table_rows: int | None = None, dst: Buf = Buf.UB,
                     name: str = "MTE2.gather_rows") -> int:
        """MTE2 gather: rows ``index[0], index[1], ...`` of a GM table into consecutive ``dst``
        rows (each at a 32-byte aligned pitch). ``index``: an :class:`IndexList` (full mode) or
        an :class:`IndexPattern` (meta mode)."""
        self.check(name, dst, dst_addr, self._ub_rows_bytes(index, row_bytes))
        key = f"gm_to_{dst.name.lower()}"
        acc = self.indexed_access(name, key, tensor, offset, row_bytes, index, row_stride, False,
                                  table_rows=table_rows)
        return self._gm(Pipe.MTE2, name, acc, self.chip.paths[key].latency_cycles)

    def store_gm_rows(self, src_addr: int, tensor: str, offset: int, row_bytes: int, index, *,
                      row_stride: int | None = None, table_rows: int | None = None, atomic_add: str | None = None,
                      name: str | None = None) -> int:
        """MTE3 scatter: consecutive UB rows to rows ``index[...]`` of a GM table;
        ``atomic_add=<dtype>`` adds them to what is there (scatter-add, SetAtomicAdd)."""
        name = name or ("MTE3.scatter_add_rows" if atomic_add else "MTE3.scatter_rows")
        self.check(name, Buf.UB, src_addr, self._ub_rows_bytes(index, row_bytes))
        acc = self.indexed_access(name, "ub_to_gm", tensor, offset, row_bytes, index, row_stride, True,
                                  table_rows=table_rows, atomic=atomic_add)
        return self._gm(Pipe.MTE3, name, acc, self.chip.paths["ub_to_gm"].latency_cycles)

    # ----- MTE1: L1 -> L0A / L0B / BT / FB -----
    def load_l1(self, dst: Buf, dst_addr: int, src_addr: int, nbytes: int, *, load3d: bool = False,
                transpose: bool = False, name: str | None = None) -> int:
        name = name or f"MTE1.{'load3d' if load3d else 'load'}_{dst.name.lower()}{'_T' if transpose else ''}"
        self.check(name, Buf.L1, src_addr, nbytes)
        self.check(name, dst, dst_addr, nbytes)
        key = f"l1_to_{dst.name.lower()}" + ("_load3d" if load3d else "")
        p = self._path(name, key)
        return self._emit(COMPUTE, Pipe.MTE1, name, _ceil(nbytes, p.bytes_per_cycle), p.latency_cycles, None)

    # ----- CUBE -----
    def mmad(self, m: int, n: int, k: int, dtype: str, *, a_addr: int = 0, b_addr: int = 0, c_addr: int = 0,
             acc_bytes: int = 4, name: str | None = None) -> int:
        """C[m,n] (+)= A[m,k] B[k,n] from L0A/L0B into L0C (fp32/int32 accumulators)."""
        name = name or f"CUBE.mmad_{dtype}"
        d = get_dtype(dtype)
        macs = self.chip.cube.macs_per_cycle.get(d.name)
        if macs is None:
            raise ISAError(f"{self._where(name)}: the cube of {self.chip.name} has no {d.name} mode "
                           f"(it has {', '.join(self.chip.cube.macs_per_cycle)})")
        if min(m, n, k) < 1:
            raise ISAError(f"{self._where(name)}: m, n, k must be >= 1, got {m}, {n}, {k}")
        m0, n0 = self.chip.cube.m0, self.chip.cube.n0
        k0 = d.c0
        mp, np_, kp = _ceil(m, m0) * m0, _ceil(n, n0) * n0, _ceil(k, k0) * k0
        self.check(name, Buf.L0A, a_addr, d.nbytes(mp * kp))
        self.check(name, Buf.L0B, b_addr, d.nbytes(kp * np_))
        self.check(name, Buf.L0C, c_addr, mp * np_ * acc_bytes)
        kpc = macs / (m0 * n0)
        cycles = _ceil(m, m0) * _ceil(n, n0) * math.ceil(k / kpc)
        self.prog.flops += 2.0 * m * n * k
        return self._emit(COMPUTE, Pipe.CUBE, name, cycles, self.chip.cube.issue_latency_cycles, None)

    # ----- FIXPIPE: L0C -> GM / L1 -----
    def fixpipe_to_gm(self, m: int, n: int, out_itemsize: float, tensor: str, offset: int, row_stride: int,
                      *, c_addr: int = 0, nz2nd: bool = True, quant: bool = False, relu: bool = False,
                      fb_addr: int = 0, name: str | None = None) -> int:
        """Write an m x n L0C tile to GM, converted to the output dtype on the way (cast, per-channel
        quantisation with scales from the fixpipe buffer, ReLU: all at the same element rate);
        NZ2ND writes m rows of n, otherwise NZ fractal columns."""
        name = name or "FIXP.l0c_to_gm" + (".quant" if quant else "") + (".relu" if relu else "")
        m0, n0 = self.chip.cube.m0, self.chip.cube.n0
        self.check(name, Buf.L0C, c_addr, _ceil(m, m0) * m0 * _ceil(n, n0) * n0 * 4)
        if quant:
            self.check(name, Buf.FB, fb_addr, _ceil(n, n0) * n0 * 8)   # one 64-bit scale per column
        rate = self.chip.cube.fixpipe_elems_per_cycle * out_itemsize
        if nz2nd:
            acc = self.gm_access(name, "l0c_to_gm", tensor, offset, m, int(n * out_itemsize), row_stride, True, rate)
        else:   # NZ output: each 16-column fractal column block is contiguous
            nb = _ceil(n, n0)
            acc = self.gm_access(name, "l0c_to_gm", tensor, offset, nb, int(_ceil(m, m0) * m0 * n0 * out_itemsize),
                                 row_stride, True, rate)
        return self._gm(Pipe.FIXPIPE, name, acc, self.chip.cube.fixpipe_latency_cycles)

    def fixpipe_to_l1(self, m: int, n: int, out_itemsize: float, dst_addr: int, *, c_addr: int = 0,
                      name: str = "FIXP.l0c_to_l1") -> int:
        m0, n0 = self.chip.cube.m0, self.chip.cube.n0
        elems = _ceil(m, m0) * m0 * _ceil(n, n0) * n0
        self.check(name, Buf.L0C, c_addr, elems * 4)
        self.check(name, Buf.L1, dst_addr, int(elems * out_itemsize))
        cycles = _ceil(elems, self.chip.cube.fixpipe_elems_per_cycle)
        return self._emit(COMPUTE, Pipe.FIXPIPE, name, cycles, self.chip.cube.fixpipe_latency_cycles, None)

    def copy_ub_to_l1(self, src_addr: int, dst_addr: int, nbytes: int, *, name: str = "MTE3.ub_to_l1") -> int:
        """UB -> L1 on chips whose cores hold both (coupled AI Cores)."""
        self.check(name, Buf.UB, src_addr, nbytes)
        self.check(name, Buf.L1, dst_addr, nbytes)
        p = self._path(name, "ub_to_l1")
        return self._emit(COMPUTE, Pipe.MTE3, name, _ceil(nbytes, p.bytes_per_cycle), p.latency_cycles, None)

    # ----- VECTOR -----
    def vector(self, op_class: str, dtype: str, n: int, *, addrs: tuple[int, ...] = (0,), name: str | None = None) -> int:
        """A vector instruction over ``n`` elements of ``dtype`` in UB, split into instructions of at
        most ``max_repeat`` 256-byte repeats as the hardware requires. Returns the last index."""
        name = name or f"VECTOR.{op_class}"
        d = get_dtype(dtype)
        v = self.chip.vector
        epc = v.elems_per_cycle.get(op_class)
        if epc is None:
            raise ISAError(f"{self._where(name)}: unknown vector op class {op_class!r}; "
                           f"classes: {', '.join(v.elems_per_cycle)}")
        width = "b32" if d.bits >= 32 else "b16"
        per_cycle = epc[width] * (16 / d.bits if d.bits < 16 else 1)   # 8-bit types: same bytes per cycle as b16
        nbytes = d.nbytes(n)
        for a in addrs:
            self.check(name, Buf.UB, a, nbytes)
        per_repeat = v.repeat_bytes * 8 / d.bits
        repeats = max(1, _ceil(nbytes, v.repeat_bytes))
        idx = -1
        while repeats > 0:
            r = min(repeats, v.max_repeat)
            idx = self._emit(COMPUTE, Pipe.VECTOR, name, r * per_repeat / per_cycle, v.latency_cycles[op_class], None)
            repeats -= r
        return idx

    # ----- VECTOR: instructions costed one by one (vector.instrs: head / cycles per repeat / tail) -----
    def _vinstr(self, key: str, dtype: str, repeats: int, operands, name: str) -> int:
        """Emit ``repeats`` repeats of instruction ``key`` in instructions of at most ``max_repeat``
        repeats: each busy for its repeats x the width's cycles per repeat; its result visible
        head + tail cycles later (the head is paid after a barrier empties the queue)."""
        v = self.chip.vector
        cost = v.instrs.get(key)
        if cost is None:
            raise ISAError(f"{self._where(name)}: the vector unit of {self.chip.name} has no {key} "
                           f"(it has {', '.join(v.instrs)})")
        d = get_dtype(dtype)
        for addr, nbytes in operands:
            self.check(name, Buf.UB, addr, nbytes)
        per = cost["b32" if d.bits >= 32 else "b16"]
        lat = cost["head_latency"] + cost["tail_latency"]
        repeats = max(1, repeats)
        idx = -1
        while repeats > 0:
            r = min(repeats, v.max_repeat)
            idx = self._emit(COMPUTE, Pipe.VECTOR, name, r * per, lat, None)
            repeats -= r
        return idx

    def _repeats(self, dtype: str, n: int) -> int:
        return max(1, _ceil(get_dtype(dtype).nbytes(n), self.chip.vector.repeat_bytes))

    def vgather(self, dtype: str, n: int, *, dst_addr: int, offsets_addr: int, src_addr: int, src_bytes: int,
                name: str = "VECTOR.vgather") -> int:
        """dst[j] = UB[src_addr + offsets[j]] for n elements: uint32 byte offsets; one repeat per
        256 bytes of output."""
        ops = [(dst_addr, get_dtype(dtype).nbytes(n)), (offsets_addr, get_dtype("int32").nbytes(n)),
               (src_addr, src_bytes)]
        return self._vinstr("vgather", dtype, self._repeats(dtype, n), ops, name)

    def vcmp(self, dtype: str, n: int, *, a_addr: int, b_addr: int, mask_addr: int,
             name: str = "VECTOR.vcmp") -> int:
        """A bit mask of an elementwise comparison of two n-element vectors."""
        nb = get_dtype(dtype).nbytes(n)
        ops = [(a_addr, nb), (b_addr, nb), (mask_addr, _ceil(n, 8))]
        return self._vinstr("vcmp", dtype, self._repeats(dtype, n), ops, name)

    def vsel(self, dtype: str, n: int, *, mask_addr: int, a_addr: int, b_addr: int, dst_addr: int,
             name: str = "VECTOR.vsel") -> int:
        """dst = mask ? a : b for n elements."""
        nb = get_dtype(dtype).nbytes(n)
        ops = [(mask_addr, _ceil(n, 8)), (a_addr, nb), (b_addr, nb), (dst_addr, nb)]
        return self._vinstr("vsel", dtype, self._repeats(dtype, n), ops, name)

    def _sort_dtype(self, name: str, dtype: str):
        d = get_dtype(dtype)
        if not (d.is_float and d.bits in (16, 32)):
            raise ISAError(f"{self._where(name)}: sorts take 16- or 32-bit floats, got {d.name}")
        return d

    def vsort32(self, dtype: str, n: int, *, src_addr: int, idx_addr: int, dst_addr: int,
                name: str = "VECTOR.sort32") -> int:
        """VBS: sort n values (descending) with their uint32 indices, region by region of
        ``vector.sort_region_elems``; the output is one sorted list of (value, index) structures
        of ``vector.sort_pair_bytes`` per region (a partial region costs a whole one)."""
        d = self._sort_dtype(name, dtype)
        v = self.chip.vector
        regions = max(1, _ceil(n, v.sort_region_elems))
        e = regions * v.sort_region_elems
        ops = [(src_addr, d.nbytes(e)), (idx_addr, get_dtype("int32").nbytes(e)), (dst_addr, e * v.sort_pair_bytes)]
        return self._vinstr("sort32", dtype, regions, ops, name)

    def vmrgsort4(self, dtype: str, lengths, *, src_addrs, dst_addr: int, name: str = "VECTOR.mrgsort4") -> int:
        """VMS: merge 2..``vector.merge_ways`` sorted lists of (value, index) structures
        (``lengths[i]`` of them at ``src_addrs[i]``) into one; one repeat per region of output."""
        self._sort_dtype(name, dtype)
        v = self.chip.vector
        lengths, src_addrs = tuple(int(x) for x in lengths), tuple(src_addrs)
        if not 2 <= len(lengths) <= v.merge_ways or len(src_addrs) != len(lengths) or min(lengths) < 1:
            raise ISAError(f"{self._where(name)}: merges 2 to {v.merge_ways} non-empty lists (one address each), "
                           f"got lengths {lengths} at {len(src_addrs)} addresses")
        total = sum(lengths)
        ops = [(a, k * v.sort_pair_bytes) for a, k in zip(src_addrs, lengths)] + [(dst_addr, total * v.sort_pair_bytes)]
        return self._vinstr("mrgsort4", dtype, _ceil(total, v.sort_region_elems), ops, name)

    def ub_copy(self, dst_addr: int, src_addr: int, nbytes: int, *, name: str = "VECTOR.ub_copy") -> int:
        self.check(name, Buf.UB, src_addr, nbytes)
        self.check(name, Buf.UB, dst_addr, nbytes)
        p = self._path(name, "ub_to_ub")
        return self._emit(COMPUTE, Pipe.VECTOR, name, _ceil(nbytes, p.bytes_per_cycle), p.latency_cycles, None)

    # ----- SCALAR -----
    def scalar(self, count: int = 1, *, name: str = "SCALAR") -> int:
        return self._emit(COMPUTE, Pipe.SCALAR, name, count * self.chip.vector.scalar_cycles_per_instr, 0, None)

    # ----- sync -----
    def _event(self, name: str, event_id: int) -> None:
        if not 0 <= event_id < self.chip.runtime.event_ids:
            raise ISAError(f"{self._where(name)}: event id {event_id} out of range; {self.chip.name} has "
                           f"ids 0-{self.chip.runtime.event_ids - 1}")

    def set_flag(self, src: Pipe, dst: Pipe, event_id: int) -> int:
        name = f"set_flag {src.lane}->{dst.lane} #{event_id}"
        self._event(name, event_id)
        return self._emit(SET, src, "set_flag", 0, 0, (int(src), int(dst), event_id))

    def wait_flag(self, src: Pipe, dst: Pipe, event_id: int) -> int:
        name = f"wait_flag {src.lane}->{dst.lane} #{event_id}"
        self._event(name, event_id)
        return self._emit(WAIT, dst, "wait_flag", 0, 0, (int(src), int(dst), event_id))

    def pipe_barrier(self, pipe: Pipe) -> int:
        return self._emit(BARRIER, pipe, "pipe_barrier", 0, 0, int(pipe))

    def cross_set(self, pipe: Pipe, flag_id: int) -> int:
        """Signal the other cores of this MIX block (after ``pipe``'s earlier work is done)."""
        if not 0 <= flag_id < self.chip.runtime.cross_core_flag_ids:
            raise ISAError(f"{self._where('cross_set')}: flag id {flag_id} out of range 0-"
                           f"{self.chip.runtime.cross_core_flag_ids - 1}")
        return self._emit(XSET, pipe, "cross_set", 0, 0, (self.core, flag_id))

    def cross_wait(self, pipe: Pipe, flag_id: int, from_core: str) -> int:
        if not 0 <= flag_id < self.chip.runtime.cross_core_flag_ids:
            raise ISAError(f"{self._where('cross_wait')}: flag id {flag_id} out of range 0-"
                           f"{self.chip.runtime.cross_core_flag_ids - 1}")
        return self._emit(XWAIT, pipe, "cross_wait", 0, 0, (from_core, flag_id))

    # ----- loop marks (no instruction: where a template's tile loop starts each iteration) -----
    def begin_loop(self, period: int) -> int:
        """Start marking a tile loop whose iterations repeat with ``period`` (the ring of buffers
        it cycles through); returns its id for :meth:`iteration`."""
        if period < 1:
            raise ISAError(f"{self._where('begin_loop')}: a loop period is at least 1, got {period}")
        lid = len(self.prog.loops)
        self.prog.loops[lid] = (int(period), [])
        return lid

    def iteration(self, loop: int) -> None:
        """The next instruction starts an iteration of ``loop``."""
        self.prog.loops[loop][1].append(len(self.prog.kind))

    def build(self) -> Program:
        return self.prog


def _no_instruction(self, *args, **kwargs) -> int:
    return -1


class AccessRecorder(ProgramBuilder):
    """A builder that keeps only the GM accesses: what another member of a block class needs (its
    instructions are its class representative's, see :func:`class_programs`). On-core work, sync
    and operand checks cost nothing here; ``records_only`` lets a template skip loops that emit
    on-core work only."""

    records_only = True

    def check(self, name, buf, addr, nbytes) -> None:
        pass

    def __init__(self, chip: ChipSpec, core: str):
        super().__init__(chip, core)
        self.gm_pipes: list[int] = []

    def _gm(self, pipe, name, acc, latency) -> int:
        self.prog.accesses.append(acc)
        self.gm_pipes.append(int(pipe))
        return len(self.prog.accesses) - 1

    def program_like(self, rep: Program) -> Program | None:
        """The recorded member as ``rep`` at its own GM offsets -- None when its GM accesses do not
        line up with rep's (another count, pipe or path: the shape promised too much), in which
        case the caller builds it in full."""
        accs = self.prog.accesses
        if len(accs) != len(rep.accesses) or self.gm_pipes != rep.gm_pipes() or any(
                a.path != r.path or a.write != r.write for a, r in zip(accs, rep.accesses)):
            return None
        return rep.with_accesses(accs)

    load_l1 = mmad = fixpipe_to_l1 = copy_ub_to_l1 = vector = _vinstr = vgather = vcmp = vsel = _no_instruction
    vsort32 = vmrgsort4 = ub_copy = scalar = set_flag = wait_flag = pipe_barrier = _no_instruction
    cross_set = cross_wait = _emit = iteration = _no_instruction

    def begin_loop(self, period: int) -> int:
        return 0


def class_programs(chip: ChipSpec, core: str, items, shape, emit) -> list[Program]:
    """One program per element of ``items``, ``emit(builder, item)`` building it. Items of equal
    ``shape(item)`` must emit the same instructions but for their GM offsets (the template's
    promise: the shape holds everything else they depend on): the first of each shape is built in
    full, the others record their GM accesses only and share its instructions -- one block class
    (engine.py simulates a class once). ``shape`` None: every item built in full."""
    out, reps = [], {}
    for item in items:
        key = None if shape is None else shape(item)
        rep = reps.get(key) if key is not None else None
        prog = None
        if rep is not None:
            r = AccessRecorder(chip, core)
            emit(r, item)
            prog = r.program_like(rep)
        if prog is None:
            b = ProgramBuilder(chip, core)
            emit(b, item)
            prog = b.build()
            if key is not None and rep is None:
                reps[key] = prog
        out.append(prog)
    return out
