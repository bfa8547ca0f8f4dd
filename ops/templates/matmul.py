"""Cube matmul kernel template: GM -> L1 -> L0A/L0B -> MMAD -> L0C -> FIXPIPE -> GM.

Layers, as CATLASS layers its GEMMs, with its variants as parameters of one template:

* kernel: the output is cut into base_m x base_n tiles (per batch); the tiles are walked in
  ``iterate_order`` with a ``swizzle`` group (CATLASS GemmIdentityBlockSwizzle) and dealt to
  ``block_dim`` AIC blocks round-robin;
* block: for each tile, the K loop loads L1 tiles of ``base_k * step_k`` (MTE2, ``l1_buffers``
  deep), splits them into L0 tiles of ``base_k`` (MTE1, ``l0_buffers`` deep), and accumulates in
  L0C (CUBE); FIXPIPE writes the tile out, converting to the output dtype (adding bias and
  applying dequant scales on the way when asked). Flags between the pipes make double buffering
  real: MTE2 refills an L1 buffer only once MTE1 has moved it on, and so on;
* tile: the isa instructions for one load, one MMAD, one write.

Operands may be ND (row-major, optionally transposed) or FRACTAL_NZ in GM. ND operands go through
MTE2's ND2NZ conversion (a slower path) with one row per matrix row, so short or unaligned rows
cost path cycles; NZ operands arrive as contiguous 512-byte fractal columns.

The tiling (:class:`MatmulTiling`) is explicit and user-overridable; :func:`default_tiling` picks
the largest fitting base tile with double buffering. A tiling that does not fit L0A, L0B, L0C or
L1 raises :class:`~ascend_sim.isa.ISAError` naming the buffer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ascend_sim.dtypes import DType, get_dtype
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan, Pipe, ProgramBuilder

MTE1, MTE2, M, FIX = Pipe.MTE1, Pipe.MTE2, Pipe.CUBE, Pipe.FIXPIPE


@dataclass(frozen=True)
class MatmulTiling:
    """Named, typed tiling of the cube matmul; print it, change it, sweep it."""

    base_m: int = 128
    base_n: int = 256
    base_k: int = 64
    step_k: int = 4            # L1 tile K = base_k * step_k
    l1_buffers: int = 2
    l0_buffers: int = 2
    l0c_buffers: int = 1
    iterate_order: str = "M"   # "M": consecutive tiles move along M (reuse B tiles); "N": along N
    swizzle: int = 1
    block_dim: int = 0         # 0: every cube core
    split_k: int = 1           # K cut into this many parts on different blocks (fp32 partials summed)

    def __str__(self) -> str:
        return (f"base {self.base_m}x{self.base_n}x{self.base_k} step_k={self.step_k} L1x{self.l1_buffers} "
                f"L0x{self.l0_buffers} L0Cx{self.l0c_buffers} order={self.iterate_order} swizzle={self.swizzle} "
                f"block_dim={self.block_dim} split_k={self.split_k}")


@dataclass(frozen=True)
class Operand:
    """A GM matrix operand: plan tensor name, logical (rows, cols) of the matrix as the product
    uses it (A: M x K, B: K x N), its dtype, whether it is stored transposed, and its format."""

    name: str
    rows: int
    cols: int
    dtype: DType
    transposed: bool = False
    nz: bool = False
    batch_stride: int = 0      # bytes between batches (0: shared by all batches)


@dataclass(frozen=True)
class MatmulProblem:
    batch: int
    m: int
    n: int
    k: int
    a: Operand
    b: Operand
    out: str
    out_dtype: DType
    out_nz: bool = False
    bias: str | None = None          # per-N bias, added in L0C via the bias table
    bias_itemsize: float = 4.0
    scale: str | None = None         # per-N dequant scale (64-bit each), applied by FIXPIPE from the FB
    scale_per_tensor: bool = False   # one scale for all N
    relu: bool = False
    out_batch_stride: int = 0


def _fits(chip: ChipSpec, t: MatmulTiling, dt: DType) -> list[str]:
    """Which buffers a tiling overflows (empty: it fits)."""
    b = chip.buffers
    bad = []
    if dt.nbytes(t.base_m * t.base_k) * t.l0_buffers > b.l0a:
        bad.append(f"L0A (base_m*base_k*{dt.itemsize:g} B x {t.l0_buffers} buffers = "
                   f"{dt.nbytes(t.base_m * t.base_k) * t.l0_buffers} > {b.l0a})")
    if dt.nbytes(t.base_k * t.base_n) * t.l0_buffers > b.l0b:
        bad.append(f"L0B (base_k*base_n*{dt.itemsize:g} B x {t.l0_buffers} buffers = "
                   f"{dt.nbytes(t.base_k * t.base_n) * t.l0_buffers} > {b.l0b})")
    if t.base_m * t.base_n * 4 * t.l0c_buffers > b.l0c:
        bad.append(f"L0C (base_m*base_n*4 B x {t.l0c_buffers} buffers = {t.base_m * t.base_n * 4 * t.l0c_buffers}"
                   f" > {b.l0c})")
    l1 = dt.nbytes((t.base_m + t.base_n) * t.base_k * t.step_k) * t.l1_buffers + 4096 + t.base_n * 8
    if l1 > b.l1:
        bad.append(f"L1 ((base_m+base_n)*base_k*step_k*{dt.itemsize:g} B x {t.l1_buffers} buffers + bias/scale "
                   f"staging = {l1} > {b.l1})")
    return bad


def check_tiling(name: str, chip: ChipSpec, t: MatmulTiling, dt: DType) -> None:
    m0, n0, k0 = chip.cube.m0, chip.cube.n0, dt.c0
    for field, v, q in (("base_m", t.base_m, m0), ("base_n", t.base_n, n0), ("base_k", t.base_k, k0)):
        if v < q or v % q:
            raise ISAError(f"{name}: tiling {field}={v} must be a positive multiple of {q} for {dt.name}")
    for field in ("step_k", "l1_buffers", "l0_buffers", "l0c_buffers", "swizzle", "split_k"):
        if getattr(t, field) < 1:
            raise ISAError(f"{name}: tiling {field} must be >= 1, got {getattr(t, field)}")
    if t.iterate_order not in ("M", "N"):
        raise ISAError(f"{name}: tiling iterate_order must be 'M' or 'N', got {t.iterate_order!r}")
    ids = chip.runtime.event_ids
    if max(t.l1_buffers, t.l0_buffers, t.l0c_buffers) > ids:
        raise ISAError(f"{name}: tiling needs more than the {ids} event ids of {chip.name}")
    bad = _fits(chip, t, dt)
    if bad:
        raise ISAError(f"{name}: tiling {t} does not fit {chip.name}: " + "; ".join(bad))


def default_tiling(chip: ChipSpec, p: MatmulProblem) -> MatmulTiling:
    """The largest base tile that fits with double buffering (CATLASS's 128 x 256 x 64 for fp16:
    base_k is 128 bytes of the input dtype), shrunk for small problems, preferring tilings that
    give every cube core a tile when the problem allows."""
    dt = p.a.dtype
    k0 = dt.c0
    m16 = -(-p.m // 16) * 16
    n16 = -(-p.n // 16) * 16
    k_pad = -(-p.k // k0) * k0
    bk = max(k0, min(k_pad, int(chip.memory.block_bytes * 4 * 8 // dt.bits)))
    best = None
    for bm, bn in ((128, 256), (256, 128), (128, 128), (64, 256), (256, 64), (64, 128), (128, 64), (64, 64),
                   (32, 128), (16, 256), (16, 128), (32, 64), (16, 64), (16, 32), (16, 16)):
        bm_, bn_ = min(bm, m16), min(bn, n16)
        for step in (4, 2, 1):
            t = MatmulTiling(bm_, bn_, bk, max(1, min(step, -(-k_pad // bk))))
            if not _fits(chip, t, dt):
                tiles = p.batch * -(-p.m // bm_) * -(-p.n // bn_)
                score = (min(tiles, chip.cores.aic), bm_ * bn_)
                if best is None or score > best[0]:
                    best = (score, t)
                break
    if best is None:
        raise ISAError(f"no matmul tiling of {dt.name} fits the buffers of {chip.name}")
    t = best[1]
    if t.base_m * t.base_n * 4 * 2 <= chip.buffers.l0c:
        t = replace(t, l0c_buffers=2)
    # walk so that the larger operand is streamed once: B columns reused across M, or A rows across N
    a_bytes, b_bytes = p.m * p.k * dt.itemsize, p.k * p.n * dt.itemsize
    return replace(t, iterate_order="M" if b_bytes >= a_bytes else "N")


def _swizzled(n_m: int, n_n: int, order: str, s: int):
    """Tile coordinates (mi, ni) in walking order. "M": the M index moves fastest, over bands of
    ``s`` N-columns (a column of B tiles is reused by every M tile while it is in L2); "N": the
    mirror image. Consecutive tiles run on different cores at the same time, so the walk decides
    what L2 holds in common."""
    if order == "N":
        return [(mi, ni) for ni, mi in _swizzled(n_n, n_m, "M", s)]
    out = []
    for g in range(0, n_n, s):
        cols = min(s, n_n - g)
        for mi in range(n_m):
            for c in range(cols):
                out.append((mi, g + c))
    return out


def _load(b: ProgramBuilder, op: Operand, addr: int, batch: int, r0: int, nr: int, c0: int, nc: int) -> None:
    """MTE2: rows r0..r0+nr, cols c0..c0+nc of a matrix operand -> L1 at ``addr``."""
    dt = op.dtype
    item = dt.itemsize
    base = batch * op.batch_stride
    if op.nz:
        # NZ storage of the stored matrix (R, C): C/c0 columns of R_pad x 32-byte rows
        R, C = (op.cols, op.rows) if op.transposed else (op.rows, op.cols)
        rr0, nrr, cc0, ncc = (c0, nc, r0, nr) if op.transposed else (r0, nr, c0, nc)
        r_pad = -(-R // 16) * 16
        k0 = dt.c0
        col_bytes = r_pad * 32
        runs = -(-ncc // k0)
        b.load_gm(Buf.L1, addr, op.name, int(base + (cc0 // k0) * col_bytes + rr0 * 32), runs, int(nrr * 32),
                  int(col_bytes))
    else:
        R, C = (op.cols, op.rows) if op.transposed else (op.rows, op.cols)
        rr0, nrr, cc0, ncc = (c0, nc, r0, nr) if op.transposed else (r0, nr, c0, nc)
        b.load_gm(Buf.L1, addr, op.name, int(base + (rr0 * C + cc0) * item), nrr, max(1, int(ncc * item)),
                  int(C * item), nd2nz=True)


def matmul_plan(name: str, chip: ChipSpec, p: MatmulProblem, tiling: MatmulTiling | None = None):
    """The cube kernel for ``p`` -- or, with split_k > 1, [the cube kernel writing fp32 partials
    into the workspace with atomic adds, the vector kernel casting them (plus bias) to the output]."""
    dt = p.a.dtype
    if dt.name not in chip.cube.macs_per_cycle:
        raise ISAError(f"{name}: the cube of {chip.name} has no {dt.name} mode "
                       f"(it has {', '.join(chip.cube.macs_per_cycle)})")
    t = tiling or default_tiling(chip, p)
    check_tiling(name, chip, t, dt)
    if t.split_k > 1:
        return _split_k_plans(name, chip, p, t)
    return _cube_plan(name, chip, p, t)


def _split_k_plans(name: str, chip: ChipSpec, p: MatmulProblem, t: MatmulTiling):
    from .elementwise import Operand as EOp, VectorStep, elementwise_plan
    partial = replace(p, out="workspace", out_dtype=get_dtype("float32"), out_nz=False, bias=None, scale=None,
                      relu=False, out_batch_stride=p.m * p.n * 4 if p.batch > 1 else 0)
    cube = _cube_plan(name + ".splitk", chip, partial, t)
    cube.workspace_bytes = p.batch * p.m * p.n * 4
    inputs = [EOp("workspace", 4.0)]
    steps = [VectorStep("unary", "float32")]                 # cast to the output dtype
    if p.bias:
        steps.insert(0, VectorStep("binary", "float32"))     # + bias (broadcast over rows)
    cast = elementwise_plan(name + ".cast", chip, p.batch * p.m * p.n, inputs, [EOp(p.out, p.out_dtype.itemsize)],
                            steps)
    cast.workspace_bytes = 0
    return [cube, cast]


def _cube_plan(name: str, chip: ChipSpec, p: MatmulProblem, t: MatmulTiling) -> KernelPlan:
    dt = p.a.dtype
    n_m, n_n = -(-p.m // t.base_m), -(-p.n // t.base_n)
    k_parts = t.split_k
    k_span = -(-p.k // k_parts)
    k_span = -(-k_span // (t.base_k * t.step_k)) * t.base_k * t.step_k
    order = [(bi, mi, ni, kp) for bi in range(p.batch) for mi, ni in _swizzled(n_m, n_n, t.iterate_order, t.swizzle)
             for kp in range(k_parts) if kp * k_span < p.k]
    block_dim = min(t.block_dim or chip.cores.aic, len(order))
    k_l1 = t.base_k * t.step_k
    a_l1 = dt.nbytes(t.base_m * k_l1)
    b_l1 = dt.nbytes(k_l1 * t.base_n)
    a_l0 = dt.nbytes(t.base_m * t.base_k)
    b_l0 = dt.nbytes(t.base_k * t.base_n)
    c_l0 = t.base_m * t.base_n * 4
    out_item = p.out_dtype.itemsize
    # L1 after the A/B buffers: the tile's bias and dequant scales, on their way to BT and FB
    extra_l1 = t.l1_buffers * (a_l1 + b_l1)
    has_bt = chip.buffers.bt > 0
    blocks = []
    for blk in range(block_dim):
        b = ProgramBuilder(chip, "AIC")
        i1 = i0 = ic = 0
        for (bi, mi, ni, kp) in order[blk::block_dim]:
            m_lo, n_lo = mi * t.base_m, ni * t.base_n
            m = min(t.base_m, p.m - m_lo)
            n = min(t.base_n, p.n - n_lo)
            bufc = ic % t.l0c_buffers
            k_first, k_end = kp * k_span, min(p.k, (kp + 1) * k_span)
            if p.bias:
                nb = max(32, int(math.ceil(n * p.bias_itemsize / 32) * 32))
                b.load_gm(Buf.L1, extra_l1, p.bias, int(n_lo * p.bias_itemsize), 1, nb, name="MTE2.bias")
                if has_bt:
                    b.load_l1(Buf.BT, 0, extra_l1, min(nb, chip.buffers.bt), name="MTE1.bias_to_bt")
            if p.scale:
                ns = 8 if p.scale_per_tensor else max(32, n * 8)
                b.load_gm(Buf.L1, extra_l1 + 4096, p.scale, 0 if p.scale_per_tensor else n_lo * 8, 1, ns,
                          name="MTE2.scale")
                b.load_l1(Buf.FB, 0, extra_l1 + 4096, min(ns, chip.buffers.fb), name="MTE1.scale_to_fb")
            for k_lo in range(k_first, k_end, k_l1):
                kl = min(k_l1, k_end - k_lo)
                buf1 = i1 % t.l1_buffers
                a_addr = buf1 * (a_l1 + b_l1)
                b_addr = a_addr + a_l1
                b.scalar(2)
                if i1 >= t.l1_buffers:
                    b.wait_flag(MTE1, MTE2, buf1)
                _load(b, p.a, a_addr, bi, m_lo, m, k_lo, kl)
                _load(b, p.b, b_addr, bi, k_lo, kl, n_lo, n)
                b.set_flag(MTE2, MTE1, buf1)
                b.wait_flag(MTE2, MTE1, buf1)
                for ks in range(0, kl, t.base_k):
                    kk = min(t.base_k, kl - ks)
                    buf0 = i0 % t.l0_buffers
                    if i0 >= t.l0_buffers:
                        b.wait_flag(M, MTE1, buf0)
                    b.load_l1(Buf.L0A, buf0 * a_l0, a_addr, dt.nbytes(-(-m // 16) * 16 * (-(-kk // dt.c0) * dt.c0)))
                    b.load_l1(Buf.L0B, buf0 * b_l0, b_addr, dt.nbytes(-(-kk // dt.c0) * dt.c0 * (-(-n // 16) * 16)))
                    b.set_flag(MTE1, M, buf0)
                    b.wait_flag(MTE1, M, buf0)
                    if ks == 0 and k_lo == k_first and ic >= t.l0c_buffers:
                        b.wait_flag(FIX, M, bufc)          # L0C buffer written out
                    b.mmad(m, n, kk, dt.name, a_addr=buf0 * a_l0, b_addr=buf0 * b_l0, c_addr=bufc * c_l0)
                    b.set_flag(M, MTE1, buf0)
                    i0 += 1
                b.set_flag(MTE1, MTE2, buf1)
                i1 += 1
            b.set_flag(M, FIX, bufc)
            b.wait_flag(M, FIX, bufc)
            out_off = bi * p.out_batch_stride
            fx = dict(c_addr=bufc * c_l0, quant=bool(p.scale), relu=p.relu)
            if p.out_nz:
                m_pad = -(-p.m // 16) * 16
                b.fixpipe_to_gm(m, n, out_item, p.out, int(out_off + (n_lo // 16) * m_pad * 32 + m_lo * 32),
                                int(m_pad * 32), nz2nd=False, **fx)
            else:
                b.fixpipe_to_gm(m, n, out_item, p.out, int(out_off + (m_lo * p.n + n_lo) * out_item),
                                int(p.n * out_item), **fx)
            b.set_flag(FIX, M, bufc)
            ic += 1
        blocks.append([b.build()])
    flops = 2.0 * p.batch * p.m * p.n * p.k
    return KernelPlan(name, "AIC", blocks, tensors=tuple(x for x in (p.a.name, p.b.name, p.out, p.bias, p.scale) if x),
                      tiling=replace(t, block_dim=block_dim), flops=flops)
