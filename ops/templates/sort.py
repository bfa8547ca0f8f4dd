"""Sort template: each row of a (rows, n) tensor sorted in UB (descending, with its indices).

Layered on the vector-pipeline block layer (ops/templates/vector.py):

* kernel: rows are spread over ``block_dim`` AIV blocks, contiguous chunks (:func:`split_range`);
* block: :class:`VectorPipeline`: a block walks its rows one at a time; ``buffer_num`` (2 =
  ping-pong) UB slots let MTE2 load row r+1 while VECTOR sorts row r and MTE3 stores row r-1;
* tile (one row): load = the MTE2 load; compute = an index vector (one unary pass); the region sort
  (isa ``vsort32``: regions of ``vector.sort_region_elems``); merge rounds of up to
  ``vector.merge_ways`` lists (isa ``vmrgsort4``) until one list is left, a ``pipe_barrier(V)``
  before every round (each reads the last one's output); extracting values and indices from
  the (value, index) structures (two unary passes); store = two MTE3 stores.

A row must fit UB with its indices and two structure lists; longer rows (a multi-pass sort
through GM) are not built here: an ISAError says so.
"""
from __future__ import annotations

from dataclasses import dataclass

from ascend_sim.dtypes import get_dtype
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan, Pipe, ProgramBuilder

from .vector import Slot, VectorPipeline, split_range, vector_kernel

V = Pipe.VECTOR


@dataclass(frozen=True)
class SortTiling:
    block_dim: int
    buffer_num: int = 2

    def __str__(self) -> str:
        return f"block_dim={self.block_dim} buffer_num={self.buffer_num}"


def _layout(chip: ChipSpec, n: int, dtype: str) -> tuple[int, dict]:
    """Bytes of one slot and the offsets of its areas: values, indices, two structure lists."""
    v = chip.vector
    a = chip.buffers.align.get("ub", 1)
    up = lambda b: -(-b // a) * a   # noqa: E731
    e = -(-n // v.sort_region_elems) * v.sort_region_elems
    d = get_dtype(dtype)
    sizes = {"values": up(d.nbytes(e)), "index": up(get_dtype("int32").nbytes(e)),
             "pairs0": up(e * v.sort_pair_bytes), "pairs1": up(e * v.sort_pair_bytes)}
    off, at = {}, 0
    for k, s in sizes.items():
        off[k] = at
        at += s
    return at, off


def merge_rounds(chip: ChipSpec, n: int) -> list[list[tuple[int, ...]]]:
    """The list lengths each merge instruction of each round takes, after the region sort."""
    r, w = chip.vector.sort_region_elems, chip.vector.merge_ways
    lists = [min(r, n - i) for i in range(0, n, r)]
    rounds = []
    while len(lists) > 1:
        groups = [tuple(lists[i:i + w]) for i in range(0, len(lists), w)]
        rounds.append(groups)
        lists = [sum(g) for g in groups]
    return rounds


def default_tiling(chip: ChipSpec, rows: int, n: int, dtype: str) -> SortTiling:
    slot, _ = _layout(chip, n, dtype)
    buffer_num = 2 if 2 * slot <= chip.buffers.ub else 1
    return SortTiling(max(1, min(chip.vector_cores, rows)), buffer_num)


def sort_plan(name: str, chip: ChipSpec, *, src: str, values_out: str, index_out: str, rows: int, n: int,
              dtype: str, tiling: SortTiling | None = None) -> KernelPlan:
    """Sort each of ``rows`` rows of ``n`` ``dtype`` elements: sorted values to ``values_out``,
    their int32 positions to ``index_out``."""
    t = tiling or default_tiling(chip, rows, n, dtype)
    slot, off = _layout(chip, n, dtype)
    if t.buffer_num * slot > chip.buffers.ub:
        raise ISAError(f"{name}: a row of {n} {dtype} needs {slot} bytes of UB per slot ({t.buffer_num} slots); "
                       f"{chip.name} has {chip.buffers.ub}: rows this long need a multi-pass sort through GM, "
                       f"which this template does not build")
    if t.block_dim < 1 or not 1 <= t.buffer_num <= chip.runtime.event_ids:
        raise ISAError(f"{name}: tiling {t}: block_dim >= 1 and buffer_num in 1..{chip.runtime.event_ids}")
    d = get_dtype(dtype)
    i32 = get_dtype("int32")
    rounds = merge_rounds(chip, n)
    pair = chip.vector.sort_pair_bytes

    def load(b: ProgramBuilder, r: int, s: Slot) -> None:
        b.load_gm(Buf.UB, s.base + off["values"], src, r * d.nbytes(n), 1, d.nbytes(n))

    def compute(b: ProgramBuilder, r: int, s: Slot) -> None:
        at = {k: s.base + o for k, o in off.items()}
        b.vector("unary", "int32", n, addrs=(at["index"],), name="VECTOR.create_index")
        b.pipe_barrier(V)
        b.vsort32(dtype, n, src_addr=at["values"], idx_addr=at["index"], dst_addr=at["pairs0"])
        cur, nxt = "pairs0", "pairs1"
        for groups in rounds:
            b.pipe_barrier(V)                   # a round reads the last one's output
            pos = 0
            for g in groups:
                srcs = []
                for k in g:
                    srcs.append(at[cur] + pos * pair)
                    pos += k
                dst = at[nxt] + (pos - sum(g)) * pair
                if len(g) == 1:                 # a lone list is carried over to the next round
                    b.ub_copy(dst, srcs[0], g[0] * pair)
                else:
                    b.vmrgsort4(dtype, g, src_addrs=srcs, dst_addr=dst)
            cur, nxt = nxt, cur
        b.pipe_barrier(V)
        b.vector("unary", dtype, n, addrs=(at["values"],), name="VECTOR.extract_values")
        b.vector("unary", "int32", n, addrs=(at["index"],), name="VECTOR.extract_index")

    def store(b: ProgramBuilder, r: int, s: Slot) -> None:
        b.store_gm(s.base + off["values"], values_out, r * d.nbytes(n), 1, d.nbytes(n))
        b.store_gm(s.base + off["index"], index_out, r * i32.nbytes(n), 1, i32.nbytes(n))

    pipe = VectorPipeline(load, compute, store, buffer_num=t.buffer_num, slot_bytes=slot, scalar_per_tile=0)
    blocks = [range(lo, hi) for lo, hi in split_range(rows, t.block_dim)]
    return vector_kernel(name, chip, blocks, pipe, tensors=(src, values_out, index_out),
                         tiling=lambda nb: t if nb == t.block_dim else SortTiling(nb, t.buffer_num))
