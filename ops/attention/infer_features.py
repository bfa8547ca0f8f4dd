"""The inference attention ops' feature checks, after the shapes (:mod:`.infer_shapes`): sparse
mode and band tokens, atten_mask, pse_shift, full quantisation and int8 output, fake
quantisation of an int8/int4 KV cache (antiquant), left padding. Each returns its part of the
resolved call as a small frozen record (argument *names*, shapes and kinds -- never tensors).
"""
from __future__ import annotations

from dataclasses import dataclass

from ascend_sim import dtypes as D
from ascend_sim.dtypes import DType

from ..base import Args
from ..common import is_310p
from .checks import COMPRESSED_MASK, FLOATS, INT_MAX, MASK_DTYPES, check_mask_dtype, mask4
from .infer_shapes import MLA_LATENT_D, Geometry, KVCache, SharedPrefix

MSD_BITS_HIGH_PRECISION = 11   # significand bits the query pieces keep: fp16's
MSD_BITS_HIGH_PERFORMANCE = 8  # ... bf16's
MAX_SEPARATE_ANTIQUANT_SQ = 16


@dataclass(frozen=True)
class Masking:
    """Sparse mode and band tokens, the mask as [B?, N?, rows, cols] and pse_shift's shape."""

    mode: int = 0
    pre: int = INT_MAX
    nxt: int = INT_MAX
    mask4: tuple | None = None
    compressed: bool = False       # the optimised 2048 x 2048 mask: the mode's rule, not its values
    mask_bits: int = 0             # element bits (0: no mask)
    pse: tuple | None = None
    pse_bits: int = 0


@dataclass(frozen=True)
class Quant:
    full_quant: bool               # int8 query, key and value: int8 cube, dequant/quant scales
    out_quant: bool                # int8 output (quant_scale2)
    outdt: DType


@dataclass(frozen=True)
class AntiquantParams:
    """How one of K and V is fake-quantised: the parameters' kind and the arguments holding them."""

    kind: str                      # tensor, tensor2, channel, channel2, head, token, token2, token_head,
                                   # pa_token, pa_token_head
    scale: str                     # argument names
    offset: str | None = None

    @property
    def per_token(self) -> bool:
        return self.kind.startswith(("token", "pa_token"))


@dataclass(frozen=True)
class Antiquant:
    k: AntiquantParams
    v: AntiquantParams
    msd_steps: int                 # int8 (int4) pieces the query is split into (MSD)


# ----- sparse mode, mask, pse -----
def sparse(op, a: Args, g: Geometry, dr: int, chip) -> tuple[int, int, int]:
    mode = op.int_arg(a, "sparse_mode") if op.ARGS.get("sparse_mode") else 0
    pre = op.int_arg(a, op.aname("pre_tokens")) if op.ARGS.get("pre_tokens") else INT_MAX
    nxt = op.int_arg(a, op.aname("next_tokens")) if op.ARGS.get("next_tokens") else INT_MAX
    if not g.decode or dr:
        if mode not in (0, 1, 2, 3, 4):
            why = "5-8 are not supported" if 5 <= mode <= 8 else "see the page"
            raise op.fail("sparse_mode", f"must be 0, 1, 2, 3 or 4 ({why}), got {mode}")
        if dr and g.Dq == MLA_LATENT_D[0] and mode not in (0, 3, 4):
            raise op.fail("sparse_mode", f"MLA with D=512 supports 0, 3 and 4, got {mode}")
        if is_310p(chip):
            if mode != 0:
                raise op.fail("sparse_mode", "only 0 is supported on Atlas inference cards (310P)")
            if pre != INT_MAX:
                raise op.fail("pre_tokens", f"only {INT_MAX} is supported on Atlas inference cards (310P)")
            if nxt not in (0, INT_MAX):
                raise op.fail("next_tokens", f"only 0 and {INT_MAX} are supported on Atlas inference cards (310P)")
    return mode, pre, nxt


def _total_kv(g: Geometry, kv: KVCache, prefix: SharedPrefix) -> int:
    """Keys a mask/pse must cover: the page's paged calls cover every block of the table."""
    if kv.paged:
        return g.Skv
    return max(g.kv_lens) + prefix.length if g.kv_lens else 0


def masking(op, a: Args, g: Geometry, kv: KVCache, prefix: SharedPrefix, mode: int, pre: int, nxt: int,
            chip) -> Masking:
    total_kv = _total_kv(g, kv, prefix)
    mask = op.targ(a, "atten_mask")
    m4, compressed, bits = None, False, 0
    if mask is not None:
        check_mask_dtype(op, "atten_mask", mask, MASK_DTYPES)
        shp, bits = tuple(mask.shape), mask.dtype.bits
        if not g.decode and mode in (2, 3, 4):
            side = (COMPRESSED_MASK,) * 2
            if shp not in (side, (1,) + side, (1, 1) + side):
                raise op.fail("atten_mask", f"sparse_mode {mode} takes the optimised mask of shape (2048, 2048), "
                                            f"(1, 2048, 2048) or (1, 1, 2048, 2048), got {shp}")
            compressed, m4 = True, (1, 1) + side
        else:
            m4 = mask4(shp, g.decode)
            okb = (1, g.B) if (len(shp) >= 3 or g.decode) else (1,)
            if op.name == "npu_fused_infer_attention_score" and len(shp) == 3 and not g.decode and shp[0] != 1:
                okb = (1,)
            if len(shp) not in (2, 3, 4) or m4[0] not in okb or m4[1] != 1:
                raise op.fail("atten_mask", f"shape {shp} is not one of (Q_S, KV_S), (1 or B, Q_S, KV_S), "
                                            f"(1 or B, 1, Q_S, KV_S)" + (" or (B, KV_S)" if g.decode else ""))
            if m4[2] < g.Sq or m4[3] < total_kv:
                raise op.fail("atten_mask", f"covers {m4[2]} x {m4[3]} but the call needs at least "
                                            f"{g.Sq} x {total_kv} (Q_S x KV_S)")
    elif not g.decode and mode in (1, 2, 3, 4):
        raise op.fail("atten_mask", f"sparse_mode {mode} needs atten_mask")
    pse = _pse_shift(op, a, g, total_kv, chip)
    return Masking(mode, pre, nxt, m4, compressed, bits, None if pse is None else tuple(pse.shape),
                   0 if pse is None else pse.dtype.bits)


def _pse_shift(op, a: Args, g: Geometry, total_kv: int, chip):
    pse = op.targ(a, "pse_shift")
    if pse is None:
        return None
    arg = op.aname("pse_shift")
    if is_310p(chip):
        raise op.fail(arg, "is not supported on Atlas inference cards (310P)")
    if pse.dtype not in FLOATS:
        raise TypeError(f"{op.name}: argument '{arg}' must be float16 or bfloat16")
    if g.decode and pse.dtype is not g.qdt:
        raise TypeError(f"{op.name}: argument '{arg}' must have query's dtype ({g.qdt.name}) when Q_S is 1")
    if not g.decode and (pse.dtype is D.bfloat16) != (g.qdt is D.bfloat16):
        raise TypeError(f"{op.name}: a {pse.dtype.name} pse_shift needs a "
                        f"{'bfloat16' if pse.dtype is D.bfloat16 else 'float16 or int8'} query")
    shp = tuple(pse.shape)
    if len(shp) != 4 or shp[0] not in (1, g.B) or shp[1] != g.Nq or shp[2] < g.Sq or shp[3] < total_kv:
        raise op.fail(arg, f"must be (B or 1, N={g.Nq}, >= Q_S={g.Sq}, >= KV_S={total_kv}), got {shp}")
    if g.decode and g.Dq % g.qdt.c0:
        raise op.fail(arg, f"needs a head dim divisible by {g.qdt.c0}, got {g.Dq}")
    return pse


# ----- quantisation -----
_INT8_SCALES = ("dequant_scale1", "quant_scale1", "dequant_scale2")


def quantisation(op, a: Args, g: Geometry, m: Masking, prefix: SharedPrefix, chip) -> Quant:
    qs2, qo2 = op.targ(a, "quant_scale2"), op.targ(a, "quant_offset2")
    full_quant = g.qdt is D.int8
    if full_quant and g.decode:
        raise op.fail("query", "int8 query, key and value are not supported when Q_S is 1")
    scales = [(key, op.targ(a, key)) for key in _INT8_SCALES]
    if full_quant:
        if g.kvdt is not D.int8:
            raise TypeError(f"{op.name}: an int8 query needs int8 key/value")
        for key, t in scales:
            if t is None:
                raise op.fail(op.aname(key), "is required when query, key and value are int8")
            if t.numel != 1:
                raise op.fail(op.aname(key), f"is per-tensor: one value, got shape {t.shape}")
            if t.dtype not in (D.float32, D.int64) or key == "quant_scale1" and t.dtype is not D.float32:
                raise TypeError(f"{op.name}: argument '{op.aname(key)}' has dtype {t.dtype.name}; allowed: "
                                f"{'float32' if key == 'quant_scale1' else 'float32, uint64 (int64)'}")
        if a.get(op.aname("quant_scale2")) is None and qo2 is not None:
            raise op.fail(op.aname("quant_offset2"), "needs quant_scale2")
    else:
        for key, t in scales:
            if t is not None:
                raise op.fail(op.aname(key), f"is only for int8 query/key/value (query is {g.qdt.name})")
    if qo2 is not None and qs2 is None:
        raise op.fail(op.aname("quant_offset2"), "needs quant_scale2")
    if qs2 is not None:
        _check_int8_output(op, g, m, prefix, qs2, qo2, chip)
    return Quant(full_quant, qs2 is not None, D.int8 if qs2 is not None else (D.float16 if full_quant else g.qdt))


def _check_int8_output(op, g: Geometry, m: Masking, prefix: SharedPrefix, qs2, qo2, chip) -> None:
    if is_310p(chip):
        raise op.fail(op.aname("quant_scale2"), "is not supported on Atlas inference cards (310P)")
    okd = (D.float32, D.bfloat16) if g.qdt is D.bfloat16 else (D.float32,)
    op.check_dtype(op.aname("quant_scale2"), qs2, okd)
    if qo2 is not None and (qo2.dtype is not qs2.dtype or qo2.shape != qs2.shape):
        raise op.fail(op.aname("quant_offset2"), "must have quant_scale2's dtype and shape")
    if qs2.numel not in (1, g.Nq * g.Dv):
        raise op.fail(op.aname("quant_scale2"), f"must hold 1 value (per-tensor) or N*D = {g.Nq * g.Dv} "
                                                f"(per-channel), got shape {qs2.shape}")
    if m.mode == 4 and (m.pre < 0 or m.nxt < 0) and not g.decode:
        raise op.fail("sparse_mode", "int8 output does not support the band mode with negative "
                                     "pre_tokens/next_tokens")
    if qo2 is None or g.decode:
        return
    # int8 output with quant_offset2: configurations that leave query rows without keys are refused
    mode, pre, nxt = m.mode, m.pre, m.nxt
    for b, (sq, skv) in enumerate(zip(g.q_lens, g.kv_lens)):
        skv += prefix.length
        bad = (mode == 0 and m.mask4 is not None and (sq - skv - pre > 0 or nxt < 0)) or \
            (mode == 3 and skv - sq < 0) or (mode == 4 and (pre < 0 or nxt + skv - sq < 0))
        if bad:
            raise op.fail("quant_offset2", f"int8 output with quant_offset2 refuses sparse_mode {mode} with "
                                           f"these lengths/tokens: batch {b} would have query rows without keys")


# ----- fake quantisation of the KV cache -----
_COMBINED = ("antiquant_scale", "antiquant_offset")
_SEPARATE = ("key_antiquant_scale", "key_antiquant_offset", "value_antiquant_scale", "value_antiquant_offset")


def antiquant(op, a: Args, g: Geometry, kv: KVCache, prefix: SharedPrefix) -> Antiquant | None:
    """Which fake-quantisation parameters apply to K and V (None: the cache is not quantised)."""
    sc, of = op.targ(a, "antiquant_scale"), op.targ(a, "antiquant_offset")
    ks, ko, vs, vo = (op.targ(a, n) for n in _SEPARATE)
    if not (g.kvdt in (D.int8, D.int4) and g.qdt in FLOATS):
        for key, t in zip(_COMBINED + _SEPARATE, (sc, of, ks, ko, vs, vo)):
            if t is not None:
                raise op.fail(op.aname(key), f"fake quantisation needs int8/int4 key and value (they are "
                                             f"{g.kvdt.name})")
        return None
    if (ks is None) != (vs is None):
        raise op.fail("key_antiquant_scale", "key_antiquant_scale and value_antiquant_scale go together")
    if (ko is None) != (vo is None):
        raise op.fail("key_antiquant_offset", "key_antiquant_offset and value_antiquant_offset go together")
    if not g.decode and kv.paged:
        raise op.fail("block_table", "a paged cache does not support fake quantisation when Q_S > 1")
    if ks is not None:                       # separated K/V parameters take precedence
        k_p, v_p = _separate(op, a, g, kv, ks, ko, vs, vo)
    else:
        k_p = v_p = _combined(op, a, g, kv, sc, of)
    if prefix.length and (k_p.per_token or v_p.per_token):
        raise op.fail("key_shared_prefix", "a shared prefix works with per-channel or per-tensor fake "
                                           "quantisation only (per-token scales have no prefix entries)")
    # MSD: the query is split into int8 (int4) pieces of (bits - 1) significant bits each, enough
    # for fp16's 11-bit significand (high precision) or bf16's 8 (high performance)
    ip = op.int_arg(a, "inner_precise") if op.ARGS.get("inner_precise") else 0
    need = MSD_BITS_HIGH_PERFORMANCE if ip & 1 else MSD_BITS_HIGH_PRECISION
    return Antiquant(k_p, v_p, -(-need // (g.kvdt.bits - 1)))


def _combined(op, a: Args, g: Geometry, kv: KVCache, sc, of) -> AntiquantParams:
    if sc is None:
        raise op.fail(op.aname("antiquant_scale"), f"is required: key/value are {g.kvdt.name} and query "
                                                   f"is {g.qdt.name}")
    if of is not None and (of.shape != sc.shape or of.dtype is not sc.dtype):
        raise op.fail(op.aname("antiquant_offset"), "must have antiquant_scale's shape and dtype")
    mode = op.int_arg(a, "antiquant_mode") if op.ARGS.get("antiquant_mode") else 0
    if mode not in (0, 1):
        raise op.fail("antiquant_mode", f"must be 0 (per-channel/per-tensor) or 1 (per-token), got {mode}")
    shp = tuple(sc.shape)
    B, Skv, Nkv = g.B, g.Skv, g.Nkv
    fia = op.name == "npu_fused_infer_attention_score"
    if mode == 1 and g.decode:
        if shp != (2, B, Skv) and not (kv.paged and len(shp) == 3 and shp[:2] == (2, B) and shp[2] >= Skv):
            raise op.fail(op.aname("antiquant_scale"), f"per-token mode takes shape (2, B, KV_S) = {(2, B, Skv)}, "
                                                       f"got {shp}")
        if sc.dtype is not D.float32:
            raise TypeError(f"{op.name}: per-token antiquant_scale must be float32, got {sc.dtype.name}")
        kind = "token2"
    else:
        if sc.dtype is not g.qdt:
            raise TypeError(f"{op.name}: argument '{op.aname('antiquant_scale')}' must have query's dtype "
                            f"({g.qdt.name}), got {sc.dtype.name}")
        chan = {"BNSD": (2, Nkv, 1, g.Dq), "BSND": (2, Nkv, g.Dq), "BSH": (2, Nkv * g.Dq)}.get(g.lay_in)
        if shp == (2,) and fia and g.kvdt is D.int8:
            kind = "tensor2"
        elif chan is not None and shp == chan:
            kind = "channel2"
        else:
            raise op.fail(op.aname("antiquant_scale"), f"per-channel shape for layout {g.lay_in} is {chan}"
                          + (" (or (2,) per-tensor)" if fia else "") + f"; got {shp}")
        if not g.decode and g.qdt is not D.float16:
            raise TypeError(f"{op.name}: KV dequantisation with Q_S > 1 supports int8 -> float16 only")
    return AntiquantParams(kind, op.aname("antiquant_scale"), None if of is None else op.aname("antiquant_offset"))


def _separate(op, a: Args, g: Geometry, kv: KVCache, ks, ko, vs, vo) -> tuple[AntiquantParams, AntiquantParams]:
    km = op.int_arg(a, "key_antiquant_mode") if op.ARGS.get("key_antiquant_mode") else 0
    vm = op.int_arg(a, "value_antiquant_mode") if op.ARGS.get("value_antiquant_mode") else 0
    if km != vm and not (km == 0 and vm == 1):
        raise op.fail("key_antiquant_mode", f"must equal value_antiquant_mode (or be 0 with value 1), got "
                                            f"{km} and {vm}")
    allowed_modes = (0, 1, 2, 3, 4, 5) if g.decode else (0, 1)
    for nm, m in (("key_antiquant_mode", km), ("value_antiquant_mode", vm)):
        if m not in allowed_modes:
            raise op.fail(nm, f"must be one of {allowed_modes} here, got {m}")
    if not g.decode and g.qdt is not D.bfloat16:
        raise TypeError(f"{op.name}: separated K/V antiquant parameters with Q_S > 1 need a bfloat16 query")
    if not g.decode and g.Sq > MAX_SEPARATE_ANTIQUANT_SQ:
        raise op.fail("key_antiquant_scale", f"separated K/V parameters need Q_S <= {MAX_SEPARATE_ANTIQUANT_SQ}, "
                                             f"got {g.Sq}")
    if km == vm and ks.shape != vs.shape:
        raise op.fail("value_antiquant_scale", f"must have key_antiquant_scale's shape {ks.shape}, got {vs.shape}")
    return (AntiquantParams(_separate_kind(op, g, kv, km, ks, ko, "key"), "key_antiquant_scale",
                            None if ko is None else "key_antiquant_offset"),
            AntiquantParams(_separate_kind(op, g, kv, vm, vs, vo, "value"), "value_antiquant_scale",
                            None if vo is None else "value_antiquant_offset"))


def _separate_kind(op, g: Geometry, kv: KVCache, m: int, s_, o_, which: str) -> str:
    shp = tuple(s_.shape)
    name = f"{which}_antiquant_scale"
    if o_ is not None and (tuple(o_.shape) != shp or o_.dtype is not s_.dtype):
        raise op.fail(f"{which}_antiquant_offset", f"must have {name}'s shape and dtype")

    def need(dt, shapes, what):
        if shp not in shapes:
            raise op.fail(name, f"{what} mode takes shape {' or '.join(str(x) for x in shapes)}, got {shp}")
        if dt is not None and s_.dtype is not dt:
            raise TypeError(f"{op.name}: argument '{name}' in {what} mode must be {dt.name}, got {s_.dtype.name}")
    B, Skv, Nkv, H, bs = g.B, g.Skv, g.Nkv, g.Nkv * g.Dq, kv.block_size
    if m == 0:
        if shp == (1,):
            need(g.qdt, [(1,)], "per-tensor")
            return "tensor"
        chans = [(Nkv, 1, g.Dq), (Nkv, g.Dq), (H,), (1, Nkv, 1, g.Dq), (1, Nkv, g.Dq), (1, H)]
        need(g.qdt if g.decode else D.bfloat16, chans, "per-channel")
        return "channel"
    if m == 1:
        need(D.float32, [(1, B, Skv), (B, Skv)] if g.decode else [(B, Skv)], "per-token")
        return "token"
    if m == 2:
        need(g.qdt, [(Nkv,)], "per-tensor + per-head")
        return "head"
    if m == 3:
        need(D.float32, [(B, Nkv, Skv)], "per-token + per-head")
        return "token_head"
    if not kv.paged:
        raise op.fail(f"{which}_antiquant_mode", f"mode {m} needs a paged cache")
    if m == 4:
        if len(shp) != 2 or shp[1] != bs or s_.dtype is not D.float32:
            raise op.fail(name, f"paged per-token mode takes float32 (blocknum, block_size={bs}), got {shp}")
        return "pa_token"
    if len(shp) != 3 or shp[1:] != (Nkv, bs) or s_.dtype is not D.float32:
        raise op.fail(name, f"paged per-token + per-head mode takes float32 (blocknum, KV_N={Nkv}, "
                            f"block_size={bs}), got {shp}")
    return "pa_token_head"


# ----- left padding -----
def left_padding(op, a: Args, g: Geometry, kv: KVCache, prefix: SharedPrefix) -> tuple[bool, bool]:
    """(query rows, key rows) left-padded: padding sizes given together with actual lengths."""
    qps, kps = op.targ(a, "query_padding_size"), op.targ(a, "kv_padding_size")
    for key, t in (("query_padding_size", qps), ("kv_padding_size", kps)):
        if t is None:
            continue
        if t.dtype is not D.int64:
            raise TypeError(f"{op.name}: argument '{op.aname(key)}' must be int64, got {t.dtype.name}")
        if t.numel not in (1, g.B):
            raise op.fail(op.aname(key), f"must hold 1 or B={g.B} values, got shape {t.shape}")
        if kv.paged:
            raise op.fail(op.aname(key), "left padding is not supported with a paged KV cache (block_table)")
        if prefix.length:
            raise op.fail(op.aname(key), "left padding is not supported with a shared prefix")
        if g.tnd:
            raise op.fail(op.aname(key), f"left padding is not supported with layout {g.lay_in}")
    left_q = qps is not None and not g.decode and op.arg(a, "q_lens") is not None  # otherwise right padding
    left_kv = kps is not None and op.arg(a, "kv_lens") is not None
    return left_q, left_kv
