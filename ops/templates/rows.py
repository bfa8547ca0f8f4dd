"""Row kernel template: norms, softmax, rotary and other ops that work row by row.

The data is viewed as ``rows`` x ``cols`` (the op's reduction or rotation axis last). Layers:

* kernel: rows are split into ``block_dim`` contiguous chunks, one per AIV block;
* block: operands that are the same for every row (gamma, beta, cos tables...) are loaded once;
  then tiles of ``rows_per_tile`` rows are streamed through the vector-pipeline block layer
  (templates/vector.py: ``buffer_num`` UB buffers, its MTE2 -> VECTOR -> MTE3 flags);
* tile: an MTE2 load per input (rows of ``cols`` elements, or one element per row; a table that
  repeats along some row axes is addressed through its :class:`RowMap`), the op's vector steps,
  an MTE3 store per output. An operand may be a sub-view of its tensor (a base offset, a leading
  dimension, batches of rows a stride apart: see :class:`RowOperand`): the template addresses it
  where it is.

:func:`row_part` describes the kernel before it is built (a :class:`~.vector.VectorPart`), so
that several row kernels can run as one (:func:`~.vector.grouped_vector_kernel`).

When one row does not fit UB, the row is cut into ``col_chunk`` pieces and the op's ``passes``
(e.g. softmax: max, then sum, then normalise) each stream the row again: bytes read grow with the
number of passes, which is what long rows cost on the hardware.

Vector steps say their op class, the dtype they compute in, and how many elements they touch:
``per="elem"`` -> rows x cols x count, ``per="row"`` -> rows x count (per-row scalars such as
1/sqrt(mean + eps)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ascend_sim.dtypes import get_dtype
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan

from .vector import KernelOp, VectorPart, VectorPipeline, check_buffers, split_range


@dataclass(frozen=True)
class RowMap:
    """A "row" operand with fewer rows than x: a table that repeats along some of the axes that make
    up x's rows (cos/sin shared by the heads, a mask shared by the batch). ``row_dims`` are the sizes
    of those axes (outer first), ``strides`` how many table rows one step along each advances (0:
    the table repeats along it); the table has ``table_rows`` rows. A load of ``nr`` x rows from x
    row ``r0`` reads the table row ``r0`` maps to -- moved back when the run would pass the table's
    end (where the kernel wraps round to its first row): the same bytes, the lines really read."""

    row_dims: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def table_rows(self) -> int:
        return math.prod(n for n, s in zip(self.row_dims, self.strides) if s)

    def first_row(self, r0: int, nr: int) -> int:
        row, t_row = r0, 0
        for n, s in zip(reversed(self.row_dims), reversed(self.strides)):
            row, idx = divmod(row, n)
            t_row += idx * s
        return min(t_row, max(0, self.table_rows - nr))


@dataclass(frozen=True)
class RowOperand:
    """A GM tensor of a row kernel. kind: "row" (rows x cols, or rows x ``cols`` when given),
    "shared" (one row of cols used by every row), "per_row" (one element per row). A "row"
    operand with a ``row_map`` is a table addressed through it (see :class:`RowMap`).

    Its layout in the named tensor (defaults: dense from byte 0), as CATLASS layouts place a
    sub-view: ``offset``, the bytes before its row 0; ``ld_bytes``, the bytes from one row to the
    next when the rows are a sub-view of a wider matrix (None: the operand's own row width; for a
    "per_row" operand, the bytes between its elements); ``batch_rows`` and ``batch_stride``, rows
    that come in batches of ``batch_rows``, each ``batch_stride`` bytes after the previous one
    (0: one batch). A tile's rows are addressed from its first row."""

    name: str
    itemsize: float
    kind: str = "row"
    cols: int | None = None
    row_map: RowMap | None = None
    offset: int = 0
    ld_bytes: int | None = None
    batch_rows: int = 0
    batch_stride: int = 0

    def at(self, row: int, width: int, elem: float = 0) -> int:
        """Byte offset in the tensor of element ``elem`` of row ``row`` (of ``width`` elements)."""
        b, r = divmod(row, self.batch_rows) if self.batch_rows else (0, row)
        base = self.offset + b * self.batch_stride
        if self.ld_bytes is None:
            return base + int((r * width + elem) * self.itemsize)
        return base + r * self.ld_bytes + int(elem * self.itemsize)


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


@dataclass(frozen=True)
class RowKernel:
    """A row kernel described once: ops take both their default tiling and their plan (under any
    tiling) from it. ``passes``: how often a row that does not fit UB is streamed."""

    rows: int
    cols: int
    inputs: tuple[RowOperand, ...]
    outputs: tuple[RowOperand, ...]
    steps: tuple[RowStep, ...]
    passes: int = 1
    temps_bytes: float = 0.0
    flops_per_elem: float = 0.0

    def default_tiling(self, chip: ChipSpec) -> RowTiling:
        return default_tiling(chip, max(self.rows, 1), max(self.cols, 1), self.inputs, self.outputs,
                              work_temps_bytes(self.steps, self.temps_bytes))

    def ub_need(self, t: RowTiling, chip: ChipSpec) -> int:
        return ub_need(t, max(self.cols, 1), self.inputs, self.outputs, work_temps_bytes(self.steps, self.temps_bytes),
                       chip.memory.block_bytes)

    def part(self, name: str, chip: ChipSpec, tiling: RowTiling | None = None) -> VectorPart:
        return row_part(name, chip, self.rows, self.cols, list(self.inputs), list(self.outputs), list(self.steps),
                        passes=self.passes, temps_bytes=self.temps_bytes, tiling=tiling,
                        flops_per_elem=self.flops_per_elem)

    def plan(self, name: str, chip: ChipSpec, tiling: RowTiling | None = None) -> KernelPlan:
        return self.part(name, chip, tiling).kernel(name, chip)


RowKernelOp = KernelOp        # an op whose main kernel is one RowKernel


def _cols(op: RowOperand, cols: int) -> int:
    return 1 if op.kind == "per_row" else (op.cols if op.cols is not None else cols)


def _whole_blocks(n: float, block: int) -> int:
    """UB addresses and buffer sizes are whole blocks (chip.memory.block_bytes)."""
    return int(math.ceil(n / block) * block)


def work_temps_bytes(steps, temps_bytes: float = 0.0) -> float:
    """UB scratch bytes per element a row tile needs: the op's own, and at least one working
    buffer of the widest dtype its per-element vector steps compute in."""
    return max(temps_bytes, max([get_dtype(s.dtype).itemsize for s in steps if s.per == "elem"] or [0.0]))


def ub_need(t: RowTiling, cols: int, inputs, outputs, temps_bytes: float, block: int) -> int:
    """UB bytes of a tiling. Shared operands stay resident when rows are whole; when rows are cut
    into chunks, each chunk brings its piece of them along (sizes in whole ``block``s)."""
    blk = block
    chunk_frac = t.col_chunk / cols
    resident = t.col_chunk >= cols
    per_tile = 0
    for o in list(inputs) + list(outputs):
        c = _cols(o, cols)
        if o.kind == "shared":
            if not resident:
                per_tile += _whole_blocks(max(1, math.ceil(c * chunk_frac)) * o.itemsize, blk)
            continue
        c = c if o.kind == "per_row" else max(1, math.ceil(c * chunk_frac))
        per_tile += _whole_blocks(t.rows_per_tile * c * o.itemsize, blk)
    per_tile += _whole_blocks(t.rows_per_tile * t.col_chunk * temps_bytes, blk)
    shared = sum(_whole_blocks(_cols(o, cols) * o.itemsize, blk) for o in inputs if o.kind == "shared") if resident else 0
    return t.buffer_num * per_tile + shared


def default_tiling(chip: ChipSpec, rows: int, cols: int, inputs, outputs, temps_bytes: float = 0.0,
                   buffer_num: int = 2) -> RowTiling:
    cores = chip.vector_cores
    per_core = max(1, -(-rows // cores))
    t = RowTiling(1, min(cores, rows), cols, buffer_num)
    block = chip.memory.block_bytes
    if ub_need(t, cols, inputs, outputs, temps_bytes, block) > chip.buffers.ub:
        # a row does not fit: cut it into chunks of whole 256-byte repeats (of fp32 work)
        rep = chip.vector.repeat_bytes // 4
        chunk = cols
        while chunk > rep and ub_need(RowTiling(1, t.block_dim, chunk, buffer_num), cols, inputs, outputs,
                                      temps_bytes, block) > chip.buffers.ub:
            chunk = max(rep, chunk // 2 // rep * rep)
        return RowTiling(1, t.block_dim, chunk, buffer_num)
    r = 1
    while r < per_core:   # grow the tile while it fits: doubling, then by quarters
        nxt = min(per_core, r * 2 if r < 64 else r + r // 4)
        if ub_need(RowTiling(nxt, t.block_dim, cols, buffer_num), cols, inputs, outputs, temps_bytes,
                   block) > chip.buffers.ub:
            break
        r = nxt
    blocks = max(1, min(cores, -(-rows // r)))
    return RowTiling(r, blocks, cols, buffer_num)


def row_plan(name: str, chip: ChipSpec, rows: int, cols: int, inputs: list[RowOperand], outputs: list[RowOperand],
             steps: list[RowStep], *, passes: int = 1, temps_bytes: float = 0.0, tiling: RowTiling | None = None,
             flops_per_elem: float = 0.0) -> KernelPlan:
    """The row kernel's AIV KernelPlan (see :func:`row_part`)."""
    return row_part(name, chip, rows, cols, inputs, outputs, steps, passes=passes, temps_bytes=temps_bytes,
                    tiling=tiling, flops_per_elem=flops_per_elem).kernel(name, chip)


def row_part(name: str, chip: ChipSpec, rows: int, cols: int, inputs: list[RowOperand], outputs: list[RowOperand],
             steps: list[RowStep], *, passes: int = 1, temps_bytes: float = 0.0, tiling: RowTiling | None = None,
             flops_per_elem: float = 0.0) -> VectorPart:
    """The row kernel of ``rows`` x ``cols`` described before it is built: its blocks, pipeline and
    prologue (a :class:`~.vector.VectorPart`)."""
    if rows < 1 or cols < 1:
        rows, cols = max(rows, 1), max(cols, 1)
    temps_bytes = work_temps_bytes(steps, temps_bytes)
    t = tiling or default_tiling(chip, rows, cols, inputs, outputs, temps_bytes)
    if min(t.rows_per_tile, t.block_dim, t.col_chunk, t.buffer_num) < 1:
        raise ISAError(f"{name}: tiling {t}: every field must be >= 1")
    blk = chip.memory.block_bytes
    check_buffers(name, chip, t, ub_need(t, cols, inputs, outputs, temps_bytes, blk))
    chunked = t.col_chunk < cols
    n_pass = passes if chunked else 1
    # UB layout: shared operands first, then buffer_num slots of the per-tile operands
    shared_addr = {}
    a = 0
    for i, o in enumerate(inputs):
        if o.kind == "shared" and not chunked:
            shared_addr[i] = a
            a += _whole_blocks(_cols(o, cols) * o.itemsize, blk)
    slot_base = a

    def prologue(b):
        for i, o in enumerate(inputs):
            if o.kind == "shared" and not chunked:
                b.load_gm(Buf.UB, shared_addr[i], o.name, o.at(0, 0), 1, max(1, math.ceil(_cols(o, cols) * o.itemsize)))

    def load(b, tile, s):
        r0, nr, _, c0, nc = tile
        addr = s.base
        for o in inputs:
            oc = _cols(o, cols)
            if o.kind == "shared":
                if chunked:     # its piece of this chunk
                    w = max(1, math.ceil(oc * nc / cols))
                    b.load_gm(Buf.UB, addr, o.name, o.at(0, oc, c0 * oc // cols), 1, max(1, math.ceil(w * o.itemsize)))
                    addr += _whole_blocks(math.ceil(oc * t.col_chunk / cols) * o.itemsize, blk)
                continue
            if o.kind == "per_row":
                if c0 == 0:
                    b.load_gm(Buf.UB, addr, o.name, *_per_row_access(o, r0, nr))
                addr += _whole_blocks(t.rows_per_tile * o.itemsize, blk)
                continue
            b.load_gm(Buf.UB, addr, o.name, *_row_access(o, oc, cols, r0, nr, c0, nc))
            addr += _whole_blocks(t.rows_per_tile * math.ceil(oc * t.col_chunk / cols) * o.itemsize, blk)

    def compute(b, tile, s):
        _, nr, _, _, nc = tile
        for st in steps:
            n = nr * (nc if st.per == "elem" else 1) * st.count
            b.vector(st.op_class, st.dtype, max(1, int(math.ceil(n))), addrs=(s.base,))

    def store(b, tile, s):
        r0, nr, p, c0, nc = tile
        if p != n_pass - 1:
            return                      # results leave UB in the last pass only
        for o in outputs:
            oc = _cols(o, cols)
            if o.kind == "per_row":
                if c0 + nc >= cols:
                    b.store_gm(s.base, o.name, *_per_row_access(o, r0, nr))
                continue
            b.store_gm(s.base, o.name, *_row_access(o, oc, cols, r0, nr, c0, nc))

    def tiles(r_lo, r_hi):
        for r0 in range(r_lo, r_hi, t.rows_per_tile):
            nr = min(t.rows_per_tile, r_hi - r0)
            for p in range(n_pass):
                for c0 in range(0, cols, t.col_chunk):
                    yield r0, nr, p, c0, min(t.col_chunk, cols - c0)

    pipe = VectorPipeline(load, compute, store, t.buffer_num, slot_base,
                          (chip.buffers.ub - slot_base) // t.buffer_num // blk * blk,
                          shape=lambda tile: tile[1:])     # all but the first row: sizes, pass, chunk
    return VectorPart([tiles(lo, hi) for lo, hi in split_range(rows, t.block_dim)], pipe, prologue,
                      tuple(dict.fromkeys(o.name for o in inputs + outputs)), lambda n: replace(t, block_dim=n),
                      flops_per_elem * rows * cols)


def _row_access(o: RowOperand, oc: int, cols: int, r0: int, nr: int, c0: int, nc: int) -> tuple[int, int, int, int]:
    """(offset, rows, run bytes, stride) of a "row" operand's piece of a tile: ``nr`` rows from
    x row ``r0``, columns ``c0``.. of ``nc`` (scaled to the operand's own width). An operand with
    a row map reads the table row it maps the tile's first row to."""
    w = nc if oc == cols else max(1, math.ceil(oc * nc / cols))
    row = r0 if o.row_map is None else o.row_map.first_row(r0, nr)
    stride = max(1, math.ceil(oc * o.itemsize)) if o.ld_bytes is None else o.ld_bytes
    return o.at(row, oc, c0 * oc // cols), nr, max(1, math.ceil(w * o.itemsize)), stride


def _per_row_access(o: RowOperand, r0: int, nr: int) -> tuple[int, int, int, int]:
    """(offset, rows, run bytes, stride) of a "per_row" operand's ``nr`` elements from row ``r0``:
    one run, or one element per row ``ld_bytes`` apart."""
    if o.ld_bytes is None:
        return o.at(r0, 1), 1, max(1, math.ceil(nr * o.itemsize)), max(1, math.ceil(nr * o.itemsize))
    return o.at(r0, 1), nr, max(1, math.ceil(o.itemsize)), o.ld_bytes
