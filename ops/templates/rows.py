"""Row kernel template: norms, softmax, rotary and other ops that work row by row.

The data is viewed as ``rows`` x ``cols`` (the op's reduction or rotation axis last). Layers:

* kernel: rows are split into ``block_dim`` contiguous chunks, one per AIV block;
* block: operands that are the same for every row (gamma, beta, cos tables...) are loaded once;
  then tiles of ``rows_per_tile`` rows are streamed with ``buffer_num`` UB buffers (2 = MTE2 loads
  tile j+1 while VECTOR works on tile j and MTE3 stores tile j-1), flags as in the elementwise
  template;
* tile: an MTE2 load per input (rows of ``cols`` elements, or one element per row), the op's
  vector steps, an MTE3 store per output.

When one row does not fit UB, the row is cut into ``col_chunk`` pieces and the op's ``passes``
(e.g. softmax: max, then sum, then normalise) each stream the row again: bytes read grow with the
number of passes, which is what long rows cost on the hardware.

Vector steps say their op class, the dtype they compute in, and how many elements they touch:
``per="elem"`` -> rows x cols x count, ``per="row"`` -> rows x count (per-row scalars such as
1/sqrt(mean + eps)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan, Pipe, ProgramBuilder

V, MTE2, MTE3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3


@dataclass(frozen=True)
class RowOperand:
    """A GM tensor of a row kernel. kind: "row" (rows x cols, or rows x ``cols`` when given),
    "shared" (one row of cols used by every row), "per_row" (one element per row)."""

    name: str
    itemsize: float
    kind: str = "row"
    cols: int | None = None


@dataclass(frozen=True)
class RowStep:
    op_class: str
    dtype: str
    per: str = "elem"
    count: float = 1.0


@dataclass(frozen=True)
class RowTiling:
    rows_per_tile: int
    block_dim: int
    col_chunk: int
    buffer_num: int = 2

    def __str__(self) -> str:
        return (f"rows_per_tile={self.rows_per_tile} block_dim={self.block_dim} col_chunk={self.col_chunk} "
                f"buffer_num={self.buffer_num}")


def _cols(op: RowOperand, cols: int) -> int:
    return 1 if op.kind == "per_row" else (op.cols if op.cols is not None else cols)


def _round32(n: float) -> int:
    return int(math.ceil(n / 32) * 32)


def _ub_need(t: RowTiling, cols: int, inputs, outputs, temps_bytes: float) -> int:
    """UB bytes of a tiling. Shared operands stay resident when rows are whole; when rows are cut
    into chunks, each chunk brings its piece of them along."""
    chunk_frac = t.col_chunk / cols
    resident = t.col_chunk >= cols
    per_tile = 0
    for o in list(inputs) + list(outputs):
        c = _cols(o, cols)
        if o.kind == "shared":
            if not resident:
                per_tile += _round32(max(1, math.ceil(c * chunk_frac)) * o.itemsize)
            continue
        c = c if o.kind == "per_row" else max(1, math.ceil(c * chunk_frac))
        per_tile += _round32(t.rows_per_tile * c * o.itemsize)
    per_tile += _round32(t.rows_per_tile * t.col_chunk * temps_bytes)
    shared = sum(_round32(_cols(o, cols) * o.itemsize) for o in inputs if o.kind == "shared") if resident else 0
    return t.buffer_num * per_tile + shared


def default_tiling(chip: ChipSpec, rows: int, cols: int, inputs, outputs, temps_bytes: float = 0.0,
                   buffer_num: int = 2) -> RowTiling:
    cores = chip.vector_cores
    per_core = max(1, -(-rows // cores))
    t = RowTiling(1, min(cores, rows), cols, buffer_num)
    if _ub_need(t, cols, inputs, outputs, temps_bytes) > chip.buffers.ub:
        # a row does not fit: cut it into chunks of whole 256-byte repeats
        chunk = cols
        while chunk > 64 and _ub_need(RowTiling(1, t.block_dim, chunk, buffer_num), cols, inputs, outputs,
                                      temps_bytes) > chip.buffers.ub:
            chunk = max(64, chunk // 2 // 64 * 64)
        return RowTiling(1, t.block_dim, chunk, buffer_num)
    r = 1
    while r < per_core:   # grow the tile while it fits: doubling, then by quarters
        nxt = min(per_core, r * 2 if r < 64 else r + r // 4)
        if _ub_need(RowTiling(nxt, t.block_dim, cols, buffer_num), cols, inputs, outputs, temps_bytes) > chip.buffers.ub:
            break
        r = nxt
    blocks = max(1, min(cores, -(-rows // r)))
    return RowTiling(r, blocks, cols, buffer_num)


def row_plan(name: str, chip: ChipSpec, rows: int, cols: int, inputs: list[RowOperand], outputs: list[RowOperand],
             steps: list[RowStep], *, passes: int = 1, temps_bytes: float = 0.0, tiling: RowTiling | None = None,
             flops_per_elem: float = 0.0) -> KernelPlan:
    if rows < 1 or cols < 1:
        rows, cols = max(rows, 1), max(cols, 1)
    # the vector steps need a working buffer of their compute dtype over the tile
    from ascend_sim.dtypes import get_dtype
    work = max([get_dtype(s.dtype).itemsize for s in steps if s.per == "elem"] or [0.0])
    temps_bytes = max(temps_bytes, work)
    t = tiling or default_tiling(chip, rows, cols, inputs, outputs, temps_bytes)
    need = _ub_need(t, cols, inputs, outputs, temps_bytes)
    if need > chip.buffers.ub:
        raise ISAError(f"{name}: tiling {t} needs {need} bytes of UB; {chip.name} has {chip.buffers.ub}")
    if min(t.rows_per_tile, t.block_dim, t.col_chunk, t.buffer_num) < 1:
        raise ISAError(f"{name}: tiling {t}: every field must be >= 1")
    chunked = t.col_chunk < cols
    n_pass = passes if chunked else 1
    per_block = -(-rows // t.block_dim)
    # UB layout: shared operands first, then buffer_num slots of the per-tile operands
    shared_addr = {}
    a = 0
    for o in inputs:
        if o.kind == "shared" and not chunked:
            shared_addr[o.name] = a
            a += _round32(_cols(o, cols) * o.itemsize)
    slot_base = a
    slot = (chip.buffers.ub - slot_base) // t.buffer_num // 32 * 32
    blocks = []
    for bi in range(t.block_dim):
        r_lo, r_hi = bi * per_block, min(rows, (bi + 1) * per_block)
        if r_lo >= r_hi:
            break
        b = ProgramBuilder(chip, "AIV")
        for o in inputs:
            if o.kind == "shared" and not chunked:
                b.load_gm(Buf.UB, shared_addr[o.name], o.name, 0, 1, max(1, math.ceil(_cols(o, cols) * o.itemsize)))
        j = 0
        for r0 in range(r_lo, r_hi, t.rows_per_tile):
            nr = min(t.rows_per_tile, r_hi - r0)
            for p in range(n_pass):
                last_pass = p == n_pass - 1
                for c0 in range(0, cols, t.col_chunk):
                    nc = min(t.col_chunk, cols - c0)
                    buf = j % t.buffer_num
                    base = slot_base + buf * slot
                    b.scalar(1)
                    if j >= t.buffer_num:
                        b.wait_flag(V, MTE2, buf)
                    addr = base
                    for o in inputs:
                        oc = _cols(o, cols)
                        if o.kind == "shared":
                            if chunked:     # its piece of this chunk
                                w = max(1, math.ceil(oc * nc / cols))
                                b.load_gm(Buf.UB, addr, o.name, int((c0 * oc // cols) * o.itemsize), 1,
                                          max(1, math.ceil(w * o.itemsize)))
                                addr += _round32(math.ceil(oc * t.col_chunk / cols) * o.itemsize)
                            continue
                        if o.kind == "per_row":
                            if c0 == 0:
                                b.load_gm(Buf.UB, addr, o.name, int(r0 * o.itemsize), 1, max(1, math.ceil(nr * o.itemsize)))
                            addr += _round32(t.rows_per_tile * o.itemsize)
                            continue
                        w = nc if oc == cols else max(1, math.ceil(oc * nc / cols))
                        off = (r0 * oc + (c0 * oc // cols)) * o.itemsize
                        b.load_gm(Buf.UB, addr, o.name, int(off), nr, max(1, math.ceil(w * o.itemsize)),
                                  max(1, math.ceil(oc * o.itemsize)))
                        addr += _round32(t.rows_per_tile * math.ceil(oc * t.col_chunk / cols) * o.itemsize)
                    b.set_flag(MTE2, V, buf)
                    b.wait_flag(MTE2, V, buf)
                    if j >= t.buffer_num:
                        b.wait_flag(MTE3, V, buf)
                    for s in steps:
                        n = nr * (nc if s.per == "elem" else 1) * s.count
                        b.vector(s.op_class, s.dtype, max(1, int(math.ceil(n))), addrs=(base,))
                    b.set_flag(V, MTE2, buf)
                    b.set_flag(V, MTE3, buf)
                    b.wait_flag(V, MTE3, buf)
                    if last_pass:
                        for o in outputs:
                            oc = _cols(o, cols)
                            if o.kind == "per_row":
                                if c0 + nc >= cols:
                                    b.store_gm(base, o.name, int(r0 * o.itemsize), 1, max(1, math.ceil(nr * o.itemsize)))
                                continue
                            w = nc if oc == cols else max(1, math.ceil(oc * nc / cols))
                            off = (r0 * oc + (c0 * oc // cols)) * o.itemsize
                            b.store_gm(base, o.name, int(off), nr, max(1, math.ceil(w * o.itemsize)),
                                       max(1, math.ceil(oc * o.itemsize)))
                    b.set_flag(MTE3, V, buf)
                    j += 1
        blocks.append([b.build()])
    return KernelPlan(name, "AIV", blocks, tensors=tuple(o.name for o in inputs + outputs),
                      tiling=RowTiling(t.rows_per_tile, len(blocks), t.col_chunk, t.buffer_num),
                      flops=flops_per_elem * rows * cols)
