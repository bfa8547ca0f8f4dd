"""TransData: the AIV kernel that moves a tensor between storage formats.

Each AIV block takes whole "row groups" of the source in turn: MTE2 reads them as they lie in the
source storage, VECTOR rearranges them in UB (one pass over the padded tile, as vnchwconv/strided
copies do), MTE3 writes them as they lie in the destination storage. What makes formats cost
time is the shape of those GM accesses:

* ND <-> FRACTAL_NZ: the padded matrix is cut into tiles of whole 16-row bands and n0-column
  chunks that fit UB; on the ND side a tile is ``rows`` runs of ``cols`` elements, N elements
  apart; on the NZ side it is cols/n0 runs of rows x 32 bytes, one per fractal column, M_pad x 32
  bytes apart;
* other pairs (NCHW family <-> C0 formats, FRACTAL_Z...) move contiguous pieces of both storages
  (their cost is the padding they add and the vector pass).
"""
from __future__ import annotations

import math

from ascend_sim import formats as F
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, KernelPlan, Pipe, ProgramBuilder
from ascend_sim.tensor import TensorMeta

V, MTE2, MTE3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3


def _nz_grid(meta: TensorMeta, budget: int):
    """ND/NZ tiles: (rows per band, columns per chunk, bands per batch, chunks, batch) sized so one
    tile of the padded matrix fits ``budget`` bytes of UB."""
    d = F.fractal_dims(F.Format.FRACTAL_NZ, meta.shape if len(meta.shape) >= 2 else (1,) + tuple(meta.shape),
                       meta.dtype)
    item = meta.dtype.itemsize
    n_pad = d.n1 * d.n0
    m_pad = d.m1 * d.m0
    cols = max(d.n0, min(n_pad, int(budget // (d.m0 * item)) // d.n0 * d.n0))
    rows = max(d.m0, min(m_pad, int(budget // (cols * item)) // d.m0 * d.m0))
    return rows, cols, -(-m_pad // rows), -(-n_pad // cols), d.batch, d


def _nz_access(meta: TensorMeta, rows: int, cols: int, band: int, chunk: int, b: int, d):
    """(offset, runs, run bytes, stride) of one tile in ``meta``'s storage (ND or FRACTAL_NZ)."""
    item = meta.dtype.itemsize
    m_pad, n_pad = d.m1 * d.m0, d.n1 * d.n0
    r0, c0 = band * rows, chunk * cols
    r = min(rows, m_pad - r0)
    c = min(cols, n_pad - c0)
    if meta.format == F.Format.FRACTAL_NZ:
        col_bytes = m_pad * d.n0 * item        # one fractal column: M_pad rows of n0 elements
        return (int(b * d.n1 * col_bytes + (c0 // d.n0) * col_bytes + r0 * d.n0 * item), -(-c // d.n0),
                int(r * d.n0 * item), int(col_bytes))
    m, n = d.m, d.n                            # ND: only the real rows and columns exist
    r = max(0, min(r, m - r0))
    c = max(0, min(c, n - c0))
    if r == 0 or c == 0:
        return None
    return (int((b * m * n + r0 * n + c0) * item), r, int(c * item), int(n * item))


def _plane_access(meta: TensorMeta, group: int):
    """C0 formats: one (n, c1) plane of H*W*C0 elements; NCHW family: C0 channel planes of H*W."""
    item = meta.dtype.itemsize
    shape = meta.shape
    if meta.format in (F.Format.NC1HWC0, F.Format.NC1HWC0_C04, F.Format.NDC1HWC0):
        d = F.fractal_dims(meta.format, shape, meta.dtype)
        plane = d.h * d.w * d.c0
        return (int(group * plane * item), 1, int(plane * item), int(plane * item))
    return None


def transdata_plan(src: TensorMeta, dst: TensorMeta, chip: ChipSpec, *, name: str = "TransData",
                   src_name: str = "input", dst_name: str = "out0") -> KernelPlan:
    budget = chip.buffers.ub // 4 // 32 * 32          # two buffers, in and out
    nz = F.Format.FRACTAL_NZ in (src.format, dst.format)
    if nz:
        key = dst if dst.format == F.Format.FRACTAL_NZ else src
        rows, cols, bands, chunks, batch, d = _nz_grid(key, budget)
        tiles = [(b, band, chunk) for b in range(batch) for band in range(bands) for chunk in range(chunks)]
        tile_elems = rows * cols
    else:
        # plane formats and plain relayouts: contiguous pieces of the source, as many as needed
        total = max(src.nbytes, dst.nbytes)
        piece = budget
        tiles = list(range(-(-total // piece)))
        tile_elems = int(piece / src.dtype.itemsize)
    def tile_access(meta: TensorMeta, tile):
        """One tile's GM access in ``meta``'s storage: (offset, runs, run bytes, stride) or None."""
        if nz:
            return _nz_access(meta, rows, cols, tile[1], tile[2], tile[0], d)
        off = tile * budget
        return (off, 1, max(1, min(budget, meta.nbytes - off)), budget) if off < meta.nbytes else None

    block_dim = max(1, min(chip.vector_cores, len(tiles)))
    per_block = -(-len(tiles) // block_dim)
    item = src.dtype.itemsize
    blocks = []
    for bi in range(block_dim):
        b = ProgramBuilder(chip, "AIV")
        for j, tile in enumerate(tiles[bi * per_block:(bi + 1) * per_block]):
            buf = j % 2
            in_addr, out_addr = buf * 2 * budget, buf * 2 * budget + budget
            if j >= 2:
                b.wait_flag(V, MTE2, buf)
            acc = tile_access(src, tile)
            if acc is not None:
                off, runs, run_b, stride = acc
                b.load_gm(Buf.UB, in_addr, src_name, off, runs, run_b, stride)
            b.set_flag(MTE2, V, buf)
            b.wait_flag(MTE2, V, buf)
            if j >= 2:
                b.wait_flag(MTE3, V, buf)
            b.vector("unary", src.dtype.name, max(1, min(tile_elems, int(budget / item))), addrs=(in_addr, out_addr),
                     name="VECTOR.transpose")
            b.set_flag(V, MTE2, buf)
            b.set_flag(V, MTE3, buf)
            b.wait_flag(V, MTE3, buf)
            acc = tile_access(dst, tile)
            if acc is not None:
                off, runs, run_b, stride = acc
                b.store_gm(out_addr, dst_name, off, runs, run_b, stride)
            b.set_flag(MTE3, V, buf)
        if len(b.prog):
            blocks.append([b.build()])
    grid = f"rows={rows} cols={cols} tiles={len(tiles)}" if nz else f"pieces={len(tiles)} of {budget} B"
    return KernelPlan(name, "AIV", blocks, tensors=(src_name, dst_name), tiling=f"{grid} block_dim={len(blocks)}")
