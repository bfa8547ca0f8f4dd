"""The numbers of attention: softmax(scale * Q K^T + bias, masked) V in float32 numpy, as the cube
and vector compute it (fp32 accumulation, one rounding to the output dtype by the caller),
vectorised over batch and heads; and the layout conversions the ops' compute steps use."""
from __future__ import annotations

import numpy as np

from ..common import INT8_MAX, INT8_MIN, fp32, quant_param_scale
from ..templates.flash_attention import NO_LIMIT, Band

FP32_LOWEST = float(np.finfo(np.float32).min)
_CHUNK_ELEMS = 1 << 24        # score elements computed at once (bounds host memory)


def dequant_value(t) -> np.ndarray:
    """Per-tensor (de)quantisation factors: float32, or uint64/int64 holding a float32 in the low
    32 bits (npu_trans_quant_param's packing)."""
    x = np.asarray(t.data)
    if x.dtype.kind in "iu" and x.dtype.itemsize == 8:
        return quant_param_scale(x.astype(np.int64) if x.dtype.kind == "u" else x).astype(np.float32)
    return fp32(x)


def band_keep(sq: int, skv: int, band: Band) -> np.ndarray:
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


def alibi_expand(comp: np.ndarray, sq: int) -> np.ndarray:
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


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, keep: np.ndarray, scale: float, *,
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
            p = np.clip(np.rint(p * np.float32(p_quant)), INT8_MIN, INT8_MAX)
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


def attend_items(items: list[dict], scale: float, **kw) -> list[tuple]:
    """Run per-batch items (q [Nq, sq, D], k, v, keep, bias, drop), stacking runs of equal shapes
    into one batched call."""
    out: list[tuple] = [None] * len(items)
    i = 0
    while i < len(items):
        j = i + 1
        sig = _signature(items[i])
        while j < len(items) and _signature(items[j]) == sig:
            j += 1
        grp = items[i:j]
        q = np.stack([x["q"] for x in grp])
        k = np.stack([x["k"] for x in grp])
        v = np.stack([x["v"] for x in grp])
        keep = np.stack([np.broadcast_to(x["keep"], grp[0]["keep"].shape) for x in grp])
        bias = None if grp[0].get("bias") is None else np.stack([x["bias"] for x in grp])
        drop = None if grp[0].get("drop") is None else np.stack([x["drop"] for x in grp])
        o, m, s = attend(q, k, v, keep, scale, bias=bias, drop=drop, **kw)
        for t in range(len(grp)):
            out[i + t] = (o[t], m[t], s[t])
        i = j
    return out


def _signature(x: dict) -> tuple:
    return (x["q"].shape, x["k"].shape, x["v"].shape, x["keep"].shape,
            None if x.get("bias") is None else x["bias"].shape, None if x.get("drop") is None else x["drop"].shape)


def to_bnsd(x: np.ndarray, layout: str, n: int) -> np.ndarray:
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


def from_bnsd(x: np.ndarray, layout: str) -> np.ndarray:
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
