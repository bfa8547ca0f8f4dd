"""The inference attention ops' shape checks, one per feature, in the order the ops apply them:
layout and heads, the key/value tensors (dense or a paged cache), the lengths, the size limits,
the shared prefix, the rope part (MLA), the layout-specific rules, the paged block size.

Each takes the op (for its argument names and error helpers), the arguments and what the earlier
checks found, and returns its part of the resolved call: the :class:`Geometry` is refined step by
step (``dataclasses.replace``), the other parts are their own small frozen records.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ascend_sim import dtypes as D
from ascend_sim.dtypes import DType

from ..base import Args
from ..common import block_bytes, is_310p
from .checks import FLOATS, INT_MAX, block_elems, cumulative, int_list

MLA_ROPE_D = 64               # head dim of query_rope / key_rope (documented)
MLA_HEADS = (1, 2, 4, 8, 16, 32, 64, 128)
MLA_LATENT_D = (512, 128)     # query head dims MLA takes
LAYOUTS_3D = ("BSH", "TND", "NTD")
MAX_B = 65536
MAX_N = 256
MAX_D = 512
MAX_GQA = 64
MAX_DECODE_S = 262144
MAX_VARLEN_B = 4096
MAX_HIDDEN = 65535            # N * D (and a BSH cache's KV_N * D) stays below this
CARD_MAX_S = 65536            # Atlas inference cards (310P)
CARD_MAX_B_DECODE, CARD_MAX_B_PREFILL = 256, 128
PFA_MAX_UNALIGNED_D = 128


@dataclass(frozen=True)
class Geometry:
    """Layout, heads, dtypes and lengths of an inference-attention call. ``B``/``Sq`` of a varlen
    (TND/NTD) query and ``Skv`` of a varlen key are known once the lengths are checked."""

    layout: str                    # as given, e.g. "BNSD_BSND"
    lay_in: str
    lay_out: str
    qdt: DType
    kvdt: DType                    # int4 for packed int32 key/value
    nkvh: int                      # num_key_value_heads as given (0: num_heads)
    B: int
    Sq: int
    Nq: int
    Dq: int
    T: int
    Nkv: int
    Skv: int = 0
    Tkv: int = 0
    Dv: int = 0
    q_lens: tuple[int, ...] = ()
    kv_lens: tuple[int, ...] = ()
    q_starts: tuple[int, ...] = ()
    kv_starts: tuple[int, ...] = ()
    decode: bool = False

    @property
    def tnd(self) -> bool:
        return self.lay_in in ("TND", "NTD")

    @property
    def packed_int4(self) -> bool:
        return self.kvdt is D.int4

    @property
    def pack(self) -> int:
        """Elements per stored key/value element: 8 int4 in an int32."""
        return 8 if self.packed_int4 else 1

    def out_shape(self) -> tuple:
        return {"BSH": (self.B, self.Sq, self.Nq * self.Dv), "BSND": (self.B, self.Sq, self.Nq, self.Dv),
                "BNSD": (self.B, self.Nq, self.Sq, self.Dv), "NBSD": (self.Nq, self.B, self.Sq, self.Dv),
                "TND": (self.T, self.Nq, self.Dv), "NTD": (self.Nq, self.T, self.Dv)}[self.lay_out]


@dataclass(frozen=True)
class KVCache:
    """A paged key/value cache (``paged`` False: dense key/value in the query's layout)."""

    paged: bool = False
    cache: str = ""                # "BSH" (blocknum, blocksize, H), "BNSD" (blocknum, N, blocksize, D), "NZ"
    block_size: int = 0
    max_blocks: int = 0            # block table columns
    key_blocks: int = 0            # blocks the key / value tensors hold
    value_blocks: int = 0


@dataclass(frozen=True)
class SharedPrefix:
    length: int = 0                # keys of the shared prefix the call uses
    rows: int = 0                  # the prefix tensors' S axis


# ----- layout and heads -----
def layout_and_heads(op, a: Args, chip) -> Geometry:
    q, k, v = (op.tensor(a, n) for n in ("query", "key", "value"))
    lay = a.input_layout
    if not isinstance(lay, str) or lay not in op.LAYOUTS:
        raise op.fail("input_layout", f"must be one of {', '.join(op.LAYOUTS)}, got {lay!r}")
    lay_in, _, lay_out = lay.partition("_")
    lay_out = lay_out or lay_in
    card = is_310p(chip)
    op.check_dtype("query", q, (D.float16,) if card else op.Q_DTYPES)
    if k.dtype is not v.dtype:
        raise TypeError(f"{op.name}: 'key' and 'value' must have the same dtype, got {k.dtype.name} and "
                        f"{v.dtype.name}")
    kvdt = D.int4 if k.dtype is D.int32 else k.dtype
    kv_ok = {q.dtype} | ({D.int8, D.int4} if q.dtype in FLOATS and not op.prefill_only else set())
    kv_ok -= set(op.KV_EXCLUDED)
    if kvdt not in kv_ok:
        ok = sorted(d.name if d is not D.int4 else "int4 (int32)" for d in kv_ok)
        raise TypeError(f"{op.name}: 'key'/'value' dtype {k.dtype.name} does not go with query {q.dtype.name}; "
                        f"allowed: {', '.join(ok)}")
    nh = op.int_arg(a, "num_heads", lo=1)
    nkvh = op.int_arg(a, "num_key_value_heads", lo=0)
    want_rank = 3 if lay_in in LAYOUTS_3D else 4
    if q.ndim != want_rank:
        raise op.fail("query", f"must be {want_rank}-D for input_layout {lay}, got shape {q.shape}")
    T = 0
    if lay_in == "BSH":
        B, Sq, H = q.shape
        if H % nh:
            raise op.fail("num_heads", f"must divide the hidden size H={H} of query")
        Nq, Dq = nh, H // nh
    else:
        B, Sq = 0, 0
        if lay_in == "BSND":
            B, Sq, Nq, Dq = q.shape
        elif lay_in == "BNSD":
            B, Nq, Sq, Dq = q.shape
        elif lay_in == "TND":
            T, Nq, Dq = q.shape
        else:
            Nq, T, Dq = q.shape
        if Nq != nh:
            raise op.fail("num_heads", f"must equal the N axis of query ({Nq}), got {nh}")
    Nkv = nkvh or Nq
    if Nq % Nkv:
        raise op.fail("num_key_value_heads", f"must divide num_heads ({Nq}), got {Nkv}")
    if card and nkvh:
        raise op.fail("num_key_value_heads", "only 0 is supported on Atlas inference cards (310P)")
    return Geometry(lay, lay_in, lay_out, q.dtype, kvdt, nkvh, B, Sq, Nq, Dq, T, Nkv)


# ----- key and value -----
def key_value(op, a: Args, g: Geometry) -> tuple[Geometry, KVCache]:
    bt = op.targ(a, "block_table")
    g, kv, dk = _paged(op, a, g, bt) if bt is not None else _dense(op, a, g)
    if dk != g.Dq:
        raise op.fail("key", f"head dim {dk} must equal query's ({g.Dq})")
    return g, kv


def _paged(op, a: Args, g: Geometry, bt) -> tuple[Geometry, KVCache, int]:
    k, v = a.key, a.value
    Nkv, pack = g.Nkv, g.pack
    if bt.dtype is not D.int32 or bt.ndim != 2:
        raise op.fail("block_table", f"must be a 2-D int32 tensor, got {bt.dtype.name} {bt.shape}")
    block_size = op.int_arg(a, op.aname("block_size"), lo=0)
    if k.ndim == 3:
        cache, (nblk, bs_, hk) = "BSH", k.shape
        if (hk * pack) % Nkv:
            raise op.fail("key", f"cache hidden size {hk * pack} must split into {Nkv} key/value heads")
        dk = hk * pack // Nkv
    elif k.ndim == 4:
        cache, (nblk, nk, bs_, d) = "BNSD", k.shape
        if g.lay_in not in ("BNSD", "TND"):
            raise op.fail("key", f"the (blocknum, KV_N, blocksize, D) cache needs a BNSD or TND query, not {g.lay_in}")
        if nk != Nkv:
            raise op.fail("num_key_value_heads", f"must equal the cache's KV_N ({nk}), got {Nkv}")
        dk = d * pack
    elif k.ndim == 5:
        cache, (nblk, nk, d1, bs_, c0) = "NZ", k.shape
        if nk != Nkv:
            raise op.fail("num_key_value_heads", f"must equal the cache's KV_N ({nk}), got {Nkv}")
        if c0 != g.kvdt.c0:
            raise op.fail("key", f"an NZ cache's last axis must be one 32-byte block ({g.kvdt.c0} elements of "
                                 f"{g.kvdt.name}), got {c0}")
        dk = d1 * c0
    else:
        raise op.fail("key", f"a paged cache must be (blocknum, blocksize, H), (blocknum, KV_N, blocksize, D) or NZ "
                             f"(blocknum, KV_N, D/C0, blocksize, C0); got {k.shape}")
    if bs_ != block_size:
        raise op.fail("block_size", f"must equal the cache's block axis ({bs_}), got {block_size}")
    if v.ndim != k.ndim or v.shape[:-1] != k.shape[:-1] and cache != "NZ":
        raise op.fail("value", f"cache shape {v.shape} must match key's {k.shape} (but the last axis)")
    max_blocks = bt.shape[1]
    dv = v.shape[-1] * pack // Nkv if cache == "BSH" else v.shape[-1] * pack if cache == "BNSD" else \
        v.shape[2] * v.shape[4]
    if g.B and bt.shape[0] != g.B:
        raise op.fail("block_table", f"its first axis ({bt.shape[0]}) must equal the batch size B={g.B}")
    kv = KVCache(True, cache, block_size, max_blocks, nblk, v.shape[0])
    return replace(g, Skv=max_blocks * block_size, Dv=dv), kv, dk


def _dense(op, a: Args, g: Geometry) -> tuple[Geometry, KVCache, int]:
    k, v = a.key, a.value
    pack, Nkv = g.pack, g.Nkv
    want_rank = 3 if g.lay_in in LAYOUTS_3D else 4
    for n, t in (("key", k), ("value", v)):
        if t.ndim != want_rank:
            raise op.fail(n, f"must be {want_rank}-D for input_layout {g.layout}, got shape {t.shape}")
    Tkv = 0
    if g.lay_in == "BSH":
        if k.shape[0] != g.B:
            raise op.fail("key", f"batch {k.shape[0]} must equal query's ({g.B})")
        Skv = k.shape[1]
        if (k.shape[2] * pack) % Nkv:
            raise op.fail("key", f"hidden size {k.shape[2] * pack} must split into {Nkv} key/value heads")
        dk, dv = k.shape[2] * pack // Nkv, v.shape[2] * pack // Nkv
    elif g.lay_in in ("BSND", "BNSD"):
        nax, sax = (2, 1) if g.lay_in == "BSND" else (1, 2)
        if k.shape[0] != g.B:
            raise op.fail("key", f"batch {k.shape[0]} must equal query's ({g.B})")
        if k.shape[nax] != Nkv:
            raise op.fail("num_key_value_heads", f"must equal the N axis of key ({k.shape[nax]}) for layout "
                                                 f"{g.lay_in} (0 means num_heads), got {g.nkvh}")
        Skv, dk, dv = k.shape[sax], k.shape[3] * pack, v.shape[3] * pack
    else:
        tax, nax = (0, 1) if g.lay_in == "TND" else (1, 0)
        Tkv, nk, dk = k.shape[tax], k.shape[nax], k.shape[2] * pack
        if nk != Nkv:
            raise op.fail("num_key_value_heads", f"must equal the N axis of key ({nk}), got {g.nkvh}")
        dv, Skv = v.shape[2] * pack, 0
    if v.shape[:-1] != k.shape[:-1]:
        raise op.fail("value", f"shape {v.shape} must match key's {k.shape} but for the head dim")
    return replace(g, Skv=Skv, Tkv=Tkv, Dv=dv), KVCache(), dk


# ----- lengths -----
def lengths(op, a: Args, g: Geometry, kv: KVCache) -> Geometry:
    """Per-batch query and key lengths (and start rows of varlen layouts); B, Sq and Skv final."""
    B, Sq, Skv = g.B, g.Sq, g.Skv
    kv_starts = (0,) * B
    if g.tnd:
        qarg = op.aname("q_lens")
        qc = int_list(op, a, qarg) if op.ARGS.get("q_lens") else None
        if not qc:
            raise op.fail(qarg, f"is required for layout {g.lay_in} (cumulative query lengths)")
        if len(qc) > MAX_VARLEN_B:
            raise op.fail(qarg, f"at most {MAX_VARLEN_B} batches, got {len(qc)}")
        q_starts, q_lens = cumulative(op, qarg, qc, g.T)
        B, Sq = len(qc), max(q_lens)
        if kv.paged:
            bt = op.targ(a, "block_table")
            if bt.shape[0] != B:
                raise op.fail("block_table", f"its first axis ({bt.shape[0]}) must equal the batch size B={B}")
            kv_lens = op.lens_arg(a, "kv_lens", B, Skv, "cache capacity") or (Skv,) * B
            kv_starts = (0,) * B
        else:
            kc = int_list(op, a, op.aname("kv_lens"))
            if not kc or len(kc) != B:
                raise op.fail(op.aname("kv_lens"), f"is required for layout {g.lay_in}, with {B} cumulative values")
            kv_starts, kv_lens = cumulative(op, op.aname("kv_lens"), kc, g.Tkv)
            Skv = max(kv_lens)
    else:
        q_starts = (0,) * B
    decode = op.decode_only or (not op.prefill_only and not g.tnd and Sq == 1)
    if a.get("padding_mask") is not None:
        raise op.fail("padding_mask", "is reserved and must be None")
    if op.decode_only and Sq != 1:
        raise op.fail("query", f"the query sequence length must be 1 (incremental decoding), got {Sq}")
    if not g.tnd:
        q_lens = (1,) * B if decode else op.lens_arg(a, "q_lens", B, Sq, "query sequence length") or (Sq,) * B
        # a paged cache's capacity is the block table's: its own check names it
        kv_lens = op.lens_arg(a, "kv_lens", B, INT_MAX if kv.paged else Skv, "key/value sequence length")
        if kv.paged and kv_lens is None:
            raise op.fail(op.aname("kv_lens"), "is required with a paged KV cache (block_table)")
        kv_lens = kv_lens or (Skv,) * B
    if kv.paged and kv.block_size > 0:
        need = max((-(-x // kv.block_size) for x in kv_lens), default=0)
        if need > kv.max_blocks:
            raise op.fail("block_table", f"has {kv.max_blocks} blocks per sequence; the longest sequence needs {need}")
        total = sum(-(-x // kv.block_size) for x in kv_lens)
        if total > kv.key_blocks:
            raise op.fail("key", f"the cache holds {kv.key_blocks} blocks; the batches need {total}")
    return replace(g, B=B, Sq=Sq, Skv=Skv, q_lens=tuple(q_lens), kv_lens=tuple(kv_lens), q_starts=tuple(q_starts),
                   kv_starts=tuple(kv_starts), decode=decode)


# ----- limits -----
def limits(op, a: Args, g: Geometry, chip) -> None:
    if g.B > MAX_B:
        raise op.fail("query", f"B must be at most {MAX_B}, got {g.B}")
    if g.Nq > MAX_N:
        raise op.fail("num_heads", f"must be at most {MAX_N}, got {g.Nq}")
    for arg, d in (("query", g.Dq), ("value", g.Dv)):     # the pages' D ranges start at 1
        if not 1 <= d <= MAX_D:
            raise op.fail(arg, f"head dim must be in [1, {MAX_D}], got {d}")
    if g.decode and g.Skv > MAX_DECODE_S:
        raise op.fail("key", f"S must be at most {MAX_DECODE_S} in decoding, got {g.Skv}")
    if is_310p(chip):
        max_b = CARD_MAX_B_DECODE if op.decode_only else CARD_MAX_B_PREFILL
        if g.B > max_b:
            raise op.fail("query", f"B must be at most {max_b} on Atlas inference cards (310P), got {g.B}")
        if max(g.Sq, g.Skv) > CARD_MAX_S:
            raise op.fail("query", f"S must be at most {CARD_MAX_S} on Atlas inference cards (310P), got "
                                   f"{max(g.Sq, g.Skv)}")
        if not op.decode_only:
            for key in ("q_lens", "kv_lens"):
                if op.arg(a, key) is not None:
                    raise op.fail(op.aname(key), "is not supported on Atlas inference cards (310P)")
    if not g.decode:
        if g.lay_in in ("BSH", "BSND") and g.Nq * g.Dq >= MAX_HIDDEN:
            raise op.fail("query", f"N * D must be below {MAX_HIDDEN} for layout {g.lay_in}, got {g.Nq * g.Dq}")
        if op.name == "npu_prompt_flash_attention":
            blk = block_bytes(chip)
            if (g.Dq * g.qdt.itemsize) % blk and g.Dq > PFA_MAX_UNALIGNED_D:
                raise op.fail("query", f"a head dim that is not {blk}-byte aligned must be at most "
                                       f"{PFA_MAX_UNALIGNED_D}, got {g.Dq}")
        else:
            gran = block_elems(chip, g.qdt, g.kvdt)
            if g.Dq % gran:
                raise op.fail("query", f"head dim must be a multiple of {gran} here, got {g.Dq}")


# ----- shared prefix -----
def shared_prefix(op, a: Args, g: Geometry, kv: KVCache) -> SharedPrefix:
    kp, vp = op.targ(a, "key_shared_prefix"), op.targ(a, "value_shared_prefix")
    if (kp is None) != (vp is None):
        raise op.fail("key_shared_prefix", "key_shared_prefix and value_shared_prefix go together")
    if kp is None:
        return SharedPrefix()
    k, v = a.key, a.value
    if kv.paged:
        raise op.fail("key_shared_prefix", "a shared prefix is not supported with a paged KV cache")
    if kp.dtype is not k.dtype or vp.dtype is not v.dtype or kp.ndim != k.ndim or vp.ndim != v.ndim:
        raise op.fail("key_shared_prefix", "must have key's/value's dtype and rank")
    if kp.shape[0] != 1 or vp.shape[0] != 1:
        raise op.fail("key_shared_prefix", f"batch axis must be 1, got {kp.shape[0]}")
    sax = 2 if g.lay_in == "BNSD" else 1
    if g.tnd:
        raise op.fail("key_shared_prefix", f"is not supported with layout {g.lay_in}")
    if kp.shape[:sax] + kp.shape[sax + 1:] != (1,) + k.shape[1:sax] + k.shape[sax + 1:] or \
            vp.shape[sax + 1:] != v.shape[sax + 1:] or vp.shape[sax] != kp.shape[sax]:
        raise op.fail("key_shared_prefix", f"N and D (or H) must match key/value; got {kp.shape}, {vp.shape}")
    ps = kp.shape[sax]
    apl = int_list(op, a, "actual_shared_prefix_len")
    if apl is not None and (len(apl) != 1 or not 0 <= apl[0] <= ps):
        raise op.fail("actual_shared_prefix_len", f"must be one value in [0, {ps}], got {apl}")
    if g.qdt is D.int8:
        raise op.fail("key_shared_prefix", "is not supported when query, key and value are int8")
    return SharedPrefix(ps if apl is None else apl[0], ps)


# ----- rope (MLA) -----
def rope(op, a: Args, g: Geometry, kv: KVCache) -> int:
    """The rope head dim (0: no query_rope/key_rope), and the GQA ratio rule MLA relaxes."""
    qr, kr = op.targ(a, "query_rope"), op.targ(a, "key_rope")
    dr = 0
    if (qr is None) != (kr is None):
        raise op.fail("query_rope", "query_rope and key_rope go together")
    if qr is not None:
        _check_rope(op, a, g, kv, qr, kr)
        dr = MLA_ROPE_D
    if g.Nq // g.Nkv > MAX_GQA and not dr:            # MLA (D=512) allows 128 query heads on one kv head
        raise op.fail("num_key_value_heads", f"num_heads / num_key_value_heads must be at most {MAX_GQA}, got "
                                             f"{g.Nq // g.Nkv}")
    return dr


def _check_rope(op, a: Args, g: Geometry, kv: KVCache, qr, kr) -> None:
    q, k = a.query, a.key
    if qr.dtype is not q.dtype or kr.dtype is not k.dtype:
        raise TypeError(f"{op.name}: query_rope/key_rope must have the dtypes of query/key")
    if g.Dq not in MLA_LATENT_D:
        raise op.fail("query_rope", f"needs a query head dim of 512 or 128, got {g.Dq}")
    want_qr = q.shape[:-1] + ((g.Nq * MLA_ROPE_D,) if g.lay_in == "BSH" else (MLA_ROPE_D,))
    if tuple(qr.shape) != tuple(want_qr):
        raise op.fail("query_rope", f"must have query's shape with rope head dim {MLA_ROPE_D}: {want_qr}, "
                                    f"got {qr.shape}")
    if kv.cache == "NZ":
        ok = kr.ndim == 5 and kr.shape[:2] == k.shape[:2] and kr.shape[3:] == k.shape[3:] and \
            kr.shape[2] * kr.shape[4] == MLA_ROPE_D
        want_kr = f"(blocknum, KV_N, {MLA_ROPE_D}/C0, blocksize, C0)"
    else:
        hidden = kv.cache == "BSH" or (not kv.paged and g.lay_in == "BSH")
        want_kr = k.shape[:-1] + ((g.Nkv * MLA_ROPE_D,) if hidden else (MLA_ROPE_D,))
        ok = tuple(kr.shape) == tuple(want_kr)
    if not ok:
        raise op.fail("key_rope", f"must have key's shape with rope head dim {MLA_ROPE_D}: {want_kr}, got {kr.shape}")
    if g.Dq == MLA_LATENT_D[0]:
        if g.Nkv != 1:
            raise op.fail("num_key_value_heads", f"MLA with D=512 needs one key/value head, got {g.Nkv}")
        if g.Nq not in MLA_HEADS:
            raise op.fail("num_heads", f"MLA with D=512 needs N in {MLA_HEADS}, got {g.Nq}")
    for nm in ("pse_shift", "quant_scale2", "antiquant_scale", "key_antiquant_scale", "key_shared_prefix",
               "query_padding_size", "kv_padding_size", "dequant_scale1"):
        if op.targ(a, nm) is not None:
            raise op.fail(op.aname(nm), "is not supported together with query_rope/key_rope (MLA)")


# ----- layout-specific rules -----
def layout_rules(op, g: Geometry, dr: int) -> None:
    lay = g.layout
    if g.tnd and not g.decode:
        if dr == 0:
            if g.lay_in == "TND" and lay != "TND_NTD" and not (
                    (g.Dq == 128 and g.Dv == 128) or (g.Dq == 192 and g.Dv in (128, 192))):
                if op.name == "npu_fused_infer_attention_score":
                    raise op.fail("query", f"TND needs D of query/key/value 128, or 192 with value 128/192; "
                                           f"got {g.Dq}/{g.Dv}")
            if lay == "NTD" and g.Dv == 192:
                raise op.fail("value", "NTD does not support a value head dim of 192")
            if lay == "NTD_TND" and (g.Dq not in (128, 192) or g.Dv != 128):
                raise op.fail("query", f"NTD_TND needs Q/K head dim 128 or 192 and value 128; got {g.Dq}/{g.Dv}")
        elif g.Dq == 128 and g.Dv != 128:
            raise op.fail("value", f"TND with rope needs value head dim 128, got {g.Dv}")
    if g.lay_out == "NBSD" and not (1 < g.Sq <= 16) and dr == 0:
        raise op.fail("input_layout", f"an NBSD output needs 1 < Q_S <= 16, got Q_S={g.Sq}")
    if lay in ("BSH_BNSD", "BSND_BNSD") and not dr:
        raise op.fail("input_layout", f"{lay} is documented for the MLA (query_rope/key_rope) case only")
    if lay == "BNSD_BSND" and g.decode:
        raise op.fail("input_layout", "BNSD_BSND needs Q_S > 1")


# ----- paged block size -----
PAGED_MAX_BLOCK = 1024
PAGED_DECODE_MAX_BLOCK = 512
PAGED_PREFILL_BLOCK = (128, 512)      # a multiple of 128 in [128, 512]


def block_size_rules(op, a: Args, g: Geometry, kv: KVCache, dr: int, chip) -> None:
    if not kv.paged:
        return
    bs = kv.block_size
    if bs <= 0:
        raise op.fail("block_size", f"must be positive with a paged cache, got {bs}")
    if dr and g.Dq == MLA_LATENT_D[0] or (g.tnd and not g.decode):
        m0 = chip.cube.m0
        if bs % m0 or bs > PAGED_MAX_BLOCK:
            raise op.fail("block_size", f"must be a multiple of {m0} and at most {PAGED_MAX_BLOCK} here, got {bs}")
    elif g.decode:
        q = block_elems(chip, g.kvdt)
        if bs % q or bs > PAGED_DECODE_MAX_BLOCK:
            raise op.fail("block_size", f"must be a multiple of {q} and at most {PAGED_DECODE_MAX_BLOCK} with "
                                        f"{g.kvdt.name} key/value, got {bs}")
    else:
        lo, hi = PAGED_PREFILL_BLOCK
        if bs % lo or not lo <= bs <= hi:
            raise op.fail("block_size", f"must be a multiple of {lo} in [{lo}, {hi}] when Q_S > 1, got {bs}")
    if kv.cache == "BSH" and g.Nkv * g.Dq > MAX_HIDDEN:
        raise op.fail("key", f"a (blocknum, blocksize, H) cache needs KV_N * D <= {MAX_HIDDEN}, got {g.Nkv * g.Dq}")
