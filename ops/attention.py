"""Attention ops: npu_fusion_attention, npu_prompt_flash_attention, npu_incre_flash_attention,
npu_fused_infer_attention_score (forward).

What is modelled. Numbers: softmax(scale * Q K^T + pse, masked) V, as each op's page defines it,
in float32 numpy (Q K^T and P V accumulate in fp32 as the cube does, softmax in fp32, one rounding
to the output dtype), vectorised over batch and heads; variable-length batches (TND, paged caches,
left padding) are computed batch by batch. Time: every call is one MIX flash-attention kernel
(:mod:`ascend_sim.ops.templates.flash_attention`), plus, for npu_fusion_attention with dropout on
A2, the dropout-mask generation kernel that torch_npu launches before it.

Semantics and the decisions taken where the pages leave room (op-plugin 26.1.0 docs):

* **Masks.** ``atten_mask`` True/1 = masked. Sparse modes, with i the query row and j the key
  (per batch, over the actual lengths Sq, Skv): 0 defaultMask = the given mask, plus the band
  ``i - pre <= j <= i + next`` (origin top-left); 1 allMask = the given mask; 2 leftUpCausal
  ``j <= i``; 3 rightDownCausal ``j <= i + Skv - Sq``; 4 band ``i + Skv - Sq - pre <= j <= i +
  Skv - Sq + next``; 5/6 prefix: rightDownCausal or ``j < prefix[b]`` (5 also applies the given
  full mask); 7 (varlen) rightDownCausal for every batch but the last, which is the band of mode 4;
  8 (varlen) leftUpCausal for every batch but the first, which is the band of mode 4. The optimised
  (2048, 2048) masks of modes 2-4, 6-8 are not read for values: the mode's rule is applied.
  npu_fusion_attention computes without any mask when ``atten_mask`` is None, whatever the mode
  (its page says so); the inference ops require the mask for modes 2-4.
* **Rows with no visible key** (fully masked rows, query padding rows) give 0 output; their
  softmax max and lse are float32's lowest value (a finite stand-in for -inf, so merging
  partial results with lse gives them weight 0) and their softmax sum is 0.
* **pse** (npu_fusion_attention) is added after scaling, ``softmax(scale * QK^T + pse)``, as the
  page's worked pse example computes it (the page's headline formula writes ``scale * (pse +
  QK^T)``; op-plugin passes pse type 1, "mul then add"). The ALiBi-compressed pse (last 1024 rows)
  is expanded with its Toeplitz structure: row i < Sq - 1024 takes row 0 shifted by the missing
  rows. ``pse_shift`` of the inference ops is added the same way.
* **Dropout** (npu_fusion_attention, keep_prob < 1): the keep mask is numpy's PCG64 seeded with
  ``(seed, offset)`` drawing one uniform float32 per score, element kept when below keep_prob;
  bits are ordered [B, N, Sq, Skv] (TND: batch after batch, [N, Sq_b, Skv_b]). An external
  ``dropout_mask`` is read as packed bits, little-endian within each byte, 1 = keep. Kept
  probabilities are scaled by 1/keep_prob; softmax_max/sum are taken before dropout. ``seed``,
  ``offset`` and ``numels`` are returned as given/computed.
* **sink** adds exp(sink[n] - max) to every row's softmax sum (its probability is dropped).
* **Outputs of npu_fusion_attention**: softmax_max and softmax_sum are float32 [B, N, Sq, 8]
  (the value repeated 8 times, as op-plugin allocates them; TND: [T, N, 8], stored N-major unless
  ``softmax_layout="TND"``), softmax_out is an empty reserved tensor. The three ints are
  returned as one-element int64 tensors (the front door hands back tensors only, and it makes
  arrays at least 1-D).
* **Quantisation.** Full int8 (PFA/FIA): S = (Q K^T in int32) * dequant_scale1 * scale; P =
  exp(S - max) is quantised with quant_scale1 (round half to even, saturate to int8); O = (P V in
  int32) * dequant_scale2 / rowsum. Output int8: round(O * quant_scale2 + quant_offset2),
  saturated. uint64/int64 dequant scales hold a float32 in their low 32 bits (npu_trans_quant_param's
  packing). Fake quantisation of int8/int4 KV: ``x * antiquant_scale + antiquant_offset`` (the
  page's formula; offset 0 when absent).
* **Paged KV**: logical key s of batch b is row s % block_size of block block_table[b][s //
  block_size]. In the kernel's timing the block ids are synthetic (b * blocks_per_seq + j, wrapped),
  because a plan never reads tensor values; the bytes moved are the same.
* **Left padding**: valid rows are [S - padding - length, S - padding); masks and pse are indexed
  by the physical row/column. KV start or end below 0 gives zeros.
* **MLA** (query_rope/key_rope): the rope parts are extra head-dim columns of Q and K
  (score = q.k + q_rope.k_rope).
* **Decode** kernels run one pass over the KV sequence per (batch, kv head); see the template.
  Fake-quantised (int8/int4) caches are timed as MSD kernels: the query is split into int8 (int4)
  pieces of 7 (3) significant bits, as many as an 11-bit fp16 significand needs (high precision,
  inner_precise bit 0 clear) or an 8-bit one (high performance).
* **Parameters without an effect on numbers or time**: gen_mask_parallel and sync (DSA
  scheduling), inner_precise beyond the MSD piece count (rows without keys always give 0),
  key_rope_antiquant_scale (reserved by the page); padding_mask is reserved and must be None.
* **Tiling studies**: each op object has a ``tiling`` attribute (None: the default tiler), e.g.
  ``ascend_sim.ops.get_op("npu_fusion_attention").tiling = FlashAttentionTiling(q_tile=64)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim.tensor import TensorMeta

from .base import Args, LegacyOp as Op
from .templates.elementwise import Operand, VectorStep, elementwise_plan
from .templates.flash_attention import (NO_LIMIT, Band, ElemRows, FlashAttentionProblem, FlashAttentionTiling,
                                        GMRows, dropout_bits_bytes, flash_attention_plan)

INT_MAX = 2147483647
COMPRESSED_MASK = 2048        # the optimised causal mask's side (documented)
PREFIX_MASK_ROWS = 3072       # sparse_mode 6's optimised mask: 2048 causal rows + 1024 prefix rows
ALIBI_ROWS = 1024             # rows kept by the ALiBi-compressed pse
STAT_LANES = 8                # softmax_max / softmax_sum repeat each value 8 times
FP32_LOWEST = float(np.finfo(np.float32).min)
_CHUNK_ELEMS = 1 << 24        # score elements computed at once (bounds host memory)

_FLOATS = (D.float16, D.bfloat16)


# ============================================================================================
# small helpers
# ============================================================================================
def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.float32)


def _int_list(op: Op, a: Args, arg: str) -> list[int] | None:
    v = a.get(arg)
    if v is None:
        return None
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (list, tuple)):
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of ints, got a tensor")
    try:
        out = [int(x) for x in v]
    except TypeError:
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of ints, got {type(v).__name__}") from None
    if any(isinstance(x, bool) for x in v):
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of ints")
    return out


def _cumulative(op: Op, arg: str, cum: list[int], total: int) -> tuple[list[int], list[int]]:
    """(start, length) per batch of a cumulative length list. Trailing zeros exclude trailing
    batches (length 0); otherwise the list must not decrease; the last value may not exceed T."""
    starts, lens = [], []
    prev = 0
    trailing = False
    for i, c in enumerate(cum):
        if c < 0:
            raise op.fail(arg, f"cumulative lengths cannot be negative, got {c} at index {i}")
        if trailing or (c == 0 and prev > 0):
            if c != 0:
                raise op.fail(arg, f"after a trailing zero every value must be 0 (index {i} is {c})")
            trailing = True
            starts.append(prev)
            lens.append(0)
            continue
        if c < prev:
            raise op.fail(arg, f"cumulative lengths must not decrease ({prev} then {c} at index {i})")
        starts.append(prev)
        lens.append(c - prev)
        prev = c
    if prev > total:
        raise op.fail(arg, f"the total length {prev} exceeds the T axis ({total}) of the tensor")
    return starts, lens


def _dequant_value(t) -> np.ndarray:
    """Per-tensor (de)quantisation factors: float32, or uint64/int64 holding a float32 in the low
    32 bits (npu_trans_quant_param's packing)."""
    x = np.asarray(t.data)
    if x.dtype.kind in "iu" and x.dtype.itemsize == 8:
        return (x.astype(np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32).astype(np.float32)
    return _f32(x)


def _band_keep(sq: int, skv: int, band: Band) -> np.ndarray:
    """bool [sq, skv]: which keys each query row sees under a band rule."""
    i = np.arange(sq, dtype=np.int64)[:, None]
    j = np.arange(skv, dtype=np.int64)[None, :]
    keep = np.ones((sq, skv), dtype=bool)
    if band.pre < NO_LIMIT:
        keep &= j >= i + band.offset - band.pre
    if band.nxt < NO_LIMIT:
        keep &= j <= i + band.offset + band.nxt
    if band.prefix:
        keep |= j < band.prefix
    return keep


def _mode_band(mode: int, sq: int, skv: int, pre: int, nxt: int, prefix: int = 0, *, is_first: bool = True,
               is_last: bool = True) -> Band:
    """The visible-key rule of a sparse mode for one batch (see the module docstring)."""
    rd = skv - sq
    if mode == 0:
        return Band(0, pre, nxt)
    if mode == 1:
        return Band()
    if mode == 2:
        return Band(0, NO_LIMIT, 0)
    if mode == 3:
        return Band(rd, NO_LIMIT, 0)
    if mode == 4:
        return Band(rd, pre, nxt)
    if mode in (5, 6):
        return Band(rd, NO_LIMIT, 0, prefix)
    if mode == 7:
        return Band(rd, pre, nxt) if is_last else Band(rd, NO_LIMIT, 0)
    if mode == 8:
        return Band(rd, pre, nxt) if is_first else Band(0, NO_LIMIT, 0)
    return Band()


def _alibi_expand(comp: np.ndarray, sq: int) -> np.ndarray:
    """[..., 1024, skv] compressed ALiBi pse -> [..., sq, skv]: row i < sq - 1024 is row 0 shifted
    left by the rows it lies above (pse[i, j] = pse[i + t, j + t])."""
    h = comp.shape[-2]
    skv = comp.shape[-1]
    if sq <= h:
        return comp[..., h - sq:, :]
    out = np.zeros(comp.shape[:-2] + (sq, skv), dtype=comp.dtype)
    out[..., sq - h:, :] = comp
    for i in range(sq - h):
        t = sq - h - i
        if t < skv:
            out[..., i, :skv - t] = comp[..., 0, t:]
    return out


# ============================================================================================
# the numbers: one batched attention
# ============================================================================================
def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, keep: np.ndarray, scale: float, *,
            bias: np.ndarray | None = None, sink: np.ndarray | None = None, drop: np.ndarray | None = None,
            keep_prob: float = 1.0, qk_scale: float = 1.0, p_quant: float | None = None,
            pv_scale: float = 1.0):
    """q [B, Nq, Sq, Dqk], k [B, Nkv, Skv, Dqk], v [B, Nkv, Skv, Dv] (float32), keep bool
    broadcastable to [B, Nq, Sq, Skv], bias likewise (float32), sink [Nq], drop bool
    [B, Nq, Sq, Skv]. Returns (o [B, Nq, Sq, Dv], row max [B, Nq, Sq], row sum [B, Nq, Sq]),
    rows without a visible key: o 0, max FP32_LOWEST, sum 0."""
    B, Nq, Sq, Dqk = q.shape
    Nkv, Skv, Dv = k.shape[1], k.shape[2], v.shape[3]
    g = Nq // Nkv
    o = np.zeros((B, Nq, Sq, Dv), np.float32)
    mx = np.full((B, Nq, Sq), FP32_LOWEST, np.float32)
    sm = np.zeros((B, Nq, Sq), np.float32)
    if Sq == 0 or Skv == 0 or B == 0:
        return o, mx, sm
    kt = np.swapaxes(k, -1, -2)[:, :, None]               # [B, Nkv, 1, Dqk, Skv]
    v5 = v[:, :, None]                                     # [B, Nkv, 1, Skv, Dv]
    rc = max(1, _CHUNK_ELEMS // max(1, B * Nq * Skv))
    sink4 = None if sink is None else sink.astype(np.float32).reshape(1, Nq, 1)
    for r0 in range(0, Sq, rc):
        r1 = min(Sq, r0 + rc)
        n = r1 - r0
        qs = q[:, :, r0:r1].reshape(B, Nkv, g, n, Dqk)
        s = np.matmul(qs, kt).reshape(B, Nq, n, Skv)
        s *= np.float32(qk_scale * scale)
        if bias is not None:
            s += bias[..., r0:r1, :] if bias.shape[-2] != 1 else bias
        kp = np.broadcast_to(keep[..., r0:r1, :] if keep.shape[-2] != 1 else keep, s.shape)
        s = np.where(kp, s, np.float32(-np.inf))
        valid = kp.any(-1)
        m = s.max(-1)
        if sink4 is not None:
            m = np.maximum(m, sink4)
        m_safe = np.where(np.isfinite(m), m, np.float32(0))
        p = np.exp(s - m_safe[..., None])
        rowsum = p.sum(-1, dtype=np.float32)
        if sink4 is not None:
            rowsum = rowsum + np.exp(sink4 - m_safe)
        if p_quant is not None:                            # int8 P for the int8 cube
            p = np.clip(np.rint(p * np.float32(p_quant)), -128, 127)
        if drop is not None:
            p = p * drop[:, :, r0:r1] * np.float32(1.0 / keep_prob)
        pv = np.matmul(p.reshape(B, Nkv, g, n, Skv).astype(np.float32), v5).reshape(B, Nq, n, Dv)
        with np.errstate(divide="ignore", invalid="ignore"):
            ob = pv * np.float32(pv_scale) / rowsum[..., None]
        ok = valid[..., None]
        o[:, :, r0:r1] = np.where(ok, ob, np.float32(0))
        has = valid | (sink4 is not None)
        mx[:, :, r0:r1] = np.where(has, m_safe, np.float32(FP32_LOWEST))
        sm[:, :, r0:r1] = np.where(has, rowsum, np.float32(0))
    return o, mx, sm


def _attend_items(items: list[dict], scale: float, **kw) -> list[tuple]:
    """Run per-batch items (q [Nq, sq, D], k, v, keep, bias, drop), stacking runs of equal shapes
    into one batched call."""
    out: list[tuple] = [None] * len(items)
    i = 0
    while i < len(items):
        j = i + 1
        sig = _sig(items[i])
        while j < len(items) and _sig(items[j]) == sig:
            j += 1
        grp = items[i:j]
        q = np.stack([x["q"] for x in grp])
        k = np.stack([x["k"] for x in grp])
        v = np.stack([x["v"] for x in grp])
        keep = np.stack([np.broadcast_to(x["keep"], grp[0]["keep"].shape) for x in grp])
        bias = None if grp[0].get("bias") is None else np.stack([x["bias"] for x in grp])
        drop = None if grp[0].get("drop") is None else np.stack([x["drop"] for x in grp])
        o, m, s = _attend(q, k, v, keep, scale, bias=bias, drop=drop, **kw)
        for t in range(len(grp)):
            out[i + t] = (o[t], m[t], s[t])
        i = j
    return out


def _sig(x: dict) -> tuple:
    return (x["q"].shape, x["k"].shape, x["v"].shape, x["keep"].shape,
            None if x.get("bias") is None else x["bias"].shape, None if x.get("drop") is None else x["drop"].shape)


# ============================================================================================
# layouts
# ============================================================================================
def _to_bnsd(x: np.ndarray, layout: str, n: int) -> np.ndarray:
    """A non-varlen Q/K/V/O array in ``layout`` -> [B, N, S, D]."""
    if layout == "BNSD":
        return x
    if layout == "BSND":
        return x.transpose(0, 2, 1, 3)
    if layout == "BSH":
        b, s, h = x.shape
        return x.reshape(b, s, n, h // n).transpose(0, 2, 1, 3)
    if layout == "SBH":
        s, b, h = x.shape
        return x.reshape(s, b, n, h // n).transpose(1, 2, 0, 3)
    if layout == "NBSD":
        return x.transpose(1, 0, 2, 3)
    raise ValueError(layout)


def _from_bnsd(x: np.ndarray, layout: str) -> np.ndarray:
    """[B, N, S, D] -> ``layout``."""
    b, n, s, d = x.shape
    if layout == "BNSD":
        return x
    if layout == "BSND":
        return x.transpose(0, 2, 1, 3)
    if layout == "BSH":
        return x.transpose(0, 2, 1, 3).reshape(b, s, n * d)
    if layout == "SBH":
        return x.transpose(2, 0, 1, 3).reshape(s, b, n * d)
    if layout == "NBSD":
        return x.transpose(1, 0, 2, 3)
    raise ValueError(layout)


def _gm_rows(tensor: str, layout: str, *, B: int, N: int, S: int, D: int, item: float,
             starts: list[int] | None = None, T: int = 0) -> GMRows:
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


def _mask_rows(tensor: str, shape: tuple, B: int, compressed: bool, bits: int = 8) -> ElemRows:
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


# ============================================================================================
# npu_fusion_attention
# ============================================================================================
@dataclass
class _FAGeom:
    layout: str
    B: int
    N: int
    Nkv: int
    Sq: int
    Skv: int
    D: int
    Dv: int
    tnd: bool = False
    q_starts: list = field(default_factory=list)
    kv_starts: list = field(default_factory=list)
    q_lens: list = field(default_factory=list)
    kv_lens: list = field(default_factory=list)
    T: int = 0
    Tkv: int = 0


class NpuFusionAttention(Op):
    name = "npu_fusion_attention"
    tiling: FlashAttentionTiling | None = None      # set for tiling studies; None: the default tiler
    _LAYOUTS = ("BSH", "SBH", "BSND", "BNSD", "TND")
    _DTYPES = (D.float16, D.bfloat16, D.float32)
    MAX_D = 768
    MAX_N = 256
    MAX_S = 1 << 20
    MAX_B = 2 << 20
    MAX_B_VARLEN = 2048

    # ----- checks -----
    def geom(self, a: Args) -> _FAGeom:
        q, k, v = (self.tensor(a, n) for n in ("query", "key", "value"))
        for n, t in (("query", q), ("key", k), ("value", v)):
            self.check_dtype(n, t, self._DTYPES)
        if k.dtype is not q.dtype or v.dtype is not q.dtype:
            raise TypeError(f"{self.name}: 'query', 'key' and 'value' must have the same dtype, got "
                            f"{q.dtype.name}, {k.dtype.name}, {v.dtype.name}")
        hn = self.int_arg(a, "head_num", lo=1)
        lay = a.input_layout
        if not isinstance(lay, str) or lay.upper() not in self._LAYOUTS:
            raise self.fail("input_layout", f"must be one of {', '.join(self._LAYOUTS)} (case-insensitive), "
                                            f"got {lay!r}")
        lay = lay.upper()
        rank = 3 if lay in ("BSH", "SBH", "TND") else 4
        for n, t in (("query", q), ("key", k), ("value", v)):
            if t.ndim != rank:
                raise self.fail(n, f"must be {rank}-D for input_layout {lay}, got shape {t.shape}")
        if lay in ("BSH", "SBH"):
            bax, sax = (0, 1) if lay == "BSH" else (1, 0)
            B, Sq, H = q.shape[bax], q.shape[sax], q.shape[2]
            Skv = k.shape[sax]
            if H % hn:
                raise self.fail("head_num", f"must divide the hidden size H={H} of query")
            d = H // hn
            if d == 0 or k.shape[2] % d:
                raise self.fail("key", f"its hidden size {k.shape[2]} must be a multiple of the head dim {d}")
            nkv = k.shape[2] // d
            if nkv == 0 or v.shape[2] % nkv:
                raise self.fail("value", f"its hidden size {v.shape[2]} must split into the {nkv} key/value heads")
            dv = v.shape[2] // nkv
            for n, t in (("key", k), ("value", v)):
                if t.shape[bax] != B or t.shape[sax] != Skv:
                    raise self.fail(n, f"batch and sequence axes {t.shape} must match key's and query's batch")
            g = _FAGeom(lay, B, hn, nkv, Sq, Skv, d, dv)
        elif lay in ("BSND", "BNSD"):
            nax, sax = (2, 1) if lay == "BSND" else (1, 2)
            B, Sq, N, d = q.shape[0], q.shape[sax], q.shape[nax], q.shape[3]
            if N != hn:
                raise self.fail("head_num", f"must equal the N axis of query ({N}) for layout {lay}, got {hn}")
            nkv, Skv, dv = k.shape[nax], k.shape[sax], v.shape[3]
            if k.shape[0] != B or v.shape[0] != B:
                raise self.fail("key", f"batch of key/value ({k.shape[0]}, {v.shape[0]}) must equal query's ({B})")
            if k.shape[3] != d:
                raise self.fail("key", f"head dim {k.shape[3]} must equal query's ({d})")
            if v.shape[nax] != nkv or v.shape[sax] != Skv:
                raise self.fail("value", f"shape {v.shape} must match key's N and S axes")
            g = _FAGeom(lay, B, N, nkv, Sq, Skv, d, dv)
        else:   # TND
            T, N, d = q.shape
            if N != hn:
                raise self.fail("head_num", f"must equal the N axis of query ({N}) for layout TND, got {hn}")
            Tkv, nkv, dk = k.shape
            if dk != d:
                raise self.fail("key", f"head dim {dk} must equal query's ({d})")
            if v.shape[0] != Tkv or v.shape[1] != nkv:
                raise self.fail("value", f"shape {v.shape} must match key's T and N axes")
            qc = _int_list(self, a, "actual_seq_qlen")
            kc = _int_list(self, a, "actual_seq_kvlen")
            if not qc or not kc or len(qc) != len(kc):
                raise self.fail("actual_seq_qlen", "TND needs actual_seq_qlen and actual_seq_kvlen, non-empty and "
                                                   "of the same length")
            if len(qc) > self.MAX_B_VARLEN:
                raise self.fail("actual_seq_qlen", f"at most {self.MAX_B_VARLEN} batches, got {len(qc)}")
            qs, ql = _cumulative(self, "actual_seq_qlen", qc, T)
            ks, kl = _cumulative(self, "actual_seq_kvlen", kc, Tkv)
            g = _FAGeom(lay, len(qc), N, nkv, max(ql), max(kl), d, v.shape[2], True, qs, ks, ql, kl, T, Tkv)
            if T > self.MAX_S or Tkv > self.MAX_S:
                raise self.fail("query", f"T must be at most {self.MAX_S}")
        if not g.tnd:
            g.q_starts = [0] * g.B
            g.kv_starts = [0] * g.B
            g.q_lens = [g.Sq] * g.B
            g.kv_lens = [g.Skv] * g.B
            if a.get("actual_seq_qlen") is not None or a.get("actual_seq_kvlen") is not None:
                raise self.fail("actual_seq_qlen", "actual_seq_qlen/actual_seq_kvlen describe the varlen layout TND; "
                                                   f"input_layout is {lay}")
            if g.B > self.MAX_B:
                raise self.fail("query", f"B must be at most {self.MAX_B}, got {g.B}")
        if g.Nkv < 1 or g.N % g.Nkv:
            raise self.fail("key", f"query heads ({g.N}) must be a multiple of key/value heads ({g.Nkv})")
        if g.N > self.MAX_N:
            raise self.fail("head_num", f"Nq must be at most {self.MAX_N}, got {g.N}")
        if not 1 <= g.D <= self.MAX_D:
            raise self.fail("query", f"head dim must be in [1, {self.MAX_D}], got {g.D}")
        if g.Dv > g.D:
            raise self.fail("value", f"head dim Dv ({g.Dv}) must not exceed Dk ({g.D})")
        if max(g.Sq, g.Skv) > self.MAX_S:
            raise self.fail("query", f"S must be at most {self.MAX_S}")
        return g

    def options(self, a: Args, g: _FAGeom) -> dict:
        keep_prob = float(a.keep_prob)
        if not 0 < keep_prob <= 1:
            raise self.fail("keep_prob", f"must be in (0, 1], got {keep_prob}")
        mode = self.int_arg(a, "sparse_mode")
        if g.tnd:
            if not (0 <= mode <= 8) or mode == 5:
                raise self.fail("sparse_mode", f"must be in [0, 5) or (5, 8] for TND, got {mode}")
        elif not 0 <= mode <= 6:
            raise self.fail("sparse_mode", f"must be in [0, 6] for input_layout {g.layout} (7 and 8 are varlen modes), "
                                           f"got {mode}")
        pre = self.int_arg(a, "pre_tockens")
        nxt = self.int_arg(a, "next_tockens")
        ip = self.int_arg(a, "inner_precise")
        if ip not in (0, 1, 2):
            raise self.fail("inner_precise", f"must be 0, 1 or 2, got {ip}")
        if a.get("padding_mask") is not None:
            raise self.fail("padding_mask", "is not supported (the page reserves it)")
        sl = a.get("softmax_layout", "")
        if sl not in ("", "TND"):
            raise self.fail("softmax_layout", f"must be '' or 'TND', got {sl!r}")
        if sl == "TND" and not g.tnd:
            raise self.fail("softmax_layout", "'TND' needs input_layout TND")
        q = a.query
        mask = self.tensor(a, "atten_mask", optional=True)
        if mask is not None:
            if mask.dtype not in (D.bool_, D.uint8):
                raise TypeError(f"{self.name}: argument 'atten_mask' has dtype {mask.dtype.name}; allowed: bool, uint8")
            self._check_mask(mask, mode, g)
            if mode in (0, 4):
                if nxt < 0 and (pre < -nxt or -nxt >= max(g.kv_lens)):
                    raise self.fail("next_tockens", f"a negative next_tockens ({nxt}) needs pre_tockens >= "
                                                    f"|next_tockens| and |next_tockens| < Skv")
                if pre < 0 and (nxt < -pre or -pre >= max(g.q_lens)):
                    raise self.fail("pre_tockens", f"a negative pre_tockens ({pre}) needs next_tockens >= "
                                                   f"|pre_tockens| and |pre_tockens| < Sq")
        prefix = None
        if mode in (5, 6) and mask is not None:
            prefix = _int_list(self, a, "prefix")
            if prefix is None or len(prefix) != g.B:
                raise self.fail("prefix", f"sparse_mode {mode} needs one prefix length per batch ({g.B})")
            if g.B > 32:
                raise self.fail("prefix", f"prefix modes support B <= 32, got {g.B}")
            for b, pn in enumerate(prefix):
                sq, skv = g.q_lens[b], g.kv_lens[b]
                lo = 0 if sq > skv else skv - sq
                if not lo <= pn <= skv:
                    raise self.fail("prefix", f"prefix[{b}] = {pn} must be in [{lo}, {skv}]")
        pse = self.tensor(a, "pse", optional=True)
        if pse is not None:
            if pse.dtype is not q.dtype:
                raise TypeError(f"{self.name}: argument 'pse' has dtype {pse.dtype.name}; it must match query "
                                f"({q.dtype.name})")
            if mode in (7, 8):
                raise self.fail("pse", f"is not supported with sparse_mode {mode}")
            self._check_pse(pse, g, mode)
        sink = self.tensor(a, "sink", optional=True)
        if sink is not None:
            if sink.dtype is not D.float32:
                raise TypeError(f"{self.name}: argument 'sink' must be float32, got {sink.dtype.name}")
            if sink.shape != (g.N,):
                raise self.fail("sink", f"shape must be [head_num] = ({g.N},), got {sink.shape}")
        numels = g.N * (sum(x * y for x, y in zip(g.q_lens, g.kv_lens)) if g.tnd else g.B * g.Sq * g.Skv)
        dm = self.tensor(a, "dropout_mask", optional=True)
        if dm is not None:
            if dm.dtype is not D.uint8:
                raise TypeError(f"{self.name}: argument 'dropout_mask' must be uint8 (packed bits), got "
                                f"{dm.dtype.name}")
            if dm.numel * 8 < numels and keep_prob < 1:
                raise self.fail("dropout_mask", f"holds {dm.numel * 8} bits, fewer than the {numels} scores")
        seed = self.int_arg(a, "seed")
        offset = self.int_arg(a, "offset")
        return dict(keep_prob=keep_prob, mode=mode, pre=pre, nxt=nxt, mask=mask, pse=pse, sink=sink, prefix=prefix,
                    dropout_mask=dm, seed=seed, offset=offset, numels=numels, softmax_layout=sl,
                    scale=float(a.scale))

    def _check_mask(self, mask, mode: int, g: _FAGeom) -> None:
        shp = mask.shape
        if mode in (2, 3, 4, 7, 8):
            if shp != (COMPRESSED_MASK, COMPRESSED_MASK):
                raise self.fail("atten_mask", f"sparse_mode {mode} takes the optimised lower-triangular mask of "
                                              f"shape ({COMPRESSED_MASK}, {COMPRESSED_MASK}), got {shp}")
            return
        if mode == 6:
            if shp != (PREFIX_MASK_ROWS, COMPRESSED_MASK):
                raise self.fail("atten_mask", f"sparse_mode 6 takes the optimised prefix mask of shape "
                                              f"({PREFIX_MASK_ROWS}, {COMPRESSED_MASK}), got {shp}")
            return
        sq, skv = g.Sq, g.Skv
        if g.tnd:
            if shp != (sq, skv):
                raise self.fail("atten_mask", f"varlen (TND) takes an SS mask of shape (maxSq, maxSkv) = "
                                              f"({sq}, {skv}), got {shp}")
            return
        ok = [(g.B, g.N, sq, skv), (g.B, 1, sq, skv)]
        if mode != 5:
            ok += [(1, 1, sq, skv), (sq, skv)]
        if tuple(shp) not in ok:
            raise self.fail("atten_mask", f"shape must be one of {', '.join(str(s) for s in ok)} "
                                          f"({'BNSS, B1SS' if mode == 5 else 'BNSS, B1SS, 11SS, SS'}), got {shp}")

    def _check_pse(self, pse, g: _FAGeom, mode: int) -> None:
        shp = tuple(pse.shape)
        if len(shp) != 4 or shp[1] != g.N or shp[0] not in (1, g.B):
            raise self.fail("pse", f"must be 4-D [B or 1, N={g.N}, rows, Skv], got {shp}")
        alibi = shp[2] == ALIBI_ROWS and mode in (0, 2, 3)
        if g.tnd:
            if not alibi or shp[3] != g.Skv:
                raise self.fail("pse", f"varlen takes the ALiBi-compressed pse [B or 1, N, {ALIBI_ROWS}, maxSkv] with "
                                       f"sparse_mode 0, 2 or 3, got {shp}")
            if any(x != y for x, y in zip(g.q_lens, g.kv_lens)):
                raise self.fail("pse", "the ALiBi-compressed pse in varlen needs Sq == Skv in every batch")
            return
        ok = {(g.B, g.N, g.Sq, g.Skv), (g.B, g.N, 1, g.Skv), (1, g.N, g.Sq, g.Skv)}
        if shp in ok:
            return
        if alibi and g.Sq > ALIBI_ROWS and shp[3] == g.Skv:
            return
        raise self.fail("pse", f"shape must be BNSS {(g.B, g.N, g.Sq, g.Skv)}, BN1S {(g.B, g.N, 1, g.Skv)}, 1NSS "
                               f"{(1, g.N, g.Sq, g.Skv)} or, when Sq > {ALIBI_ROWS}, the ALiBi-compressed "
                               f"[B or 1, N, {ALIBI_ROWS}, Skv]; got {shp}")

    def infer(self, a: Args, chip):
        g = self.geom(a)
        self.options(a, g)
        q = a.query
        dt = q.dtype
        if g.layout == "BSH":
            out = (g.B, g.Sq, g.N * g.Dv)
        elif g.layout == "SBH":
            out = (g.Sq, g.B, g.N * g.Dv)
        elif g.layout == "BNSD":
            out = (g.B, g.N, g.Sq, g.Dv)
        elif g.layout == "BSND":
            out = (g.B, g.Sq, g.N, g.Dv)
        else:
            out = (g.T, g.N, g.Dv)
        stat = (g.T, g.N, STAT_LANES) if g.tnd else (g.B, g.N, g.Sq, STAT_LANES)
        scalar = TensorMeta((1,), D.int64)
        return (TensorMeta(out, dt), TensorMeta(stat, D.float32), TensorMeta(stat, D.float32),
                TensorMeta((0,), dt), scalar, scalar, scalar)

    # ----- the numbers -----
    def bands(self, g: _FAGeom, o: dict) -> list[Band]:
        if o["mask"] is None:
            return [Band()] * g.B
        live = [b for b in range(g.B) if g.q_lens[b] > 0]
        first, last = (live[0], live[-1]) if live else (0, 0)
        return [_mode_band(o["mode"], g.q_lens[b], g.kv_lens[b], o["pre"], o["nxt"],
                           (o["prefix"] or [0] * g.B)[b], is_first=b == first, is_last=b == last)
                for b in range(g.B)]

    def _drop_bits(self, g: _FAGeom, o: dict) -> np.ndarray | None:
        if o["keep_prob"] >= 1:
            return None
        n = o["numels"]
        if o["dropout_mask"] is not None:
            raw = np.asarray(o["dropout_mask"].data).reshape(-1).view(np.uint8)
            return np.unpackbits(raw, bitorder="little")[:n].astype(bool)
        rng = np.random.Generator(np.random.PCG64([o["seed"] & 0xFFFFFFFFFFFFFFFF, o["offset"] & 0xFFFFFFFFFFFFFFFF]))
        return rng.random(n, dtype=np.float32) < np.float32(o["keep_prob"])

    def compute(self, a: Args, outs):
        g = self.geom(a)
        o = self.options(a, g)
        q, k, v = (_f32(a[n].data) for n in ("query", "key", "value"))
        bands = self.bands(g, o)
        user = None
        if o["mask"] is not None and o["mode"] in (0, 1, 5):
            user = np.asarray(o["mask"].data) != 0
        pse = None if o["pse"] is None else _f32(o["pse"].data)
        sink = None if o["sink"] is None else _f32(o["sink"].data)
        bits = self._drop_bits(g, o)
        kw = dict(sink=sink, keep_prob=o["keep_prob"])
        if not g.tnd:
            Q, K, V = _to_bnsd(q, g.layout, g.N), _to_bnsd(k, g.layout, g.Nkv), _to_bnsd(v, g.layout, g.Nkv)
            keep = np.stack([_band_keep(g.Sq, g.Skv, bands[b]) for b in range(g.B)])[:, None]
            if user is not None:
                keep = keep & ~(user if user.ndim == 4 else user[None, None])
            bias = None
            if pse is not None:
                bias = _alibi_expand(pse, g.Sq) if pse.shape[2] == ALIBI_ROWS and pse.shape[2] != g.Sq and \
                    g.Sq > ALIBI_ROWS else pse
            drop = None if bits is None else bits.reshape(g.B, g.N, g.Sq, g.Skv)
            out, mx, sm = _attend(Q, K, V, keep, o["scale"], bias=bias, drop=drop, **kw)
            att = _from_bnsd(out, g.layout)
            mx_out, sm_out = mx, sm
        else:
            items, pos = [], 0
            for b in range(g.B):
                sq, skv = g.q_lens[b], g.kv_lens[b]
                qs, ks = g.q_starts[b], g.kv_starts[b]
                it = dict(q=q[qs:qs + sq].transpose(1, 0, 2), k=k[ks:ks + skv].transpose(1, 0, 2),
                          v=v[ks:ks + skv].transpose(1, 0, 2))
                keep = _band_keep(sq, skv, bands[b])
                if user is not None:
                    keep = keep & ~user[:sq, :skv]
                it["keep"] = keep[None]
                if pse is not None:
                    pb = pse[b if pse.shape[0] > 1 else 0]
                    it["bias"] = _alibi_expand(pb, sq)[:, :, :skv]
                if bits is not None:
                    n = g.N * sq * skv
                    it["drop"] = bits[pos:pos + n].reshape(g.N, sq, skv)
                    pos += n
                items.append(it)
            res = _attend_items(items, o["scale"], **kw)
            att = np.zeros((g.T, g.N, g.Dv), np.float32)
            mx_out = np.full((g.N, g.T), FP32_LOWEST, np.float32)
            sm_out = np.zeros((g.N, g.T), np.float32)
            for b, (ob, mb, sb) in enumerate(res):
                qs, sq = g.q_starts[b], g.q_lens[b]
                att[qs:qs + sq] = ob.transpose(1, 0, 2)
                mx_out[:, qs:qs + sq] = mb
                sm_out[:, qs:qs + sq] = sb
            if o["softmax_layout"] == "TND":
                mx_out, sm_out = mx_out.T, sm_out.T
            else:            # default NTD memory order, viewed with the [T, N, 8] shape op-plugin allocates
                mx_out = mx_out.reshape(g.T, g.N)
                sm_out = sm_out.reshape(g.T, g.N)
        dt = outs[0].dtype
        stat = lambda x: np.ascontiguousarray(np.repeat(x[..., None], STAT_LANES, -1)).reshape(outs[1].shape)
        return (D.cast(att, dt), stat(mx_out), stat(sm_out), np.zeros((0,), dt.np_dtype),
                np.array([o["seed"]], np.int64), np.array([o["offset"]], np.int64), np.array([o["numels"]], np.int64))

    # ----- the kernel -----
    def plan(self, a: Args, outs, chip):
        g = self.geom(a)
        o = self.options(a, g)
        dt = a.query.dtype
        item = dt.itemsize
        kw = dict(B=g.B, item=item, starts=None, T=g.T)
        lay = g.layout
        qr = _gm_rows("query", lay, N=g.N, S=g.Sq if not g.tnd else 0, D=g.D, **{**kw, "starts": g.q_starts})
        kr = _gm_rows("key", lay, N=g.Nkv, S=g.Skv, D=g.D, **{**kw, "starts": g.kv_starts, "T": g.Tkv})
        vr = _gm_rows("value", lay, N=g.Nkv, S=g.Skv, D=g.Dv, **{**kw, "starts": g.kv_starts, "T": g.Tkv})
        orow = _gm_rows("out0", lay, N=g.N, S=g.Sq, D=g.Dv, **{**kw, "starts": g.q_starts})
        srb = STAT_LANES * 4
        if not g.tnd:
            stats = [GMRows(f"out{i}", tuple(b * g.N * g.Sq * srb for b in range(g.B)), g.Sq * srb, srb, srb)
                     for i in (1, 2)]
        elif o["softmax_layout"] == "TND":
            stats = [GMRows(f"out{i}", tuple(s * g.N * srb for s in g.q_starts), srb, g.N * srb, srb) for i in (1, 2)]
        else:
            stats = [GMRows(f"out{i}", tuple(s * srb for s in g.q_starts), g.T * srb, srb, srb) for i in (1, 2)]
        mask = o["mask"]
        user = None
        if mask is not None:
            comp = o["mode"] not in (0, 1, 5)
            user = _mask_rows("atten_mask", mask.shape, g.B, comp)
            if g.tnd and not comp:
                user = ElemRows("atten_mask", (0,) * g.B, 0, mask.shape[-1], 8)
        pse = None
        if o["pse"] is not None:
            pse = _mask_rows("pse", o["pse"].shape, g.B, False, bits=dt.bits)
        plans = []
        dropout = None
        prefix_bytes = 0
        in_kernel = False
        if o["keep_prob"] < 1:
            if o["dropout_mask"] is not None:
                dropout = self._bits_rows("dropout_mask", g, 0)
            elif chip.family == "950":
                in_kernel = True          # 950 generates the bits inside the kernel (op-plugin skips DropOutGenMask)
            else:
                prefix_bytes = dropout_bits_bytes(o["numels"])
                # DropOutGenMask (a DSA task on the device) modelled as a vector stream over the mask
                # bytes: one pass over them, 16 bits per vector element
                gen = elementwise_plan(f"{self.name}.dropout_gen_mask", chip, o["numels"], [],
                                       [Operand("workspace", 1 / 8)], [VectorStep("unary", "float16", passes=1 / 16)])
                gen.workspace_bytes = prefix_bytes
                plans.append(gen)
                dropout = self._bits_rows("workspace", g, 0)
        prob = FlashAttentionProblem(
            batch=g.B, q_heads=g.N, kv_heads=g.Nkv, d_qk=g.D, d_v=g.Dv, q_lens=tuple(g.q_lens),
            kv_lens=tuple(g.kv_lens), q_parts=(qr,), k_parts=(kr,), v=vr, out=orow, qk_dtype=dt, p_dtype=dt,
            out_itemsize=item, kv_itemsize=item, bands=tuple(self.bands(g, o)), user_mask=user,
            mask_every_tile=mask is not None and o["mode"] in (0, 1, 5), pse=pse, dropout=dropout,
            stats=tuple(stats), sink=o["sink"] is not None, dropout_in_kernel=in_kernel)
        plans.append(flash_attention_plan(self.name, chip, prob, self.tiling, workspace_prefix=prefix_bytes))
        return plans if len(plans) > 1 else plans[0]

    def _bits_rows(self, tensor: str, g: _FAGeom, base: int) -> ElemRows:
        if not g.tnd:
            return ElemRows(tensor, tuple(base + b * g.N * g.Sq * g.Skv for b in range(g.B)), g.Sq * g.Skv, g.Skv, 1)
        starts, pos = [], base
        for sq, skv in zip(g.q_lens, g.kv_lens):
            starts.append(pos)
            pos += g.N * sq * skv
        # varlen batches differ in their strides; the longest batch's stand in (same bytes per tile)
        return ElemRows(tensor, tuple(starts), g.Sq * g.Skv, g.Skv, 1)

    def attrs(self, a: Args) -> dict:
        return {"input_layout": str(a.input_layout), "sparse_mode": a.sparse_mode, "head_num": a.head_num}


# ============================================================================================
# the inference ops: one parser, op-specific rules
# ============================================================================================
MLA_ROPE_D = 64               # head dim of query_rope / key_rope (documented)
MSD_BITS_HIGH_PRECISION = 11  # significand bits the query pieces keep: fp16's
MSD_BITS_HIGH_PERFORMANCE = 8  # ... bf16's
MLA_HEADS = (1, 2, 4, 8, 16, 32, 64, 128)
_LAY_3D = ("BSH", "TND", "NTD")


@dataclass
class _IA:
    """A resolved inference-attention call."""

    lay_in: str
    lay_out: str
    B: int
    Nq: int
    Nkv: int
    Sq: int
    Skv: int
    Dq: int
    Dv: int
    Dr: int
    q_lens: list
    kv_lens: list
    q_starts: list
    kv_starts: list
    T: int
    Tkv: int
    decode: bool
    qdt: D.DType
    kvdt: D.DType
    outdt: D.DType
    full_quant: bool
    out_quant: bool
    paged: bool
    block_size: int
    cache: str
    max_blocks: int
    prefix_len: int
    mode: int
    pre: int
    nxt: int
    mask: object
    mask4: tuple
    compressed: bool
    pse: object
    lse: bool
    aq: dict | None
    left_q: bool
    left_kv: bool
    scale: float

    @property
    def tnd(self) -> bool:
        return self.lay_in in ("TND", "NTD")


def _mask4(shape: tuple, decode: bool) -> tuple:
    """A mask/pse shape as [B?, N?, rows, cols]."""
    if decode:
        if len(shape) == 2:
            return (shape[0], 1, 1, shape[1])
        if len(shape) == 3:
            return (shape[0], 1, shape[1], shape[2])
        return tuple(shape)
    if len(shape) == 2:
        return (1, 1) + tuple(shape)
    if len(shape) == 3:
        return (shape[0], 1, shape[1], shape[2])
    return tuple(shape)


class _InferAttention(Op):
    """Shared by PFA, IFA and FIA. ``ARGS`` maps canonical parameter names to the op's own."""

    ARGS: dict = {}
    LAYOUTS: tuple = ()
    Q_DTYPES: tuple = _FLOATS
    prefill_only = False
    decode_only = False
    tiling: FlashAttentionTiling | None = None      # set for tiling studies; None: the default tiler

    # ----- argument access -----
    def arg(self, a: Args, key: str):
        n = self.ARGS.get(key)
        return None if n is None else a.get(n)

    def targ(self, a: Args, key: str):
        n = self.ARGS.get(key)
        return None if n is None else self.tensor(a, n, optional=True)

    def aname(self, key: str) -> str:
        return self.ARGS.get(key, key)

    def lens_arg(self, a: Args, key: str, B: int, limit: int, what: str) -> list[int] | None:
        n = self.ARGS.get(key)
        if n is None:
            return None
        vals = _int_list(self, a, n)
        if vals is None:
            return None
        if len(vals) == 1:
            vals = vals * B
        elif len(vals) >= B:
            vals = vals[:B]
        else:
            raise self.fail(n, f"must hold 1 or at least B={B} values, got {len(vals)}")
        for b, x in enumerate(vals):
            if not 0 <= x <= limit:
                raise self.fail(n, f"value {x} of batch {b} must be in [0, {limit}] (the {what})")
        return vals

    # ----- parsing and checks -----
    def parse(self, a: Args, chip=None) -> _IA:
        q, k, v = (self.tensor(a, n) for n in ("query", "key", "value"))
        lay = a.input_layout
        if not isinstance(lay, str) or lay not in self.LAYOUTS:
            raise self.fail("input_layout", f"must be one of {', '.join(self.LAYOUTS)}, got {lay!r}")
        lay_in, _, lay_out = lay.partition("_")
        lay_out = lay_out or lay_in
        on_310p = chip is not None and chip.family == "310P"
        self.check_dtype("query", q, (D.float16,) if on_310p else self.Q_DTYPES)
        if k.dtype is not v.dtype:
            raise TypeError(f"{self.name}: 'key' and 'value' must have the same dtype, got {k.dtype.name} and "
                            f"{v.dtype.name}")
        packed_int4 = k.dtype is D.int32
        kvdt = D.int4 if packed_int4 else k.dtype
        kv_ok = {q.dtype} | ({D.int8, D.int4} if q.dtype in _FLOATS and not self.prefill_only else set())
        if self.name == "npu_incre_flash_attention":
            kv_ok -= {D.int4}
        if kvdt not in kv_ok:
            ok = sorted(d.name if d is not D.int4 else "int4 (int32)" for d in kv_ok)
            raise TypeError(f"{self.name}: 'key'/'value' dtype {k.dtype.name} does not go with query {q.dtype.name}; "
                            f"allowed: {', '.join(ok)}")
        nh = self.int_arg(a, "num_heads", lo=1)
        nkvh = self.int_arg(a, "num_key_value_heads", lo=0)
        want_rank = 3 if lay_in in _LAY_3D else 4
        if q.ndim != want_rank:
            raise self.fail("query", f"must be {want_rank}-D for input_layout {lay}, got shape {q.shape}")
        T = 0
        if lay_in == "BSH":
            B, Sq, H = q.shape
            if H % nh:
                raise self.fail("num_heads", f"must divide the hidden size H={H} of query")
            Nq, Dq = nh, H // nh
        else:
            if lay_in == "BSND":
                B, Sq, Nq, Dq = q.shape
            elif lay_in == "BNSD":
                B, Nq, Sq, Dq = q.shape
            elif lay_in == "TND":
                T, Nq, Dq = q.shape
                B, Sq = 0, 0
            else:
                Nq, T, Dq = q.shape
                B, Sq = 0, 0
            if Nq != nh:
                raise self.fail("num_heads", f"must equal the N axis of query ({Nq}), got {nh}")
        Nkv = nkvh or Nq
        if Nq % Nkv:
            raise self.fail("num_key_value_heads", f"must divide num_heads ({Nq}), got {Nkv}")
        if on_310p and nkvh:
            raise self.fail("num_key_value_heads", "only 0 is supported on Atlas inference cards (310P)")
        # ----- key / value -----
        bt = self.targ(a, "block_table")
        paged = bt is not None
        pack = 8 if packed_int4 else 1
        cache = ""
        block_size = 0
        max_blocks = 0
        Tkv = 0
        kv_starts = None
        if paged:
            if bt.dtype is not D.int32 or bt.ndim != 2:
                raise self.fail("block_table", f"must be a 2-D int32 tensor, got {bt.dtype.name} {bt.shape}")
            block_size = self.int_arg(a, self.aname("block_size"), lo=0)
            if k.ndim == 3:
                cache, (nblk, bs_, hk) = "BSH", k.shape
                if (hk * pack) % Nkv:
                    raise self.fail("key", f"cache hidden size {hk * pack} must split into {Nkv} key/value heads")
                Dk = hk * pack // Nkv
            elif k.ndim == 4:
                cache, (nblk, nk, bs_, dk) = "BNSD", k.shape
                if lay_in not in ("BNSD", "TND"):
                    raise self.fail("key", f"the (blocknum, KV_N, blocksize, D) cache needs a BNSD or TND query, "
                                           f"not {lay_in}")
                if nk != Nkv:
                    raise self.fail("num_key_value_heads", f"must equal the cache's KV_N ({nk}), got {Nkv}")
                Dk = dk * pack
            elif k.ndim == 5:
                cache, (nblk, nk, d1, bs_, c0) = "NZ", k.shape
                if nk != Nkv:
                    raise self.fail("num_key_value_heads", f"must equal the cache's KV_N ({nk}), got {Nkv}")
                if c0 * kvdt.bits != 256:
                    raise self.fail("key", f"an NZ cache's last axis must be one 32-byte block ({256 // kvdt.bits} "
                                           f"elements of {kvdt.name}), got {c0}")
                Dk = d1 * c0
            else:
                raise self.fail("key", f"a paged cache must be (blocknum, blocksize, H), (blocknum, KV_N, blocksize, "
                                       f"D) or NZ (blocknum, KV_N, D/C0, blocksize, C0); got {k.shape}")
            if bs_ != block_size:
                raise self.fail("block_size", f"must equal the cache's block axis ({bs_}), got {block_size}")
            if v.ndim != k.ndim or v.shape[:-1] != k.shape[:-1] and cache != "NZ":
                raise self.fail("value", f"cache shape {v.shape} must match key's {k.shape} (but the last axis)")
            max_blocks = bt.shape[1]
            Skv = max_blocks * block_size
            Dv = (v.shape[-1] * pack // Nkv) if cache == "BSH" else (v.shape[-1] * pack if cache == "BNSD"
                                                                     else v.shape[2] * v.shape[4])
            if bt.shape[0] != (B if B else bt.shape[0]):
                raise self.fail("block_table", f"its first axis ({bt.shape[0]}) must equal the batch size B={B}")
        else:
            for n, t in (("key", k), ("value", v)):
                if t.ndim != want_rank:
                    raise self.fail(n, f"must be {want_rank}-D for input_layout {lay}, got shape {t.shape}")
            if lay_in == "BSH":
                if k.shape[0] != B:
                    raise self.fail("key", f"batch {k.shape[0]} must equal query's ({B})")
                Skv = k.shape[1]
                if (k.shape[2] * pack) % Nkv:
                    raise self.fail("key", f"hidden size {k.shape[2] * pack} must split into {Nkv} key/value heads")
                Dk = k.shape[2] * pack // Nkv
                Dv = v.shape[2] * pack // Nkv
            elif lay_in in ("BSND", "BNSD"):
                nax, sax = (2, 1) if lay_in == "BSND" else (1, 2)
                if k.shape[0] != B:
                    raise self.fail("key", f"batch {k.shape[0]} must equal query's ({B})")
                if k.shape[nax] != Nkv:
                    raise self.fail("num_key_value_heads", f"must equal the N axis of key ({k.shape[nax]}) for "
                                                           f"layout {lay_in} (0 means num_heads), got {nkvh}")
                Skv, Dk, Dv = k.shape[sax], k.shape[3] * pack, v.shape[3] * pack
            else:
                tax, nax = (0, 1) if lay_in == "TND" else (1, 0)
                Tkv, nk, Dk = k.shape[tax], k.shape[nax], k.shape[2] * pack
                if nk != Nkv:
                    raise self.fail("num_key_value_heads", f"must equal the N axis of key ({nk}), got {nkvh}")
                Dv = v.shape[2] * pack
                Skv = 0
            if v.shape[:-1] != k.shape[:-1]:
                raise self.fail("value", f"shape {v.shape} must match key's {k.shape} but for the head dim")
        if Dk != Dq:
            raise self.fail("key", f"head dim {Dk} must equal query's ({Dq})")
        # ----- lengths -----
        tnd = lay_in in ("TND", "NTD")
        if tnd:
            qc = _int_list(self, a, self.aname("q_lens")) if self.ARGS.get("q_lens") else None
            if not qc:
                raise self.fail(self.aname("q_lens"), f"is required for layout {lay_in} (cumulative query lengths)")
            if len(qc) > 4096:
                raise self.fail(self.aname("q_lens"), f"at most 4096 batches, got {len(qc)}")
            q_starts, q_lens = _cumulative(self, self.aname("q_lens"), qc, T)
            B = len(qc)
            Sq = max(q_lens)
            if paged:
                if bt.shape[0] != B:
                    raise self.fail("block_table", f"its first axis ({bt.shape[0]}) must equal the batch size B={B}")
                kv_lens = self.lens_arg(a, "kv_lens", B, Skv, "cache capacity") or [Skv] * B
                kv_starts = [0] * B
            else:
                kc = _int_list(self, a, self.aname("kv_lens"))
                if not kc or len(kc) != B:
                    raise self.fail(self.aname("kv_lens"), f"is required for layout {lay_in}, with {B} cumulative "
                                                           f"values")
                kv_starts, kv_lens = _cumulative(self, self.aname("kv_lens"), kc, Tkv)
                Skv = max(kv_lens)
        else:
            q_starts = [0] * B
            kv_starts = [0] * B
        decode = self.decode_only or (not self.prefill_only and not tnd and Sq == 1)
        if a.get("padding_mask") is not None:
            raise self.fail("padding_mask", "is reserved and must be None")
        if self.decode_only and Sq != 1:
            raise self.fail("query", f"the query sequence length must be 1 (incremental decoding), got {Sq}")
        if not tnd:
            if decode:
                q_lens = [1] * B
            else:
                q_lens = self.lens_arg(a, "q_lens", B, Sq, "query sequence length") or [Sq] * B
            # a paged cache's capacity is the block table's: its own check names it
            kv_lens = self.lens_arg(a, "kv_lens", B, INT_MAX if paged else Skv, "key/value sequence length")
            if paged and kv_lens is None:
                raise self.fail(self.aname("kv_lens"), "is required with a paged KV cache (block_table)")
            kv_lens = kv_lens or [Skv] * B
        if paged and block_size > 0:
            need = max((-(-x // block_size) for x in kv_lens), default=0)
            if need > max_blocks:
                raise self.fail("block_table", f"has {max_blocks} blocks per sequence; the longest sequence needs "
                                               f"{need}")
            total = sum(-(-x // block_size) for x in kv_lens)
            if total > nblk:
                raise self.fail("key", f"the cache holds {nblk} blocks; the batches need {total}")
        # ----- sizes -----
        if B > 65536:
            raise self.fail("query", f"B must be at most 65536, got {B}")
        if Nq > 256:
            raise self.fail("num_heads", f"must be at most 256, got {Nq}")
        if Dq > 512 or Dv > 512:
            raise self.fail("query", f"D must be at most 512, got {max(Dq, Dv)}")
        if decode and Skv > 262144:
            raise self.fail("key", f"S must be at most 262144 in decoding, got {Skv}")
        if on_310p:
            max_b = 256 if self.decode_only else 128
            if B > max_b:
                raise self.fail("query", f"B must be at most {max_b} on Atlas inference cards (310P), got {B}")
            if max(Sq, Skv) > 65536:
                raise self.fail("query", f"S must be at most 65536 on Atlas inference cards (310P), got {max(Sq, Skv)}")
            if not self.decode_only:
                for key in ("q_lens", "kv_lens"):
                    if self.arg(a, key) is not None:
                        raise self.fail(self.aname(key), "is not supported on Atlas inference cards (310P)")
        if not decode:
            if lay_in in ("BSH", "BSND") and Nq * Dq >= 65535:
                raise self.fail("query", f"N * D must be below 65535 for layout {lay_in}, got {Nq * Dq}")
            gran = 32 if D.int8 in (q.dtype, kvdt) else 16
            if self.name == "npu_prompt_flash_attention":
                if (Dq * q.dtype.itemsize) % 32 and Dq > 128:
                    raise self.fail("query", f"a head dim that is not 32-byte aligned must be at most 128, got {Dq}")
            elif Dq % gran:
                raise self.fail("query", f"head dim must be a multiple of {gran} here, got {Dq}")
        # ----- prefix -----
        kp = self.targ(a, "key_shared_prefix")
        vp = self.targ(a, "value_shared_prefix")
        prefix_len = 0
        if (kp is None) != (vp is None):
            raise self.fail("key_shared_prefix", "key_shared_prefix and value_shared_prefix go together")
        if kp is not None:
            if paged:
                raise self.fail("key_shared_prefix", "a shared prefix is not supported with a paged KV cache")
            if kp.dtype is not k.dtype or vp.dtype is not v.dtype or kp.ndim != k.ndim or vp.ndim != v.ndim:
                raise self.fail("key_shared_prefix", "must have key's/value's dtype and rank")
            if kp.shape[0] != 1 or vp.shape[0] != 1:
                raise self.fail("key_shared_prefix", f"batch axis must be 1, got {kp.shape[0]}")
            sax = 2 if lay_in == "BNSD" else 1
            if tnd:
                raise self.fail("key_shared_prefix", f"is not supported with layout {lay_in}")
            if kp.shape[:sax] + kp.shape[sax + 1:] != k.shape[:0] + (1,) + k.shape[1:sax] + k.shape[sax + 1:] or \
                    vp.shape[sax + 1:] != v.shape[sax + 1:] or vp.shape[sax] != kp.shape[sax]:
                raise self.fail("key_shared_prefix", f"N and D (or H) must match key/value; got {kp.shape}, {vp.shape}")
            ps = kp.shape[sax]
            apl = _int_list(self, a, "actual_shared_prefix_len")
            if apl is not None and (len(apl) != 1 or not 0 <= apl[0] <= ps):
                raise self.fail("actual_shared_prefix_len", f"must be one value in [0, {ps}], got {apl}")
            prefix_len = ps if apl is None else apl[0]
            if q.dtype is D.int8:
                raise self.fail("key_shared_prefix", "is not supported when query, key and value are int8")
        # ----- rope (MLA) -----
        qr = self.targ(a, "query_rope")
        kr = self.targ(a, "key_rope")
        Dr = 0
        if (qr is None) != (kr is None):
            raise self.fail("query_rope", "query_rope and key_rope go together")
        if qr is not None:
            if qr.dtype is not q.dtype or kr.dtype is not k.dtype:
                raise TypeError(f"{self.name}: query_rope/key_rope must have the dtypes of query/key")
            if Dq not in (512, 128):
                raise self.fail("query_rope", f"needs a query head dim of 512 or 128, got {Dq}")
            want_qr = q.shape[:-1] + ((Nq * MLA_ROPE_D,) if lay_in == "BSH" else (MLA_ROPE_D,))
            if tuple(qr.shape) != tuple(want_qr):
                raise self.fail("query_rope", f"must have query's shape with rope head dim {MLA_ROPE_D}: {want_qr}, "
                                              f"got {qr.shape}")
            if cache == "NZ":
                ok = kr.ndim == 5 and kr.shape[:2] == k.shape[:2] and kr.shape[3:] == k.shape[3:] and \
                    kr.shape[2] * kr.shape[4] == MLA_ROPE_D
                want_kr = f"(blocknum, KV_N, {MLA_ROPE_D}/C0, blocksize, C0)"
            else:
                want_kr = k.shape[:-1] + ((Nkv * MLA_ROPE_D,) if (cache == "BSH" or (not paged and lay_in == "BSH"))
                                          else (MLA_ROPE_D,))
                ok = tuple(kr.shape) == tuple(want_kr)
            if not ok:
                raise self.fail("key_rope", f"must have key's shape with rope head dim {MLA_ROPE_D}: {want_kr}, "
                                            f"got {kr.shape}")
            Dr = MLA_ROPE_D
            if Dq == 512:
                if Nkv != 1:
                    raise self.fail("num_key_value_heads", f"MLA with D=512 needs one key/value head, got {Nkv}")
                if Nq not in MLA_HEADS:
                    raise self.fail("num_heads", f"MLA with D=512 needs N in {MLA_HEADS}, got {Nq}")
            for nm in ("pse_shift", "quant_scale2", "antiquant_scale", "key_antiquant_scale", "key_shared_prefix",
                       "query_padding_size", "kv_padding_size", "dequant_scale1"):
                if self.targ(a, nm) is not None:
                    raise self.fail(self.aname(nm), "is not supported together with query_rope/key_rope (MLA)")
        if Nq // Nkv > 64 and not Dr:             # MLA (D=512) allows 128 query heads on one kv head
            raise self.fail("num_key_value_heads", f"num_heads / num_key_value_heads must be at most 64, got "
                                                   f"{Nq // Nkv}")
        if tnd and not decode:
            if Dr == 0:
                if lay_in == "TND" and lay != "TND_NTD" and not (
                        (Dq == 128 and Dv == 128) or (Dq == 192 and Dv in (128, 192))):
                    if self.name == "npu_fused_infer_attention_score":
                        raise self.fail("query", f"TND needs D of query/key/value 128, or 192 with value 128/192; "
                                                 f"got {Dq}/{Dv}")
                if lay == "NTD" and Dv == 192:
                    raise self.fail("value", "NTD does not support a value head dim of 192")
                if lay == "NTD_TND" and (Dq not in (128, 192) or Dv != 128):
                    raise self.fail("query", f"NTD_TND needs Q/K head dim 128 or 192 and value 128; got {Dq}/{Dv}")
            elif Dq == 128 and Dv != 128:
                raise self.fail("value", f"TND with rope needs value head dim 128, got {Dv}")
        if lay_out == "NBSD" and not (1 < Sq <= 16) and Dr == 0:
            raise self.fail("input_layout", f"an NBSD output needs 1 < Q_S <= 16, got Q_S={Sq}")
        if lay in ("BSH_BNSD", "BSND_BNSD") and not Dr:
            raise self.fail("input_layout", f"{lay} is documented for the MLA (query_rope/key_rope) case only")
        if lay == "BNSD_BSND" and decode:
            raise self.fail("input_layout", "BNSD_BSND needs Q_S > 1")
        # ----- paged block size rules -----
        if paged:
            if block_size <= 0:
                raise self.fail("block_size", f"must be positive with a paged cache, got {block_size}")
            if Dr and Dq == 512 or (tnd and not decode):
                if block_size % 16 or block_size > 1024:
                    raise self.fail("block_size", f"must be a multiple of 16 and at most 1024 here, got {block_size}")
            elif decode:
                q16 = 32 if kvdt is D.int8 else 16
                if block_size % q16 or block_size > 512:
                    raise self.fail("block_size", f"must be a multiple of {q16} and at most 512 with {kvdt.name} "
                                                  f"key/value, got {block_size}")
            else:
                if block_size % 128 or not 128 <= block_size <= 512:
                    raise self.fail("block_size", f"must be a multiple of 128 in [128, 512] when Q_S > 1, got "
                                                  f"{block_size}")
            if cache == "BSH" and Nkv * Dk > 65535:
                raise self.fail("key", f"a (blocknum, blocksize, H) cache needs KV_N * D <= 65535, got {Nkv * Dk}")
        # ----- sparse mode, mask, pse -----
        mode = self.int_arg(a, "sparse_mode") if self.ARGS.get("sparse_mode") else 0
        pre = self.int_arg(a, self.aname("pre_tokens")) if self.ARGS.get("pre_tokens") else INT_MAX
        nxt = self.int_arg(a, self.aname("next_tokens")) if self.ARGS.get("next_tokens") else INT_MAX
        if not decode or Dr:
            if mode not in (0, 1, 2, 3, 4):
                why = "5-8 are not supported" if 5 <= mode <= 8 else "see the page"
                raise self.fail("sparse_mode", f"must be 0, 1, 2, 3 or 4 ({why}), got {mode}")
            if Dr and Dq == 512 and mode not in (0, 3, 4):
                raise self.fail("sparse_mode", f"MLA with D=512 supports 0, 3 and 4, got {mode}")
            if on_310p:
                if mode != 0:
                    raise self.fail("sparse_mode", "only 0 is supported on Atlas inference cards (310P)")
                if pre != INT_MAX:
                    raise self.fail("pre_tokens", "only 2147483647 is supported on Atlas inference cards (310P)")
                if nxt not in (0, INT_MAX):
                    raise self.fail("next_tokens", "only 0 and 2147483647 are supported on Atlas inference cards "
                                                   "(310P)")
        mask = self.targ(a, "atten_mask")
        compressed = False
        mask4 = ()
        total_kv = max(kv_lens) + prefix_len if kv_lens else 0
        if paged:
            total_kv = Skv          # the page: masks and pse of a paged call cover every block of the table
        if mask is not None:
            if mask.dtype not in (D.bool_, D.int8, D.uint8):
                raise TypeError(f"{self.name}: argument 'atten_mask' has dtype {mask.dtype.name}; allowed: bool, int8, "
                                f"uint8")
            shp = tuple(mask.shape)
            if not decode and mode in (2, 3, 4):
                if shp not in ((COMPRESSED_MASK,) * 2, (1,) + (COMPRESSED_MASK,) * 2, (1, 1) + (COMPRESSED_MASK,) * 2):
                    raise self.fail("atten_mask", f"sparse_mode {mode} takes the optimised mask of shape (2048, 2048), "
                                                  f"(1, 2048, 2048) or (1, 1, 2048, 2048), got {shp}")
                compressed = True
                mask4 = (1, 1, COMPRESSED_MASK, COMPRESSED_MASK)
            else:
                mask4 = _mask4(shp, decode)
                okb = (1, B) if (len(shp) >= 3 or decode) else (1,)
                if self.name == "npu_fused_infer_attention_score" and len(shp) == 3 and not decode and shp[0] != 1:
                    okb = (1,)
                if len(shp) not in (2, 3, 4) or mask4[0] not in okb or mask4[1] != 1:
                    raise self.fail("atten_mask", f"shape {shp} is not one of (Q_S, KV_S), (1 or B, Q_S, KV_S), "
                                                  f"(1 or B, 1, Q_S, KV_S)" + (" or (B, KV_S)" if decode else ""))
                if mask4[2] < Sq or mask4[3] < total_kv:
                    raise self.fail("atten_mask", f"covers {mask4[2]} x {mask4[3]} but the call needs at least "
                                                  f"{Sq} x {total_kv} (Q_S x KV_S)")
        elif not decode and mode in (1, 2, 3, 4):
            raise self.fail("atten_mask", f"sparse_mode {mode} needs atten_mask")
        pse = self.targ(a, "pse_shift")
        if pse is not None:
            if on_310p:
                raise self.fail(self.aname("pse_shift"), "is not supported on Atlas inference cards (310P)")
            if pse.dtype not in _FLOATS:
                raise TypeError(f"{self.name}: argument '{self.aname('pse_shift')}' must be float16 or bfloat16")
            if decode and pse.dtype is not q.dtype:
                raise TypeError(f"{self.name}: argument '{self.aname('pse_shift')}' must have query's dtype "
                                f"({q.dtype.name}) when Q_S is 1")
            if not decode and (pse.dtype is D.bfloat16) != (q.dtype is D.bfloat16):
                raise TypeError(f"{self.name}: a {pse.dtype.name} pse_shift needs a "
                                f"{'bfloat16' if pse.dtype is D.bfloat16 else 'float16 or int8'} query")
            shp = tuple(pse.shape)
            if len(shp) != 4 or shp[0] not in (1, B) or shp[1] != Nq or shp[2] < Sq or shp[3] < total_kv:
                raise self.fail(self.aname("pse_shift"), f"must be (B or 1, N={Nq}, >= Q_S={Sq}, >= KV_S={total_kv}), "
                                                         f"got {shp}")
            if decode and Dq % 16:
                raise self.fail(self.aname("pse_shift"), f"needs a head dim divisible by 16, got {Dq}")
        # ----- quantisation -----
        deq1, qs1, deq2 = self.targ(a, "dequant_scale1"), self.targ(a, "quant_scale1"), self.targ(a, "dequant_scale2")
        qs2, qo2 = self.targ(a, "quant_scale2"), self.targ(a, "quant_offset2")
        full_quant = q.dtype is D.int8
        if full_quant and decode:
            raise self.fail("query", "int8 query, key and value are not supported when Q_S is 1")
        if full_quant:
            if kvdt is not D.int8:
                raise TypeError(f"{self.name}: an int8 query needs int8 key/value")
            for key, t in (("dequant_scale1", deq1), ("quant_scale1", qs1), ("dequant_scale2", deq2)):
                if t is None:
                    raise self.fail(self.aname(key), "is required when query, key and value are int8")
                if t.numel != 1:
                    raise self.fail(self.aname(key), f"is per-tensor: one value, got shape {t.shape}")
                if t.dtype not in (D.float32, D.int64) or key == "quant_scale1" and t.dtype is not D.float32:
                    raise TypeError(f"{self.name}: argument '{self.aname(key)}' has dtype {t.dtype.name}; allowed: "
                                    f"{'float32' if key == 'quant_scale1' else 'float32, uint64 (int64)'}")
            if a.get(self.aname("quant_scale2")) is None and qo2 is not None:
                raise self.fail(self.aname("quant_offset2"), "needs quant_scale2")
        else:
            for key, t in (("dequant_scale1", deq1), ("quant_scale1", qs1), ("dequant_scale2", deq2)):
                if t is not None:
                    raise self.fail(self.aname(key), f"is only for int8 query/key/value (query is {q.dtype.name})")
        out_quant = qs2 is not None
        if qo2 is not None and qs2 is None:
            raise self.fail(self.aname("quant_offset2"), "needs quant_scale2")
        if out_quant:
            if on_310p:
                raise self.fail(self.aname("quant_scale2"), "is not supported on Atlas inference cards (310P)")
            okd = (D.float32, D.bfloat16) if q.dtype is D.bfloat16 else (D.float32,)
            self.check_dtype(self.aname("quant_scale2"), qs2, okd)
            if qo2 is not None and (qo2.dtype is not qs2.dtype or qo2.shape != qs2.shape):
                raise self.fail(self.aname("quant_offset2"), "must have quant_scale2's dtype and shape")
            if qs2.numel not in (1, Nq * Dv):
                raise self.fail(self.aname("quant_scale2"), f"must hold 1 value (per-tensor) or N*D = {Nq * Dv} "
                                                            f"(per-channel), got shape {qs2.shape}")
            if mode == 4 and (pre < 0 or nxt < 0) and not decode:
                raise self.fail("sparse_mode", "int8 output does not support the band mode with negative "
                                               "pre_tokens/next_tokens")
            if qo2 is not None and not decode:
                self._check_blocked(mode, mask is not None, pre, nxt, q_lens, kv_lens, prefix_len)
        outdt = D.int8 if out_quant else (D.float16 if full_quant else q.dtype)
        # ----- fake quantisation of the KV cache -----
        aq = self._antiquant(a, q, kvdt, k, B, Nkv, Dk, Sq, Skv, decode, paged, cache, lay_in, block_size,
                             prefix_len, bt)
        if aq and prefix_len and any(kind.startswith(("token", "pa_token")) for kind, _, _ in aq.values()):
            raise self.fail("key_shared_prefix", "a shared prefix works with per-channel or per-tensor fake "
                                                 "quantisation only (per-token scales have no prefix entries)")
        # ----- left padding -----
        left_q = left_kv = False
        qps = self.targ(a, "query_padding_size")
        kps = self.targ(a, "kv_padding_size")
        for key, t in (("query_padding_size", qps), ("kv_padding_size", kps)):
            if t is None:
                continue
            if t.dtype is not D.int64:
                raise TypeError(f"{self.name}: argument '{self.aname(key)}' must be int64, got {t.dtype.name}")
            if t.numel not in (1, B):
                raise self.fail(self.aname(key), f"must hold 1 or B={B} values, got shape {t.shape}")
            if paged:
                raise self.fail(self.aname(key), "left padding is not supported with a paged KV cache (block_table)")
            if prefix_len:
                raise self.fail(self.aname(key), "left padding is not supported with a shared prefix")
            if tnd:
                raise self.fail(self.aname(key), f"left padding is not supported with layout {lay_in}")
        if qps is not None and not decode:
            left_q = self.arg(a, "q_lens") is not None          # otherwise right padding, as documented
        if kps is not None:
            left_kv = self.arg(a, "kv_lens") is not None
        # ----- misc -----
        ip = self.int_arg(a, "inner_precise") if self.ARGS.get("inner_precise") else 0
        if ip not in ((0, 1) if decode else (0, 1, 2, 3)):
            raise self.fail("inner_precise", f"must be in {(0, 1) if decode else (0, 1, 2, 3)}, got {ip}")
        lse = bool(a.get("softmax_lse_flag", False)) if self.ARGS.get("softmax_lse_flag") else False
        if lse and Dr and Dq == 512:
            raise self.fail("softmax_lse_flag", "softmax_lse is not supported with MLA (D=512)")
        scale = float(self.arg(a, "scale"))
        if mode == 0 and mask is not None and left_q | left_kv:
            pre = nxt = INT_MAX                  # the page: pre/next are ignored with left padding
        return _IA(lay_in, lay_out, B, Nq, Nkv, Sq, Skv, Dq, Dv, Dr, q_lens, kv_lens, q_starts, kv_starts, T, Tkv,
                   decode, q.dtype, kvdt, outdt, full_quant, out_quant, paged, block_size, cache, max_blocks,
                   prefix_len, mode, pre, nxt, mask, mask4, compressed, pse, lse, aq, left_q, left_kv, scale)

    def _check_blocked(self, mode, has_mask, pre, nxt, q_lens, kv_lens, prefix_len) -> None:
        """int8 output with quant_offset2: configurations that leave query rows without keys are refused."""
        for b, (sq, skv) in enumerate(zip(q_lens, kv_lens)):
            skv += prefix_len
            bad = (mode == 0 and has_mask and (sq - skv - pre > 0 or nxt < 0)) or \
                (mode == 3 and skv - sq < 0) or (mode == 4 and (pre < 0 or nxt + skv - sq < 0))
            if bad:
                raise self.fail("quant_offset2", f"int8 output with quant_offset2 refuses sparse_mode {mode} with "
                                                 f"these lengths/tokens: batch {b} would have query rows without keys")

    def _antiquant(self, a, q, kvdt, k, B, Nkv, D_, Sq, Skv, decode, paged, cache, lay_in, block_size, prefix_len,
                   bt):
        """Which fake-quantisation parameters apply to K and V: {'k': (kind, scale, offset), 'v': ...}."""
        sc, of = self.targ(a, "antiquant_scale"), self.targ(a, "antiquant_offset")
        ks, ko = self.targ(a, "key_antiquant_scale"), self.targ(a, "key_antiquant_offset")
        vs, vo = self.targ(a, "value_antiquant_scale"), self.targ(a, "value_antiquant_offset")
        quantised = kvdt in (D.int8, D.int4) and q.dtype in _FLOATS
        if not quantised:
            for key, t in (("antiquant_scale", sc), ("antiquant_offset", of), ("key_antiquant_scale", ks),
                           ("value_antiquant_scale", vs), ("key_antiquant_offset", ko), ("value_antiquant_offset", vo)):
                if t is not None:
                    raise self.fail(self.aname(key), f"fake quantisation needs int8/int4 key and value (they are "
                                                     f"{kvdt.name})")
            return None
        if (ks is None) != (vs is None):
            raise self.fail("key_antiquant_scale", "key_antiquant_scale and value_antiquant_scale go together")
        if (ko is None) != (vo is None):
            raise self.fail("key_antiquant_offset", "key_antiquant_offset and value_antiquant_offset go together")
        if not decode and paged:
            raise self.fail("block_table", "a paged cache does not support fake quantisation when Q_S > 1")
        H = Nkv * D_
        if ks is not None:                       # separated K/V parameters take precedence
            km = self.int_arg(a, "key_antiquant_mode") if self.ARGS.get("key_antiquant_mode") else 0
            vm = self.int_arg(a, "value_antiquant_mode") if self.ARGS.get("value_antiquant_mode") else 0
            if km != vm and not (km == 0 and vm == 1):
                raise self.fail("key_antiquant_mode", f"must equal value_antiquant_mode (or be 0 with value 1), got "
                                                      f"{km} and {vm}")
            allowed_modes = (0, 1, 2, 3, 4, 5) if decode else (0, 1)
            for nm, m in (("key_antiquant_mode", km), ("value_antiquant_mode", vm)):
                if m not in allowed_modes:
                    raise self.fail(nm, f"must be one of {allowed_modes} here, got {m}")
            if not decode and q.dtype is not D.bfloat16:
                raise TypeError(f"{self.name}: separated K/V antiquant parameters with Q_S > 1 need a bfloat16 query")
            if not decode and Sq > 16:
                raise self.fail("key_antiquant_scale", f"separated K/V parameters need Q_S <= 16, got {Sq}")
            if km == vm and ks.shape != vs.shape:
                raise self.fail("value_antiquant_scale", f"must have key_antiquant_scale's shape {ks.shape}, got "
                                                         f"{vs.shape}")
            out = {}
            for which, m, s_, o_ in (("k", km, ks, ko), ("v", vm, vs, vo)):
                out[which] = (self._sep_kind(m, s_, o_, which, q, B, Nkv, D_, H, Skv, paged, block_size, bt, decode),
                              s_, o_)
            return out
        if sc is None:
            raise self.fail(self.aname("antiquant_scale"), f"is required: key/value are {kvdt.name} and query "
                                                           f"is {q.dtype.name}")
        if of is not None and (of.shape != sc.shape or of.dtype is not sc.dtype):
            raise self.fail(self.aname("antiquant_offset"), "must have antiquant_scale's shape and dtype")
        mode = self.int_arg(a, "antiquant_mode") if self.ARGS.get("antiquant_mode") else 0
        if mode not in (0, 1):
            raise self.fail("antiquant_mode", f"must be 0 (per-channel/per-tensor) or 1 (per-token), got {mode}")
        shp = tuple(sc.shape)
        if mode == 1 and decode:
            if shp != (2, B, Skv) and not (paged and len(shp) == 3 and shp[:2] == (2, B) and shp[2] >= Skv):
                raise self.fail(self.aname("antiquant_scale"), f"per-token mode takes shape (2, B, KV_S) = "
                                                               f"{(2, B, Skv)}, got {shp}")
            if sc.dtype is not D.float32:
                raise TypeError(f"{self.name}: per-token antiquant_scale must be float32, got {sc.dtype.name}")
            kind = "token2"
        else:
            if sc.dtype is not q.dtype:
                raise TypeError(f"{self.name}: argument '{self.aname('antiquant_scale')}' must have query's dtype "
                                f"({q.dtype.name}), got {sc.dtype.name}")
            chan = {"BNSD": (2, Nkv, 1, D_), "BSND": (2, Nkv, D_), "BSH": (2, H)}.get(lay_in)
            if shp == (2,) and self.name == "npu_fused_infer_attention_score" and kvdt is D.int8:
                kind = "tensor2"
            elif chan is not None and shp == chan:
                kind = "channel2"
            else:
                raise self.fail(self.aname("antiquant_scale"), f"per-channel shape for layout {lay_in} is {chan}"
                                + (" (or (2,) per-tensor)" if self.name == "npu_fused_infer_attention_score" else "")
                                + f"; got {shp}")
            if not decode and q.dtype is not D.float16:
                raise TypeError(f"{self.name}: KV dequantisation with Q_S > 1 supports int8 -> float16 only")
        return {"k": (kind, sc, of), "v": (kind, sc, of)}

    def _sep_kind(self, m, s_, o_, which, q, B, Nkv, D_, H, Skv, paged, bs, bt, decode) -> str:
        shp = tuple(s_.shape)
        name = f"{'key' if which == 'k' else 'value'}_antiquant_scale"
        if o_ is not None and (tuple(o_.shape) != shp or o_.dtype is not s_.dtype):
            raise self.fail(f"{'key' if which == 'k' else 'value'}_antiquant_offset",
                            f"must have {name}'s shape and dtype")

        def need(dt, shapes, what):
            if shp not in shapes:
                raise self.fail(name, f"{what} mode takes shape {' or '.join(str(x) for x in shapes)}, got {shp}")
            if dt is not None and s_.dtype is not dt:
                raise TypeError(f"{self.name}: argument '{name}' in {what} mode must be {dt.name}, got {s_.dtype.name}")
        if m == 0:
            chans = [(Nkv, 1, D_), (Nkv, D_), (H,), (1, Nkv, 1, D_), (1, Nkv, D_), (1, H)]
            if shp == (1,):
                need(q.dtype, [(1,)], "per-tensor")
                return "tensor"
            need(q.dtype if decode else D.bfloat16, chans, "per-channel")
            return "channel"
        if m == 1:
            need(D.float32, [(1, B, Skv), (B, Skv)] if decode else [(B, Skv)], "per-token")
            return "token"
        if m == 2:
            need(q.dtype, [(Nkv,)], "per-tensor + per-head")
            return "head"
        if m == 3:
            need(D.float32, [(B, Nkv, Skv)], "per-token + per-head")
            return "token_head"
        if not paged:
            raise self.fail(f"{'key' if which == 'k' else 'value'}_antiquant_mode", f"mode {m} needs a paged cache")
        if m == 4:
            if len(shp) != 2 or shp[1] != bs or s_.dtype is not D.float32:
                raise self.fail(name, f"paged per-token mode takes float32 (blocknum, block_size={bs}), got {shp}")
            return "pa_token"
        if len(shp) != 3 or shp[1:] != (Nkv, bs) or s_.dtype is not D.float32:
            raise self.fail(name, f"paged per-token + per-head mode takes float32 (blocknum, KV_N={Nkv}, "
                                  f"block_size={bs}), got {shp}")
        return "pa_token_head"

    # ----- outputs -----
    def out_shape(self, c: _IA) -> tuple:
        return {"BSH": (c.B, c.Sq, c.Nq * c.Dv), "BSND": (c.B, c.Sq, c.Nq, c.Dv), "BNSD": (c.B, c.Nq, c.Sq, c.Dv),
                "NBSD": (c.Nq, c.B, c.Sq, c.Dv), "TND": (c.T, c.Nq, c.Dv), "NTD": (c.Nq, c.T, c.Dv)}[c.lay_out]

    def infer(self, a: Args, chip):
        c = self.parse(a, chip)
        return (TensorMeta(self.out_shape(c), c.outdt),)

    def bands(self, c: _IA) -> list[Band]:
        out = []
        for b in range(c.B):
            sq, skv = c.q_lens[b], c.kv_lens[b] + c.prefix_len
            if c.decode and not c.Dr:
                out.append(Band())
            elif c.mode == 0:
                out.append(Band(0, c.pre, c.nxt) if c.mask is not None else Band())
            else:
                out.append(_mode_band(c.mode, sq, skv, c.pre, c.nxt))
        return out

    # ----- the numbers -----
    def _pad_starts(self, a: Args, key: str, c: _IA, S: int, lens: list[int]) -> list[int]:
        t = self.targ(a, key)
        pads = np.asarray(t.data).reshape(-1).astype(np.int64)
        pads = np.maximum(pads, 0)                           # negative padding counts as 0 (documented)
        if pads.size == 1:
            pads = np.repeat(pads, c.B)
        return [int(S - pads[b] - lens[b]) for b in range(c.B)]

    def _values(self, t, packed: bool) -> np.ndarray:
        if t.dtype is D.int32 and packed:
            return D.unpack_int4(np.asarray(t.data)).astype(np.float32)
        return _f32(t.data)

    def _kv_rows(self, x: np.ndarray, c: _IA, b: int, start: int, n: int, nheads: int, bt: np.ndarray | None
                 ) -> np.ndarray:
        """[nheads, n, d] rows start..start+n of batch b of a K/V-shaped array (paged: logical rows)."""
        if c.paged:
            bs = c.block_size
            nb = -(-n // bs) if n else 0
            ids = bt[b, :nb]
            if c.cache == "BSH":
                blk = x[ids].reshape(nb * bs, nheads, -1)[:n].transpose(1, 0, 2)
            else:
                if c.cache == "NZ":          # (blocknum, N, D/C0, bs, C0) -> (blocknum, N, bs, D)
                    x = x.transpose(0, 1, 3, 2, 4).reshape(x.shape[0], x.shape[1], x.shape[3], -1)
                blk = x[ids].transpose(1, 0, 2, 3).reshape(nheads, nb * bs, -1)[:, :n]
            return blk
        if c.lay_in == "TND":
            return x[c.kv_starts[b]:c.kv_starts[b] + n].transpose(1, 0, 2)
        if c.lay_in == "NTD":
            return x[:, c.kv_starts[b]:c.kv_starts[b] + n]
        return _to_bnsd(x, c.lay_in, nheads)[b, :, start:start + n]

    def _q_rows(self, x: np.ndarray, c: _IA, b: int, start: int, n: int) -> np.ndarray:
        if c.lay_in == "TND":
            return x[c.q_starts[b]:c.q_starts[b] + n].transpose(1, 0, 2)
        if c.lay_in == "NTD":
            return x[:, c.q_starts[b]:c.q_starts[b] + n]
        return _to_bnsd(x, c.lay_in, c.Nq)[b, :, start:start + n]

    def _aq_factor(self, kind: str, t, c: _IA, b: int, pos: np.ndarray, bt, which: int) -> np.ndarray | float:
        """A scale/offset broadcastable to [Nkv, n, D] for batch b, keys at cache positions ``pos``."""
        if t is None:
            return 0.0
        x = _f32(t.data)
        if kind == "tensor2":
            return x[which]
        if kind == "tensor":
            return x.reshape(())
        if kind == "channel2":
            return x[which].reshape(c.Nkv, 1, -1)
        if kind == "channel":
            return x.reshape(c.Nkv, 1, -1)
        if kind == "head":
            return x.reshape(c.Nkv, 1, 1)
        if kind == "token2":
            return x[which, b, pos].reshape(1, -1, 1)
        if kind == "token":
            return x.reshape(-1, x.shape[-1])[b, pos].reshape(1, -1, 1)
        if kind == "token_head":
            return x[b][:, pos][..., None]
        bs = c.block_size
        blocks, rows = bt[b, pos // bs], pos % bs
        if kind == "pa_token":
            return x[blocks, rows].reshape(1, -1, 1)
        return x[blocks, :, rows].T[..., None]                 # pa_token_head: [Nkv, n, 1]

    def compute(self, a: Args, outs):
        c = self.parse(a)
        qf = _f32(a.query.data)
        packed = a.key.dtype is D.int32
        kf, vf = self._values(a.key, packed), self._values(a.value, packed)
        bt = np.asarray(a[self.aname("block_table")].data) if c.paged else None
        qr = self.targ(a, "query_rope")
        qrf = None if qr is None else _f32(qr.data)
        krf = None if qr is None else _f32(self.targ(a, "key_rope").data)
        kp, vp = self.targ(a, "key_shared_prefix"), self.targ(a, "value_shared_prefix")
        if kp is not None:
            kpf = _to_bnsd(self._values(kp, packed), c.lay_in, c.Nkv)[0, :, :c.prefix_len]
            vpf = _to_bnsd(self._values(vp, packed), c.lay_in, c.Nkv)[0, :, :c.prefix_len]
        mask = None
        if c.mask is not None and not c.compressed:
            mask = (np.asarray(c.mask.data) != 0).reshape(c.mask4)
        pse = None if c.pse is None else _f32(c.pse.data)
        q_starts = self._pad_starts(a, "query_padding_size", c, c.Sq, c.q_lens) if c.left_q else [0] * c.B
        if c.left_kv:
            kv_starts = self._pad_starts(a, "kv_padding_size", c, c.Skv, c.kv_lens)
        else:
            kv_starts = [0] * c.B
        bands = self.bands(c)
        items, where = [], []
        for b in range(c.B):
            ql, kl = c.q_lens[b], c.kv_lens[b]
            qs, ks = q_starts[b], kv_starts[b]
            if ql == 0 or qs < 0 or ks < 0:
                continue                               # nothing to compute: zeros (documented for KV)
            q_b = self._q_rows(qf, c, b, qs, ql)
            k_b = self._kv_rows(kf, c, b, ks, kl, c.Nkv, bt)
            v_b = self._kv_rows(vf, c, b, ks, kl, c.Nkv, bt)
            if c.aq is not None:
                pos = np.arange(ks, ks + kl)
                kk, ks_t, ko_t = c.aq["k"]
                vk, vs_t, vo_t = c.aq["v"]
                k_b = k_b * self._aq_factor(kk, ks_t, c, b, pos, bt, 0) + self._aq_factor(kk, ko_t, c, b, pos, bt, 0)
                v_b = v_b * self._aq_factor(vk, vs_t, c, b, pos, bt, 1) + self._aq_factor(vk, vo_t, c, b, pos, bt, 1)
            if kp is not None:
                kpre, vpre = kpf, vpf
                if c.aq is not None:
                    kk, ks_t, ko_t = c.aq["k"]
                    vk, vs_t, vo_t = c.aq["v"]
                    z = np.arange(c.prefix_len)
                    kpre = kpre * self._aq_factor(kk, ks_t, c, 0, z, bt, 0) + self._aq_factor(kk, ko_t, c, 0, z, bt, 0)
                    vpre = vpre * self._aq_factor(vk, vs_t, c, 0, z, bt, 1) + self._aq_factor(vk, vo_t, c, 0, z, bt, 1)
                k_b = np.concatenate([kpre, k_b], axis=1)
                v_b = np.concatenate([vpre, v_b], axis=1)
            if qrf is not None:
                q_b = np.concatenate([q_b, self._q_rows(qrf, c, b, qs, ql)], axis=-1)
                k_b = np.concatenate([k_b, self._kv_rows(krf, c, b, ks, kl, c.Nkv, bt)], axis=-1)
            rows = np.arange(qs, qs + ql) if not c.decode else np.zeros(1, np.int64)
            cols = np.concatenate([np.arange(c.prefix_len), c.prefix_len + np.arange(ks, ks + kl)])
            keep = _band_keep(ql, c.prefix_len + kl, bands[b])[None]
            if mask is not None:
                mb = mask[b if mask.shape[0] > 1 else 0]
                keep = keep & ~mb[:, rows][:, :, cols]
            it = dict(q=q_b, k=k_b, v=v_b, keep=keep)
            if pse is not None:
                pb = pse[b if pse.shape[0] > 1 else 0]
                it["bias"] = pb[:, rows][:, :, cols]
            items.append(it)
            where.append((b, qs, ql))
        kw = {}
        if c.full_quant:
            kw = dict(qk_scale=float(_dequant_value(self.targ(a, "dequant_scale1")).reshape(-1)[0]),
                      p_quant=float(_f32(self.targ(a, "quant_scale1").data).reshape(-1)[0]),
                      pv_scale=float(_dequant_value(self.targ(a, "dequant_scale2")).reshape(-1)[0]))
        res = _attend_items(items, c.scale, **kw)
        qs2, qo2 = self.targ(a, "quant_scale2"), self.targ(a, "quant_offset2")
        if c.out_quant:
            sc = _f32(qs2.data).reshape(-1)
            sc = sc.reshape(c.Nq, 1, c.Dv) if sc.size > 1 else sc.reshape(())
            of = 0.0 if qo2 is None else _f32(qo2.data).reshape(-1)
            if qo2 is not None:
                of = of.reshape(c.Nq, 1, c.Dv) if of.size > 1 else of.reshape(())
        tnd = c.tnd
        odt = np.float32 if not c.out_quant else np.int8
        O = np.zeros((c.T, c.Nq, c.Dv) if tnd else (c.B, c.Nq, c.Sq, c.Dv), odt)
        L = np.full((c.T, c.Nq) if tnd else (c.B, c.Nq, c.Sq), FP32_LOWEST, np.float32)
        for (b, qs, ql), (o, m, sm) in zip(where, res):
            if c.out_quant:
                o = np.clip(np.rint(o * sc + of), -128, 127).astype(np.int8)
            with np.errstate(divide="ignore"):
                lse = np.where(sm > 0, m + np.log(np.where(sm > 0, sm, 1)), FP32_LOWEST).astype(np.float32)
            if tnd:
                O[c.q_starts[b]:c.q_starts[b] + ql] = o.transpose(1, 0, 2)
                L[c.q_starts[b]:c.q_starts[b] + ql] = lse.T
            else:
                O[b, :, qs:qs + ql] = o
                L[b, :, qs:qs + ql] = lse
        if tnd:
            out = O if c.lay_out == "TND" else O.transpose(1, 0, 2)
        else:
            out = _from_bnsd(O, c.lay_out)
        out = out if c.out_quant else D.cast(out, c.outdt)
        if len(outs) == 1:
            return (out,)
        if c.lse:
            lse_out = L[..., None]
        else:
            lse_out = np.zeros((1,), np.float32)
        return out, lse_out

    # ----- the kernel -----
    def plan(self, a: Args, outs, chip):
        c = self.parse(a, chip)
        qi, kvi = c.qdt.itemsize, c.kvdt.itemsize
        qrows = _gm_rows("query", c.lay_in, B=c.B, N=c.Nq, S=c.Sq, D=c.Dq, item=qi, starts=c.q_starts, T=c.T)
        q_parts = [qrows]
        if c.Dr:
            q_parts.append(_gm_rows("query_rope", c.lay_in, B=c.B, N=c.Nq, S=c.Sq, D=c.Dr, item=qi,
                                    starts=c.q_starts, T=c.T))

        def kv(name: str, d: int, item: float) -> GMRows:
            if not c.paged:
                return _gm_rows(name, c.lay_in, B=c.B, N=c.Nkv, S=c.Skv, D=d, item=item, starts=c.kv_starts, T=c.Tkv)
            bs = c.block_size
            nblk = a[name].shape[0]
            ids = tuple(tuple((b * c.max_blocks + j) % nblk for j in range(c.max_blocks)) for b in range(c.B))
            rb = int(round(d * item))
            if c.cache == "BSH":
                return GMRows(name, (0,) * c.B, rb, c.Nkv * rb, rb, bs, bs * c.Nkv * rb, ids)
            return GMRows(name, (0,) * c.B, bs * rb, rb, rb, bs, c.Nkv * bs * rb, ids)
        k_parts = [kv("key", c.Dq, kvi)]
        if c.Dr:
            k_parts.append(kv("key_rope", c.Dr, kvi))
        vrows = kv("value", c.Dv, kvi)
        k_prefix, v_prefix = (), None
        if c.prefix_len:
            ps = a.key_shared_prefix.shape[2 if c.lay_in == "BNSD" else 1]
            k_prefix = (_gm_rows("key_shared_prefix", c.lay_in, B=1, N=c.Nkv, S=ps, D=c.Dq, item=kvi),)
            v_prefix = _gm_rows("value_shared_prefix", c.lay_in, B=1, N=c.Nkv, S=ps, D=c.Dv, item=kvi)
        orow = _gm_rows("out0", c.lay_out, B=c.B, N=c.Nq, S=c.Sq, D=c.Dv, item=c.outdt.itemsize, starts=c.q_starts,
                        T=c.T)
        stats = ()
        if c.lse:
            if c.tnd:
                stats = (GMRows("out1", tuple(s * c.Nq * 4 for s in c.q_starts), 4, c.Nq * 4, 4),)
            else:
                stats = (GMRows("out1", tuple(b * c.Nq * c.Sq * 4 for b in range(c.B)), c.Sq * 4, 4, 4),)
        user = None
        if c.mask is not None:
            name = self.aname("atten_mask")
            user = _mask_rows(name, c.mask4, c.B, c.compressed)
        pse = None if c.pse is None else _mask_rows(self.aname("pse_shift"), c.pse.shape, c.B, False,
                                                      bits=c.pse.dtype.bits)
        token_params = []
        msd = 0
        channel = False
        if c.aq is not None:
            # MSD: the query is split into int8 (int4) pieces of (bits - 1) significant bits each,
            # enough for fp16's 11-bit significand (high precision) or bf16's 8 (high performance)
            ip = self.int_arg(a, "inner_precise") if self.ARGS.get("inner_precise") else 0
            need = MSD_BITS_HIGH_PERFORMANCE if ip & 1 else MSD_BITS_HIGH_PRECISION
            msd = -(-need // (c.kvdt.bits - 1))
            for w, (kind, st, ot) in c.aq.items():
                if kind.startswith(("token", "pa_token")):
                    for t in (st, ot):
                        if t is None:
                            continue
                        nm = next(n for n in ("antiquant_scale", "antiquant_offset", "key_antiquant_scale",
                                              "key_antiquant_offset", "value_antiquant_scale", "value_antiquant_offset")
                                  if a.get(n) is t)
                        lead = c.B * c.Skv if (kind == "token2" and w == "v") else 0
                        per_head = kind.endswith("head")
                        token_params.append(ElemRows(nm, tuple(lead + b * c.Skv * (c.Nkv if per_head else 1)
                                                               for b in range(c.B)), c.Skv if per_head else 0, 0, 32))
                elif w == "v":
                    channel = True
        cube = D.int8 if c.full_quant else (c.kvdt if c.aq is not None else c.qdt)
        prob = FlashAttentionProblem(
            batch=c.B, q_heads=c.Nq, kv_heads=c.Nkv, d_qk=c.Dq + c.Dr, d_v=c.Dv, q_lens=tuple(c.q_lens),
            kv_lens=tuple(x + c.prefix_len for x in c.kv_lens), q_parts=tuple(q_parts), k_parts=tuple(k_parts),
            v=vrows, out=orow, qk_dtype=cube, p_dtype=cube, out_itemsize=c.outdt.itemsize, kv_itemsize=kvi,
            bands=tuple(self.bands(c)), group_heads=c.decode, k_prefix=k_prefix, v_prefix=v_prefix,
            prefix_len=c.prefix_len, user_mask=user, mask_every_tile=user is not None and not c.compressed,
            pse=pse, stats=stats, msd_steps=msd, antiquant_token_params=tuple(token_params), antiquant_channel=channel,
            qk_dequant=c.full_quant, pv_dequant=c.full_quant, quantize_p=c.full_quant, quantize_out=c.out_quant)
        return flash_attention_plan(self.name, chip, prob, self.tiling)

    def attrs(self, a: Args) -> dict:
        return {"input_layout": str(a.input_layout), "num_heads": a.num_heads}


class NpuPromptFlashAttention(_InferAttention):
    name = "npu_prompt_flash_attention"
    ARGS = dict(q_lens="actual_seq_lengths", kv_lens="actual_seq_lengths_kv", dequant_scale1="deq_scale1",
                quant_scale1="quant_scale1", dequant_scale2="deq_scale2", quant_scale2="quant_scale2",
                quant_offset2="quant_offset2", pse_shift="pse_shift", atten_mask="atten_mask", scale="scale_value",
                pre_tokens="pre_tokens", next_tokens="next_tokens", sparse_mode="sparse_mode")
    LAYOUTS = ("BSH", "BSND", "BNSD", "BNSD_BSND", "TND")
    Q_DTYPES = (D.float16, D.bfloat16, D.int8)
    prefill_only = True


class NpuIncreFlashAttention(_InferAttention):
    name = "npu_incre_flash_attention"
    ARGS = dict(kv_lens="actual_seq_lengths", dequant_scale1="dequant_scale1", quant_scale1="quant_scale1",
                dequant_scale2="dequant_scale2", quant_scale2="quant_scale2", quant_offset2="quant_offset2",
                antiquant_scale="antiquant_scale", antiquant_offset="antiquant_offset", block_table="block_table",
                block_size="block_size", kv_padding_size="kv_padding_size", pse_shift="pse_shift",
                atten_mask="atten_mask", scale="scale_value", inner_precise="inner_precise")
    LAYOUTS = ("BSH", "BSND", "BNSD")
    decode_only = True


class NpuFusedInferAttentionScore(_InferAttention):
    name = "npu_fused_infer_attention_score"
    ARGS = dict(q_lens="actual_seq_lengths", kv_lens="actual_seq_lengths_kv", dequant_scale1="dequant_scale1",
                quant_scale1="quant_scale1", dequant_scale2="dequant_scale2", quant_scale2="quant_scale2",
                quant_offset2="quant_offset2", antiquant_scale="antiquant_scale", antiquant_offset="antiquant_offset",
                key_antiquant_scale="key_antiquant_scale", key_antiquant_offset="key_antiquant_offset",
                value_antiquant_scale="value_antiquant_scale", value_antiquant_offset="value_antiquant_offset",
                block_table="block_table", block_size="block_size", query_padding_size="query_padding_size",
                kv_padding_size="kv_padding_size", key_shared_prefix="key_shared_prefix",
                value_shared_prefix="value_shared_prefix", query_rope="query_rope", key_rope="key_rope",
                pse_shift="pse_shift", atten_mask="atten_mask", scale="scale", pre_tokens="pre_tokens",
                next_tokens="next_tokens", sparse_mode="sparse_mode", inner_precise="inner_precise",
                antiquant_mode="antiquant_mode", key_antiquant_mode="key_antiquant_mode",
                value_antiquant_mode="value_antiquant_mode", softmax_lse_flag="softmax_lse_flag")
    LAYOUTS = ("BSH", "BSND", "BNSD", "BNSD_BSND", "BSH_NBSD", "BSND_NBSD", "BNSD_NBSD", "BSH_BNSD", "BSND_BNSD",
               "TND", "TND_NTD", "NTD_TND", "NTD")
    Q_DTYPES = (D.float16, D.bfloat16, D.int8)

    def infer(self, a: Args, chip):
        c = self.parse(a, chip)
        if c.lse:
            lse = (c.T, c.Nq, 1) if c.tnd else (c.B, c.Nq, c.Sq, 1)
        else:
            lse = (1,)
        return TensorMeta(self.out_shape(c), c.outdt), TensorMeta(lse, D.float32)


OPS = (NpuFusionAttention(), NpuPromptFlashAttention(), NpuIncreFlashAttention(), NpuFusedInferAttentionScore())
