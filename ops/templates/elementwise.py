"""Elementwise/vector kernel template: tiles over UB, double-buffered MTE2 -> VECTOR -> MTE3.

Layers (as CATLASS layers its GEMMs):

* kernel: the flat element range is split into ``block_dim`` contiguous chunks, one per AIV block;
* block: each block walks its chunk in tiles of ``tile_elems`` through the vector-pipeline block
  layer (templates/vector.py: ``buffer_num`` UB buffers, its MTE2 -> VECTOR -> MTE3 flags);
* tile: the instructions for one tile: an MTE2 load per input, the vector ops, an MTE3 store per
  output.

The tiling is an explicit, named parameter set (:class:`ElementwiseTiling`); :func:`default_tiling`
picks the largest tile that fits UB with double buffering, and spreads tiles over all vector cores.
A user tiling that does not fit UB is an error, never a silent spill.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan

from .vector import KernelOp, VectorPipeline, check_buffers, split_range, vector_kernel


@dataclass(frozen=True)
class Operand:
    """A GM tensor the kernel streams: its plan name, device bytes per element, and where its
    element 0 sits (``offset``: bytes into the named tensor -- a run of rows of a larger tensor,
    a region of the workspace)."""

    name: str
    itemsize: float
    offset: int = 0


@dataclass(frozen=True)
class VectorStep:
    """One vector instruction per tile: op class, dtype it computes in, and how many passes."""

    op_class: str
    dtype: str
    passes: float = 1.0


@dataclass(frozen=True)
class ElementwiseTiling:
    tile_elems: int
    block_dim: int
    buffer_num: int = 2

    def __str__(self) -> str:
        return f"tile_elems={self.tile_elems} block_dim={self.block_dim} buffer_num={self.buffer_num}"


@dataclass(frozen=True)
class ElementwiseKernel:
    """An elementwise kernel described once: ops return it from their spec, and take both their
    default tiling and their plan (under any tiling) from it."""

    numel: int
    inputs: tuple[Operand, ...]
    outputs: tuple[Operand, ...]
    steps: tuple[VectorStep, ...] = ()
    temps_bytes: float = 0.0
    flops_per_elem: float = 0.0

    def default_tiling(self, chip: ChipSpec) -> ElementwiseTiling:
        return default_tiling(chip, self.numel, self.inputs, self.outputs, self.temps_bytes, not self.steps)

    def plan(self, name: str, chip: ChipSpec, tiling: ElementwiseTiling | None = None) -> KernelPlan:
        return elementwise_plan(name, chip, self.numel, list(self.inputs), list(self.outputs), list(self.steps),
                                temps_bytes=self.temps_bytes, tiling=tiling, flops_per_elem=self.flops_per_elem)


ElementwiseKernelOp = KernelOp        # an op whose main kernel is one ElementwiseKernel


def _ub_bytes_per_elem(inputs, outputs, temps_bytes: float, alias_output: bool) -> float:
    b = sum(o.itemsize for o in inputs) + temps_bytes
    if not alias_output:
        b += sum(o.itemsize for o in outputs)
    return b


def default_tiling(chip: ChipSpec, numel: int, inputs, outputs, temps_bytes: float = 0.0,
                   alias_output: bool = False, buffer_num: int = 2) -> ElementwiseTiling:
    per_elem = _ub_bytes_per_elem(inputs, outputs, temps_bytes, alias_output)
    block = chip.vector.repeat_bytes  # tiles are whole 256-byte repeats of the narrowest tensor
    narrow = min([o.itemsize for o in list(inputs) + list(outputs)] or [1])
    quantum = max(1, int(block / narrow))
    fit = int(chip.buffers.ub // (buffer_num * per_elem)) if per_elem else numel
    tile = max(quantum, fit // quantum * quantum)
    cores = chip.vector_cores
    # keep every vector core busy: at least one tile per core when the tensor is big enough
    per_core = -(-numel // cores)
    if per_core < tile:
        tile = max(quantum, -(-per_core // quantum) * quantum)
    blocks = max(1, min(cores, -(-numel // tile)))
    return ElementwiseTiling(tile_elems=tile, block_dim=blocks, buffer_num=buffer_num)


def check_tiling(name: str, chip: ChipSpec, t: ElementwiseTiling, inputs, outputs, temps_bytes: float,
                 alias_output: bool) -> None:
    if t.block_dim < 1 or t.tile_elems < 1 or t.buffer_num < 1:
        raise ISAError(f"{name}: tiling {t}: block_dim, tile_elems and buffer_num must be >= 1")
    check_buffers(name, chip, t, t.buffer_num * t.tile_elems * _ub_bytes_per_elem(inputs, outputs, temps_bytes,
                                                                                    alias_output))


def elementwise_plan(name: str, chip: ChipSpec, numel: int, inputs: list[Operand], outputs: list[Operand],
                     steps: list[VectorStep], *, temps_bytes: float = 0.0,
                     tiling: ElementwiseTiling | None = None, flops_per_elem: float = 0.0) -> KernelPlan:
    """A kernel that streams ``numel`` elements of each input through UB, runs ``steps`` on every
    tile and writes each output. With no steps, an output is stored straight from its input's
    buffer (a copy)."""
    alias = not steps
    t = tiling or default_tiling(chip, numel, inputs, outputs, temps_bytes, alias)
    check_tiling(name, chip, t, inputs, outputs, temps_bytes, alias)
    per_elem = _ub_bytes_per_elem(inputs, outputs, temps_bytes, alias)
    blk = chip.memory.block_bytes
    tile_bytes = [_round_up(t.tile_elems * o.itemsize, blk) for o in inputs]
    out_bytes = [0 if alias else _round_up(t.tile_elems * o.itemsize, blk) for o in outputs]
    in_off = [sum(tile_bytes[:i]) for i in range(len(inputs))]
    out_off = [sum(tile_bytes) + sum(out_bytes[:i]) for i in range(len(outputs))]
    if alias and inputs:
        out_off = [0] * len(outputs)          # a copy stores from its input's buffer

    def load(b, tile, s):
        start, n = tile
        for o, off in zip(inputs, in_off):
            b.load_gm(Buf.UB, s.base + off, o.name, o.offset + int(start * o.itemsize), 1, _nbytes(n, o.itemsize))

    def compute(b, tile, s):
        for st in steps:
            b.vector(st.op_class, st.dtype, max(1, int(tile[1] * st.passes)), addrs=(s.base,))

    def store(b, tile, s):
        start, n = tile
        for o, off in zip(outputs, out_off):
            b.store_gm(s.base + off, o.name, o.offset + int(start * o.itemsize), 1, _nbytes(n, o.itemsize))

    pipe = VectorPipeline(load if inputs else None, compute if steps else None, store, t.buffer_num, 0,
                          _round_up(t.tile_elems * per_elem, blk),   # one buffer's worth of every tensor
                          shape=lambda tile: tile[1])                # a tile's instructions: its length
    # each block's chunk starts on a burst (512-byte) boundary of every tensor, as well-tuned kernels
    # align them (CATLASS: 512-byte aligned GM accesses move fastest)
    quantum = max(1, int(chip.memory.burst_bytes / min([o.itemsize for o in inputs + outputs] or [1])))
    blocks = [[(start, min(t.tile_elems, hi - start)) for start in range(lo, hi, t.tile_elems)]
              for lo, hi in split_range(numel, t.block_dim, quantum)]
    tensors = tuple(dict.fromkeys(o.name for o in inputs + outputs))
    return vector_kernel(name, chip, blocks, pipe, tensors=tensors,
                         tiling=lambda n: t if n == t.block_dim else replace(t, block_dim=n),
                         flops=flops_per_elem * numel)


def _round_up(n: float, unit: int) -> int:
    return math.ceil(n / unit) * unit


def _nbytes(n: int, itemsize: float) -> int:
    return max(1, math.ceil(n * itemsize))
