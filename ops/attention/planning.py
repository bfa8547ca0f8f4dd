"""Where an attention call's operands sit in GM, as the flash-attention template reads them: the
rows of Q/K/V/O in each layout, paged caches, masks/pse/bits, and per-row statistics."""
from __future__ import annotations

from ascend_sim.dtypes import float32

from ..templates.flash_attention import ElemRows, GMRows

F32_BYTES = float32.bits // 8


def gm_rows(tensor: str, layout: str, *, B: int, N: int, S: int, D: int, item: float,
            starts: tuple[int, ...] | None = None, T: int = 0) -> GMRows:
    """Where the (batch, head, row) rows of a Q/K/V/O tensor in ``layout`` sit (bytes)."""
    rb = int(round(D * item))
    if layout in ("BSH", "BSND"):
        return GMRows(tensor, tuple(b * S * N * rb for b in range(B)), rb, N * rb, rb)
    if layout == "SBH":
        return GMRows(tensor, tuple(b * N * rb for b in range(B)), rb, B * N * rb, rb)
    if layout == "BNSD":
        return GMRows(tensor, tuple(b * N * S * rb for b in range(B)), S * rb, rb, rb)
    if layout == "NBSD":
        return GMRows(tensor, tuple(b * S * rb for b in range(B)), B * S * rb, rb, rb)
    if layout == "TND":
        return GMRows(tensor, tuple(c * N * rb for c in starts), rb, N * rb, rb)
    if layout == "NTD":
        return GMRows(tensor, tuple(c * rb for c in starts), T * rb, rb, rb)
    raise ValueError(layout)


def paged_rows(tensor: str, cache: str, *, B: int, N: int, D: int, item: float, block_size: int,
               max_blocks: int, blocks: int) -> GMRows:
    """The rows of a paged K/V cache ((blocknum, blocksize, H) or (blocknum, N, blocksize, D)).
    A plan never reads tensor values, so the block ids are synthetic (b * max_blocks + j, wrapped
    at the cache's block count): the bytes moved are the same as the real table's."""
    ids = tuple(tuple((b * max_blocks + j) % blocks for j in range(max_blocks)) for b in range(B))
    rb = int(round(D * item))
    if cache == "BSH":
        return GMRows(tensor, (0,) * B, rb, N * rb, rb, block_size, block_size * N * rb, ids)
    return GMRows(tensor, (0,) * B, block_size * rb, rb, rb, block_size, N * block_size * rb, ids)


def mask_rows(tensor: str, shape: tuple, B: int, compressed: bool, bits: int) -> ElemRows:
    """Element strides of a mask/pse tensor viewed as [B?, N?, rows, cols] (leading dims of 1 or a
    missing dim broadcast)."""
    rows, cols = shape[-2], shape[-1]
    if compressed:
        return ElemRows(tensor, (0,) * B, 0, cols, bits, compressed=True)
    lead = shape[:-2]
    bdim = lead[0] if len(lead) >= 1 else 1
    ndim = lead[1] if len(lead) >= 2 else 1
    head = rows * cols if ndim > 1 else 0
    batch = ndim * rows * cols if bdim > 1 else 0
    return ElemRows(tensor, tuple(b * batch for b in range(B)), head, cols if rows > 1 else 0, bits, rows=rows)


def stat_rows(tensor: str, row_bytes: int, *, B: int, N: int, S: int, starts: tuple[int, ...] | None = None,
              token_major: bool = True, T: int = 0) -> GMRows:
    """Per-row statistics (softmax max/sum, lse), ``row_bytes`` per (batch, head, row): [B, N, S]
    when ``starts`` is None, else varlen [T, N] (``token_major``) or [N, T]."""
    if starts is None:
        return GMRows(tensor, tuple(b * N * S * row_bytes for b in range(B)), S * row_bytes, row_bytes, row_bytes)
    if token_major:
        return GMRows(tensor, tuple(s * N * row_bytes for s in starts), row_bytes, N * row_bytes, row_bytes)
    return GMRows(tensor, tuple(s * row_bytes for s in starts), T * row_bytes, row_bytes, row_bytes)
