"""The vector-pipeline block layer: one AIV block's double-buffered MTE2 -> VECTOR -> MTE3 loop.

Every vector template (elementwise, rows, TransData, and the gather/scatter/sort ones to come)
is three layers, as CATLASS layers its kernels:

* kernel -- which work each AIV block takes (:func:`split_range`, :func:`vector_kernel`), and
  several kernels' blocks (parts) dealt onto the vector cores as one kernel
  (:func:`deal_parts`, :func:`grouped_vector_kernel`: the vector side of the cube's
  GroupedScheduler);
* block  -- *this module*: the per-core loop over the block's tiles with ``buffer_num`` UB
  buffers (2 = ping-pong: MTE2 loads tile j+1 while VECTOR computes tile j and MTE3 stores
  tile j-1) and the flags that order it, one event id per buffer:

  ===============  ===========  ================================================================
  flag             set -> wait  meaning
  ===============  ===========  ================================================================
  "loaded"         MTE2 -> V    the tile's inputs are in UB
  "computed"       V -> MTE3    the tile's results are in UB
  "input free"     V -> MTE2    VECTOR is done with the buffer's inputs (waited from tile
                                ``buffer_num`` on, before the buffer is loaded again)
  "output free"    MTE3 -> V    MTE3 has stored the buffer's results (waited from tile
                                ``buffer_num`` on, before VECTOR writes the buffer again)
  ===============  ===========  ================================================================

  Without a compute stage (a copy) the load hands the buffer straight to MTE3 (MTE2 -> MTE3),
  and MTE3 frees it for MTE2 (MTE3 -> MTE2);
* tile  -- what one tile does, given by the template as three stages, each a callable
  ``stage(builder, tile, slot)`` that emits that stage's instructions: ``load`` (MTE2 copy-ins:
  strided rows, a table row, an indexed-row gather...), ``compute`` (VECTOR work: casts, math,
  a sort...), ``store`` (MTE3 copy-outs). A stage may emit nothing for a tile (a tile with no
  store this pass); the flags are the same either way. A missing stage (None) drops its flags.

A :class:`VectorPipeline` holds the stages and the UB slots (``slot_base + buf * slot_bytes``);
:meth:`VectorPipeline.run` emits a block's loop. The stages see a :class:`Slot` (tile index in
the block, buffer id, the slot's UB address).
"""
from __future__ import annotations

import abc

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import ISAError, KernelPlan, Pipe, ProgramBuilder, class_programs

from .cube.block import drain        # flags left set are waited for, as between a cube core's groups

V, MTE2, MTE3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3

Stage = Callable[[ProgramBuilder, Any, "Slot"], None]


@dataclass(frozen=True)
class Slot:
    """Where a tile lives: its index in the block, its buffer (also its event id) and the UB
    address of that buffer's slot."""

    j: int
    buf: int
    base: int


@dataclass(frozen=True)
class VectorPipeline:
    """A block's double-buffered tile loop. ``load``/``compute``/``store``: the tile stages (see
    the module docstring), None for a stage the kernel does not have. ``scalar_per_tile``:
    scalar bookkeeping instructions issued per tile (loop control, address arithmetic)."""

    load: Stage | None
    compute: Stage | None
    store: Stage | None
    buffer_num: int = 2
    slot_base: int = 0
    slot_bytes: int = 0
    scalar_per_tile: int = 1
    # what a tile's instructions depend on apart from where its GM accesses point (blocks whose
    # tiles have equal shapes are one block class, planned once); None: every block built in full
    shape: Callable[[Any], Any] | None = None

    def __post_init__(self):
        if self.compute is None and (self.load is None or self.store is None):
            raise ISAError("VectorPipeline: a tile loop without a compute stage must load and store (a copy)")
        if self.buffer_num < 1:
            raise ISAError(f"VectorPipeline: buffer_num must be >= 1, got {self.buffer_num}")

    def slot(self, j: int) -> Slot:
        buf = j % self.buffer_num
        return Slot(j, buf, self.slot_base + buf * self.slot_bytes)

    def run(self, b: ProgramBuilder, tiles: Iterable[Any]) -> int:
        """Emit the loop over ``tiles`` into ``b``; returns the number of tiles."""
        load, compute, store = self.load, self.compute, self.store
        # who frees a buffer's inputs for the next load, and who waits for a stored buffer
        input_user = V if compute is not None else MTE3
        output_writer = V if compute is not None else MTE2
        j = 0
        loop = b.begin_loop(self.buffer_num)     # the tiles repeat with the buffer ring
        for tile in tiles:
            b.iteration(loop)
            s = self.slot(j)
            reuse = j >= self.buffer_num
            if self.scalar_per_tile:
                b.scalar(self.scalar_per_tile)
            if load is not None:
                if reuse:
                    b.wait_flag(input_user, MTE2, s.buf)           # input free
                load(b, tile, s)
            if compute is not None:
                if load is not None:
                    b.set_flag(MTE2, V, s.buf)                     # loaded
                    b.wait_flag(MTE2, V, s.buf)
                if reuse and store is not None:
                    b.wait_flag(MTE3, V, s.buf)                    # output free
                compute(b, tile, s)
                if load is not None:
                    b.set_flag(V, MTE2, s.buf)                     # input free
                if store is not None:
                    b.set_flag(V, MTE3, s.buf)                     # computed
                    b.wait_flag(V, MTE3, s.buf)
            else:
                b.set_flag(MTE2, MTE3, s.buf)                      # loaded: straight to MTE3
                b.wait_flag(MTE2, MTE3, s.buf)
            if store is not None:
                store(b, tile, s)
                b.set_flag(MTE3, output_writer, s.buf)             # output free
            j += 1
        return j


class KernelOp(abc.ABC):
    """Mixin for an op (``Op`` subclass) whose main kernel is one template kernel described by an
    object with ``default_tiling(chip)`` and ``plan(name, chip, tiling)`` (an ElementwiseKernel,
    a RowKernel): the op defines ``kernel(spec, chip)``; its default tiling and its plan under any
    tiling both come from that one description."""

    @abc.abstractmethod
    def kernel(self, spec, chip):
        """The description of the op's main kernel for this call."""

    def default_tiling(self, spec, chip):
        return self.kernel(spec, chip).default_tiling(chip)

    def plan(self, spec, chip, tiling=None):
        return self.kernel(spec, chip).plan(self.name, chip, tiling)


def check_buffers(name: str, chip: ChipSpec, tiling, need: float) -> None:
    """A tiling's UB bytes and buffer count against the chip: an ISAError naming UB, never a
    silent spill."""
    if need > chip.buffers.ub:
        raise ISAError(f"{name}: tiling {tiling} needs {need:.0f} bytes of UB; {chip.name} has {chip.buffers.ub}")
    if tiling.buffer_num > chip.runtime.event_ids:
        raise ISAError(f"{name}: buffer_num {tiling.buffer_num} exceeds the {chip.runtime.event_ids} event ids")


def split_range(n: int, parts: int, quantum: int = 1) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``parts`` contiguous, non-empty chunks of whole ``quantum``s
    (the last may be short): the kernel layer's share of work per block."""
    chunk = -(-n // max(1, parts))
    chunk = -(-chunk // quantum) * quantum
    return [(lo, min(n, lo + chunk)) for lo in range(0, n, max(1, chunk))]


def vector_kernel(name: str, chip: ChipSpec, blocks: Iterable[Iterable[Any]], pipeline: VectorPipeline, *,
                  prologue: Callable[[ProgramBuilder], None] | None = None, tensors: tuple[str, ...] = (),
                  tiling: Callable[[int], Any] | Any = None, flops: float = 0.0) -> KernelPlan:
    """An AIV KernelPlan with one block per element of ``blocks`` (each an iterable of that
    block's tiles): ``prologue`` (e.g. loads of operands every tile shares), then the pipeline's
    loop. Blocks that emit nothing are dropped. ``tiling``: the plan's tiling, or a function of
    the number of blocks that returns it."""
    def emit(b, tiles):
        if prologue is not None:
            prologue(b)
        pipeline.run(b, tiles)

    blocks = [list(tiles) for tiles in blocks]
    shape = None if pipeline.shape is None else (lambda tiles: tuple(map(pipeline.shape, tiles)))
    progs = [[p] for p in class_programs(chip, "AIV", blocks, shape, emit) if len(p)]
    t = tiling(len(progs)) if callable(tiling) else tiling
    return KernelPlan(name, "AIV", progs, tensors=tensors, tiling=t, flops=flops)


@dataclass(frozen=True)
class VectorPart:
    """A vector kernel described before it is built: its blocks (each an iterable of that block's
    tiles), the pipeline and prologue every block runs, the GM tensors it names, its tiling (or a
    function of its number of blocks, as :func:`vector_kernel` takes it) and its flops. A template
    returns one (rows: :func:`~.rows.row_part`); :meth:`kernel` builds it alone,
    :func:`grouped_vector_kernel` together with other parts."""

    blocks: Any
    pipeline: VectorPipeline
    prologue: Callable[[ProgramBuilder], None] | None = None
    tensors: tuple[str, ...] = ()
    tiling: Any = None
    flops: float = 0.0

    def kernel(self, name: str, chip: ChipSpec) -> KernelPlan:
        return vector_kernel(name, chip, self.blocks, self.pipeline, prologue=self.prologue, tensors=self.tensors,
                             tiling=self.tiling, flops=self.flops)


def deal_parts(cores: int, block_counts: list[int]) -> list[list[tuple[int, int]]]:
    """The grouped scheduler of vector kernels: part after part on every core, part p's blocks
    dealt round-robin starting at the core after part p-1's last block. Returns, per core that
    gets work, its (part, block) pairs in the order it runs them."""
    lanes: list[list[tuple[int, int]]] = [[] for _ in range(cores)]
    start = 0
    for p, n in enumerate(block_counts):
        for j in range(n):
            lanes[(start + j) % cores].append((p, j))
        start = (start + n) % cores
    return [lane for lane in lanes if lane]


def grouped_vector_kernel(name: str, chip: ChipSpec, parts: list[VectorPart]) -> KernelPlan:
    """Several vector kernels (``parts``) as one AIV kernel, dealt by :func:`deal_parts`; on a
    core, every flag a part left set is waited for before the next part starts, so it starts on
    free buffers. Blocks without tiles are dropped. One part is that part's own kernel. The plan
    takes the first part's tiling."""
    if len(parts) == 1:
        return parts[0].kernel(name, chip)
    blocks = [[tiles for tiles in map(list, p.blocks) if tiles] for p in parts]
    progs = []
    for lane in deal_parts(chip.vector_cores, [len(b) for b in blocks]):
        b = ProgramBuilder(chip, "AIV")
        for s, (p, j) in enumerate(lane):
            if s:
                drain(b, since)
            since = len(b.prog.kind)
            if parts[p].prologue is not None:
                parts[p].prologue(b)
            parts[p].pipeline.run(b, blocks[p][j])
        progs.append([b.build()])
    first = parts[0]
    t = first.tiling(len(blocks[0])) if callable(first.tiling) else first.tiling
    return KernelPlan(name, "AIV", progs, tensors=tuple(dict.fromkeys(x for p in parts for x in p.tensors)),
                      tiling=t, flops=sum(p.flops for p in parts))

