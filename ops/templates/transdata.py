"""TransData: the AIV kernel that moves a tensor between storage formats.

Each AIV block takes whole "row groups" of the source in turn: MTE2 reads them as they lie in the
source storage, VECTOR rearranges them in UB (one pass over the padded tile, as vnchwconv/strided
copies do), MTE3 writes them as they lie in the destination storage. What makes formats cost
time is the shape of those GM accesses:

* ND -> FRACTAL_NZ: a group of ``r`` rows of the (M, N) matrix is read contiguously, and written
  as N1 runs of ``r`` x 32 bytes (one per 16-column fractal column), M1*16*32 bytes apart;
* FRACTAL_NZ -> ND is the mirror image;
* NCHW-family <-> C0 formats (NC1HWC0, NDC1HWC0, C04): a channel group of C0 planes of H*W
  elements is read as C0 runs of H*W elements and written as one contiguous run;
* other pairs move contiguous runs on both sides (their cost is the padding and the vector pass).
"""
from __future__ import annotations

import math

from ascend_sim import formats as F
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, KernelPlan, Pipe, ProgramBuilder
from ascend_sim.tensor import TensorMeta

V, MTE2, MTE3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3


def _pattern(meta: TensorMeta, rows: int, group: int):
    """GM access of row group ``group`` (``rows`` logical rows) of a tensor in its storage format:
    (offset, n_runs, run_bytes, stride, payload elements)."""
    item = meta.dtype.itemsize
    fmt = meta.format
    if fmt == F.Format.FRACTAL_NZ:
        d = F.fractal_dims(fmt, meta.shape, meta.dtype)
        m_pad = d.m1 * d.m0
        per_batch = math.ceil(m_pad / rows)
        b, g = divmod(group, per_batch)
        r0 = g * rows
        r = min(rows, m_pad - r0)
        col_bytes = m_pad * d.n0 * item
        return (int(b * d.n1 * col_bytes + r0 * d.n0 * item), d.n1, int(r * d.n0 * item), int(col_bytes), r * d.n1 * d.n0)
    if fmt in (F.Format.NC1HWC0, F.Format.NC1HWC0_C04, F.Format.NDC1HWC0):
        d = F.fractal_dims(fmt, meta.shape, meta.dtype)
        plane = d.h * d.w * d.c0
        return (int(group * plane * item), 1, int(plane * item), int(plane * item), plane)
    return None


def _groups(meta: TensorMeta, ub_budget: int) -> tuple[int, int, int]:
    """(rows per group, number of groups, elements per group) for the tensor's logical layout."""
    item = meta.dtype.itemsize
    shape = meta.shape if meta.shape else (1,)
    if meta.format in (F.Format.NC1HWC0, F.Format.NC1HWC0_C04, F.Format.NDC1HWC0) or \
            F.base_format(meta.format) in (F.Format.NCHW, F.Format.NCDHW) and len(shape) >= 4:
        c0 = 4 if meta.format == F.Format.NC1HWC0_C04 else meta.dtype.c0
        n, c = shape[0], shape[1]
        hw = math.prod(shape[2:])
        groups = n * math.ceil(c / c0) * (shape[2] if len(shape) == 5 else 1)
        if len(shape) == 5:
            hw = math.prod(shape[3:])
        return 1, groups, hw * c0
    cols = shape[-1]
    rows_total = math.prod(shape[:-1]) if len(shape) > 1 else 1
    cols_pad = -(-cols // meta.dtype.c0) * meta.dtype.c0
    rows = max(16, int(ub_budget // max(1, cols_pad * item)) // 16 * 16)
    batch = math.prod(shape[:-2]) if len(shape) > 2 else 1
    m = shape[-2] if len(shape) >= 2 else 1
    m_pad = -(-m // 16) * 16
    per_batch = math.ceil(m_pad / rows)
    rows = min(rows, m_pad)
    return rows, batch * per_batch, rows * cols_pad


def transdata_plan(src: TensorMeta, dst: TensorMeta, chip: ChipSpec, *, name: str = "TransData",
                   src_name: str = "input", dst_name: str = "out0") -> KernelPlan:
    item = src.dtype.itemsize
    budget = chip.buffers.ub // 4          # two buffers, in and out
    key = dst if F.is_fractal(dst.format) else src
    rows, n_groups, elems = _groups(key, budget)
    block_dim = max(1, min(chip.vector_cores, n_groups))
    per_block = -(-n_groups // block_dim)
    src_total = src.nbytes
    dst_total = dst.nbytes
    group_src = max(1, src_total // n_groups)
    group_dst = max(1, dst_total // n_groups)
    tile_bytes = math.ceil(max(group_src, group_dst, elems * item) / 32) * 32
    if 4 * tile_bytes > chip.buffers.ub:
        tile_bytes = chip.buffers.ub // 4 // 32 * 32
    blocks = []
    for bi in range(block_dim):
        b = ProgramBuilder(chip, "AIV")
        for j, g in enumerate(range(bi * per_block, min(n_groups, (bi + 1) * per_block))):
            buf = j % 2
            in_addr, out_addr = buf * 2 * tile_bytes, buf * 2 * tile_bytes + tile_bytes
            if j >= 2:
                b.wait_flag(V, MTE2, buf)
            p = _pattern(src, rows, g)
            if p is None:
                off = g * group_src
                b.load_gm(Buf.UB, in_addr, src_name, off, 1, max(1, min(group_src, src_total - off, tile_bytes)))
            else:
                off, runs, run_b, stride, _ = p
                b.load_gm(Buf.UB, in_addr, src_name, off, runs, min(run_b, tile_bytes // runs), stride)
            b.set_flag(MTE2, V, buf)
            b.wait_flag(MTE2, V, buf)
            if j >= 2:
                b.wait_flag(MTE3, V, buf)
            b.vector("unary", src.dtype.name, max(1, int(tile_bytes / item)), addrs=(in_addr, out_addr),
                     name="VECTOR.transpose")
            b.set_flag(V, MTE2, buf)
            b.set_flag(V, MTE3, buf)
            b.wait_flag(V, MTE3, buf)
            p = _pattern(dst, rows, g)
            if p is None:
                off = g * group_dst
                b.store_gm(out_addr, dst_name, off, 1, max(1, min(group_dst, dst_total - off, tile_bytes)))
            else:
                off, runs, run_b, stride, _ = p
                b.store_gm(out_addr, dst_name, off, runs, min(run_b, tile_bytes // runs), stride)
            b.set_flag(MTE3, V, buf)
        if len(b.prog):
            blocks.append([b.build()])
    return KernelPlan(name, "AIV", blocks, tensors=(src_name, dst_name),
                      tiling=f"rows_per_group={rows} groups={n_groups} block_dim={len(blocks)}")
