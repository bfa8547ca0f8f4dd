"""npu_fusion_attention (forward): per-feature checks -> :class:`FusionSpec`, the numbers, the kernels.

The checks, in order: layout and shapes (:func:`_geometry`, with the varlen lengths of TND),
sparse mode and band tokens, the reserved and layout options, the mask, the prefix, pse, sink,
dropout. Each returns its part of the spec; nothing is parsed again by compute or plan.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim.dtypes import DType
from ascend_sim.tensor import TensorMeta

from ..base import Args, Op, OpSpec
from ..common import fp32
from ..templates.elementwise import Operand, VectorStep, elementwise_plan
from ..templates.flash_attention import (Band, ElemRows, FlashAttentionProblem, FlashAttentionTiling,
                                         default_tiling, dropout_bits_bytes, flash_attention_plan)
from .checks import (ALIBI_ROWS, COMPRESSED_MASK, PREFIX_MASK_ROWS, STAT_LANES, check_mask_dtype, cumulative,
                     int_list, mode_band)
from .numerics import FP32_LOWEST, alibi_expand, attend, attend_items, band_keep, from_bnsd, to_bnsd
from .planning import F32_BYTES, gm_rows, mask_rows, stat_rows

_LAYOUTS = ("BSH", "SBH", "BSND", "BNSD", "TND")
_DTYPES = (D.float16, D.bfloat16, D.float32)
MAX_D = 768
MAX_N = 256
MAX_S = 1 << 20
MAX_B = 2 << 20
MAX_B_VARLEN = 2048
MAX_B_PREFIX = 32


@dataclass(frozen=True)
class FusionGeometry:
    """Layout and shapes; per batch the query/key start rows and lengths (TND: from the
    cumulative lists; otherwise every batch starts at 0 with the full lengths)."""

    layout: str
    B: int
    N: int
    Nkv: int
    Sq: int
    Skv: int
    D: int
    Dv: int
    q_starts: tuple[int, ...]
    kv_starts: tuple[int, ...]
    q_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]
    T: int = 0
    Tkv: int = 0

    @property
    def tnd(self) -> bool:
        return self.layout == "TND"

    def out_shape(self) -> tuple:
        return {"BSH": (self.B, self.Sq, self.N * self.Dv), "SBH": (self.Sq, self.B, self.N * self.Dv),
                "BNSD": (self.B, self.N, self.Sq, self.Dv), "BSND": (self.B, self.Sq, self.N, self.Dv),
                "TND": (self.T, self.N, self.Dv)}[self.layout]


@dataclass(frozen=True, kw_only=True)
class FusionSpec(OpSpec):
    geom: FusionGeometry
    dtype: DType
    scale: float
    mode: int
    pre: int
    nxt: int
    bands: tuple[Band, ...]            # per batch: the keys each query row sees
    mask: tuple | None = None          # atten_mask's shape
    mask_bits: int = 0                 # atten_mask element bits (0: no mask)
    prefix: tuple[int, ...] | None = None
    pse: tuple | None = None           # pse's shape
    sink: bool = False
    keep_prob: float = 1.0
    dropout: str = ""                  # "", "mask" (dropout_mask), "generated" (DropOutGenMask), "in_kernel"
    seed: int = 0
    offset: int = 0
    numels: int = 0
    softmax_layout: str = ""


def _generates_dropout_in_kernel(chip) -> bool:
    """The 950 generates the dropout bits inside the attention kernel (op-plugin skips
    DropOutGenMask there); earlier chips launch DropOutGenMask first."""
    return chip.family == "950"


class NpuFusionAttention(Op):
    name = "npu_fusion_attention"

    # ----- checks -----
    def _geometry(self, a: Args) -> FusionGeometry:
        q, k, v = (self.tensor(a, n) for n in ("query", "key", "value"))
        for n, t in (("query", q), ("key", k), ("value", v)):
            self.check_dtype(n, t, _DTYPES)
        if k.dtype is not q.dtype or v.dtype is not q.dtype:
            raise TypeError(f"{self.name}: 'query', 'key' and 'value' must have the same dtype, got "
                            f"{q.dtype.name}, {k.dtype.name}, {v.dtype.name}")
        hn = self.int_arg(a, "head_num", lo=1)
        lay = a.input_layout
        if not isinstance(lay, str) or lay.upper() not in _LAYOUTS:
            raise self.fail("input_layout", f"must be one of {', '.join(_LAYOUTS)} (case-insensitive), got {lay!r}")
        lay = lay.upper()
        rank = 3 if lay in ("BSH", "SBH", "TND") else 4
        for n, t in (("query", q), ("key", k), ("value", v)):
            if t.ndim != rank:
                raise self.fail(n, f"must be {rank}-D for input_layout {lay}, got shape {t.shape}")
        if lay == "TND":
            g = self._varlen(a, q, k, v, hn)
        else:
            g = self._hidden(q, k, v, hn, lay) if lay in ("BSH", "SBH") else self._heads(q, k, v, hn, lay)
            if a.get("actual_seq_qlen") is not None or a.get("actual_seq_kvlen") is not None:
                raise self.fail("actual_seq_qlen", "actual_seq_qlen/actual_seq_kvlen describe the varlen layout TND; "
                                                   f"input_layout is {lay}")
            if g.B > MAX_B:
                raise self.fail("query", f"B must be at most {MAX_B}, got {g.B}")
        if g.Nkv < 1 or g.N % g.Nkv:
            raise self.fail("key", f"query heads ({g.N}) must be a multiple of key/value heads ({g.Nkv})")
        if g.N > MAX_N:
            raise self.fail("head_num", f"Nq must be at most {MAX_N}, got {g.N}")
        if not 1 <= g.D <= MAX_D:
            raise self.fail("query", f"head dim must be in [1, {MAX_D}], got {g.D}")
        if not 1 <= g.Dv <= g.D:             # Dv = 0 would leave the softmax stats without their P V pass
            raise self.fail("value", f"head dim Dv must be in [1, Dk = {g.D}], got {g.Dv}")
        if max(g.Sq, g.Skv) > MAX_S:
            raise self.fail("query", f"S must be at most {MAX_S}")
        return g

    @staticmethod
    def _fixed(lay, B, N, Nkv, Sq, Skv, d, dv) -> FusionGeometry:
        return FusionGeometry(lay, B, N, Nkv, Sq, Skv, d, dv, (0,) * B, (0,) * B, (Sq,) * B, (Skv,) * B)

    def _hidden(self, q, k, v, hn: int, lay: str) -> FusionGeometry:
        """BSH / SBH: heads are slices of the hidden axis."""
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
        for n, t in (("key", k), ("value", v)):
            if t.shape[bax] != B or t.shape[sax] != Skv:
                raise self.fail(n, f"batch and sequence axes {t.shape} must match key's and query's batch")
        return self._fixed(lay, B, hn, nkv, Sq, Skv, d, v.shape[2] // nkv)

    def _heads(self, q, k, v, hn: int, lay: str) -> FusionGeometry:
        """BSND / BNSD: an explicit head axis."""
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
        return self._fixed(lay, B, N, nkv, Sq, Skv, d, dv)

    def _varlen(self, a: Args, q, k, v, hn: int) -> FusionGeometry:
        """TND: batches concatenated along T, cut by the cumulative length lists."""
        T, N, d = q.shape
        if N != hn:
            raise self.fail("head_num", f"must equal the N axis of query ({N}) for layout TND, got {hn}")
        Tkv, nkv, dk = k.shape
        if dk != d:
            raise self.fail("key", f"head dim {dk} must equal query's ({d})")
        if v.shape[0] != Tkv or v.shape[1] != nkv:
            raise self.fail("value", f"shape {v.shape} must match key's T and N axes")
        qc = int_list(self, a, "actual_seq_qlen")
        kc = int_list(self, a, "actual_seq_kvlen")
        if not qc or not kc or len(qc) != len(kc):
            raise self.fail("actual_seq_qlen", "TND needs actual_seq_qlen and actual_seq_kvlen, non-empty and "
                                               "of the same length")
        if len(qc) > MAX_B_VARLEN:
            raise self.fail("actual_seq_qlen", f"at most {MAX_B_VARLEN} batches, got {len(qc)}")
        qs, ql = cumulative(self, "actual_seq_qlen", qc, T)
        ks, kl = cumulative(self, "actual_seq_kvlen", kc, Tkv)
        if T > MAX_S or Tkv > MAX_S:
            raise self.fail("query", f"T must be at most {MAX_S}")
        return FusionGeometry("TND", len(qc), N, nkv, max(ql), max(kl), d, v.shape[2], qs, ks, ql, kl, T, Tkv)

    def _sparse(self, a: Args, g: FusionGeometry) -> tuple[int, int, int]:
        mode = self.int_arg(a, "sparse_mode")
        if g.tnd:
            if not (0 <= mode <= 8) or mode == 5:
                raise self.fail("sparse_mode", f"must be in [0, 5) or (5, 8] for TND, got {mode}")
        elif not 0 <= mode <= 6:
            raise self.fail("sparse_mode", f"must be in [0, 6] for input_layout {g.layout} (7 and 8 are varlen modes), "
                                           f"got {mode}")
        return mode, self.int_arg(a, "pre_tockens"), self.int_arg(a, "next_tockens")

    def _options(self, a: Args, g: FusionGeometry) -> str:
        """inner_precise, the reserved padding_mask, and softmax_layout (returned)."""
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
        return sl

    def _mask(self, a: Args, g: FusionGeometry, mode: int, pre: int, nxt: int):
        mask = self.tensor(a, "atten_mask", optional=True)
        if mask is None:
            return None
        check_mask_dtype(self, "atten_mask", mask, (D.bool_, D.uint8))
        shp = tuple(mask.shape)
        if mode in (2, 3, 4, 7, 8):
            if shp != (COMPRESSED_MASK, COMPRESSED_MASK):
                raise self.fail("atten_mask", f"sparse_mode {mode} takes the optimised lower-triangular mask of "
                                              f"shape ({COMPRESSED_MASK}, {COMPRESSED_MASK}), got {shp}")
        elif mode == 6:
            if shp != (PREFIX_MASK_ROWS, COMPRESSED_MASK):
                raise self.fail("atten_mask", f"sparse_mode 6 takes the optimised prefix mask of shape "
                                              f"({PREFIX_MASK_ROWS}, {COMPRESSED_MASK}), got {shp}")
        elif g.tnd:
            if shp != (g.Sq, g.Skv):
                raise self.fail("atten_mask", f"varlen (TND) takes an SS mask of shape (maxSq, maxSkv) = "
                                              f"({g.Sq}, {g.Skv}), got {shp}")
        else:
            ok = [(g.B, g.N, g.Sq, g.Skv), (g.B, 1, g.Sq, g.Skv)]
            if mode != 5:
                ok += [(1, 1, g.Sq, g.Skv), (g.Sq, g.Skv)]
            if shp not in ok:
                raise self.fail("atten_mask", f"shape must be one of {', '.join(str(s) for s in ok)} "
                                              f"({'BNSS, B1SS' if mode == 5 else 'BNSS, B1SS, 11SS, SS'}), got {shp}")
        if mode in (0, 4):
            if nxt < 0 and (pre < -nxt or -nxt >= max(g.kv_lens)):
                raise self.fail("next_tockens", f"a negative next_tockens ({nxt}) needs pre_tockens >= "
                                                f"|next_tockens| and |next_tockens| < Skv")
            if pre < 0 and (nxt < -pre or -pre >= max(g.q_lens)):
                raise self.fail("pre_tockens", f"a negative pre_tockens ({pre}) needs next_tockens >= "
                                               f"|pre_tockens| and |pre_tockens| < Sq")
        return mask

    def _prefix(self, a: Args, g: FusionGeometry, mode: int) -> tuple[int, ...] | None:
        prefix = int_list(self, a, "prefix")
        if prefix is None or len(prefix) != g.B:
            raise self.fail("prefix", f"sparse_mode {mode} needs one prefix length per batch ({g.B})")
        if g.B > MAX_B_PREFIX:
            raise self.fail("prefix", f"prefix modes support B <= {MAX_B_PREFIX}, got {g.B}")
        for b, pn in enumerate(prefix):
            sq, skv = g.q_lens[b], g.kv_lens[b]
            lo = 0 if sq > skv else skv - sq
            if not lo <= pn <= skv:
                raise self.fail("prefix", f"prefix[{b}] = {pn} must be in [{lo}, {skv}]")
        return tuple(prefix)

    def _pse(self, a: Args, g: FusionGeometry, mode: int, dtype: DType) -> tuple | None:
        pse = self.tensor(a, "pse", optional=True)
        if pse is None:
            return None
        if pse.dtype is not dtype:
            raise TypeError(f"{self.name}: argument 'pse' has dtype {pse.dtype.name}; it must match query "
                            f"({dtype.name})")
        if mode in (7, 8):
            raise self.fail("pse", f"is not supported with sparse_mode {mode}")
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
            return shp
        ok = {(g.B, g.N, g.Sq, g.Skv), (g.B, g.N, 1, g.Skv), (1, g.N, g.Sq, g.Skv)}
        if shp in ok or alibi and g.Sq > ALIBI_ROWS and shp[3] == g.Skv:
            return shp
        raise self.fail("pse", f"shape must be BNSS {(g.B, g.N, g.Sq, g.Skv)}, BN1S {(g.B, g.N, 1, g.Skv)}, 1NSS "
                               f"{(1, g.N, g.Sq, g.Skv)} or, when Sq > {ALIBI_ROWS}, the ALiBi-compressed "
                               f"[B or 1, N, {ALIBI_ROWS}, Skv]; got {shp}")

    def _sink(self, a: Args, g: FusionGeometry) -> bool:
        sink = self.tensor(a, "sink", optional=True)
        if sink is None:
            return False
        if sink.dtype is not D.float32:
            raise TypeError(f"{self.name}: argument 'sink' must be float32, got {sink.dtype.name}")
        if sink.shape != (g.N,):
            raise self.fail("sink", f"shape must be [head_num] = ({g.N},), got {sink.shape}")
        return True

    def _dropout(self, a: Args, g: FusionGeometry, chip) -> dict:
        keep_prob = self.float_arg(a, "keep_prob")
        if not 0 < keep_prob <= 1:
            raise self.fail("keep_prob", f"must be in (0, 1], got {keep_prob}")
        numels = g.N * (sum(x * y for x, y in zip(g.q_lens, g.kv_lens)) if g.tnd else g.B * g.Sq * g.Skv)
        dm = self.tensor(a, "dropout_mask", optional=True)
        if dm is not None:
            if dm.dtype is not D.uint8:
                raise TypeError(f"{self.name}: argument 'dropout_mask' must be uint8 (packed bits), got "
                                f"{dm.dtype.name}")
            if dm.numel * 8 < numels and keep_prob < 1:
                raise self.fail("dropout_mask", f"holds {dm.numel * 8} bits, fewer than the {numels} scores")
        where = "" if keep_prob >= 1 else "mask" if dm is not None else \
            "in_kernel" if _generates_dropout_in_kernel(chip) else "generated"
        return dict(keep_prob=keep_prob, dropout=where, numels=numels, seed=self.int_arg(a, "seed"),
                    offset=self.int_arg(a, "offset"))

    @staticmethod
    def _bands(g: FusionGeometry, has_mask: bool, mode: int, pre: int, nxt: int, prefix) -> tuple[Band, ...]:
        if not has_mask:                 # the page: without atten_mask no sparse mode applies
            return (Band(),) * g.B
        live = [b for b in range(g.B) if g.q_lens[b] > 0]
        first, last = (live[0], live[-1]) if live else (0, 0)
        return tuple(mode_band(mode, g.q_lens[b], g.kv_lens[b], pre, nxt, (prefix or (0,) * g.B)[b],
                               is_first=b == first, is_last=b == last) for b in range(g.B))

    def infer(self, a: Args, chip) -> FusionSpec:
        g = self._geometry(a)
        mode, pre, nxt = self._sparse(a, g)
        softmax_layout = self._options(a, g)
        mask = self._mask(a, g, mode, pre, nxt)
        prefix = self._prefix(a, g, mode) if mode in (5, 6) and mask is not None else None
        dt = a.query.dtype
        pse = self._pse(a, g, mode, dt)
        sink = self._sink(a, g)
        drop = self._dropout(a, g, chip)
        stat = (g.T, g.N, STAT_LANES) if g.tnd else (g.B, g.N, g.Sq, STAT_LANES)
        scalar = TensorMeta((1,), D.int64)
        outputs = (TensorMeta(g.out_shape(), dt), TensorMeta(stat, D.float32), TensorMeta(stat, D.float32),
                   TensorMeta((0,), dt), scalar, scalar, scalar)
        return FusionSpec(
            outputs=outputs, geom=g, dtype=dt, scale=self.float_arg(a, "scale"), mode=mode, pre=pre, nxt=nxt,
            bands=self._bands(g, mask is not None, mode, pre, nxt, prefix),
            mask=None if mask is None else tuple(mask.shape), mask_bits=0 if mask is None else mask.dtype.bits,
            prefix=prefix, pse=pse, sink=sink, softmax_layout=softmax_layout, **drop,
            attrs=(("input_layout", str(a.input_layout)), ("sparse_mode", a.sparse_mode), ("head_num", a.head_num)))

    # ----- the numbers -----
    def _drop_bits(self, s: FusionSpec, a: Args) -> np.ndarray | None:
        if s.keep_prob >= 1:
            return None
        if s.dropout == "mask":
            raw = np.asarray(a.dropout_mask.data).reshape(-1).view(np.uint8)
            return np.unpackbits(raw, bitorder="little")[:s.numels].astype(bool)
        rng = np.random.Generator(np.random.PCG64([s.seed & 0xFFFFFFFFFFFFFFFF, s.offset & 0xFFFFFFFFFFFFFFFF]))
        return rng.random(s.numels, dtype=np.float32) < np.float32(s.keep_prob)

    def compute(self, s: FusionSpec, a: Args):
        g = s.geom
        q, k, v = (fp32(a[n].data) for n in ("query", "key", "value"))
        user = np.asarray(a.atten_mask.data) != 0 if s.mask is not None and s.mode in (0, 1, 5) else None
        pse = None if s.pse is None else fp32(a.pse.data)
        kw = dict(sink=fp32(a.sink.data) if s.sink else None, keep_prob=s.keep_prob)
        bits = self._drop_bits(s, a)
        if not g.tnd:
            Q, K, V = to_bnsd(q, g.layout, g.N), to_bnsd(k, g.layout, g.Nkv), to_bnsd(v, g.layout, g.Nkv)
            keep = np.stack([band_keep(g.Sq, g.Skv, s.bands[b]) for b in range(g.B)])[:, None] if g.B else \
                np.zeros((0, 1, g.Sq, g.Skv), bool)              # batch 0: an empty result
            if user is not None:
                keep = keep & ~(user if user.ndim == 4 else user[None, None])
            bias = None
            if pse is not None:
                bias = alibi_expand(pse, g.Sq) if pse.shape[2] == ALIBI_ROWS and pse.shape[2] != g.Sq and \
                    g.Sq > ALIBI_ROWS else pse
            drop = None if bits is None else bits.reshape(g.B, g.N, g.Sq, g.Skv)
            out, mx, sm = attend(Q, K, V, keep, s.scale, bias=bias, drop=drop, **kw)
            att = from_bnsd(out, g.layout)
        else:
            att, mx, sm = self._compute_varlen(s, q, k, v, user, pse, bits, kw)
        dt = s.outputs[0].dtype
        stat = lambda x: np.ascontiguousarray(np.repeat(x[..., None], STAT_LANES, -1)).reshape(s.outputs[1].shape)
        return (D.cast(att, dt), stat(mx), stat(sm), np.zeros((0,), dt.np_dtype),
                np.array([s.seed], np.int64), np.array([s.offset], np.int64), np.array([s.numels], np.int64))

    def _compute_varlen(self, s: FusionSpec, q, k, v, user, pse, bits, kw):
        g = s.geom
        items, pos = [], 0
        for b in range(g.B):
            sq, skv = g.q_lens[b], g.kv_lens[b]
            qs, ks = g.q_starts[b], g.kv_starts[b]
            it = dict(q=q[qs:qs + sq].transpose(1, 0, 2), k=k[ks:ks + skv].transpose(1, 0, 2),
                      v=v[ks:ks + skv].transpose(1, 0, 2))
            keep = band_keep(sq, skv, s.bands[b])
            if user is not None:
                keep = keep & ~user[:sq, :skv]
            it["keep"] = keep[None]
            if pse is not None:
                pb = pse[b if pse.shape[0] > 1 else 0]
                it["bias"] = alibi_expand(pb, sq)[:, :, :skv]
            if bits is not None:
                n = g.N * sq * skv
                it["drop"] = bits[pos:pos + n].reshape(g.N, sq, skv)
                pos += n
            items.append(it)
        res = attend_items(items, s.scale, **kw)
        att = np.zeros((g.T, g.N, g.Dv), np.float32)
        mx = np.full((g.N, g.T), FP32_LOWEST, np.float32)
        sm = np.zeros((g.N, g.T), np.float32)
        for b, (ob, mb, sb) in enumerate(res):
            qs, sq = g.q_starts[b], g.q_lens[b]
            att[qs:qs + sq] = ob.transpose(1, 0, 2)
            mx[:, qs:qs + sq] = mb
            sm[:, qs:qs + sq] = sb
        if s.softmax_layout == "TND":
            return att, mx.T, sm.T
        # default NTD memory order, viewed with the [T, N, 8] shape op-plugin allocates
        return att, mx.reshape(g.T, g.N), sm.reshape(g.T, g.N)

    # ----- the kernels -----
    def default_tiling(self, spec: FusionSpec, chip) -> FlashAttentionTiling:
        return default_tiling(chip, fusion_problem(spec))

    def plan(self, spec: FusionSpec, chip, tiling: FlashAttentionTiling):
        plans, prefix_bytes = [], 0
        if spec.dropout == "generated":
            prefix_bytes = dropout_bits_bytes(spec.numels)
            # DropOutGenMask (a DSA task on the device) modelled as a vector stream over the mask
            # bytes: one pass over them, 16 bits per vector element
            gen = elementwise_plan(f"{self.name}.dropout_gen_mask", chip, spec.numels, [],
                                   [Operand("workspace", 1 / 8)], [VectorStep("unary", "float16", passes=1 / 16)])
            gen.workspace_bytes = prefix_bytes
            plans.append(gen)
        plans.append(flash_attention_plan(self.name, chip, fusion_problem(spec), tiling,
                                          workspace_prefix=prefix_bytes))
        return plans if len(plans) > 1 else plans[0]


def _bits_rows(tensor: str, g: FusionGeometry) -> ElemRows:
    """Dropout bits, [B, N, Sq, Skv] (TND: batch after batch, [N, Sq_b, Skv_b])."""
    if not g.tnd:
        return ElemRows(tensor, tuple(b * g.N * g.Sq * g.Skv for b in range(g.B)), g.Sq * g.Skv, g.Skv, 1)
    starts, pos = [], 0
    for sq, skv in zip(g.q_lens, g.kv_lens):
        starts.append(pos)
        pos += g.N * sq * skv
    # varlen batches differ in their strides; the longest batch's stand in (same bytes per tile)
    return ElemRows(tensor, tuple(starts), g.Sq * g.Skv, g.Skv, 1)


@functools.lru_cache(maxsize=256)
def fusion_problem(s: FusionSpec) -> FlashAttentionProblem:
    """The template's view of a call: where each operand's rows sit and which features run."""
    g = s.geom
    item = s.dtype.itemsize
    lay = g.layout
    qr = gm_rows("query", lay, B=g.B, N=g.N, S=g.Sq if not g.tnd else 0, D=g.D, item=item, starts=g.q_starts, T=g.T)
    kr = gm_rows("key", lay, B=g.B, N=g.Nkv, S=g.Skv, D=g.D, item=item, starts=g.kv_starts, T=g.Tkv)
    vr = gm_rows("value", lay, B=g.B, N=g.Nkv, S=g.Skv, D=g.Dv, item=item, starts=g.kv_starts, T=g.Tkv)
    orow = gm_rows("out0", lay, B=g.B, N=g.N, S=g.Sq, D=g.Dv, item=item, starts=g.q_starts, T=g.T)
    srb = STAT_LANES * F32_BYTES
    starts = g.q_starts if g.tnd else None
    stats = tuple(stat_rows(f"out{i}", srb, B=g.B, N=g.N, S=g.Sq, starts=starts,
                            token_major=s.softmax_layout == "TND", T=g.T) for i in (1, 2))
    user = None
    if s.mask is not None:
        comp = s.mode not in (0, 1, 5)
        user = mask_rows("atten_mask", s.mask, g.B, comp, s.mask_bits)
        if g.tnd and not comp:
            user = ElemRows("atten_mask", (0,) * g.B, 0, s.mask[-1], s.mask_bits)
    pse = None if s.pse is None else mask_rows("pse", s.pse, g.B, False, s.dtype.bits)
    dropout = {"mask": "dropout_mask", "generated": "workspace"}.get(s.dropout)
    return FlashAttentionProblem(
        batch=g.B, q_heads=g.N, kv_heads=g.Nkv, d_qk=g.D, d_v=g.Dv, q_lens=g.q_lens, kv_lens=g.kv_lens,
        q_parts=(qr,), k_parts=(kr,), v=vr, out=orow, qk_dtype=s.dtype, p_dtype=s.dtype, out_itemsize=item,
        kv_itemsize=item, bands=s.bands, user_mask=user, mask_every_tile=s.mask is not None and s.mode in (0, 1, 5),
        pse=pse, dropout=None if dropout is None else _bits_rows(dropout, g), stats=stats, sink=s.sink,
        dropout_in_kernel=s.dropout == "in_kernel")
