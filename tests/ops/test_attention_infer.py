"""npu_prompt_flash_attention, npu_incre_flash_attention and npu_fused_infer_attention_score: numbers
against a float64 reference written from the pages' formulas, the pages' rules, and decode timing."""
import contextlib

import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.dtypes import pack_int4
from ascend_sim.ops import OpError

from .test_attention import BF16, COMPRESSED, assert_close, causal_rd, rand, ref_attention, to_layout

PFA, IFA, FIA = "npu_prompt_flash_attention", "npu_incre_flash_attention", "npu_fused_infer_attention_score"


@pytest.fixture
def sim():
    with Simulator("Ascend910B2") as s:
        yield s


def lengths_mask(B, Sq, Skv, q_lens, kv_lens):
    """True where a row or key lies beyond the batch's actual length."""
    i, j = np.arange(Sq)[:, None], np.arange(Skv)[None]
    return np.stack([(i >= q_lens[b]) | (j >= kv_lens[b]) for b in range(B)])[:, None]


def ref_lse(q, k, scale, masked):
    q, k = q.astype(np.float64), k.astype(np.float64)
    g = q.shape[1] // k.shape[1]
    s = np.einsum("bnqd,bnkd->bnqk", q, np.repeat(k, g, axis=1)) * scale
    s = np.where(masked, -np.inf, s)
    m = s.max(-1, keepdims=True)
    return (m + np.log(np.exp(s - m).sum(-1, keepdims=True)))[..., 0]


def case(rng, B=2, N=4, Nkv=2, Sq=37, Skv=50, D=64, dtype=np.float16):
    return rand(rng, (B, N, Sq, D), dtype), rand(rng, (B, Nkv, Skv, D), dtype), rand(rng, (B, Nkv, Skv, D), dtype)


# ================================================================================================
# npu_prompt_flash_attention
# ================================================================================================
@pytest.mark.parametrize("layout", ["BSH", "BSND", "BNSD", "BNSD_BSND"])
def test_pfa_layouts_lengths_and_default_causal_band(sim, layout):
    rng = np.random.default_rng(1)
    B, N, Nkv, Sq, Skv = 2, 4, 2, 37, 50
    q, k, v = case(rng, B, N, Nkv, Sq, Skv)
    q_lens, kv_lens = [30, 37], [50, 41]
    user = rng.random((Sq, Skv)) < 0.2
    user[:, 0] = False
    lay = layout.split("_")[0]
    out = torch_npu.npu_prompt_flash_attention(
        to_layout(q, lay), to_layout(k, lay), to_layout(v, lay), atten_mask=user, actual_seq_lengths=q_lens,
        actual_seq_lengths_kv=kv_lens, num_heads=N, num_key_value_heads=Nkv, input_layout=layout, scale_value=0.125)
    i, j = np.arange(Sq)[:, None], np.arange(Skv)[None]
    masked = user[None, None] | (j > i)[None, None] | lengths_mask(B, Sq, Skv, q_lens, kv_lens)   # next_tokens=0
    ref = ref_attention(q, k, v, 0.125, masked)[0]
    got = out.numpy()
    if layout == "BNSD_BSND":
        assert got.shape == (B, Sq, N, 64)
        got = got.transpose(0, 2, 1, 3)
    else:
        assert got.shape == to_layout(q, lay).shape
        got = {"BSH": lambda y: y.reshape(B, Sq, N, 64).transpose(0, 2, 1, 3),
               "BSND": lambda y: y.transpose(0, 2, 1, 3), "BNSD": lambda y: y}[lay](got)
    assert_close(got, ref, np.float16)
    assert not got[0, :, 30:].any()                     # rows beyond the actual length stay 0


@pytest.mark.parametrize("mode", [1, 2, 3, 4])
def test_pfa_sparse_modes(sim, mode):
    rng = np.random.default_rng(10 + mode)
    B, N, Sq, Skv = 2, 2, 37, 50
    q, k, v = case(rng, B, N, N, Sq, Skv, D=32)
    kv_lens = [50, 45]
    pre, nxt = 12, 3
    i, j = np.arange(Sq)[:, None], np.arange(Skv)[None]
    if mode == 1:
        mask = rng.random((B, 1, Sq, Skv)) < 0.3
        mask[..., 0] = False
        masked = mask
    else:
        mask = COMPRESSED[None]
        rules = {2: lambda n: j > i,                                   # leftUpCausal
                 3: lambda n: j > i + n - Sq,                          # rightDownCausal over the actual Skv
                 4: lambda n: (j > i + n - Sq + nxt) | (j < i + n - Sq - pre)}
        masked = np.stack([rules[mode](n) for n in kv_lens])[:, None]
    masked = masked | lengths_mask(B, Sq, Skv, [Sq] * B, kv_lens)
    out = torch_npu.npu_prompt_flash_attention(q, k, v, atten_mask=mask, actual_seq_lengths_kv=kv_lens, num_heads=N,
                                               input_layout="BNSD", scale_value=0.3, sparse_mode=mode,
                                               pre_tokens=pre, next_tokens=nxt)
    assert_close(out.numpy(), ref_attention(q, k, v, 0.3, masked)[0], np.float16)


def test_pfa_tnd_and_pse_shift(sim):
    rng = np.random.default_rng(2)
    q_lens, kv_lens = [7, 20], [9, 26]
    N, D = 2, 64
    qs = [rand(rng, (n, N, D)) for n in q_lens]
    ks = [rand(rng, (n, N, D)) for n in kv_lens]
    vs = [rand(rng, (n, N, D)) for n in kv_lens]
    out = torch_npu.npu_prompt_flash_attention(np.concatenate(qs), np.concatenate(ks), np.concatenate(vs),
                                               actual_seq_lengths=list(np.cumsum(q_lens)),
                                               actual_seq_lengths_kv=list(np.cumsum(kv_lens)), num_heads=N,
                                               input_layout="TND", scale_value=0.125).numpy()
    t = 0
    for b in range(2):
        bn = lambda x: x.transpose(1, 0, 2)[None]
        assert_close(bn(out[t:t + q_lens[b]]), ref_attention(bn(qs[b]), bn(ks[b]), bn(vs[b]), 0.125)[0], np.float16)
        t += q_lens[b]
    q, k, v = case(rng, 1, 2, 2, 21, 30)
    pse = rand(rng, (1, 2, 24, 32))                     # padded past Q_S and KV_S
    out = torch_npu.npu_prompt_flash_attention(q, k, v, pse_shift=pse, num_heads=2, input_layout="BNSD",
                                               scale_value=0.2)
    assert_close(out.numpy(), ref_attention(q, k, v, 0.2, pse=pse[:, :, :21, :30])[0], np.float16)


@pytest.mark.parametrize("per_channel", [False, True])
def test_pfa_int8_output(sim, per_channel):
    rng = np.random.default_rng(3)
    q, k, v = case(rng, 1, 2, 2, 17, 40, D=32)
    n = 2 * 32 if per_channel else 1
    scale = rng.uniform(20, 40, n).astype(np.float32)
    offset = rng.uniform(-3, 3, n).astype(np.float32)
    out = torch_npu.npu_prompt_flash_attention(q, k, v, quant_scale2=scale, quant_offset2=offset, num_heads=2,
                                               input_layout="BNSD", scale_value=0.1)
    assert out.dtype.name == "int8"
    ref = ref_attention(q, k, v, 0.1)[0]
    s, o = (scale.reshape(1, 2, 1, 32), offset.reshape(1, 2, 1, 32)) if per_channel else (scale[0], offset[0])
    want = np.clip(np.rint(ref * s + o), -128, 127)
    assert np.abs(out.numpy().astype(np.int32) - want).max() <= 1


def test_pfa_full_int8_quantisation(sim):
    rng = np.random.default_rng(4)
    q, k, v = (rng.integers(-20, 20, (1, 2, 16, 32)).astype(np.int8) for _ in range(3))
    deq1, q1, deq2 = np.float32(0.01), np.float32(127.0), np.float32(0.05 / 127)
    out = torch_npu.npu_prompt_flash_attention(q, k, v, deq_scale1=np.array([deq1]), quant_scale1=np.array([q1]),
                                               deq_scale2=np.array([deq2]), num_heads=2, input_layout="BNSD",
                                               scale_value=0.5)
    assert out.dtype.name == "float16"
    # S = (Q K^T) * dequant_scale1 * scale; P = exp(S - max) quantised by quant_scale1; O = (P V) * deq2 / sum
    s = np.einsum("bnqd,bnkd->bnqk", q.astype(np.float64), k.astype(np.float64)) * deq1 * 0.5
    p = np.exp(s - s.max(-1, keepdims=True))
    pq = np.clip(np.rint(p * q1), -128, 127)
    ref = (pq @ v.astype(np.float64)) * deq2 / p.sum(-1, keepdims=True)
    assert_close(out.numpy(), ref, np.float16)
    packed = np.array([np.float32(deq1).view(np.uint32)], np.int64)          # npu_trans_quant_param's form
    again = torch_npu.npu_prompt_flash_attention(q, k, v, deq_scale1=packed, quant_scale1=np.array([q1]),
                                                 deq_scale2=np.array([deq2]), num_heads=2, input_layout="BNSD",
                                                 scale_value=0.5)
    np.testing.assert_array_equal(again.numpy(), out.numpy())


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(sparse_mode=5), "sparse_mode", "5-8 are not supported"),
    (dict(sparse_mode=3), "atten_mask", "needs atten_mask"),
    (dict(sparse_mode=2, atten_mask=np.zeros((64, 64), bool)), "atten_mask", "2048"),
    (dict(quant_offset2=np.zeros(1, np.float32)), "quant_offset2", "needs quant_scale2"),
    (dict(deq_scale1=np.ones(1, np.float32)), "deq_scale1", "only for int8"),
    (dict(num_key_value_heads=3), "num_key_value_heads", "must divide num_heads"),
    (dict(actual_seq_lengths=[17]), "actual_seq_lengths", r"must be in \[0, 16\]"),
    (dict(actual_seq_lengths_kv=[40]), "actual_seq_lengths_kv", r"must be in \[0, 24\]"),
    (dict(atten_mask=np.zeros((16, 20), bool)), "atten_mask", "needs at least 16 x 24"),
    (dict(input_layout="TND"), "query", "must be 3-D"),
    (dict(quant_scale2=np.ones(5, np.float32)), "quant_scale2", "per-channel"),
    (dict(quant_scale2=np.ones(1, np.float32), quant_offset2=np.ones(1, np.float32), sparse_mode=3,
          atten_mask=COMPRESSED, q_len=30), "quant_offset2", "without keys"),   # Sq > Skv: rows without keys
])
def test_pfa_documented_constraints(sim, kwargs, arg, rule):
    rng = np.random.default_rng(0)
    kwargs = dict(kwargs)
    q, k, v = case(rng, 1, 4, 4, kwargs.pop("q_len", 16), 24, D=32)
    args = dict(num_heads=4, input_layout="BNSD")
    args.update(kwargs)
    with pytest.raises(OpError, match=rf"{PFA}: argument '{arg}': .*{rule}"):
        torch_npu.npu_prompt_flash_attention(q, k, v, **args)


def test_pfa_dtype_rules(sim):
    rng = np.random.default_rng(0)
    q, k, v = case(rng, 1, 2, 2, 8, 8, D=32)
    with pytest.raises(TypeError, match=rf"{PFA}: a bfloat16 pse_shift needs a bfloat16 query"):
        torch_npu.npu_prompt_flash_attention(q, k, v, pse_shift=rand(rng, (1, 2, 8, 8), BF16), num_heads=2,
                                             input_layout="BNSD")
    with pytest.raises(TypeError, match=rf"{PFA}: 'key'/'value' dtype int8 does not go with query float16"):
        torch_npu.npu_prompt_flash_attention(q, k.astype(np.int8), v.astype(np.int8), num_heads=2, input_layout="BNSD")
    with pytest.raises(OpError, match=rf"{PFA}: argument 'deq_scale1': is required"):
        i8 = q.astype(np.int8)
        torch_npu.npu_prompt_flash_attention(i8, i8, i8, num_heads=2, input_layout="BNSD")


def test_pfa_on_310p_is_float16_only():
    with Simulator("Ascend310P3"):
        rng = np.random.default_rng(0)
        q, k, v = case(rng, 1, 2, 2, 20, 20, D=32)
        out = torch_npu.npu_prompt_flash_attention(q, k, v, num_heads=2, input_layout="BNSD", scale_value=0.2)
        assert_close(out.numpy(), ref_attention(q, k, v, 0.2)[0], np.float16)
        with pytest.raises(TypeError, match=rf"{PFA}: argument 'query' has dtype bfloat16"):
            torch_npu.npu_prompt_flash_attention(q.astype(BF16), k.astype(BF16), v.astype(BF16), num_heads=2,
                                                 input_layout="BNSD")
        with pytest.raises(OpError, match=rf"{PFA}: argument 'sparse_mode': only 0"):
            torch_npu.npu_prompt_flash_attention(q, k, v, num_heads=2, input_layout="BNSD", sparse_mode=1,
                                                 atten_mask=np.zeros((20, 20), bool))


# ================================================================================================
# npu_incre_flash_attention
# ================================================================================================
@pytest.mark.parametrize("layout", ["BSH", "BSND", "BNSD"])
@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_ifa_layouts_gqa_lengths_and_mask(sim, layout, dtype):
    rng = np.random.default_rng(5)
    B, N, Nkv, Skv, D = 2, 8, 2, 50, 64
    q, k, v = case(rng, B, N, Nkv, 1, Skv, D, dtype)
    kv_lens = [50, 23]
    mask = rng.random((B, Skv)) < 0.2
    mask[:, 0] = False
    out = torch_npu.npu_incre_flash_attention(to_layout(q, layout), to_layout(k, layout), to_layout(v, layout),
                                              atten_mask=mask, actual_seq_lengths=kv_lens, num_heads=N,
                                              num_key_value_heads=Nkv, input_layout=layout, scale_value=0.125)
    assert out.shape == to_layout(q, layout).shape and out.numpy().dtype == np.dtype(dtype)
    masked = mask[:, None, None] | lengths_mask(B, 1, Skv, [1, 1], kv_lens)
    ref = to_layout(ref_attention(q, k, v, 0.125, masked)[0], layout)
    assert_close(out.numpy(), ref, dtype)


def _paged(rng, kv, block_size, cache, table=None):
    """kv [B, Nkv, S, D] -> (cache, block_table): the blocks of all batches shuffled over a cache
    with a few spare blocks (or placed by the given table)."""
    B, Nkv, S, D = kv.shape
    nb = -(-S // block_size)
    if table is None:
        table = rng.permutation(B * nb + 3)[:B * nb].reshape(B, nb).astype(np.int32)
    pad = np.zeros((B, Nkv, nb * block_size, D), kv.dtype)
    pad[:, :, :S] = kv
    blocks = pad.reshape(B, Nkv, nb, block_size, D).transpose(0, 2, 1, 3, 4)      # [B, nb, Nkv, bs, D]
    store = np.zeros((B * nb + 3, Nkv, block_size, D), kv.dtype)
    store[table.reshape(-1)] = blocks.reshape(B * nb, Nkv, block_size, D)
    if cache == "BSH":
        store = store.transpose(0, 2, 1, 3).reshape(-1, block_size, Nkv * D)
    return store, table


@pytest.mark.parametrize("cache", ["BSH", "BNSD"])
def test_ifa_paged_kv_with_a_shuffled_block_table(sim, cache):
    rng = np.random.default_rng(6)
    B, N, Nkv, D, bs = 3, 4, 2, 64, 16
    kv_lens = [70, 16, 33]
    q, k, v = case(rng, B, N, Nkv, 1, 80, D)
    kc, table = _paged(rng, k, bs, cache)
    vc, _ = _paged(rng, v, bs, cache, table)
    out = torch_npu.npu_incre_flash_attention(q, kc, vc, block_table=table, block_size=bs, actual_seq_lengths=kv_lens,
                                              num_heads=N, num_key_value_heads=Nkv, input_layout="BNSD",
                                              scale_value=0.125)
    masked = lengths_mask(B, 1, 80, [1] * B, kv_lens)
    assert_close(out.numpy(), ref_attention(q, k, v, 0.125, masked)[0], np.float16)


def test_ifa_int8_kv_cache_with_per_channel_antiquant(sim):
    rng = np.random.default_rng(7)
    B, N, Nkv, S, D = 2, 4, 2, 40, 32
    q = rand(rng, (B, N, 1, D))
    k8, v8 = (rng.integers(-100, 100, (B, Nkv, S, D)).astype(np.int8) for _ in range(2))
    scale = rng.uniform(0.005, 0.02, (2, Nkv, 1, D)).astype(np.float16)
    offset = rng.uniform(-0.1, 0.1, (2, Nkv, 1, D)).astype(np.float16)
    out = torch_npu.npu_incre_flash_attention(q, k8, v8, antiquant_scale=scale, antiquant_offset=offset,
                                              num_heads=N, num_key_value_heads=Nkv, input_layout="BNSD",
                                              scale_value=0.2)
    kf = k8 * scale[0].astype(np.float64) + offset[0]          # the page: x * scale + offset
    vf = v8 * scale[1].astype(np.float64) + offset[1]
    assert_close(out.numpy(), ref_attention(q, kf, vf, 0.2)[0], np.float16)


def test_ifa_kv_left_padding(sim):
    rng = np.random.default_rng(8)
    B, N, S, D = 2, 2, 30, 32
    q, k, v = case(rng, B, N, N, 1, S, D)
    lens, pad = [10, 25], 3
    out = torch_npu.npu_incre_flash_attention(q, k, v, actual_seq_lengths=lens, kv_padding_size=np.array([pad]),
                                              num_heads=N, input_layout="BNSD", scale_value=0.3)
    j = np.arange(S)
    masked = np.stack([(j < S - pad - n) | (j >= S - pad) for n in lens])[:, None, None]
    assert_close(out.numpy(), ref_attention(q, k, v, 0.3, masked)[0], np.float16)


def test_ifa_int8_output(sim):
    rng = np.random.default_rng(9)
    q, k, v = case(rng, 2, 4, 4, 1, 20, 32)
    out = torch_npu.npu_incre_flash_attention(q, k, v, quant_scale2=np.array([30.0], np.float32), num_heads=4,
                                              input_layout="BNSD", scale_value=0.2)
    want = np.clip(np.rint(ref_attention(q, k, v, 0.2)[0] * 30), -128, 127)
    assert out.dtype.name == "int8" and np.abs(out.numpy().astype(int) - want).max() <= 1


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(q_len=2), "query", "must be 1"),
    (dict(block_table=np.zeros((2, 4), np.int32), block_size=16), "actual_seq_lengths", "is required"),
    (dict(block_table=np.zeros((2, 4), np.int32), block_size=20, actual_seq_lengths=[10, 10]), "block_size", ""),
    (dict(block_table=np.zeros((2, 1), np.int32), block_size=16, actual_seq_lengths=[40, 10]), "block_table",
     "needs 3"),
    (dict(kv_int8=True), "antiquant_scale", "is required"),
    (dict(kv_int8=True, antiquant_scale=np.ones((2, 2, 32), np.float16)), "antiquant_scale", "per-channel"),
    (dict(num_heads=3), "num_heads", "must equal the N axis"),
    (dict(kv_padding_size=np.array([1, 2, 3])), "kv_padding_size", "1 or B=2"),
    (dict(pse_shift=np.zeros((2, 2, 1, 10), np.float16)), "pse_shift", ">= KV_S=16"),
])
def test_ifa_documented_constraints(sim, kwargs, arg, rule):
    rng = np.random.default_rng(0)
    kwargs = dict(kwargs)
    q, k, v = case(rng, 2, 2, 2, kwargs.pop("q_len", 1), 16, 32)
    if kwargs.pop("kv_int8", False):
        k, v = k.astype(np.int8), v.astype(np.int8)
    if "block_table" in kwargs:
        k = v = np.zeros((8, 16 if kwargs["block_size"] == 16 else 20, 64), np.float16)
    args = dict(num_heads=2, input_layout="BNSD")
    args.update(kwargs)
    with pytest.raises(OpError, match=rf"{IFA}: argument '{arg}': .*{rule}"):
        torch_npu.npu_incre_flash_attention(q, k, v, **args)


# ================================================================================================
# npu_fused_infer_attention_score
# ================================================================================================
def test_fia_is_pfa_for_prefill_and_ifa_for_decode_and_returns_lse(sim):
    rng = np.random.default_rng(11)
    q, k, v = case(rng, 2, 4, 2, 37, 50)
    kw = dict(num_heads=4, num_key_value_heads=2, input_layout="BNSD")
    pfa = torch_npu.npu_prompt_flash_attention(q, k, v, scale_value=0.125, **kw).numpy()
    out, lse = torch_npu.npu_fused_infer_attention_score(q, k, v, scale=0.125, softmax_lse_flag=True, **kw)
    np.testing.assert_array_equal(out.numpy(), pfa)
    assert lse.shape == (2, 4, 37, 1) and lse.dtype.name == "float32"
    np.testing.assert_allclose(lse.numpy()[..., 0], ref_lse(q, k, 0.125, np.zeros((1, 1, 37, 50), bool)), rtol=1e-5,
                               atol=1e-5)
    qd = q[:, :, :1]
    ifa = torch_npu.npu_incre_flash_attention(qd, k, v, scale_value=0.125, actual_seq_lengths=[50, 20], **kw).numpy()
    out, lse = torch_npu.npu_fused_infer_attention_score(qd, k, v, scale=0.125, actual_seq_lengths_kv=[50, 20], **kw)
    np.testing.assert_array_equal(out.numpy(), ifa)
    assert lse.shape == (1,) and lse.numpy().tolist() == [0.0]       # softmax_lse_flag=False: placeholder


def test_fia_tnd_layouts_and_lse(sim):
    rng = np.random.default_rng(12)
    q_lens, kv_lens, N, D = [5, 12, 9], [7, 12, 20], 2, 128
    qs = [rand(rng, (n, N, D)) for n in q_lens]
    ks = [rand(rng, (n, N, D)) for n in kv_lens]
    vs = [rand(rng, (n, N, D)) for n in kv_lens]
    kw = dict(actual_seq_lengths=list(np.cumsum(q_lens)), actual_seq_lengths_kv=list(np.cumsum(kv_lens)),
              num_heads=N, scale=0.0884, softmax_lse_flag=True, atten_mask=COMPRESSED, sparse_mode=3)
    tnd, lse = torch_npu.npu_fused_infer_attention_score(np.concatenate(qs), np.concatenate(ks), np.concatenate(vs),
                                                         input_layout="TND", **kw)
    assert tnd.shape == (sum(q_lens), N, D) and lse.shape == (sum(q_lens), N, 1)
    ntd = torch_npu.npu_fused_infer_attention_score(np.concatenate(qs), np.concatenate(ks), np.concatenate(vs),
                                                    input_layout="TND_NTD", **kw)[0]
    np.testing.assert_array_equal(ntd.numpy(), tnd.numpy().transpose(1, 0, 2))
    back = torch_npu.npu_fused_infer_attention_score(*(np.concatenate(x).transpose(1, 0, 2) for x in (qs, ks, vs)),
                                                     input_layout="NTD_TND", **kw)[0]
    np.testing.assert_array_equal(back.numpy(), tnd.numpy())
    t = 0
    bn = lambda x: x.transpose(1, 0, 2)[None]
    for b in range(3):
        m = causal_rd(q_lens[b], kv_lens[b])[None, None]
        assert_close(bn(tnd.numpy()[t:t + q_lens[b]]), ref_attention(bn(qs[b]), bn(ks[b]), bn(vs[b]), 0.0884, m)[0],
                     np.float16)
        np.testing.assert_allclose(lse.numpy()[t:t + q_lens[b], :, 0].T,
                                   ref_lse(bn(qs[b]), bn(ks[b]), 0.0884, m)[0], rtol=1e-4, atol=1e-4)
        t += q_lens[b]


def test_fia_nbsd_output_layout(sim):
    rng = np.random.default_rng(13)
    q, k, v = case(rng, 2, 4, 4, 8, 30)
    out = torch_npu.npu_fused_infer_attention_score(to_layout(q, "BSH"), to_layout(k, "BSH"), to_layout(v, "BSH"),
                                                    num_heads=4, input_layout="BSH_NBSD", scale=0.1)[0]
    assert out.shape == (4, 2, 8, 64)
    assert_close(out.numpy().transpose(1, 0, 2, 3), ref_attention(q, k, v, 0.1)[0], np.float16)


def test_fia_mla_rope_with_a_paged_latent_cache(sim):
    rng = np.random.default_rng(14)
    B, N, D, R, bs = 2, 8, 512, 64, 16
    kv_lens = [40, 17]
    q, qr = rand(rng, (B, N, 1, D)), rand(rng, (B, N, 1, R))
    kv, kr = rand(rng, (B, 1, 48, D)), rand(rng, (B, 1, 48, R))
    kc, table = _paged(rng, kv, bs, "BNSD")
    krc, _ = _paged(rng, kr, bs, "BNSD", table)
    out = torch_npu.npu_fused_infer_attention_score(q, kc, kc, query_rope=qr, key_rope=krc, block_table=table,
                                                    block_size=bs, actual_seq_lengths_kv=kv_lens, num_heads=N,
                                                    num_key_value_heads=1, input_layout="BNSD", scale=0.05)[0]
    masked = lengths_mask(B, 1, 48, [1, 1], kv_lens)
    ref = ref_attention(np.concatenate([q, qr], -1), np.concatenate([kv, kr], -1), kv, 0.05, masked)[0]
    assert out.shape == (B, N, 1, D)
    assert_close(out.numpy(), ref, np.float16)


def test_fia_separate_per_token_antiquant_and_int4(sim):
    rng = np.random.default_rng(15)
    B, N, Nkv, S, D = 2, 4, 2, 24, 64
    q = rand(rng, (B, N, 1, D))
    k8, v8 = (rng.integers(-100, 100, (B, Nkv, S, D)).astype(np.int8) for _ in range(2))
    ks, vs = (rng.uniform(0.005, 0.02, (1, B, S)).astype(np.float32) for _ in range(2))
    out = torch_npu.npu_fused_infer_attention_score(q, k8, v8, key_antiquant_scale=ks, value_antiquant_scale=vs,
                                                    key_antiquant_mode=1, value_antiquant_mode=1, num_heads=N,
                                                    num_key_value_heads=Nkv, input_layout="BNSD", scale=0.1)[0]
    kf = k8 * ks.reshape(B, 1, S, 1).astype(np.float64)
    vf = v8 * vs.reshape(B, 1, S, 1).astype(np.float64)
    assert_close(out.numpy(), ref_attention(q, kf, vf, 0.1)[0], np.float16)
    k4, v4 = (rng.integers(-8, 8, (B, Nkv, S, D)) for _ in range(2))
    sc = rng.uniform(0.05, 0.2, (2, Nkv, 1, D)).astype(np.float16)
    out = torch_npu.npu_fused_infer_attention_score(q, pack_int4(k4), pack_int4(v4), antiquant_scale=sc, num_heads=N,
                                                    num_key_value_heads=Nkv, input_layout="BNSD", scale=0.1)[0]
    ref = ref_attention(q, k4 * sc[0].astype(np.float64), v4 * sc[1].astype(np.float64), 0.1)[0]
    assert_close(out.numpy(), ref, np.float16)


def test_fia_shared_prefix_and_left_padding(sim):
    rng = np.random.default_rng(16)
    B, N, Sq, Skv, P, D = 2, 2, 12, 20, 9, 64
    q, k, v = case(rng, B, N, N, Sq, Skv, D)
    kp, vp = rand(rng, (1, N, P, D)), rand(rng, (1, N, P, D))
    out = torch_npu.npu_fused_infer_attention_score(q, k, v, key_shared_prefix=kp, value_shared_prefix=vp,
                                                    actual_shared_prefix_len=[7], num_heads=N, input_layout="BNSD",
                                                    scale=0.125)[0]
    kk = np.concatenate([np.repeat(kp[:, :, :7], B, 0), k], 2)
    vv = np.concatenate([np.repeat(vp[:, :, :7], B, 0), v], 2)
    assert_close(out.numpy(), ref_attention(q, kk, vv, 0.125)[0], np.float16)
    q_lens, kv_lens = [8, 10], [15, 6]
    out = torch_npu.npu_fused_infer_attention_score(q, k, v, actual_seq_lengths=q_lens, actual_seq_lengths_kv=kv_lens,
                                                    query_padding_size=np.array([2]), kv_padding_size=np.array([1]),
                                                    num_heads=N, input_layout="BNSD", scale=0.125)[0].numpy()
    for b in range(B):
        q0, k0 = Sq - 2 - q_lens[b], Skv - 1 - kv_lens[b]
        ref = ref_attention(q[b:b + 1, :, q0:q0 + q_lens[b]], k[b:b + 1, :, k0:k0 + kv_lens[b]],
                            v[b:b + 1, :, k0:k0 + kv_lens[b]], 0.125)[0]
        assert_close(out[b:b + 1, :, q0:q0 + q_lens[b]], ref, np.float16)
        assert not out[b, :, :q0].any() and not out[b, :, q0 + q_lens[b]:].any()


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(query_rope=np.zeros((1, 2, 1, 64), np.float16)), "query_rope", "go together"),
    (dict(input_layout="BSH_NBSD"), "input_layout", "1 < Q_S <= 16"),
    (dict(key_antiquant_scale=np.ones(1, np.float16)), "key_antiquant_scale", "needs int8/int4 key and value"),
    (dict(softmax_lse_flag=True, inner_precise=2), "inner_precise", r"\(0, 1\)"),
    (dict(input_layout="TND"), "actual_seq_lengths", "is required"),
    (dict(block_table=np.zeros((1, 2), np.int32), block_size=16), "actual_seq_lengths_kv", "is required"),
])
def test_fia_documented_constraints(sim, kwargs, arg, rule):
    rng = np.random.default_rng(0)
    q, k, v = case(rng, 1, 2, 2, 1, 16, 64)
    args = dict(num_heads=2, input_layout="BNSD")
    args.update(kwargs)
    if args["input_layout"].startswith("BSH"):
        q, k, v = (to_layout(x, "BSH") for x in (q, k, v))
    if args["input_layout"] == "TND":
        q, k, v = (x[0].transpose(1, 0, 2) for x in (q, k, v))
    if "block_table" in args:
        k = v = np.zeros((4, 16, 128), np.float16)
    with pytest.raises(OpError, match=rf"{FIA}: argument '{arg}': .*{rule}"):
        torch_npu.npu_fused_infer_attention_score(q, k, v, **args)


def test_fia_mla_rules(sim):
    rng = np.random.default_rng(0)
    q, qr = rand(rng, (1, 4, 1, 512)), rand(rng, (1, 4, 1, 64))
    kv, kr = rand(rng, (1, 2, 16, 512)), rand(rng, (1, 2, 16, 64))
    with pytest.raises(OpError, match=rf"{FIA}: argument 'num_key_value_heads': MLA with D=512 needs one"):
        torch_npu.npu_fused_infer_attention_score(q, kv, kv, query_rope=qr, key_rope=kr, num_heads=4,
                                                  num_key_value_heads=2, input_layout="BNSD")
    with pytest.raises(OpError, match=rf"{FIA}: argument 'softmax_lse_flag': .*MLA"):
        torch_npu.npu_fused_infer_attention_score(q, kv[:, :1], kv[:, :1], query_rope=qr, key_rope=kr[:, :1],
                                                  num_heads=4, num_key_value_heads=1, input_layout="BNSD",
                                                  softmax_lse_flag=True)


# ================================================================================================
# decode timing
# ================================================================================================
def _decode_time(op, S, kv_dtype="float16", tiling=None, **kw):
    """Meta-mode decode row (B8 N32 Nkv8 D128, S keys); tiling: planned with sim.tiling(op, tiling)."""
    with Simulator("Ascend910B2", mode="meta", trace="ops") as s:
        B, N, Nkv, D = 8, 32, 8, 128
        q = torch_npu.empty_with_format((B, N, 1, D), "float16")
        k, v = (torch_npu.empty_with_format((B, Nkv, S, D), kv_dtype) for _ in range(2))
        extra = {}
        if kv_dtype == "int8":
            extra["antiquant_scale"] = torch_npu.empty_with_format((2, Nkv, 1, D), "float16")
        with s.tiling(op, tiling) if tiling is not None else contextlib.nullcontext():
            getattr(torch_npu, op)(q, k, v, num_heads=N, num_key_value_heads=Nkv, input_layout="BNSD", **extra,
                                   **kw)
        (row,) = s.report().ops
    return row


def decode_linearity_rows(S):
    """Decode rows (B8 N32 Nkv8 D128): IFA at S and 2S, IFA over an int8 cache and FIA at 2S."""
    return (_decode_time(IFA, S), _decode_time(IFA, 2 * S), _decode_time(IFA, 2 * S, "int8"),
            _decode_time(FIA, 2 * S))


def check_decode_linearity(S, a, b, c, f):
    assert a.core_type == b.core_type == "MIX"
    assert 1.7 <= b.duration_us / a.duration_us <= 2.3
    kv_bytes = 2 * 8 * 8 * (2 * S) * 128
    assert b.bytes_read >= 2 * kv_bytes and c.bytes_read < 0.6 * b.bytes_read
    assert f.duration_us == pytest.approx(b.duration_us, rel=0.05)


def test_decode_time_is_linear_in_the_cache_and_int8_reads_half():
    # a cache of 2048 -> 4096 keys is 8 -> 16 steps of the default kv_tile (256) per head, every
    # core busy (B x Nkv = 64 heads of keys for 24 cores); 4096 -> 8192 is in benchmarks/big_cases.py
    check_decode_linearity(2048, *decode_linearity_rows(2048))


def test_paged_decode_takes_the_same_time_in_meta_and_full_mode():
    rng = np.random.default_rng(17)
    B, N, Nkv, D, bs = 3, 8, 2, 64, 16
    q, k, v = case(rng, B, N, Nkv, 1, 96, D)
    kc, table = _paged(rng, k, bs, "BNSD")
    vc, _ = _paged(rng, v, bs, "BNSD", table)

    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            args = [q, kc, vc, table]
            if mode == "meta":
                args = [torch_npu.empty_with_format(x.shape, x.dtype.name) for x in args]
            out = torch_npu.npu_incre_flash_attention(*args[:3], block_table=args[3], block_size=bs,
                                                      actual_seq_lengths=[96, 40, 7], num_heads=N,
                                                      num_key_value_heads=Nkv, input_layout="BNSD")
            (row,) = s.report().ops
            return out.shape, out.dtype.name, row.duration_us, row.bytes_read, row.core_type
    full, meta = run("full"), run("meta")
    assert full == meta and full[4] == "MIX"


def test_fia_full_int8_with_int8_output_and_per_tensor_antiquant(sim):
    rng = np.random.default_rng(18)
    q, k, v = (rng.integers(-20, 20, (1, 2, 16, 32)).astype(np.int8) for _ in range(3))
    kw = dict(dequant_scale1=np.array([0.01], np.float32), quant_scale1=np.array([127.0], np.float32),
              dequant_scale2=np.array([0.05 / 127], np.float32), num_heads=2, input_layout="BNSD", scale=0.5)
    fp = torch_npu.npu_fused_infer_attention_score(q, k, v, **kw)[0]
    i8 = torch_npu.npu_fused_infer_attention_score(q, k, v, quant_scale2=np.array([40.0], np.float32),
                                                   quant_offset2=np.array([2.0], np.float32), **kw)[0]
    assert fp.dtype.name == "float16" and i8.dtype.name == "int8"
    want = np.clip(np.rint(fp.numpy().astype(np.float64) * 40 + 2), -128, 127)
    assert np.abs(i8.numpy().astype(int) - want).max() <= 1
    qd = rand(rng, (2, 4, 1, 32))
    k8, v8 = (rng.integers(-100, 100, (2, 2, 24, 32)).astype(np.int8) for _ in range(2))
    sc, of = np.array([0.01, 0.02], np.float16), np.array([0.1, -0.1], np.float16)
    out = torch_npu.npu_fused_infer_attention_score(qd, k8, v8, antiquant_scale=sc, antiquant_offset=of, num_heads=4,
                                                    num_key_value_heads=2, input_layout="BNSD", scale=0.2)[0]
    ref = ref_attention(qd, k8 * np.float64(sc[0]) + np.float64(of[0]), v8 * np.float64(sc[1]) + np.float64(of[1]),
                        0.2)[0]
    assert_close(out.numpy(), ref, np.float16)


def decode_tiling_override_rows(S, kv_tile=64):
    """For IFA and FIA over a cache of S keys (B8 N32 Nkv8 D128): (the row with the op's own tiling,
    the row of the same call with kv_tile changed through sim.tiling)."""
    import dataclasses
    return {op: (_decode_time(op, S), _decode_time(op, S, tiling=lambda t: dataclasses.replace(t, kv_tile=kv_tile)))
            for op in (IFA, FIA)}


def check_decode_tiling_override(rows):
    for op, (base, row) in rows.items():
        assert "kv_tile=64 " not in base.attrs["tiling"]
        assert "kv_tile=64 " in row.attrs["tiling"]
        # several times the handshakes per key: a shorter step is slower over a long cache
        assert row.duration_us > base.duration_us


def test_decode_tiling_is_overridden_through_the_simulator_for_every_inference_op():
    # 2048 keys: 8 steps of the own kv_tile (256), 32 of kv_tile=64 (8192 keys: benchmarks/big_cases.py)
    check_decode_tiling_override(decode_tiling_override_rows(2048))


def test_the_call_is_resolved_once_into_a_frozen_hashable_spec():
    import dataclasses

    from ascend_sim.hw import get_chip
    from ascend_sim.ops import Args, get_op
    from ascend_sim.tensor import NPUTensor
    op = get_op(FIA)
    q, kv = NPUTensor((2, 4, 1, 64), "float16"), NPUTensor((2, 2, 96, 64), "float16")
    a = Args(query=q, key=kv, value=kv, num_heads=4, num_key_value_heads=2, input_layout="BNSD", scale=0.5,
             actual_seq_lengths_kv=[96, 40], sparse_mode=0, pre_tokens=2147483647, next_tokens=2147483647,
             inner_precise=0, softmax_lse_flag=True)
    chip = get_chip("Ascend910B2")
    spec = op.infer(a, chip)
    again = op.infer(Args(a), chip)
    assert spec == again and hash(spec) == hash(again)
    assert spec.geom.kv_lens == (96, 40) and spec.geom.decode and spec.lse and spec.scale == 0.5
    assert [m.shape for m in spec.outputs] == [(2, 4, 1, 64), (2, 4, 1, 1)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.scale = 1.0


@pytest.mark.parametrize("op, kwargs, arg", [
    ("npu_fused_infer_attention_score", dict(actual_seq_lengths_kv="none"), "actual_seq_lengths_kv"),
    ("npu_fused_infer_attention_score", dict(actual_seq_lengths=[8.0]), "actual_seq_lengths"),
    ("npu_prompt_flash_attention", dict(actual_seq_lengths=["8"]), "actual_seq_lengths"),
    ("npu_incre_flash_attention", dict(actual_seq_lengths="8"), "actual_seq_lengths"),
])
def test_int_lists_that_are_not_lists_of_ints_name_the_op_and_argument(sim, op, kwargs, arg):
    """Found by the fuzz test: a string in an int list raised int()'s unnamed ValueError. Every
    int-list argument of the attention ops goes through one checked parser."""
    sq = 1 if op == "npu_incre_flash_attention" else 8
    q, kv = np.zeros((1, sq, 128), np.float16), np.zeros((1, 8, 128), np.float16)
    with pytest.raises(TypeError, match=f"^{op}: argument '{arg}' must be a list of ints"):
        getattr(torch_npu, op)(q, kv, kv, num_heads=2, input_layout="BSH", **kwargs)


@pytest.mark.parametrize("op, scale_arg", [("npu_fused_infer_attention_score", "scale"),
                                           ("npu_prompt_flash_attention", "scale_value"),
                                           ("npu_incre_flash_attention", "scale_value")])
def test_scale_that_is_not_a_number_names_the_argument(sim, op, scale_arg):
    sq = 1 if op == "npu_incre_flash_attention" else 8
    q, kv = np.zeros((1, sq, 128), np.float16), np.zeros((1, 8, 128), np.float16)
    with pytest.raises(TypeError, match=f"^{op}: argument '{scale_arg}' must be a number, got str$"):
        getattr(torch_npu, op)(q, kv, kv, num_heads=2, input_layout="BSH", **{scale_arg: "none"})


@pytest.mark.parametrize("op", ["npu_fused_infer_attention_score", "npu_prompt_flash_attention",
                                "npu_incre_flash_attention"])
def test_zero_head_dims_are_rejected_naming_the_tensor(sim, op):
    """Found by the fuzz test: FIA with value D = 0 reached planning (an ISAError from a 0-byte GM
    access; its lse output is not empty, so the call is no all-empty one). The pages' D ranges
    start at 1: an OpError naming the tensor, for every inference op alike."""
    sq = 1 if op == "npu_incre_flash_attention" else 8
    q, kv = np.zeros((1, sq, 128), np.float16), np.zeros((1, 8, 128), np.float16)
    with pytest.raises(OpError, match=f"^{op}: argument 'value': head dim must be in \\[1, 512\\], got 0$"):
        getattr(torch_npu, op)(q, kv, np.zeros((1, 8, 0), np.float16), num_heads=2, input_layout="BSH")
    z = np.zeros((1, sq, 0), np.float16)
    with pytest.raises(OpError, match=f"^{op}: argument 'query': head dim must be in \\[1, 512\\], got 0$"):
        getattr(torch_npu, op)(z, np.zeros((1, 8, 0), np.float16), np.zeros((1, 8, 0), np.float16), num_heads=2,
                               input_layout="BSH")
