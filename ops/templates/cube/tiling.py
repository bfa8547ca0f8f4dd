"""The cube template's tiling: the named, typed parameters of its three layers, the rules a
tiling must obey on a chip, and the tiler's own choice."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ascend_sim.dtypes import DType
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import ISAError

# L1 after the A/B buffers: staging for a tile's bias (this many bytes) and its dequant scales
# (one 64-bit word per column) on their way to the bias table and the fixpipe buffer
BIAS_STAGING_BYTES = 4096
SCALE_WORD_BYTES = 8
ACC_BYTES = 4                  # L0C accumulators: fp32 / int32

# base tile shapes the tiler tries, best first (CATLASS's 128 x 256 leads)
BASE_TILES = ((128, 256), (256, 128), (128, 128), (64, 256), (256, 64), (64, 128), (128, 64), (64, 64),
              (32, 128), (16, 256), (16, 128), (32, 64), (16, 64), (16, 32), (16, 16))


@dataclass(frozen=True)
class MatmulTiling:
    """Named, typed tiling of the cube matmul; print it, change it, sweep it.

    kernel layer: ``iterate_order``, ``swizzle``, ``block_dim``, ``split_k``; block layer:
    ``step_k``, ``l1_buffers``, ``l0_buffers``, ``l0c_buffers``; tile layer: ``base_m/n/k``."""

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


def l1_bytes(t: MatmulTiling, dt: DType) -> int:
    return dt.nbytes((t.base_m + t.base_n) * t.base_k * t.step_k) * t.l1_buffers + BIAS_STAGING_BYTES + \
        t.base_n * SCALE_WORD_BYTES


def fits(chip: ChipSpec, t: MatmulTiling, dt: DType) -> list[str]:
    """Which buffers a tiling overflows (empty: it fits)."""
    b = chip.buffers
    bad = []
    if dt.nbytes(t.base_m * t.base_k) * t.l0_buffers > b.l0a:
        bad.append(f"L0A (base_m*base_k*{dt.itemsize:g} B x {t.l0_buffers} buffers = "
                   f"{dt.nbytes(t.base_m * t.base_k) * t.l0_buffers} > {b.l0a})")
    if dt.nbytes(t.base_k * t.base_n) * t.l0_buffers > b.l0b:
        bad.append(f"L0B (base_k*base_n*{dt.itemsize:g} B x {t.l0_buffers} buffers = "
                   f"{dt.nbytes(t.base_k * t.base_n) * t.l0_buffers} > {b.l0b})")
    c = t.base_m * t.base_n * ACC_BYTES * t.l0c_buffers
    if c > b.l0c:
        bad.append(f"L0C (base_m*base_n*{ACC_BYTES} B x {t.l0c_buffers} buffers = {c} > {b.l0c})")
    l1 = l1_bytes(t, dt)
    if l1 > b.l1:
        bad.append(f"L1 ((base_m+base_n)*base_k*step_k*{dt.itemsize:g} B x {t.l1_buffers} buffers + bias/scale "
                   f"staging = {l1} > {b.l1})")
    return bad


def check_tiling(name: str, chip: ChipSpec, t: MatmulTiling, dt: DType) -> None:
    m0, n0, k0 = chip.cube.m0, chip.cube.n0, dt.c0
    for fld, v, q in (("base_m", t.base_m, m0), ("base_n", t.base_n, n0), ("base_k", t.base_k, k0)):
        if v < q or v % q:
            raise ISAError(f"{name}: tiling {fld}={v} must be a positive multiple of {q} for {dt.name}")
    for fld in ("step_k", "l1_buffers", "l0_buffers", "l0c_buffers", "swizzle", "split_k"):
        if getattr(t, fld) < 1:
            raise ISAError(f"{name}: tiling {fld} must be >= 1, got {getattr(t, fld)}")
    if t.iterate_order not in ("M", "N"):
        raise ISAError(f"{name}: tiling iterate_order must be 'M' or 'N', got {t.iterate_order!r}")
    ids = chip.runtime.event_ids
    if max(t.l1_buffers, t.l0_buffers, t.l0c_buffers) > ids:
        raise ISAError(f"{name}: tiling needs more than the {ids} event ids of {chip.name}")
    bad = fits(chip, t, dt)
    if bad:
        raise ISAError(f"{name}: tiling {t} does not fit {chip.name}: " + "; ".join(bad))


def choose_tiling(chip: ChipSpec, batch: int, m: int, n: int, k: int, dt: DType) -> MatmulTiling:
    """The largest base tile that fits with double buffering (CATLASS's 128 x 256 x 64 for fp16:
    base_k is four 32-byte blocks of the input dtype), shrunk for small problems, preferring
    tilings that give every cube core a tile when the problem allows; walked so that the larger
    operand is streamed once."""
    k0, m0, n0 = dt.c0, chip.cube.m0, chip.cube.n0
    m_pad = -(-m // m0) * m0
    n_pad = -(-n // n0) * n0
    k_pad = -(-k // k0) * k0
    bk = max(k0, min(k_pad, int(chip.memory.block_bytes * 4 * 8 // dt.bits)))
    best = None
    for bm, bn in BASE_TILES:
        bm_, bn_ = min(bm, m_pad), min(bn, n_pad)
        for step in (4, 2, 1):
            t = MatmulTiling(bm_, bn_, bk, max(1, min(step, -(-k_pad // bk))))
            if not fits(chip, t, dt):
                tiles = batch * -(-m // bm_) * -(-n // bn_)
                score = (min(tiles, chip.cores.aic), bm_ * bn_)
                if best is None or score > best[0]:
                    best = (score, t)
                break
    if best is None:
        raise ISAError(f"no matmul tiling of {dt.name} fits the buffers of {chip.name}")
    t = best[1]
    if t.base_m * t.base_n * ACC_BYTES * 2 <= chip.buffers.l0c:
        t = replace(t, l0c_buffers=2)
    # walk so that the larger operand is streamed once: B columns reused across M, or A rows across N
    a_bytes, b_bytes = m * k * dt.itemsize, k * n * dt.itemsize
    return replace(t, iterate_order="M" if b_bytes >= a_bytes else "N")
