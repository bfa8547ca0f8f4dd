"""Operands with layouts: where a GEMM operand's elements sit in its GM tensor.

As CATLASS's layouts (``layout::RowMajor``, ``layout::zN``) with their ``GetOffset``: a template
operand says its tensor, its logical matrix, its format, and a :class:`Layout` -- base offset,
leading dimension, and how batches are placed -- so the template addresses any sub-view directly
(a group's rows inside a larger x, rows a leading dimension apart, broadcast batches, a region of
the workspace) and no built plan is patched afterwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ascend_sim.dtypes import DType


@dataclass(frozen=True)
class Layout:
    """Placement of a (batched) matrix in its GM tensor; all numbers in bytes.

    offset         where stored element (0, 0) of batch 0 sits
    ld             the leading dimension: ND, bytes between stored rows; FRACTAL_NZ, bytes between
                   fractal column blocks; 0: dense (the stored matrix's own width / padded height)
    batch_stride   bytes between consecutive batches (0: one matrix serves every batch)
    batch_offsets  a batch map: batch b of the problem starts ``batch_offsets[b]`` bytes after
                   ``offset`` (broadcast batches, batches dealt into slabs); overrides batch_stride
    """

    offset: int = 0
    ld: float = 0
    batch_stride: int = 0
    batch_offsets: tuple[int, ...] = ()

    def batch_base(self, b: int) -> int:
        return self.offset + (self.batch_offsets[b] if self.batch_offsets else b * self.batch_stride)

    @staticmethod
    def broadcast(out_batch: tuple, own_batch: tuple, matrix_bytes: int, offset: int = 0) -> "Layout":
        """Batches of an operand whose batch dims (right-aligned to ``out_batch``) broadcast: problem
        batch b reads the operand's own matrix b' (its size-1 dims repeat)."""
        own = (1,) * (len(out_batch) - len(own_batch)) + tuple(own_batch)
        n_own = math.prod(own)
        if n_own == 1:
            return Layout(offset=offset)
        if tuple(own) == tuple(out_batch):
            return Layout(offset=offset, batch_stride=matrix_bytes)
        strides, s = [], 1
        for d in reversed(own):
            strides.append(s)
            s *= d
        strides.reverse()
        offsets = []
        for bi in range(math.prod(out_batch)):
            j, rest = 0, bi
            for d_out, d_own, st in zip(reversed(out_batch), reversed(own), reversed(strides)):
                rest, r = divmod(rest, d_out)
                if d_own != 1:
                    j += r * st
            offsets.append(j * matrix_bytes)
        return Layout(offset=offset, batch_offsets=tuple(offsets))


@dataclass(frozen=True)
class Operand:
    """A GM matrix operand of the cube template: plan tensor name, logical (rows, cols) as the
    product uses it (A: M x K, B: K x N, C: M x N), dtype, whether it is stored transposed,
    whether it is FRACTAL_NZ, and its :class:`Layout`."""

    name: str
    rows: int
    cols: int
    dtype: DType
    transposed: bool = False
    nz: bool = False
    layout: Layout = field(default_factory=Layout)

    @property
    def stored(self) -> tuple[int, int]:
        """(rows, cols) of the matrix as stored."""
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    def nd_ld(self) -> float:
        """ND: bytes between stored rows."""
        return self.layout.ld or self.stored[1] * self.dtype.itemsize

    def nz_ld(self, chip) -> int:
        """FRACTAL_NZ: bytes between fractal column blocks (stored rows padded to m0, one block
        per row)."""
        rows = self.stored[0]
        m0 = chip.cube.m0
        return int(self.layout.ld or -(-rows // m0) * m0 * chip.memory.block_bytes)

    def stored_view(self, r0: int, nr: int, c0: int, nc: int) -> tuple[int, int, int, int]:
        """A logical sub-matrix (rows r0.., cols c0..) in stored coordinates."""
        return (c0, nc, r0, nr) if self.transposed else (r0, nr, c0, nc)

    def get_offset(self, chip, batch: int, r: int, c: int) -> int:
        """Byte offset of stored element (r, c) of ``batch`` (CATLASS GetOffset)."""
        base = self.layout.batch_base(batch)
        if self.nz:
            c0 = self.dtype.c0
            return int(base + (c // c0) * self.nz_ld(chip) + r * chip.memory.block_bytes)
        return int(base + r * self.nd_ld() + c * self.dtype.itemsize)
