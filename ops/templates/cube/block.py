"""The block layer: one cube core's loop over the tiles it is dealt.

For each output tile: stage the tile's bias and dequant scales; the K loop loads L1 tiles of
``base_k * step_k`` (MTE2, ``l1_buffers`` deep), splits them into L0 tiles of ``base_k`` (MTE1,
``l0_buffers`` deep), accumulates in L0C (CUBE, ``l0c_buffers`` deep); FIXPIPE writes the tile
out. Flags between the pipes make the ping-pong real: MTE2 refills an L1 buffer only once MTE1
has moved it on, MTE1 an L0 buffer once the cube has used it, the cube an L0C buffer once
FIXPIPE has written it. The copies themselves are the tile layer's (:mod:`.tile`).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from math import lcm

from ascend_sim.isa import SET, WAIT, Pipe, ProgramBuilder

from .layout import Operand
from .tile import TileCopy
from .tiling import ACC_BYTES, BIAS_STAGING_BYTES, SCALE_WORD_BYTES, MatmulTiling

MTE1, MTE2, M, FIX = Pipe.MTE1, Pipe.MTE2, Pipe.CUBE, Pipe.FIXPIPE


@dataclass(frozen=True)
class Gemm:
    """One GEMM as the block layer sees it: ``c[b] = a[b] @ b[b]`` over ``batch`` batches, with an
    optional per-N bias (added in L0C via the bias table) and dequant scale (FIXPIPE, from the
    fixpipe buffer), each at a byte offset of its tensor."""

    batch: int
    m: int
    n: int
    k: int
    a: Operand
    b: Operand
    c: Operand
    bias: str | None = None
    bias_itemsize: float = 4.0
    bias_offset: int = 0
    scale: str | None = None
    scale_per_tensor: bool = False
    scale_offset: int = 0
    relu: bool = False

    @property
    def tensors(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x for x in (self.a.name, self.b.name, self.c.name, self.bias, self.scale) if x))


class BlockMmad:
    """The per-core K loop with its L1 / L0 / L0C buffers for ``gemm`` under ``tiling``. Call
    :meth:`run` once per core segment (a run of tiles); :meth:`drain` between segments waits for
    every flag a segment left set, so the next one starts on free buffers."""

    def __init__(self, chip, gemm: Gemm, t: MatmulTiling, tile: TileCopy):
        self.chip, self.g, self.t, self.tile = chip, gemm, t, tile
        dt = gemm.a.dtype
        self.k_l1 = t.base_k * t.step_k
        self.a_l1 = dt.nbytes(t.base_m * self.k_l1)
        self.b_l1 = dt.nbytes(self.k_l1 * t.base_n)
        self.a_l0 = dt.nbytes(t.base_m * t.base_k)
        self.b_l0 = dt.nbytes(t.base_k * t.base_n)
        self.c_l0 = t.base_m * t.base_n * ACC_BYTES
        self.extra_l1 = t.l1_buffers * (self.a_l1 + self.b_l1)     # bias and scale staging
        k_span = -(-gemm.k // t.split_k)
        self.k_span = -(-k_span // self.k_l1) * self.k_l1
        # K steps repeat once both the L1 and the L0 rings are back where they started
        self.k_period = lcm(t.l1_buffers, t.l0_buffers)

    def shape(self, work) -> tuple:
        """What :meth:`run`'s instructions depend on apart from GM offsets: each tile's sizes."""
        g, t = self.g, self.t
        return tuple((min(t.base_m, g.m - mi * t.base_m), min(t.base_n, g.n - ni * t.base_n), kp)
                     for (_, mi, ni, kp) in work)

    def run(self, b: ProgramBuilder, work) -> None:
        """The tiles ``work`` [(batch, m tile, n tile, k part)] in order, on fresh buffers."""
        g, t, tile = self.g, self.t, self.tile
        dt = g.a.dtype
        i1 = i0 = ic = 0
        for (bi, mi, ni, kp) in work:
            m_lo, n_lo = mi * t.base_m, ni * t.base_n
            m = min(t.base_m, g.m - m_lo)
            n = min(t.base_n, g.n - n_lo)
            bufc = ic % t.l0c_buffers
            k_first, k_end = kp * self.k_span, min(g.k, (kp + 1) * self.k_span)
            if g.bias:
                tile.bias_to_bt(b, g.bias, g.bias_offset + n_lo * g.bias_itemsize, n, g.bias_itemsize, self.extra_l1)
            if g.scale:
                tile.scale_to_fb(b, g.scale, g.scale_offset + (0 if g.scale_per_tensor else n_lo * SCALE_WORD_BYTES), n,
                                 g.scale_per_tensor, self.extra_l1 + BIAS_STAGING_BYTES)
            loop = b.begin_loop(self.k_period)
            for k_lo in range(k_first, k_end, self.k_l1):
                b.iteration(loop)
                kl = min(self.k_l1, k_end - k_lo)
                buf1 = i1 % t.l1_buffers
                a_addr = buf1 * (self.a_l1 + self.b_l1)
                b_addr = a_addr + self.a_l1
                b.scalar(2)
                if i1 >= t.l1_buffers:
                    b.wait_flag(MTE1, MTE2, buf1)
                tile.gm_to_l1(b, g.a, a_addr, bi, m_lo, m, k_lo, kl)
                tile.gm_to_l1(b, g.b, b_addr, bi, k_lo, kl, n_lo, n)
                b.set_flag(MTE2, MTE1, buf1)
                b.wait_flag(MTE2, MTE1, buf1)
                for ks in range(0, 0 if b.records_only else kl, t.base_k):    # on-core work only
                    kk = min(t.base_k, kl - ks)
                    buf0 = i0 % t.l0_buffers
                    if i0 >= t.l0_buffers:
                        b.wait_flag(M, MTE1, buf0)
                    tile.l1_to_l0a(b, buf0 * self.a_l0, a_addr, m, kk, dt)
                    tile.l1_to_l0b(b, buf0 * self.b_l0, b_addr, kk, n, dt)
                    b.set_flag(MTE1, M, buf0)
                    b.wait_flag(MTE1, M, buf0)
                    if ks == 0 and k_lo == k_first and ic >= t.l0c_buffers:
                        b.wait_flag(FIX, M, bufc)          # L0C buffer written out
                    tile.mmad(b, m, n, kk, dt, buf0 * self.a_l0, buf0 * self.b_l0, bufc * self.c_l0)
                    b.set_flag(M, MTE1, buf0)
                    i0 += 1
                b.set_flag(MTE1, MTE2, buf1)
                i1 += 1
            b.set_flag(M, FIX, bufc)
            b.wait_flag(M, FIX, bufc)
            tile.l0c_to_gm(b, g.c, bi, m_lo, m, n_lo, n, c_addr=bufc * self.c_l0, quant=bool(g.scale), relu=g.relu)
            b.set_flag(FIX, M, bufc)
            ic += 1


def pending_flags(prog, since: int = 0) -> list[tuple[int, int, int]]:
    """The flags (src pipe, dst pipe, event id) set since instruction ``since`` of ``prog`` and not
    yet waited for, once per outstanding set, in order of first use."""
    pending: collections.Counter = collections.Counter()
    for k, a in zip(prog.kind[since:], prog.arg[since:]):
        if k == SET:
            pending[a] += 1
        elif k == WAIT:
            pending[a] -= 1
    return [key for key, count in pending.items() for _ in range(count)]


def drain(b: ProgramBuilder, since: int) -> None:
    """Wait for every flag set since instruction ``since`` and not yet waited for, so the next
    run of tiles starts on free buffers."""
    for src, dst, event in pending_flags(b.prog, since):
        b.wait_flag(Pipe(src), Pipe(dst), event)
