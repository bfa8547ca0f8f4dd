"""TransData: the AIV kernel that moves a tensor between storage formats.

Each AIV block takes whole "row groups" of the source in turn, through the vector-pipeline block
layer (templates/vector.py; no scalar bookkeeping per tile): MTE2 reads them as they lie in the
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

from dataclasses import dataclass, field, replace

from ascend_sim import formats as F
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan
from ascend_sim.tensor import TensorMeta

from .vector import VectorPipeline, check_buffers, split_range, vector_kernel


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


@dataclass(frozen=True)
class TransDataTiling:
    """tile_bytes: UB bytes of one tile buffer (each buffer holds a source tile and its rearranged
    destination tile, ``tile_bytes`` each); ND <-> NZ tiles are the largest whole 16-row bands x
    n0-column chunks that fit it, other pairs contiguous pieces of that many bytes. block_dim: AIV
    blocks the tiles are spread over. buffer_num: UB buffers (2 = ping-pong)."""

    tile_bytes: int
    block_dim: int
    buffer_num: int = 2
    #: filled in by the plan for reports (the tile grid it chose); not a parameter
    grid: str = field(default="", compare=False)

    def __str__(self) -> str:
        s = f"tile_bytes={self.tile_bytes} block_dim={self.block_dim} buffer_num={self.buffer_num}"
        return f"{s} ({self.grid})" if self.grid else s


def _tiles(src: TensorMeta, dst: TensorMeta, budget: int):
    """(tiles, elements a tile's vector pass covers, the GM access of a tile in a storage, the grid
    in words)."""
    if F.Format.FRACTAL_NZ in (src.format, dst.format):
        key = dst if dst.format == F.Format.FRACTAL_NZ else src
        rows, cols, bands, chunks, batch, d = _nz_grid(key, budget)
        tiles = [(b, band, chunk) for b in range(batch) for band in range(bands) for chunk in range(chunks)]
        return (tiles, rows * cols, lambda meta, tile: _nz_access(meta, rows, cols, tile[1], tile[2], tile[0], d),
                f"rows={rows} cols={cols} tiles={len(tiles)}")
    # plane formats and plain relayouts: contiguous pieces of the source, as many as needed

    def piece(meta: TensorMeta, tile):
        off = tile * budget
        return (off, 1, max(1, min(budget, meta.nbytes - off)), budget) if off < meta.nbytes else None
    n = -(-max(src.nbytes, dst.nbytes) // budget)
    return list(range(n)), int(budget / src.dtype.itemsize), piece, f"pieces={n} of {budget} B"


def default_tiling(src: TensorMeta, dst: TensorMeta, chip: ChipSpec) -> TransDataTiling:
    """A quarter of UB per tile (two buffers of a source and a destination tile), over all vector
    cores the tiles can keep busy."""
    blk = chip.memory.block_bytes
    budget = chip.buffers.ub // 4 // blk * blk
    tiles = _tiles(src, dst, budget)[0]
    return TransDataTiling(budget, max(1, min(chip.vector_cores, len(tiles))))


def transdata_plan(src: TensorMeta, dst: TensorMeta, chip: ChipSpec, *, name: str = "TransData",
                   src_name: str = "input", dst_name: str = "out0",
                   tiling: TransDataTiling | None = None) -> KernelPlan:
    t = tiling or default_tiling(src, dst, chip)
    blk = chip.memory.block_bytes
    if t.tile_bytes < blk or t.tile_bytes % blk or min(t.block_dim, t.buffer_num) < 1:
        raise ISAError(f"{name}: tiling {t}: tile_bytes must be a positive multiple of the {blk}-byte block, "
                       "block_dim and buffer_num >= 1")
    check_buffers(name, chip, t, t.buffer_num * 2 * t.tile_bytes)
    budget = t.tile_bytes
    tiles, tile_elems, tile_access, grid = _tiles(src, dst, budget)
    n_vec = max(1, min(tile_elems, int(budget / src.dtype.itemsize)))

    def load(b, tile, s):
        acc = tile_access(src, tile)
        if acc is not None:
            b.load_gm(Buf.UB, s.base, src_name, *acc)

    def compute(b, tile, s):
        b.vector("unary", src.dtype.name, n_vec, addrs=(s.base, s.base + budget), name="VECTOR.transpose")

    def store(b, tile, s):
        acc = tile_access(dst, tile)
        if acc is not None:
            b.store_gm(s.base + budget, dst_name, *acc)

    pipe = VectorPipeline(load, compute, store, t.buffer_num, 0, 2 * budget, scalar_per_tile=0)
    blocks = [tiles[lo:hi] for lo, hi in split_range(len(tiles), t.block_dim)]
    return vector_kernel(name, chip, blocks, pipe, tensors=(src_name, dst_name),
                         tiling=lambda n: replace(t, block_dim=n, grid=grid))
