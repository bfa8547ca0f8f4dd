"""npu_fusion_attention numbers against a float64 reference written from the page's formula, its
documented rules, and the simulated time of the flash-attention kernel (all four ops share it)."""
import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.hw import get_chip
from ascend_sim.isa import ISAError
from ascend_sim.ops import OpError
from ascend_sim.ops.templates.flash_attention import FlashAttentionTiling

BF16 = ml_dtypes.bfloat16
TOL = {np.dtype(np.float16): 2e-3, np.dtype(BF16): 1.6e-2, np.dtype(np.float32): 1e-5}
FA = "npu_fusion_attention"


@pytest.fixture
def sim():
    with Simulator("Ascend910B2") as s:
        yield s


# ----------------------------------------------------------------------------------------------
# reference: softmax(scale * Q K^T + pse, masked) V in float64 (the pages' formulas)
# ----------------------------------------------------------------------------------------------
def ref_attention(q, k, v, scale, masked=None, pse=None, sink=None, drop=None, keep_prob=1.0):
    """q [B, N, Sq, D], k/v [B, Nkv, Skv, D]; masked: bool broadcastable to [B, N, Sq, Skv],
    True = masked. Returns (out, row max, row sum); rows with no visible key give 0."""
    q, k, v = (np.asarray(x).astype(np.float64) for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bnqd,bnkd->bnqk", q, k) * scale
    if pse is not None:
        s = s + np.asarray(pse).astype(np.float64)
    if masked is not None:
        s = np.where(masked, -np.inf, s)
    m = s.max(-1, keepdims=True)
    if sink is not None:
        m = np.maximum(m, sink.astype(np.float64)[None, :, None, None])
    m0 = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m0)
    denom = e.sum(-1, keepdims=True)
    if sink is not None:
        denom = denom + np.exp(sink.astype(np.float64)[None, :, None, None] - m0)
    p = e / np.where(denom > 0, denom, 1)
    if drop is not None:
        p = p * drop / keep_prob
    return p @ v, m[..., 0], denom[..., 0]


def assert_close(got, ref, dtype):
    got = np.asarray(got).astype(np.float64)
    err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
    assert err <= TOL[np.dtype(dtype)], f"relative-to-max error {err:.2e}"


def to_layout(x, layout):
    """[B, N, S, D] -> layout."""
    b, n, s, d = x.shape
    return {"BNSD": x, "BSND": x.transpose(0, 2, 1, 3), "BSH": x.transpose(0, 2, 1, 3).reshape(b, s, n * d),
            "SBH": x.transpose(2, 0, 1, 3).reshape(s, b, n * d)}[layout]


def from_layout(y, layout, n):
    if layout == "BNSD":
        return y
    if layout == "BSND":
        return y.transpose(0, 2, 1, 3)
    if layout == "BSH":
        b, s, h = y.shape
        return y.reshape(b, s, n, h // n).transpose(0, 2, 1, 3)
    s, b, h = y.shape
    return y.reshape(s, b, n, h // n).transpose(1, 2, 0, 3)


def rand(rng, shape, dtype=np.float16):
    return rng.standard_normal(shape).astype(dtype)


def causal_rd(sq, skv):
    """rightDownCausal: True where masked."""
    return np.triu(np.ones((sq, skv), bool), k=skv - sq + 1)


def band_rd(sq, skv, pre, nxt):
    return np.triu(np.ones((sq, skv), bool), k=skv - sq + nxt + 1) | np.tril(np.ones((sq, skv), bool),
                                                                           k=skv - sq - pre - 1)


COMPRESSED = np.triu(np.ones((2048, 2048), bool), 1)


# ----------------------------------------------------------------------------------------------
# layouts, GQA, dtypes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["BSH", "SBH", "BSND", "BNSD"])
def test_every_layout_with_gqa_matches_the_reference(sim, layout):
    rng = np.random.default_rng(1)
    B, N, Nkv, Sq, Skv, D = 2, 4, 2, 37, 50, 64
    q, k, v = rand(rng, (B, N, Sq, D)), rand(rng, (B, Nkv, Skv, D)), rand(rng, (B, Nkv, Skv, D))
    out = torch_npu.npu_fusion_attention(to_layout(q, layout), to_layout(k, layout), to_layout(v, layout), N,
                                         layout, scale=0.125)
    att, smax, ssum, sout, seed, offset, numels = out
    ref, m, l = ref_attention(q, k, v, 0.125)
    assert att.shape == to_layout(ref, layout).shape and att.dtype.name == "float16"
    assert_close(from_layout(att.numpy(), layout, N), ref, np.float16)
    assert smax.shape == (B, N, Sq, 8) and smax.dtype.name == "float32" and ssum.shape == (B, N, Sq, 8)
    np.testing.assert_allclose(smax.numpy(), np.repeat(m[..., None], 8, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ssum.numpy(), np.repeat(l[..., None], 8, -1), rtol=1e-4)
    assert sout.shape == (0,)
    # documented as Python ints
    assert (numels, seed, offset) == (B * N * Sq * Skv, 0, 0) and all(type(v) is int for v in (numels, seed, offset))


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
def test_dtypes_round_once_to_the_input_dtype(sim, dtype):
    rng = np.random.default_rng(2)
    q, k, v = rand(rng, (1, 2, 33, 128), dtype), rand(rng, (1, 2, 65, 128), dtype), rand(rng, (1, 2, 65, 128), dtype)
    att = torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", scale=128 ** -0.5)[0]
    assert att.numpy().dtype == np.dtype(dtype)
    assert_close(att.numpy(), ref_attention(q, k, v, 128 ** -0.5)[0], dtype)


def test_value_head_dim_may_be_smaller(sim):
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, (1, 2, 20, 64)), rand(rng, (1, 2, 24, 64)), rand(rng, (1, 2, 24, 32))
    att = torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", scale=0.1)[0]
    assert att.shape == (1, 2, 20, 32)
    assert_close(att.numpy(), ref_attention(q, k, v, 0.1)[0], np.float16)


# ----------------------------------------------------------------------------------------------
# sparse modes (odd shapes: Sq 37, Skv 50)
# ----------------------------------------------------------------------------------------------
def _fa_case(rng, B=2, N=2, Sq=37, Skv=50, D=32):
    return rand(rng, (B, N, Sq, D)), rand(rng, (B, N, Skv, D)), rand(rng, (B, N, Skv, D))


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 4, 5, 6])
def test_each_sparse_mode_masks_as_documented(sim, mode):
    rng = np.random.default_rng(10 + mode)
    B, N, Sq, Skv = 2, 2, 37, 50
    q, k, v = _fa_case(rng, B, N, Sq, Skv)
    kw = {}
    user = rng.random((B, 1, Sq, Skv)) < 0.3
    user[..., 0] = False                                  # every row keeps a key
    i, j = np.arange(Sq)[:, None], np.arange(Skv)[None]
    prefix = [13, 20]
    if mode == 0:
        pre, nxt = 9, 4
        kw = dict(atten_mask=user, pre_tockens=pre, next_tockens=nxt)
        masked = user | ((j > i + nxt) | (j < i - pre))[None, None]
    elif mode == 1:
        kw = dict(atten_mask=user.astype(np.uint8), pre_tockens=1, next_tockens=1)   # tokens ignored
        masked = user
    elif mode == 2:
        kw = dict(atten_mask=COMPRESSED, pre_tockens=3, next_tockens=3)
        masked = np.triu(np.ones((Sq, Skv), bool), 1)[None, None]
    elif mode == 3:
        kw = dict(atten_mask=COMPRESSED)
        masked = causal_rd(Sq, Skv)[None, None]
    elif mode == 4:
        pre, nxt = 10, -2
        kw = dict(atten_mask=COMPRESSED, pre_tockens=pre, next_tockens=nxt)
        masked = band_rd(Sq, Skv, pre, nxt)[None, None]
    else:
        pm = np.stack([causal_rd(Sq, Skv) & (j >= p) for p in prefix])[:, None]
        kw = dict(atten_mask=pm if mode == 5 else np.zeros((3072, 2048), bool), prefix=prefix)
        masked = pm
    att, smax = torch_npu.npu_fusion_attention(q, k, v, N, "BNSD", scale=0.2, sparse_mode=mode, **kw)[:2]
    ref, m, _ = ref_attention(q, k, v, 0.2, masked)
    assert_close(att.numpy(), ref, np.float16)
    np.testing.assert_allclose(smax.numpy()[..., 0], m, rtol=1e-5, atol=1e-5)


def test_without_a_mask_the_sparse_mode_does_not_apply(sim):
    rng = np.random.default_rng(4)
    q, k, v = _fa_case(rng)
    att = torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", scale=0.2, sparse_mode=3)[0]
    assert_close(att.numpy(), ref_attention(q, k, v, 0.2)[0], np.float16)


def test_fully_masked_rows_give_zeros(sim):
    rng = np.random.default_rng(5)
    q, k, v = _fa_case(rng, B=1, Sq=19, Skv=21)
    mask = np.zeros((19, 21), bool)
    mask[3] = True
    att, smax, ssum = torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", atten_mask=mask, sparse_mode=1,
                                                     inner_precise=2)[:3]
    a = att.numpy()
    assert not a[:, :, 3].any() and a[:, :, 4].any()
    assert (ssum.numpy()[:, :, 3] == 0).all() and (smax.numpy()[:, :, 3] == np.finfo(np.float32).min).all()
    assert_close(a, ref_attention(q, k, v, 1.0, mask)[0], np.float16)


# ----------------------------------------------------------------------------------------------
# varlen (TND)
# ----------------------------------------------------------------------------------------------
def _tnd_case(rng, q_lens, kv_lens, N=4, Nkv=2, D=64):
    qs = [rand(rng, (n, N, D)) for n in q_lens]
    ks = [rand(rng, (n, Nkv, D)) for n in kv_lens]
    vs = [rand(rng, (n, Nkv, D)) for n in kv_lens]
    cat = lambda xs: np.concatenate(xs, 0)
    return qs, ks, vs, cat(qs), cat(ks), cat(vs), list(np.cumsum(q_lens)), list(np.cumsum(kv_lens))


def _bnsd(x):
    return x.transpose(1, 0, 2)[None]


@pytest.mark.parametrize("mode", [0, 3])
def test_tnd_variable_lengths(sim, mode):
    rng = np.random.default_rng(20 + mode)
    q_lens, kv_lens = [5, 17, 0, 33], [9, 17, 4, 40]
    qs, ks, vs, q, k, v, cq, ck = _tnd_case(rng, q_lens, kv_lens)
    kw = dict(atten_mask=COMPRESSED, sparse_mode=3) if mode == 3 else {}
    att, smax = torch_npu.npu_fusion_attention(q, k, v, 4, "TND", scale=0.125, actual_seq_qlen=cq,
                                               actual_seq_kvlen=ck, softmax_layout="TND", **kw)[:2]
    assert att.shape == (sum(q_lens), 4, 64) and smax.shape == (sum(q_lens), 4, 8)
    got = att.numpy()
    t = 0
    for b, (sq, skv) in enumerate(zip(q_lens, kv_lens)):
        masked = causal_rd(sq, skv)[None, None] if mode == 3 else None
        ref, m, _ = ref_attention(_bnsd(qs[b]), _bnsd(ks[b]), _bnsd(vs[b]), 0.125, masked)
        if sq:
            assert_close(_bnsd(got[t:t + sq]), ref, np.float16)
            np.testing.assert_allclose(smax.numpy()[t:t + sq, :, 0], m[0].T, rtol=1e-5, atol=1e-5)
        t += sq


def test_tnd_softmax_stats_default_to_ntd_memory_order(sim):
    rng = np.random.default_rng(6)
    qs, ks, vs, q, k, v, cq, ck = _tnd_case(rng, [3, 4], [5, 6], N=2, Nkv=2, D=16)
    a = torch_npu.npu_fusion_attention(q, k, v, 2, "TND", actual_seq_qlen=cq, actual_seq_kvlen=ck)[1].numpy()
    b = torch_npu.npu_fusion_attention(q, k, v, 2, "TND", actual_seq_qlen=cq, actual_seq_kvlen=ck,
                                       softmax_layout="TND")[1].numpy()
    assert a.shape == b.shape == (7, 2, 8)
    np.testing.assert_array_equal(a.reshape(2, 7, 8), b.transpose(1, 0, 2))    # same values, N-major


def test_tnd_trailing_zero_batches_are_skipped(sim):
    rng = np.random.default_rng(7)
    qs, ks, vs, q, k, v, cq, ck = _tnd_case(rng, [4, 6], [4, 6], N=2, Nkv=2, D=16)
    full = torch_npu.npu_fusion_attention(q, k, v, 2, "TND", actual_seq_qlen=cq, actual_seq_kvlen=ck)[0].numpy()
    cut = torch_npu.npu_fusion_attention(q, k, v, 2, "TND", actual_seq_qlen=[4, 0], actual_seq_kvlen=[4, 0])[0]
    np.testing.assert_array_equal(cut.numpy()[:4], full[:4])
    assert not cut.numpy()[4:].any()


@pytest.mark.parametrize("mode", [7, 8])
def test_varlen_split_modes_follow_the_page_examples(sim, mode):
    rng = np.random.default_rng(30 + mode)
    if mode == 7:      # rank 1 of the page's example: last batch is a band (pre 6, next -2)
        q_lens, kv_lens, pre, nxt = [3, 2], [3, 6], 6, -2
        masks = [causal_rd(3, 3), band_rd(2, 6, pre, nxt)]
    else:              # rank 2: first batch is a band (pre 4, next 1), the rest leftUpCausal
        q_lens, kv_lens, pre, nxt = [3, 5, 4], [4, 5, 4], 4, 1
        masks = [band_rd(3, 4, pre, nxt), np.triu(np.ones((5, 5), bool), 1), np.triu(np.ones((4, 4), bool), 1)]
    qs, ks, vs, q, k, v, cq, ck = _tnd_case(rng, q_lens, kv_lens, N=2, Nkv=1, D=32)
    att = torch_npu.npu_fusion_attention(q, k, v, 2, "TND", atten_mask=COMPRESSED, sparse_mode=mode,
                                         pre_tockens=pre, next_tockens=nxt, actual_seq_qlen=cq,
                                         actual_seq_kvlen=ck)[0].numpy()
    t = 0
    for b, sq in enumerate(q_lens):
        ref = ref_attention(_bnsd(qs[b]), _bnsd(ks[b]), _bnsd(vs[b]), 1.0, masks[b][None, None])[0]
        assert_close(_bnsd(att[t:t + sq]), ref, np.float16)
        t += sq


# ----------------------------------------------------------------------------------------------
# pse, sink, dropout
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["BNSS", "BN1S", "1NSS"])
def test_pse_is_added_after_scaling(sim, form):
    rng = np.random.default_rng(8)
    B, N, Sq, Skv = 2, 2, 21, 30
    q, k, v = _fa_case(rng, B, N, Sq, Skv)
    shape = {"BNSS": (B, N, Sq, Skv), "BN1S": (B, N, 1, Skv), "1NSS": (1, N, Sq, Skv)}[form]
    pse = rand(rng, shape)
    att = torch_npu.npu_fusion_attention(q, k, v, N, "BNSD", pse=pse, scale=0.3)[0]
    assert_close(att.numpy(), ref_attention(q, k, v, 0.3, pse=pse)[0], np.float16)


def test_alibi_compressed_pse_is_expanded(sim):
    rng = np.random.default_rng(9)
    S, N = 1100, 1
    q, k, v = rand(rng, (1, N, S, 16)), rand(rng, (1, N, S, 16)), rand(rng, (1, N, S, 16))
    slope = 0.05
    i, j = np.arange(S)[:, None], np.arange(S)[None]
    full = (-slope * np.abs(i - j)).astype(np.float16)[None, None]
    att = torch_npu.npu_fusion_attention(q, k, v, N, "BNSD", pse=full[:, :, -1024:], scale=0.25,
                                         atten_mask=COMPRESSED, sparse_mode=3)[0]
    assert_close(att.numpy(), ref_attention(q, k, v, 0.25, causal_rd(S, S), pse=full)[0], np.float16)


def test_sink_joins_the_softmax_sum(sim):
    rng = np.random.default_rng(11)
    q, k, v = _fa_case(rng, B=1, N=4, Sq=16, Skv=16, D=64)
    sink = np.linspace(-0.2, 0.2, 4).astype(np.float32)
    att = torch_npu.npu_fusion_attention(q, k, v, 4, "BNSD", sink=sink, scale=0.125)[0]
    assert_close(att.numpy(), ref_attention(q, k, v, 0.125, sink=sink)[0], np.float16)


def test_external_dropout_mask_bits(sim):
    rng = np.random.default_rng(12)
    B, N, Sq, Skv = 1, 2, 17, 24
    q, k, v = _fa_case(rng, B, N, Sq, Skv)
    keep = rng.random((B, N, Sq, Skv)) < 0.9
    packed = np.packbits(keep.reshape(-1), bitorder="little")
    out = torch_npu.npu_fusion_attention(q, k, v, N, "BNSD", keep_prob=0.9, dropout_mask=packed, seed=42, offset=7)
    ref, m, l = ref_attention(q, k, v, 1.0, drop=keep, keep_prob=0.9)
    assert_close(out[0].numpy(), ref, np.float16)
    np.testing.assert_allclose(out[2].numpy()[..., 0], l, rtol=1e-4)          # sum taken before dropout
    assert list(out[4:]) == [42, 7, B * N * Sq * Skv]


def test_generated_dropout_is_deterministic_in_seed_and_offset(sim):
    rng = np.random.default_rng(13)
    q, k, v = _fa_case(rng, B=1, N=2, Sq=32, Skv=32)
    run = lambda seed, offset: torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", keep_prob=0.5, seed=seed,
                                                              offset=offset)[0].numpy()
    a, b, c, d = run(1, 0), run(1, 0), run(2, 0), run(1, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    nodrop = torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD")[0].numpy()
    assert not np.array_equal(a, nodrop)


# ----------------------------------------------------------------------------------------------
# documented rules
# ----------------------------------------------------------------------------------------------
def _small(rng):
    return _fa_case(rng, B=1, N=2, Sq=8, Skv=8, D=16)


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(input_layout="NSD"), "input_layout", "must be one of"),
    (dict(head_num=3), "head_num", "must equal the N axis"),
    (dict(keep_prob=0.0), "keep_prob", r"\(0, 1\]"),
    (dict(sparse_mode=7), "sparse_mode", "must be in"),
    (dict(sparse_mode=2, atten_mask=np.zeros((8, 8), bool)), "atten_mask", "2048"),
    (dict(atten_mask=np.zeros((2, 8, 8), bool)), "atten_mask", "shape must be one of"),
    (dict(sparse_mode=6, atten_mask=np.zeros((3072, 2048), bool)), "prefix", "one prefix length per batch"),
    (dict(sparse_mode=6, atten_mask=np.zeros((3072, 2048), bool), prefix=[9]), "prefix", r"must be in \[0, 8\]"),
    (dict(padding_mask=np.zeros((1,), np.float16)), "padding_mask", "not supported"),
    (dict(actual_seq_qlen=[8], actual_seq_kvlen=[8]), "actual_seq_qlen", "TND"),
    (dict(softmax_layout="TND"), "softmax_layout", "needs input_layout TND"),
    (dict(sink=np.zeros(3, np.float32)), "sink", "head_num"),
    (dict(atten_mask=np.zeros((8, 8), bool), next_tockens=-9, pre_tockens=20), "next_tockens", "< Skv"),
    (dict(pse=np.zeros((1, 2, 5, 8), np.float16)), "pse", "shape must be"),
])
def test_documented_constraints_raise_naming_op_and_argument(sim, kwargs, arg, rule):
    q, k, v = _small(np.random.default_rng(0))
    args = dict(head_num=2, input_layout="BNSD")
    args.update(kwargs)
    with pytest.raises(OpError, match=rf"{FA}: argument '{arg}': .*{rule}"):
        torch_npu.npu_fusion_attention(q, k, v, **args)


def test_dtype_and_head_rules(sim):
    rng = np.random.default_rng(0)
    q, k, v = _small(rng)
    with pytest.raises(TypeError, match=f"{FA}: 'query', 'key' and 'value' must have the same dtype"):
        torch_npu.npu_fusion_attention(q, k.astype(BF16), v, 2, "BNSD")
    with pytest.raises(TypeError, match=f"{FA}: argument 'query' has dtype int8"):
        torch_npu.npu_fusion_attention(q.astype(np.int8), k, v, 2, "BNSD")
    with pytest.raises(OpError, match=f"{FA}: argument 'key': query heads .* multiple of key/value heads"):
        torch_npu.npu_fusion_attention(rand(rng, (1, 3, 8, 16)), k, v, 3, "BNSD")
    with pytest.raises(OpError, match=f"{FA}: argument 'query': head dim must be in"):
        big = rand(rng, (1, 1, 2, 800))
        torch_npu.npu_fusion_attention(big, big, big, 1, "BNSD")
    with pytest.raises(OpError, match=f"{FA}: argument 'actual_seq_qlen': cumulative lengths must not decrease"):
        x = rand(rng, (10, 2, 16))
        torch_npu.npu_fusion_attention(x, x, x, 2, "TND", actual_seq_qlen=[6, 4], actual_seq_kvlen=[4, 8])


def test_not_on_unlisted_products():
    with Simulator("Ascend910A"):
        q = np.zeros((1, 1, 4, 16), np.float16)
        with pytest.raises(ValueError, match="npu_fusion_attention is not supported on Ascend910A"):
            torch_npu.npu_fusion_attention(q, q, q, 1, "BNSD")


# ----------------------------------------------------------------------------------------------
# simulated time (Ascend910B2, meta mode)
# ----------------------------------------------------------------------------------------------
def _fa_time(S, *, causal=False, N=2, D=128, B=1):
    with Simulator("Ascend910B2", mode="meta", trace="ops") as s:
        x = torch_npu.empty_with_format((B, N, S, D), "float16")
        kw = dict(atten_mask=torch_npu.empty_with_format((2048, 2048), "bool"), sparse_mode=2) if causal else {}
        out = torch_npu.npu_fusion_attention(x, x, x, N, "BNSD", scale=D ** -0.5, **kw)
        (row,) = s.report().ops
    return row, out


def quadratic_growth_rows(S, N):
    """Full attention at S and 2S, and causal attention at 2S (B=1, D=128): three report rows and
    the 2S output."""
    t1, _ = _fa_time(S, N=N)
    t2, out = _fa_time(2 * S, N=N)
    c2, _ = _fa_time(2 * S, causal=True, N=N)
    return t1, t2, c2, out


def check_quadratic_growth(S, N, t1, t2, c2, out):
    assert 3.5 <= t2.duration_us / t1.duration_us <= 4.3
    assert 0.4 <= c2.duration_us / t2.duration_us <= 0.6
    chip = get_chip("Ascend910B2")
    assert t2.core_type == "MIX" and t2.block_dim == chip.cores.aic
    assert t2.flops == pytest.approx(4 * N * (2 * S) ** 2 * 128, rel=1e-6)     # QK^T and PV, every tile
    assert c2.flops < 0.55 * t2.flops
    assert out[0].shape == (1, N, 2 * S, 128) and out[0].is_meta


def test_time_grows_quadratically_and_causal_is_half_the_work():
    # B=1, N=3, D=128: S=2048 -> 4096 is 48 -> 96 q tiles of 128 rows, two and four whole rounds of
    # the 24 cube cores, each over twice the keys: four times the work on busy cores in both (at
    # N=2 the rounds would be part-filled, 32 and 64 tiles). The S=4096 -> 8192, N=2 case is in
    # benchmarks/big_cases.py.
    check_quadratic_growth(2048, 3, *quadratic_growth_rows(2048, 3))


def test_meta_mode_gives_the_same_shapes_and_time_as_full_mode():
    rng = np.random.default_rng(3)
    q, k, v = _fa_case(rng, B=2, N=4, Sq=200, Skv=300, D=64)
    mask = np.zeros((2, 1, 200, 300), bool)

    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            args = (q, k, v) if mode == "full" else tuple(torch_npu.empty_with_format(x.shape, "float16")
                                                          for x in (q, k, v))
            m = mask if mode == "full" else torch_npu.empty_with_format(mask.shape, "bool")
            outs = torch_npu.npu_fusion_attention(*args, 4, "BNSD", atten_mask=m, keep_prob=0.9, pre_tockens=50,
                                                  next_tockens=0)
            rows = [(r.name, r.duration_us, r.bytes_read, r.bytes_written, r.core_type) for r in s.report().ops]
            # the tensors (seed, offset, numels are Python ints in full mode, values unknown in meta mode)
            return [(o.shape, o.dtype.name) for o in outs[:4]], rows
    full, meta = run("full"), run("meta")
    assert full == meta
    assert [r[4] for r in full[1]] == ["AIV", "MIX"]      # DropOutGenMask, then the attention kernel


def test_the_tiling_is_a_parameter_set_a_study_can_change():
    from ascend_sim.ops import get_op
    from ascend_sim.ops.study import plan_for, tiling_for
    shape = (1, 2, 1024, 128)

    def run(tiling=None):
        with Simulator("Ascend910B2", mode="meta", trace="ops") as s:
            x = torch_npu.empty_with_format(shape, "float16")
            if tiling is None:
                torch_npu.npu_fusion_attention(x, x, x, 2, "BNSD")
            else:
                with s.tiling(FA, tiling):
                    torch_npu.npu_fusion_attention(x, x, x, 2, "BNSD")
            (row,) = s.report().ops
            return row
    small_tiling = FlashAttentionTiling(q_tile=64, kv_tile=64)
    default, small = run(), run(small_tiling)
    assert "q_tile=128 kv_tile=128" in default.attrs["tiling"] and "q_tile=64 kv_tile=64" in small.attrs["tiling"]
    assert small.duration_us != default.duration_us
    # the override ends with its block: the next simulator plans with the op's own choice again
    assert run().duration_us == default.duration_us
    # the same study without a simulator: the op's own choice, and the kernels under a user tiling
    args = dict(query=(shape, "float16"), key=(shape, "float16"), value=(shape, "float16"), head_num=2,
                input_layout="BNSD")
    own = tiling_for(FA, "Ascend910B2", **args)
    assert (own.q_tile, own.kv_tile) == (128, 128)
    (plan,) = plan_for(FA, "Ascend910B2", small_tiling, **args)
    assert (plan.tiling.q_tile, plan.tiling.kv_tile) == (64, 64)
    # 1024 query rows x 2 heads in units of 64 rows: 32 units, dealt to at most every cube core
    assert plan.tiling.block_dim == min(get_chip("Ascend910B2").cores.aic, 2 * 1024 // 64)
    assert not hasattr(get_op(FA), "tiling")          # nothing on the shared op object
    with pytest.raises(ISAError, match="L0C"):
        run(FlashAttentionTiling(q_tile=256, kv_tile=512))


@pytest.mark.parametrize("arg, value, got", [("scale", "x", "str"), ("scale", object(), "object"),
                                             ("keep_prob", "0.9", "str"), ("keep_prob", None, "NoneType"),
                                             ("scale", True, "bool")])
def test_float_options_that_are_not_numbers_name_the_argument(sim, arg, value, got):
    """Found by the fuzz test: a Python object in scale / keep_prob raised float()'s unnamed error."""
    q, k, v = _small(np.random.default_rng(0))
    with pytest.raises(TypeError, match=f"^{FA}: argument '{arg}' must be a number, got {got}$"):
        torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", **{arg: value})
    assert torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD", scale=np.float32(0.5), keep_prob=1)[0].shape == q.shape


@pytest.mark.parametrize("value", ["4,8", 8, [4.0, 8], [4, "8"], [True, 8]])
def test_int_list_options_that_are_not_lists_of_ints_name_the_argument(sim, value):
    x = rand(np.random.default_rng(0), (12, 2, 16))
    with pytest.raises(TypeError, match=f"^{FA}: argument 'actual_seq_kvlen' must be a list of ints"):
        torch_npu.npu_fusion_attention(x, x, x, 2, "TND", actual_seq_qlen=[4, 12], actual_seq_kvlen=value)


def test_zero_head_dims_are_rejected_naming_the_tensor(sim):
    """Found by the fuzz test: value with D = 0 reached planning (an ISAError from a 0-byte GM
    access). The page's D range starts at 1, and softmax_max/sum are not empty, so it is no
    all-empty call: an OpError naming the tensor."""
    q = rand(np.random.default_rng(0), (1, 2, 8, 16))
    with pytest.raises(OpError, match=f"^{FA}: argument 'value': head dim Dv must be in \\[1, Dk = 16\\], got 0"):
        torch_npu.npu_fusion_attention(q, q, np.zeros((1, 2, 8, 0), np.float16), 2, "BNSD")
    z = np.zeros((1, 2, 8, 0), np.float16)
    with pytest.raises(OpError, match=f"^{FA}: argument 'query': head dim must be in \\[1, 768\\], got 0"):
        torch_npu.npu_fusion_attention(z, z, z, 2, "BNSD")
