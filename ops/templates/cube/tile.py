"""The tile layer: the instructions that move and multiply one tile.

:class:`TileCopy` is one object a block passes each tile through: GM -> L1 (ND2NZ for ND
operands, fractal columns for NZ ones), L1 -> L0A / L0B, MMAD into L0C, the bias and dequant
scales on their way to the bias table and the fixpipe buffer, and FIXPIPE L0C -> GM. A variant
is a subclass that overrides one copy: a convolution's img2col (load3d) L1 -> L0A copy, or the
weight-quant MIX kernel's wait for its vector cores before each B load
(:class:`CrossCoreWaitCopy`).
"""
from __future__ import annotations

import math

from ascend_sim.isa import Buf, Pipe, ProgramBuilder

from .layout import Operand
from .tiling import SCALE_WORD_BYTES


def _ceil_to(v: float, q: int) -> int:
    return int(math.ceil(v / q) * q)


class TileCopy:
    """The copies, MMAD and FIXPIPE of one tile (CATLASS's tile layer)."""

    # the instructions of a tile depend on its sizes, not on where it is (cores whose tiles have
    # the same sizes are one block class); a variant emitting by position says False
    position_independent = True

    # ----- GM -> L1 -----
    def gm_to_l1(self, b: ProgramBuilder, op: Operand, addr: int, batch: int, r0: int, nr: int, c0: int,
                 nc: int) -> None:
        """MTE2: rows r0..r0+nr, cols c0..c0+nc of a matrix operand (as the product uses it) -> L1."""
        chip = b.chip
        rr0, nrr, cc0, ncc = op.stored_view(r0, nr, c0, nc)
        if op.nz:   # NZ storage: ceil(cols / c0) fractal columns of padded rows, one block per row
            block = chip.memory.block_bytes
            runs = -(-ncc // op.dtype.c0)
            b.load_gm(Buf.L1, addr, op.name, op.get_offset(chip, batch, rr0, cc0), runs, int(nrr * block),
                      op.nz_ld(chip))
        else:
            item = op.dtype.itemsize
            b.load_gm(Buf.L1, addr, op.name, op.get_offset(chip, batch, rr0, cc0), nrr, max(1, int(ncc * item)),
                      int(op.nd_ld()), nd2nz=True)

    # ----- L1 -> L0A / L0B -----
    def l1_to_l0a(self, b: ProgramBuilder, dst: int, src: int, m: int, k: int, dt) -> None:
        b.load_l1(Buf.L0A, dst, src, dt.nbytes(_ceil_to(m, b.chip.cube.m0) * _ceil_to(k, dt.c0)))

    def l1_to_l0b(self, b: ProgramBuilder, dst: int, src: int, k: int, n: int, dt) -> None:
        b.load_l1(Buf.L0B, dst, src, dt.nbytes(_ceil_to(k, dt.c0) * _ceil_to(n, b.chip.cube.n0)))

    # ----- CUBE -----
    def mmad(self, b: ProgramBuilder, m: int, n: int, k: int, dt, a_addr: int, b_addr: int, c_addr: int) -> None:
        b.mmad(m, n, k, dt.name, a_addr=a_addr, b_addr=b_addr, c_addr=c_addr)

    # ----- bias and dequant scales -----
    def bias_to_bt(self, b: ProgramBuilder, bias: str, offset: int, n: int, itemsize: float, l1_addr: int) -> None:
        block = b.chip.memory.block_bytes
        nb = max(block, _ceil_to(n * itemsize, block))
        b.load_gm(Buf.L1, l1_addr, bias, int(offset), 1, nb, name="MTE2.bias")
        if b.chip.buffers.bt > 0:
            b.load_l1(Buf.BT, 0, l1_addr, min(nb, b.chip.buffers.bt), name="MTE1.bias_to_bt")

    def scale_to_fb(self, b: ProgramBuilder, scale: str, offset: int, n: int, per_tensor: bool, l1_addr: int) -> None:
        ns = SCALE_WORD_BYTES if per_tensor else max(b.chip.memory.block_bytes, n * SCALE_WORD_BYTES)
        b.load_gm(Buf.L1, l1_addr, scale, int(offset), 1, ns, name="MTE2.scale")
        b.load_l1(Buf.FB, 0, l1_addr, min(ns, b.chip.buffers.fb), name="MTE1.scale_to_fb")

    # ----- L0C -> GM -----
    def l0c_to_gm(self, b: ProgramBuilder, c: Operand, batch: int, m_lo: int, m: int, n_lo: int, n: int, *,
                  c_addr: int, quant: bool, relu: bool) -> None:
        chip = b.chip
        item = c.dtype.itemsize
        fx = dict(c_addr=c_addr, quant=quant, relu=relu)
        if c.nz:    # fractal columns of n0 columns: column block n_lo / n0, row m_lo
            frac_row = chip.cube.n0 * item
            m_pad = _ceil_to(c.rows, chip.cube.m0)
            ld = int(c.layout.ld or m_pad * frac_row)
            off = c.layout.batch_base(batch) + (n_lo // chip.cube.n0) * ld + m_lo * frac_row
            b.fixpipe_to_gm(m, n, item, c.name, int(off), ld, nz2nd=False, **fx)
        else:
            b.fixpipe_to_gm(m, n, item, c.name, c.get_offset(chip, batch, m_lo, n_lo), int(c.nd_ld()), **fx)


class CrossCoreWaitCopy(TileCopy):
    """A MIX kernel's cube side: before each GM -> L1 load of ``tensor`` (a chunk its vector cores
    write just ahead), wait for their cross-core flag ``flag``."""

    def __init__(self, tensor: str, flag: int = 0):
        self.tensor, self.flag = tensor, flag

    def gm_to_l1(self, b, op, addr, batch, r0, nr, c0, nc) -> None:
        if op.name == self.tensor:
            b.cross_wait(Pipe.MTE2, self.flag, "AIV")
        super().gm_to_l1(b, op, addr, batch, r0, nr, c0, nc)
