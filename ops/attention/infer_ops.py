"""npu_prompt_flash_attention, npu_incre_flash_attention, npu_fused_infer_attention_score: one
resolved call (:class:`InferAttentionSpec`) composed from the per-feature checks of
:mod:`.infer_shapes` and :mod:`.infer_features`; the numbers batch by batch; one MIX kernel.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim.tensor import TensorMeta

from ..base import Args, Op, OpSpec
from ..common import fp32, int4_values, to_int8_saturated
from ..templates.flash_attention import (Band, ElemRows, FlashAttentionProblem, FlashAttentionTiling, GMRows,
                                         default_tiling, flash_attention_plan)
from .checks import FLOATS, INT_MAX, int_list, mode_band
from .infer_features import Antiquant, Masking, Quant, antiquant, left_padding, masking, quantisation, sparse
from .infer_shapes import (MLA_LATENT_D, Geometry, KVCache, SharedPrefix, block_size_rules, key_value,
                           layout_and_heads, layout_rules, lengths, limits, rope, shared_prefix)
from .numerics import FP32_LOWEST, attend_items, band_keep, dequant_value, from_bnsd, to_bnsd
from .planning import F32_BYTES, gm_rows, mask_rows, paged_rows, stat_rows


@dataclass(frozen=True, kw_only=True)
class InferAttentionSpec(OpSpec):
    geom: Geometry
    kv: KVCache
    prefix: SharedPrefix
    rope_d: int                    # head dim of query_rope/key_rope (0: none)
    masking: Masking
    quant: Quant
    antiquant: Antiquant | None
    left_q: bool                   # left-padded query rows (query_padding_size with actual lengths)
    left_kv: bool
    lse: bool
    scale: float
    bands: tuple[Band, ...]


class _InferAttention(Op):
    """Shared by PFA, IFA and FIA. ``ARGS`` maps canonical parameter names to the op's own."""

    ARGS: dict = {}
    LAYOUTS: tuple = ()
    Q_DTYPES: tuple = FLOATS
    KV_EXCLUDED: tuple = ()            # key/value dtypes the op refuses although the family takes them
    prefill_only = False
    decode_only = False
    returns_lse = False

    # ----- argument access by canonical name -----
    def arg(self, a: Args, key: str):
        n = self.ARGS.get(key)
        return None if n is None else a.get(n)

    def targ(self, a: Args, key: str):
        n = self.ARGS.get(key)
        return None if n is None else self.tensor(a, n, optional=True)

    def aname(self, key: str) -> str:
        return self.ARGS.get(key, key)

    def lens_arg(self, a: Args, key: str, B: int, limit: int, what: str) -> tuple[int, ...] | None:
        n = self.ARGS.get(key)
        if n is None:
            return None
        vals = int_list(self, a, n)
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
        return tuple(vals)

    # ----- the checks, composed -----
    def infer(self, a: Args, chip) -> InferAttentionSpec:
        g = layout_and_heads(self, a, chip)
        g, kv = key_value(self, a, g)
        g = lengths(self, a, g, kv)
        limits(self, a, g, chip)
        prefix = shared_prefix(self, a, g, kv)
        dr = rope(self, a, g, kv)
        layout_rules(self, g, dr)
        block_size_rules(self, a, g, kv, dr, chip)
        mode, pre, nxt = sparse(self, a, g, dr, chip)
        m = masking(self, a, g, kv, prefix, mode, pre, nxt, chip)
        quant = quantisation(self, a, g, m, prefix, chip)
        aq = antiquant(self, a, g, kv, prefix)
        left_q, left_kv = left_padding(self, a, g, kv, prefix)
        ip = self.int_arg(a, "inner_precise") if self.ARGS.get("inner_precise") else 0
        if ip not in ((0, 1) if g.decode else (0, 1, 2, 3)):
            raise self.fail("inner_precise", f"must be in {(0, 1) if g.decode else (0, 1, 2, 3)}, got {ip}")
        lse = bool(a.get("softmax_lse_flag", False)) if self.ARGS.get("softmax_lse_flag") else False
        if lse and dr and g.Dq == MLA_LATENT_D[0]:
            raise self.fail("softmax_lse_flag", "softmax_lse is not supported with MLA (D=512)")
        if mode == 0 and m.mask4 is not None and (left_q or left_kv):
            m = replace(m, pre=INT_MAX, nxt=INT_MAX)       # the page: pre/next are ignored with left padding
        outputs = (TensorMeta(g.out_shape(), quant.outdt),)
        if self.returns_lse:
            lse_shape = ((g.T, g.Nq, 1) if g.tnd else (g.B, g.Nq, g.Sq, 1)) if lse else (1,)
            outputs += (TensorMeta(lse_shape, D.float32),)
        return InferAttentionSpec(
            outputs=outputs, geom=g, kv=kv, prefix=prefix, rope_d=dr, masking=m, quant=quant, antiquant=aq,
            left_q=left_q, left_kv=left_kv, lse=lse, scale=self.float_arg(a, self.aname("scale")),
            bands=_bands(g, m, prefix, dr), attrs=(("input_layout", str(a.input_layout)), ("num_heads", a.num_heads)))

    # ----- the numbers -----
    def compute(self, s: InferAttentionSpec, a: Args):
        g, kv, m = s.geom, s.kv, s.masking
        values = _values if not g.packed_int4 else lambda t: int4_values(t.data).astype(np.float32)
        qf, kf, vf = fp32(a.query.data), values(a.key), values(a.value)
        bt = np.asarray(a[self.aname("block_table")].data) if kv.paged else None
        qrf = krf = None
        if s.rope_d:
            qrf, krf = fp32(self.targ(a, "query_rope").data), fp32(self.targ(a, "key_rope").data)
        mask = None
        if m.mask4 is not None and not m.compressed:
            mask = (np.asarray(self.targ(a, "atten_mask").data) != 0).reshape(m.mask4)
        pse = None if m.pse is None else fp32(self.targ(a, "pse_shift").data)
        q_starts = self._pad_starts(a, "query_padding_size", g.B, g.Sq, g.q_lens) if s.left_q else (0,) * g.B
        kv_starts = self._pad_starts(a, "kv_padding_size", g.B, g.Skv, g.kv_lens) if s.left_kv else (0,) * g.B
        prefix_kv = None
        if s.prefix.rows:
            prefix_kv = tuple(_dequantised(to_bnsd(values(self.targ(a, f"{w}_shared_prefix")), g.lay_in, g.Nkv)
                                           [0, :, :s.prefix.length], s, a, w, 0, np.arange(s.prefix.length), bt)
                              for w in ("key", "value"))
        items, where = [], []
        for b in range(g.B):
            ql, kl = g.q_lens[b], g.kv_lens[b]
            qs, ks = q_starts[b], kv_starts[b]
            if ql == 0 or qs < 0 or ks < 0:
                continue                               # nothing to compute: zeros (documented for KV)
            pos = np.arange(ks, ks + kl)
            q_b = _q_rows(qf, g, b, qs, ql)
            k_b = _dequantised(_kv_rows(kf, g, kv, b, ks, kl, bt), s, a, "key", b, pos, bt)
            v_b = _dequantised(_kv_rows(vf, g, kv, b, ks, kl, bt), s, a, "value", b, pos, bt)
            if prefix_kv is not None:
                k_b = np.concatenate([prefix_kv[0], k_b], axis=1)
                v_b = np.concatenate([prefix_kv[1], v_b], axis=1)
            if qrf is not None:
                q_b = np.concatenate([q_b, _q_rows(qrf, g, b, qs, ql)], axis=-1)
                k_b = np.concatenate([k_b, _kv_rows(krf, g, kv, b, ks, kl, bt)], axis=-1)
            rows = np.arange(qs, qs + ql) if not g.decode else np.zeros(1, np.int64)
            cols = np.concatenate([np.arange(s.prefix.length), s.prefix.length + pos])
            keep = band_keep(ql, s.prefix.length + kl, s.bands[b])[None]
            if mask is not None:
                keep = keep & ~mask[b if mask.shape[0] > 1 else 0][:, rows][:, :, cols]
            it = dict(q=q_b, k=k_b, v=v_b, keep=keep)
            if pse is not None:
                it["bias"] = pse[b if pse.shape[0] > 1 else 0][:, rows][:, :, cols]
            items.append(it)
            where.append((b, qs, ql))
        kw = {}
        if s.quant.full_quant:
            kw = dict(qk_scale=float(dequant_value(self.targ(a, "dequant_scale1")).reshape(-1)[0]),
                      p_quant=float(fp32(self.targ(a, "quant_scale1").data).reshape(-1)[0]),
                      pv_scale=float(dequant_value(self.targ(a, "dequant_scale2")).reshape(-1)[0]))
        return self._assemble(s, a, where, attend_items(items, s.scale, **kw))

    def _assemble(self, s: InferAttentionSpec, a: Args, where, res):
        """Per-batch results -> the output in its layout (and the lse)."""
        g, out_quant = s.geom, s.quant.out_quant
        if out_quant:
            sc, of = (self._per_channel(self.targ(a, k), g) for k in ("quant_scale2", "quant_offset2"))
        O = np.zeros((g.T, g.Nq, g.Dv) if g.tnd else (g.B, g.Nq, g.Sq, g.Dv), np.int8 if out_quant else np.float32)
        L = np.full((g.T, g.Nq) if g.tnd else (g.B, g.Nq, g.Sq), FP32_LOWEST, np.float32)
        for (b, qs, ql), (o, mx, sm) in zip(where, res):
            if out_quant:
                o = to_int8_saturated(o * sc + of)
            with np.errstate(divide="ignore"):
                lse = np.where(sm > 0, mx + np.log(np.where(sm > 0, sm, 1)), FP32_LOWEST).astype(np.float32)
            if g.tnd:
                O[g.q_starts[b]:g.q_starts[b] + ql] = o.transpose(1, 0, 2)
                L[g.q_starts[b]:g.q_starts[b] + ql] = lse.T
            else:
                O[b, :, qs:qs + ql] = o
                L[b, :, qs:qs + ql] = lse
        if g.tnd:
            out = O if g.lay_out == "TND" else O.transpose(1, 0, 2)
        else:
            out = from_bnsd(O, g.lay_out)
        out = out if out_quant else D.cast(out, s.quant.outdt)
        if not self.returns_lse:
            return (out,)
        return out, (L[..., None] if s.lse else np.zeros((1,), np.float32))

    @staticmethod
    def _per_channel(t, g: Geometry):
        """quant_scale2 / quant_offset2: one value or N*D, broadcastable to [N, rows, D] (absent: 0)."""
        if t is None:
            return 0.0
        x = fp32(t.data).reshape(-1)
        return x.reshape(g.Nq, 1, g.Dv) if x.size > 1 else x.reshape(())

    def _pad_starts(self, a: Args, key: str, B: int, S: int, lens) -> tuple[int, ...]:
        pads = np.asarray(self.targ(a, key).data).reshape(-1).astype(np.int64)
        pads = np.maximum(pads, 0)                           # negative padding counts as 0 (documented)
        if pads.size == 1:
            pads = np.repeat(pads, B)
        return tuple(int(S - pads[b] - lens[b]) for b in range(B))

    # ----- the kernel -----
    def default_tiling(self, spec: InferAttentionSpec, chip) -> FlashAttentionTiling:
        return default_tiling(chip, infer_problem(spec, self.aname("atten_mask"), self.aname("pse_shift")))

    def plan(self, spec: InferAttentionSpec, chip, tiling: FlashAttentionTiling):
        return flash_attention_plan(self.name, chip, infer_problem(spec, self.aname("atten_mask"),
                                                                   self.aname("pse_shift")), tiling)


# ----- host helpers of compute -----
def _values(t) -> np.ndarray:
    return fp32(t.data)


def _q_rows(x: np.ndarray, g: Geometry, b: int, start: int, n: int) -> np.ndarray:
    if g.lay_in == "TND":
        return x[g.q_starts[b]:g.q_starts[b] + n].transpose(1, 0, 2)
    if g.lay_in == "NTD":
        return x[:, g.q_starts[b]:g.q_starts[b] + n]
    return to_bnsd(x, g.lay_in, g.Nq)[b, :, start:start + n]


def _kv_rows(x: np.ndarray, g: Geometry, kv: KVCache, b: int, start: int, n: int, bt) -> np.ndarray:
    """[Nkv, n, d] rows start..start+n of batch b of a K/V-shaped array (paged: logical rows)."""
    if kv.paged:
        bs = kv.block_size
        nb = -(-n // bs) if n else 0
        ids = bt[b, :nb]
        if kv.cache == "BSH":
            return x[ids].reshape(nb * bs, g.Nkv, -1)[:n].transpose(1, 0, 2)
        if kv.cache == "NZ":          # (blocknum, N, D/C0, bs, C0) -> (blocknum, N, bs, D)
            x = x.transpose(0, 1, 3, 2, 4).reshape(x.shape[0], x.shape[1], x.shape[3], -1)
        return x[ids].transpose(1, 0, 2, 3).reshape(g.Nkv, nb * bs, -1)[:, :n]
    if g.lay_in == "TND":
        return x[g.kv_starts[b]:g.kv_starts[b] + n].transpose(1, 0, 2)
    if g.lay_in == "NTD":
        return x[:, g.kv_starts[b]:g.kv_starts[b] + n]
    return to_bnsd(x, g.lay_in, g.Nkv)[b, :, start:start + n]


def _dequantised(x: np.ndarray, s: InferAttentionSpec, a: Args, which: str, b: int, pos: np.ndarray, bt):
    """``x * antiquant_scale + antiquant_offset`` (the page's formula) for K or V rows at cache
    positions ``pos`` of batch ``b``; unchanged without fake quantisation."""
    if s.antiquant is None:
        return x
    prm = s.antiquant.k if which == "key" else s.antiquant.v
    i = 0 if which == "key" else 1
    off = 0.0 if prm.offset is None else _aq_factor(prm.kind, a[prm.offset], s, b, pos, bt, i)
    return x * _aq_factor(prm.kind, a[prm.scale], s, b, pos, bt, i) + off


def _aq_factor(kind: str, t, s: InferAttentionSpec, b: int, pos: np.ndarray, bt, which: int):
    """A scale/offset broadcastable to [Nkv, n, D] for batch b, keys at cache positions ``pos``."""
    x = fp32(t.data)
    nkv = s.geom.Nkv
    if kind == "tensor2":
        return x[which]
    if kind == "tensor":
        return x.reshape(())
    if kind == "channel2":
        return x[which].reshape(nkv, 1, -1)
    if kind == "channel":
        return x.reshape(nkv, 1, -1)
    if kind == "head":
        return x.reshape(nkv, 1, 1)
    if kind == "token2":
        return x[which, b, pos].reshape(1, -1, 1)
    if kind == "token":
        return x.reshape(-1, x.shape[-1])[b, pos].reshape(1, -1, 1)
    if kind == "token_head":
        return x[b][:, pos][..., None]
    bs = s.kv.block_size
    blocks, rows = bt[b, pos // bs], pos % bs
    if kind == "pa_token":
        return x[blocks, rows].reshape(1, -1, 1)
    return x[blocks, :, rows].T[..., None]                 # pa_token_head: [Nkv, n, 1]


def _bands(g: Geometry, m: Masking, prefix: SharedPrefix, dr: int) -> tuple[Band, ...]:
    out = []
    for b in range(g.B):
        if g.decode and not dr:
            out.append(Band())
        elif m.mode == 0:
            out.append(Band(0, m.pre, m.nxt) if m.mask4 is not None else Band())
        else:
            out.append(mode_band(m.mode, g.q_lens[b], g.kv_lens[b] + prefix.length, m.pre, m.nxt))
    return tuple(out)


# ----- the template's view of a call -----
def _kv_part(s: InferAttentionSpec, name: str, d: int, blocks: int) -> GMRows:
    g, kv = s.geom, s.kv
    if not kv.paged:
        return gm_rows(name, g.lay_in, B=g.B, N=g.Nkv, S=g.Skv, D=d, item=g.kvdt.itemsize, starts=g.kv_starts,
                       T=g.Tkv)
    return paged_rows(name, kv.cache, B=g.B, N=g.Nkv, D=d, item=g.kvdt.itemsize, block_size=kv.block_size,
                      max_blocks=kv.max_blocks, blocks=blocks)


def _antiquant_rows(s: InferAttentionSpec) -> tuple[tuple[ElemRows, ...], bool]:
    """Per-key scales/offsets the AIVs load with each tile, and whether per-channel value scales
    apply to O."""
    g, aq = s.geom, s.antiquant
    rows, channel = [], False
    for w, prm in (("k", aq.k), ("v", aq.v)):
        if prm.per_token:
            lead = g.B * g.Skv if (prm.kind == "token2" and w == "v") else 0
            per_head = prm.kind.endswith("head")
            for arg in (prm.scale, prm.offset):
                if arg is not None:
                    rows.append(ElemRows(arg, tuple(lead + b * g.Skv * (g.Nkv if per_head else 1) for b in range(g.B)),
                                         g.Skv if per_head else 0, 0, D.float32.bits))
        elif w == "v":
            channel = True
    return tuple(rows), channel


@functools.lru_cache(maxsize=256)
def infer_problem(s: InferAttentionSpec, mask_arg: str, pse_arg: str) -> FlashAttentionProblem:
    g, kv, m = s.geom, s.kv, s.masking
    qi, kvi = g.qdt.itemsize, g.kvdt.itemsize
    q_parts = [gm_rows("query", g.lay_in, B=g.B, N=g.Nq, S=g.Sq, D=g.Dq, item=qi, starts=g.q_starts, T=g.T)]
    k_parts = [_kv_part(s, "key", g.Dq, kv.key_blocks)]
    if s.rope_d:
        q_parts.append(gm_rows("query_rope", g.lay_in, B=g.B, N=g.Nq, S=g.Sq, D=s.rope_d, item=qi,
                               starts=g.q_starts, T=g.T))
        k_parts.append(_kv_part(s, "key_rope", s.rope_d, kv.key_blocks))
    k_prefix, v_prefix = (), None
    if s.prefix.length:
        ps = s.prefix.rows
        k_prefix = (gm_rows("key_shared_prefix", g.lay_in, B=1, N=g.Nkv, S=ps, D=g.Dq, item=kvi),)
        v_prefix = gm_rows("value_shared_prefix", g.lay_in, B=1, N=g.Nkv, S=ps, D=g.Dv, item=kvi)
    out = gm_rows("out0", g.lay_out, B=g.B, N=g.Nq, S=g.Sq, D=g.Dv, item=s.quant.outdt.itemsize, starts=g.q_starts,
                  T=g.T)
    stats = (stat_rows("out1", F32_BYTES, B=g.B, N=g.Nq, S=g.Sq, starts=g.q_starts if g.tnd else None),) \
        if s.lse else ()
    user = None if m.mask4 is None else mask_rows(mask_arg, m.mask4, g.B, m.compressed, m.mask_bits)
    pse = None if m.pse is None else mask_rows(pse_arg, m.pse, g.B, False, m.pse_bits)
    token_params, channel = _antiquant_rows(s) if s.antiquant is not None else ((), False)
    full = s.quant.full_quant
    cube = D.int8 if full else (g.kvdt if s.antiquant is not None else g.qdt)
    return FlashAttentionProblem(
        batch=g.B, q_heads=g.Nq, kv_heads=g.Nkv, d_qk=g.Dq + s.rope_d, d_v=g.Dv, q_lens=g.q_lens,
        kv_lens=tuple(x + s.prefix.length for x in g.kv_lens), q_parts=tuple(q_parts), k_parts=tuple(k_parts),
        v=_kv_part(s, "value", g.Dv, kv.value_blocks), out=out, qk_dtype=cube, p_dtype=cube,
        out_itemsize=s.quant.outdt.itemsize, kv_itemsize=kvi, bands=s.bands, group_heads=g.decode,
        k_prefix=k_prefix, v_prefix=v_prefix, prefix_len=s.prefix.length, user_mask=user,
        mask_every_tile=user is not None and not m.compressed, pse=pse, stats=stats,
        msd_steps=0 if s.antiquant is None else s.antiquant.msd_steps, antiquant_token_params=token_params,
        antiquant_channel=channel, qk_dequant=full, pv_dequant=full, quantize_p=full, quantize_out=s.quant.out_quant)


# ----- the three ops -----
def _args(*same: str, **renamed: str) -> dict:
    """An op's ARGS: canonical parameter name -> the op's own (``same``: the op calls it so too)."""
    return {**{k: k for k in same}, **renamed}


_QUANT = ("quant_scale1", "quant_scale2", "quant_offset2")
_MASKS = ("pse_shift", "atten_mask")
_BAND = ("pre_tokens", "next_tokens", "sparse_mode")


class NpuPromptFlashAttention(_InferAttention):
    name = "npu_prompt_flash_attention"
    ARGS = _args(*_QUANT, *_MASKS, *_BAND, q_lens="actual_seq_lengths", kv_lens="actual_seq_lengths_kv",
                 dequant_scale1="deq_scale1", dequant_scale2="deq_scale2", scale="scale_value")
    LAYOUTS = ("BSH", "BSND", "BNSD", "BNSD_BSND", "TND")
    Q_DTYPES = (D.float16, D.bfloat16, D.int8)
    prefill_only = True


class NpuIncreFlashAttention(_InferAttention):
    name = "npu_incre_flash_attention"
    ARGS = _args(*_QUANT, *_MASKS, "dequant_scale1", "dequant_scale2", "antiquant_scale", "antiquant_offset",
                 "block_table", "block_size", "kv_padding_size", "inner_precise", kv_lens="actual_seq_lengths",
                 scale="scale_value")
    LAYOUTS = ("BSH", "BSND", "BNSD")
    KV_EXCLUDED = (D.int4,)
    decode_only = True


class NpuFusedInferAttentionScore(_InferAttention):
    name = "npu_fused_infer_attention_score"
    ARGS = _args(*_QUANT, *_MASKS, *_BAND, "dequant_scale1", "dequant_scale2", "antiquant_scale", "antiquant_offset",
                 "key_antiquant_scale", "key_antiquant_offset", "value_antiquant_scale", "value_antiquant_offset",
                 "block_table", "block_size", "query_padding_size", "kv_padding_size", "key_shared_prefix",
                 "value_shared_prefix", "query_rope", "key_rope", "scale", "inner_precise", "antiquant_mode",
                 "key_antiquant_mode", "value_antiquant_mode", "softmax_lse_flag",
                 q_lens="actual_seq_lengths", kv_lens="actual_seq_lengths_kv")
    LAYOUTS = ("BSH", "BSND", "BNSD", "BNSD_BSND", "BSH_NBSD", "BSND_NBSD", "BNSD_NBSD", "BSH_BNSD", "BSND_BNSD",
               "TND", "TND_NTD", "NTD_TND", "NTD")
    Q_DTYPES = (D.float16, D.bfloat16, D.int8)
    returns_lse = True
