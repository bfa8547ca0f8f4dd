"""Gather template: rows of a GM table picked by an index list, copied to a GM output.

Layered on the vector-pipeline block layer (ops/templates/vector.py):

* kernel: the index list is split into ``block_dim`` contiguous chunks, one per AIV block
  (:func:`split_range`);
* block: :class:`VectorPipeline` without a compute stage (a copy): each block walks its chunk in
  tiles of ``rows_per_tile`` rows, ``buffer_num`` (2 = ping-pong) UB slots, so MTE2 gathers tile
  j+1 while MTE3 stores tile j;
* tile: load = the index tile's MTE2 load (when the indices live in a GM tensor), the scalar work
  that issues one row address per run, the indexed MTE2 gather (isa ``load_gm_rows``: its cost
  follows the index pattern); store = one contiguous MTE3 store of the gathered rows.

``index`` is an :class:`ascend_sim.isa.IndexList` (full mode: the real values) or an
:class:`ascend_sim.isa.IndexPattern` (meta mode: a declared pattern); each tile gets its slice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan, ProgramBuilder

from .vector import Slot, VectorPipeline, split_range, vector_kernel


@dataclass(frozen=True)
class GatherTiling:
    rows_per_tile: int
    block_dim: int
    buffer_num: int = 2

    def __str__(self) -> str:
        return f"rows_per_tile={self.rows_per_tile} block_dim={self.block_dim} buffer_num={self.buffer_num}"


def _slot_bytes(chip: ChipSpec, rows: int, row_bytes: int, index_itemsize: float) -> int:
    a = chip.buffers.align.get("ub", 1)
    up = lambda b: -(-int(math.ceil(b)) // a) * a   # noqa: E731
    return up(rows * up(row_bytes)) + (up(rows * index_itemsize) if index_itemsize else 0)


def default_tiling(chip: ChipSpec, count: int, row_bytes: int, index_itemsize: float = 0,
                   buffer_num: int = 2) -> GatherTiling:
    """The most rows per tile that fit UB with ``buffer_num`` slots, spread over the vector cores."""
    per_row = _slot_bytes(chip, 1, row_bytes, index_itemsize)
    fit = max(1, chip.buffers.ub // (buffer_num * per_row))
    while fit > 1 and buffer_num * _slot_bytes(chip, fit, row_bytes, index_itemsize) > chip.buffers.ub:
        fit -= 1
    cores = chip.vector_cores
    per_core = -(-count // cores)
    rows = max(1, min(fit, per_core))
    return GatherTiling(rows, max(1, min(cores, -(-count // rows))), buffer_num)


def gather_plan(name: str, chip: ChipSpec, *, table: str, out: str, index, row_bytes: int,
                row_stride: int | None = None, table_rows: int | None = None, index_tensor: str | None = None,
                index_itemsize: float = 0, tiling: GatherTiling | None = None) -> KernelPlan:
    """out[j] = table[index[j]] for every j (rows of ``row_bytes``; table rows ``row_stride`` apart)."""
    count = len(index)
    isz = index_itemsize if index_tensor else 0
    t = tiling or default_tiling(chip, count, row_bytes, isz)
    if t.rows_per_tile < 1 or t.block_dim < 1 or not 1 <= t.buffer_num <= chip.runtime.event_ids:
        raise ISAError(f"{name}: tiling {t}: rows_per_tile, block_dim >= 1 and buffer_num in 1..{chip.runtime.event_ids}")
    slot = _slot_bytes(chip, t.rows_per_tile, row_bytes, isz)
    if t.buffer_num * slot > chip.buffers.ub:
        raise ISAError(f"{name}: tiling {t} needs {t.buffer_num * slot} bytes of UB; {chip.name} has {chip.buffers.ub}")
    rows_bytes = _slot_bytes(chip, t.rows_per_tile, row_bytes, 0)

    def load(b: ProgramBuilder, tile, s: Slot) -> None:
        start, n = tile
        if index_tensor:
            b.load_gm(Buf.UB, s.base + rows_bytes, index_tensor, int(start * isz), 1, max(1, math.ceil(n * isz)),
                      name="MTE2.index_tile")
        b.load_gm_rows(s.base, table, 0, row_bytes, index.slice(start, start + n), row_stride=row_stride,
                       table_rows=table_rows)
        b.scalar(b.prog.accesses[-1].index.runs, name="SCALAR.row_addresses")

    def store(b: ProgramBuilder, tile, s: Slot) -> None:
        start, n = tile
        b.store_gm(s.base, out, start * row_bytes, n, row_bytes)      # adjacent GM rows: one run

    pipe = VectorPipeline(load, None, store, buffer_num=t.buffer_num, slot_bytes=slot, scalar_per_tile=0)
    blocks = [[(st, min(t.rows_per_tile, hi - st)) for st in range(lo, hi, t.rows_per_tile)]
              for lo, hi in split_range(count, t.block_dim)]
    tensors = (table, out) + ((index_tensor,) if index_tensor else ())
    return vector_kernel(name, chip, blocks, pipe, tensors=tensors,
                         tiling=lambda nb: t if nb == t.block_dim else GatherTiling(t.rows_per_tile, nb, t.buffer_num))
