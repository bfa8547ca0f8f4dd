"""The problem and the tiling of the flash-attention template, as the attention ops hand them over.

A problem says where every operand's rows sit in GM (:class:`GMRows` for Q/K/V/O and per-row
statistics, :class:`ElemRows` for masks, pse and dropout bits), which keys each query row sees
(:class:`Band`) and which features the kernel runs (quantisation, MSD, dropout...). A tiling
(:class:`FlashAttentionTiling`) is the study parameter set: tile sizes, blocks, ring depths.
"""
from __future__ import annotations

from dataclasses import dataclass

from ascend_sim.dtypes import DType

NO_LIMIT = 1 << 62          # a band edge that never masks


@dataclass(frozen=True)
class GMRows:
    """Where the rows of one (batch, head) matrix sit in a GM tensor: row ``s`` of head ``n`` of
    batch ``b`` starts at byte ``batch_base[b] + n * head_stride + s * row_stride`` and holds
    ``row_bytes`` bytes. Paged tensors (``block_size`` > 0) hold logical row ``s`` in physical block
    ``block_ids[b][s // block_size]`` at ``block * block_stride + n * head_stride +
    (s % block_size) * row_stride``."""

    tensor: str
    batch_base: tuple[int, ...]
    head_stride: int
    row_stride: int
    row_bytes: int
    block_size: int = 0
    block_stride: int = 0
    block_ids: tuple[tuple[int, ...], ...] = ()

    def segments(self, b: int, head: int, r0: int, n: int) -> list[tuple[int, int, int]]:
        """(offset, rows, stride) runs covering rows r0..r0+n of (b, head)."""
        if n <= 0:
            return []
        if not self.block_size:
            return [(self.batch_base[b] + head * self.head_stride + r0 * self.row_stride, n, self.row_stride)]
        out = []
        s = r0
        ids = self.block_ids[b]
        while s < r0 + n:
            blk, r = divmod(s, self.block_size)
            k = min(self.block_size - r, r0 + n - s)
            phys = ids[blk % len(ids)] if ids else blk
            out.append((phys * self.block_stride + head * self.head_stride + r * self.row_stride, k, self.row_stride))
            s += k
        return out


@dataclass(frozen=True)
class ElemRows:
    """A per-(row, key) operand the vector units read tile by tile (attention mask, pse, dropout
    bits): element (b, head, row, col) at element index ``batch_base[b] + head * head_stride +
    row * row_stride + col``, ``elem_bits`` bits each. Strides of 0 broadcast. ``compressed`` masks
    (the optimised 2048 x 2048 causal masks) are read at the same small region for every tile.
    ``rows`` > 0 is the tensor's row count: later query rows read its last rows (the
    ALiBi-compressed pse holds only the last 1024)."""

    tensor: str
    batch_base: tuple[int, ...]
    head_stride: int
    row_stride: int
    elem_bits: int
    compressed: bool = False
    rows: int = 0


@dataclass(frozen=True)
class Band:
    """Keys a query row may see, per batch: key j is visible from row i when
    ``i + offset - pre <= j <= i + offset + nxt`` or ``j < prefix`` (the sparse modes' rules)."""

    offset: int = 0
    pre: int = NO_LIMIT
    nxt: int = NO_LIMIT
    prefix: int = 0

    def lo(self, i: int) -> int:
        return i + self.offset - self.pre

    def hi(self, i: int) -> int:
        return i + self.offset + self.nxt


@dataclass(frozen=True)
class FlashAttentionProblem:
    """Shapes, GM placement and features of one attention call (see the module docstring)."""

    batch: int
    q_heads: int
    kv_heads: int
    d_qk: int                              # head dim of Q K^T (rope dims included)
    d_v: int
    q_lens: tuple[int, ...]                # query rows computed per batch
    kv_lens: tuple[int, ...]               # keys per batch (shared prefix included)
    q_parts: tuple[GMRows, ...]            # Q (and query_rope): columns concatenated
    k_parts: tuple[GMRows, ...]            # K (and key_rope)
    v: GMRows
    out: GMRows
    qk_dtype: DType                        # cube input dtype of Q K^T
    p_dtype: DType                         # cube input dtype of P V
    out_itemsize: float
    kv_itemsize: float                     # bytes per K/V element in GM (int8 1, int4 0.5)
    bands: tuple[Band, ...]                # per batch
    group_heads: bool = False              # decode: rows are the query heads of one kv head
    k_prefix: tuple[GMRows, ...] = ()      # shared-prefix K parts (batch 0), keys 0..prefix_len
    v_prefix: GMRows | None = None
    prefix_len: int = 0
    user_mask: ElemRows | None = None      # read on every computed tile when ``mask_every_tile``
    mask_every_tile: bool = False
    pse: ElemRows | None = None
    dropout: ElemRows | None = None
    stats: tuple[GMRows, ...] = ()         # per-row outputs written with O (softmax max/sum, lse)
    msd_steps: int = 0                     # fake-quantised KV: int8 pieces of the query (0: none)
    antiquant_token_params: tuple[ElemRows, ...] = ()   # per-key scales/offsets, loaded with each tile
    antiquant_channel: bool = False        # per-channel/per-tensor value scales, applied to O
    qk_dequant: bool = False               # int8 cube: FIXPIPE dequantises S
    pv_dequant: bool = False
    quantize_p: bool = False               # AIVs quantise P to int8
    quantize_out: bool = False             # AIVs quantise O to int8 (scale, offset)
    sink: bool = False                     # one extra logit per head in the softmax sum
    dropout_in_kernel: bool = False        # the AIVs generate dropout bits themselves


@dataclass(frozen=True)
class FlashAttentionTiling:
    """Named, typed tiling of the flash-attention kernel; print it, change it, sweep it."""

    q_tile: int = 128          # query rows per unit (split between the AIVs)
    kv_tile: int = 128         # keys per inner step
    block_dim: int = 0         # 0: every cube core
    kv_buffers: int = 3        # L1 ring of K/V tiles: the tiles in flight (>= workspace_slots)
    workspace_slots: int = 3   # GM ring between AIC and AIV (S, P, partial O); S runs slots - 1 ahead

    def __str__(self) -> str:
        return (f"q_tile={self.q_tile} kv_tile={self.kv_tile} block_dim={self.block_dim} "
                f"kv_buffers={self.kv_buffers} workspace_slots={self.workspace_slots}")
