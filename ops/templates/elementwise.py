"""Elementwise/vector kernel template: tiles over UB, double-buffered MTE2 -> VECTOR -> MTE3.

Layers (as CATLASS layers its GEMMs):

* kernel: the flat element range is split into ``block_dim`` contiguous chunks, one per AIV block;
* block: each block walks its chunk in tiles of ``tile_elems``; ``buffer_num`` (2 = ping-pong)
  UB buffers per tensor let MTE2 load tile j+1 while VECTOR computes tile j and MTE3 stores j-1.
  Flags: MTE2->V "tile loaded", V->MTE3 "tile computed", V->MTE2 "input buffer free", MTE3->V
  "output buffer free" -- one event id per buffer;
* tile: the instructions for one tile: an MTE2 load per input, the vector ops, an MTE3 store per
  output.

The tiling is an explicit, named parameter set (:class:`ElementwiseTiling`); :func:`default_tiling`
picks the largest tile that fits UB with double buffering, and spreads tiles over all vector cores.
A user tiling that does not fit UB is an error, never a silent spill.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan, Pipe, ProgramBuilder

V, MTE2, MTE3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3


@dataclass(frozen=True)
class Operand:
    """A GM tensor the kernel streams: its plan name and device bytes per element."""

    name: str
    itemsize: float


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
    need = t.buffer_num * t.tile_elems * _ub_bytes_per_elem(inputs, outputs, temps_bytes, alias_output)
    if need > chip.buffers.ub:
        raise ISAError(f"{name}: tiling {t} needs {need:.0f} bytes of UB; {chip.name} has {chip.buffers.ub}")
    if t.block_dim < 1 or t.tile_elems < 1 or t.buffer_num < 1:
        raise ISAError(f"{name}: tiling {t}: block_dim, tile_elems and buffer_num must be >= 1")
    if t.buffer_num > chip.runtime.event_ids:
        raise ISAError(f"{name}: buffer_num {t.buffer_num} exceeds the {chip.runtime.event_ids} event ids")


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
    tile_bytes = [math.ceil(t.tile_elems * o.itemsize / 32) * 32 for o in inputs]
    out_bytes = [math.ceil(t.tile_elems * o.itemsize / 32) * 32 for o in outputs]
    slot = math.ceil(t.tile_elems * per_elem / 32) * 32        # one buffer's worth of every tensor
    # each block's chunk starts on a burst (512-byte) boundary of every tensor, as well-tuned kernels
    # align them (CATLASS: 512-byte aligned GM accesses move fastest)
    quantum = max(1, int(chip.memory.burst_bytes / min([o.itemsize for o in inputs + outputs] or [1])))
    chunk = -(-numel // t.block_dim)
    chunk = -(-chunk // quantum) * quantum
    blocks = []
    for bi in range(-(-numel // chunk)):
        lo = bi * chunk
        hi = min(numel, lo + chunk)
        b = ProgramBuilder(chip, "AIV")
        j = 0
        for start in range(lo, hi, t.tile_elems):
            n = min(t.tile_elems, hi - start)
            buf = j % t.buffer_num
            base = buf * slot
            in_addr, a = [], base
            for o, tb in zip(inputs, tile_bytes):
                in_addr.append(a)
                a += tb
            out_addr = []
            for o, ob in zip(outputs, out_bytes):
                out_addr.append(in_addr[0] if alias and in_addr else a)
                a += 0 if alias else ob
            b.scalar(1)
            if inputs:
                if j >= t.buffer_num:
                    b.wait_flag(V if steps else MTE3, MTE2, buf)        # buffer free again
                for o, addr in zip(inputs, in_addr):
                    b.load_gm(Buf.UB, addr, o.name, int(start * o.itemsize), 1, _nbytes(n, o.itemsize))
            if steps:
                if inputs:
                    b.set_flag(MTE2, V, buf)
                    b.wait_flag(MTE2, V, buf)
                if j >= t.buffer_num:
                    b.wait_flag(MTE3, V, buf)
                for s in steps:
                    b.vector(s.op_class, s.dtype, max(1, int(n * s.passes)), addrs=(base,))
                if inputs:
                    b.set_flag(V, MTE2, buf)
                b.set_flag(V, MTE3, buf)
                b.wait_flag(V, MTE3, buf)
            else:
                b.set_flag(MTE2, MTE3, buf)
                b.wait_flag(MTE2, MTE3, buf)
            for o, addr in zip(outputs, out_addr):
                b.store_gm(addr, o.name, int(start * o.itemsize), 1, _nbytes(n, o.itemsize))
            b.set_flag(MTE3, V if steps else MTE2, buf)
            j += 1
        blocks.append([b.build()])
    return KernelPlan(name, "AIV", blocks, tensors=tuple(o.name for o in inputs + outputs),
                      tiling=t if len(blocks) == t.block_dim else ElementwiseTiling(t.tile_elems, len(blocks), t.buffer_num),
                      flops=flops_per_elem * numel)


def _nbytes(n: int, itemsize: float) -> int:
    return max(1, math.ceil(n * itemsize))
