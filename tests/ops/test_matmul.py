"""npu_bmmV2, npu_linear, npu_transpose_batchmatmul, npu_grouped_matmul: numbers against float64 /
int64 references written from the op-plugin pages, every documented rule, plans and timing."""
import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.dtypes import pack_int4
from ascend_sim.hw import get_chip
from ascend_sim.isa import ISAError
from ascend_sim.ops import OpError
from ascend_sim.ops.study import plan_for, tiling_for
from ascend_sim.ops.templates.matmul import MatmulTiling

RNG = np.random.default_rng(7)
M, K, N = 33, 80, 50          # nothing a multiple of 16
BF16 = ml_dtypes.bfloat16


@pytest.fixture
def sim():
    with Simulator("Ascend910B2", trace="ops") as s:
        yield s


def randn(*shape, dtype=np.float16):
    return RNG.standard_normal(shape).astype(dtype)


def randi(lo, hi, *shape, dtype=np.int8):
    return RNG.integers(lo, hi, shape).astype(dtype)


def f64(a):
    return np.asarray(a).astype(np.float64)


def close(got, ref, dtype=np.float16):
    """One rounding of an fp32-accumulated product to ``dtype``: within a few ulps of float64."""
    eps = {np.float16: 2 ** -10, BF16: 2 ** -7, np.float32: 2 ** -20}[dtype]
    got = f64(got)
    scale = np.abs(ref).max() + 1
    np.testing.assert_allclose(got, ref, rtol=2 * eps, atol=4 * eps * scale)


def rows(sim, name=None):
    return [r for r in sim.report().ops if name is None or r.name == name]


# ============================================================================ npu_bmmV2
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bmm_broadcasts_batch_dims(sim, dtype):
    a, b = randn(2, 1, M, K, dtype=dtype), randn(3, K, N, dtype=dtype)
    y = torch_npu.npu_bmmV2(a, b, [])
    assert y.shape == (2, 3, M, N) and y.dtype.name == np.dtype(dtype).name
    close(y.numpy(), np.einsum("aimk,jkn->ajmn", f64(a), f64(b)), dtype)


def test_bmm_int32_is_exact_and_wraps(sim):
    a, b = randi(-1000, 1000, 4, M, K, dtype=np.int32), randi(-1000, 1000, 4, K, N, dtype=np.int32)
    y = torch_npu.npu_bmmV2(a, b, [])
    assert np.array_equal(y.numpy(), a.astype(np.int64) @ b)
    big = np.full((1, 2, 2), 2 ** 16, np.int32)
    assert torch_npu.npu_bmmV2(big, big, []).numpy()[0, 0, 0] == 0          # 2 * 2^32 wraps to 0
    assert rows(sim)[0].core_type == "AIV"                                  # no int32 cube mode


def test_bmm_output_sizes_sum_batch_axes(sim):
    a, b = randn(3, 2, M, K), randn(3, 2, K, N)
    y = torch_npu.npu_bmmV2(a, b, [1, 2, M, N])
    assert y.shape == (1, 2, M, N)
    close(y.numpy(), (f64(a) @ f64(b)).sum(0, keepdims=True))
    y2 = torch_npu.npu_bmmV2(a, b, [M, N])                                  # shorter: left-padded with 1s
    assert y2.shape == (M, N)
    close(y2.numpy(), (f64(a) @ f64(b)).sum((0, 1)))


def test_bmm_takes_fractal_nz_operands(sim):
    a, b = randn(2, M, K), randn(2, K, N)
    y = torch_npu.npu_bmmV2(a, torch_npu.npu_format_cast(b, 29), [])
    close(y.numpy(), f64(a) @ f64(b))


@pytest.mark.parametrize("a, b, sizes, arg, rule", [
    (randn(K), randn(K, N), [], "self", "2 or more"),
    (randn(M, K), randn(K + 1, N), [], "mat2", "must equal"),
    (randn(2, M, K), randn(3, K, N), [], "mat2", "cannot be broadcast"),
    (randn(2, M, K), randn(2, K, N), [2, M, N + 1], "output_sizes", "only batch axes"),
    (randn(2, M, K), randn(1, K, N), [1, M, N], "output_sizes", "broadcast"),
    (randn(M, K), randn(K, N), [1, 1, M, N], "output_sizes", "more dimensions"),
])
def test_bmm_rules(sim, a, b, sizes, arg, rule):
    with pytest.raises(OpError, match=f"npu_bmmV2: argument '{arg}'.*{rule}"):
        torch_npu.npu_bmmV2(a, b, sizes)


def test_bmm_dtype_rules(sim):
    with pytest.raises(TypeError, match="npu_bmmV2: argument 'self' has dtype bfloat16"):
        torch_npu.npu_bmmV2(randn(M, K, dtype=BF16), randn(K, N, dtype=BF16), [])
    with pytest.raises(TypeError, match="npu_bmmV2: argument 'mat2' has dtype float32; it must have self's dtype"):
        torch_npu.npu_bmmV2(randn(M, K), randn(K, N, dtype=np.float32), [])


# ============================================================================ npu_linear
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_linear_with_bias(sim, dtype):
    x, w, b = randn(M, K, dtype=dtype), randn(N, K, dtype=dtype), randn(N, dtype=dtype)
    y = torch_npu.npu_linear(x, w, b)
    assert y.shape == (M, N)
    close(y.numpy(), f64(x) @ f64(w).T + f64(b), dtype)


def test_linear_integer_inputs(sim):
    x, w, b = randi(-128, 128, M, K), randi(-128, 128, N, K), randi(-99, 99, N, dtype=np.int32)
    y = torch_npu.npu_linear(x, w, b)
    ref = x.astype(np.int64) @ w.T.astype(np.int64) + b
    assert y.dtype.name == "int8" and np.array_equal(y.numpy(), ref.astype(np.int8))   # wraps like torch
    xi, wi = randi(-9, 9, M, K, dtype=np.int32), randi(-9, 9, N, K, dtype=np.int32)
    assert np.array_equal(torch_npu.npu_linear(xi, wi).numpy(), xi.astype(np.int64) @ wi.T)


def test_linear_rules(sim):
    with pytest.raises(OpError, match="npu_linear: argument 'weight'.*out_features, in_features"):
        torch_npu.npu_linear(randn(M, K), randn(K, N))
    with pytest.raises(OpError, match="npu_linear: argument 'bias'.*length out_features=50"):
        torch_npu.npu_linear(randn(M, K), randn(N, K), randn(N + 1))
    with pytest.raises(OpError, match="npu_linear: argument 'input'.*2-D"):
        torch_npu.npu_linear(randn(2, M, K), randn(N, K))
    with pytest.raises(TypeError, match="npu_linear: argument 'bias' has dtype int8"):
        torch_npu.npu_linear(randn(M, K), randn(N, K), randi(0, 2, N))


# ============================================================================ npu_transpose_batchmatmul
def test_transpose_bmm_documented_layouts(sim):
    b, k, n = 3, 80, 48
    x, w = randn(M, b, k), randn(b, k, n)
    y = torch_npu.npu_transpose_batchmatmul(x, w, perm_x1=[1, 0, 2], perm_x2=[0, 1, 2], perm_y=[1, 0, 2])
    ref = np.einsum("mbk,bkn->mbn", f64(x), f64(w))
    assert y.shape == (M, b, n)
    close(y.numpy(), ref)
    xb = np.ascontiguousarray(x.transpose(1, 0, 2))                          # (B, M, K), default perm_x1
    close(torch_npu.npu_transpose_batchmatmul(xb, w).numpy(), ref)
    wt = np.ascontiguousarray(w.transpose(0, 2, 1))                          # (B, N, K) with perm_x2 [0, 2, 1]
    close(torch_npu.npu_transpose_batchmatmul(x, wt, perm_x1=[1, 0, 2], perm_x2=[0, 2, 1]).numpy(), ref)


def test_transpose_bmm_batch_split_factor(sim):
    b, k, n, s = 4, 32, 16, 2
    x, w = randn(M, b, k), randn(b, k, n)
    y = torch_npu.npu_transpose_batchmatmul(x, w, perm_x1=[1, 0, 2], batch_split_factor=s).numpy()
    assert y.shape == (s, M, b * n // s)
    ref = np.einsum("mbk,bkn->mbn", f64(x), f64(w))
    for bi in range(b):                      # batch bi sits in slab bi // (b/s), columns (bi % (b/s)) * n
        slab, j = divmod(bi, b // s)
        close(y[slab, :, j * n:(j + 1) * n], ref[:, bi])


def test_transpose_bmm_int8_scale(sim):
    b, k, n = 2, 32, 16
    x, w = randn(M, b, k), randn(b, k, n)
    scale = RNG.uniform(0.5, 4, b * n).astype(np.float32)
    words = torch_npu.npu_trans_quant_param(scale)
    y = torch_npu.npu_transpose_batchmatmul(x, w, scale=words, perm_x1=[1, 0, 2])
    assert y.shape == (M, 1, b * n) and y.dtype.name == "int8"
    fp19 = (scale.view(np.uint32) & 0xFFFFE000).view(np.float32).astype(np.float64)
    acc = np.einsum("mbk,bkn->mbn", f64(x), f64(w)).reshape(M, b * n)
    ref = np.clip(np.rint(acc * fp19), -128, 127)
    assert np.abs(y.numpy().reshape(M, b * n) - ref).max() <= 1      # fp32 vs float64 accumulation at .5 edges


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(perm_y=[0, 1, 2]), "perm_y", "must be one of"),
    (dict(perm_x1=[2, 1, 0]), "perm_x1", "must be one of"),
    (dict(bias=np.ones(16, np.float16)), "bias", "not supported"),
    (dict(batch_split_factor=3), "batch_split_factor", "divide B"),
    (dict(scale=np.ones(2 * 16, np.int64), batch_split_factor=2), "batch_split_factor", "must be 1"),
    (dict(scale=np.ones(7, np.int64)), "scale", "B\\*N=32"),
])
def test_transpose_bmm_rules(sim, kwargs, arg, rule):
    x, w = randn(M, 2, 32), randn(2, 32, 16)
    with pytest.raises(OpError, match=f"npu_transpose_batchmatmul: argument '{arg}'.*{rule}"):
        torch_npu.npu_transpose_batchmatmul(x, w, **{"perm_x1": [1, 0, 2], **kwargs})


def test_transpose_bmm_k_and_n_multiples_of_16(sim):
    with pytest.raises(OpError, match="K=40 and N=16 must both be multiples of 16"):
        torch_npu.npu_transpose_batchmatmul(randn(2, M, 40), randn(2, 40, 16))
    with pytest.raises(TypeError, match="'scale' requires float16"):
        torch_npu.npu_transpose_batchmatmul(randn(2, M, 32, dtype=BF16), randn(2, 32, 16, dtype=BF16),
                                            scale=np.ones(32, np.int64))
    with Simulator("Ascend310P3"), pytest.raises(ValueError, match="not supported on Ascend310P3"):
        torch_npu.npu_transpose_batchmatmul(randn(2, M, 32), randn(2, 32, 16))


# ============================================================================ npu_grouped_matmul
def gmm(*args, **kw):
    return torch_npu.npu_grouped_matmul(*args, **kw)


@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_gmm_no_grouping_multi_multi_multi(sim, dtype):
    xs = [randn(M, K, dtype=dtype), randn(2, 5, 48, dtype=dtype)]
    xs[1] = randn(20, 48, dtype=dtype)
    ws = [randn(K, N, dtype=dtype), randn(48, 16, dtype=dtype)]
    bias_dt = np.float16 if dtype is np.float16 else np.float32
    bs = [randn(N, dtype=bias_dt), randn(16, dtype=bias_dt)]
    ys = gmm(xs, ws, bias=bs, group_type=-1)
    assert [y.shape for y in ys] == [(M, N), (20, 16)]
    for y, x, w, b in zip(ys, xs, ws, bs):
        close(y.numpy(), f64(x) @ f64(w) + f64(b), dtype)
    (r,) = rows(sim)
    assert r.core_type == "AIC" and r.flops == 2 * (M * N * K + 20 * 16 * 48)   # one kernel for both


def test_gmm_higher_rank_x_without_group_list(sim):
    x, w = randn(2, 3, K), randn(K, N)
    (y,) = gmm([x], [w], group_type=-1)
    assert y.shape == (2, 3, N)
    close(y.numpy(), f64(x) @ f64(w))


def _m_groups(x, sizes):
    cum = np.concatenate([[0], np.cumsum(sizes)])
    return [x[cum[i]:cum[i + 1]] for i in range(len(sizes))]


@pytest.mark.parametrize("gl_type", [0, 1])
def test_gmm_m_grouping_stacked_weight(sim, gl_type):
    sizes = [10, 0, 23]
    x, w = randn(M, K), randn(3, K, N)
    gl = np.cumsum(sizes) if gl_type == 0 else np.array(sizes)
    (y,) = gmm([x], [w], group_list=gl.astype(np.int64), group_type=0, group_list_type=gl_type, split_item=3)
    ref = np.concatenate([f64(xg) @ f64(w[i]) for i, xg in enumerate(_m_groups(x, sizes))])
    assert y.shape == (M, N)
    close(y.numpy(), ref)


def test_gmm_single_multi_single_and_multi_multi_single(sim):
    sizes = [12, 21]
    x, ws = randn(M, K), [randn(K, N), randn(K, N)]
    b = [randn(N), randn(N)]
    (y,) = gmm([x], ws, bias=b, group_list=np.array([12, 33]), group_type=0, split_item=2)
    ref = np.concatenate([f64(xg) @ f64(w) + f64(bb) for xg, w, bb in zip(_m_groups(x, sizes), ws, b)])
    close(y.numpy(), ref)
    xs = _m_groups(x, sizes)
    (y2,) = gmm([np.ascontiguousarray(v) for v in xs], ws, bias=b, group_type=0, split_item=3)
    close(y2.numpy(), ref)


def test_gmm_legacy_int_list_group_list(sim):
    x, ws = randn(M, K), [randn(K, N), randn(K, 16)]
    ys = gmm([x], ws, group_list=[10, M], split_item=0)                      # single-multi-multi
    assert [y.shape for y in ys] == [(10, N), (23, 16)]
    close(ys[1].numpy(), f64(x[10:]) @ f64(ws[1]))
    (y,) = gmm([x], [ws[0], randn(K, N)], group_list=[10, M], split_item=3)  # single-multi-single
    assert y.shape == (M, N)
    with pytest.raises(OpError, match="group_list'.*strictly increasing"):
        gmm([x], ws, group_list=[20, 10], split_item=0)
    with pytest.raises(OpError, match="group_list'.*last value 30 must equal x's rows 33"):
        gmm([x], ws, group_list=[10, 30], split_item=0)
    with pytest.raises(OpError, match="group_type'.*must be None when group_list is a List"):
        gmm([x], ws, group_list=[10, M], split_item=0, group_type=0)


def test_gmm_k_grouping(sim):
    x, w = randn(M, 64), randn(64, N)
    (y,) = gmm([x], [w], group_list=np.array([16, 16, 64]), group_type=2, split_item=3)
    assert y.shape == (3, M, N)
    close(y.numpy()[0], f64(x[:, :16]) @ f64(w[:16]))
    assert not y.numpy()[1].any()                                           # an empty K group is zero
    close(y.numpy()[2], f64(x[:, 16:]) @ f64(w[16:]))


def test_gmm_float32_single_tensors(sim):
    x, w = randn(M, K, dtype=np.float32), randn(2, K, N, dtype=np.float32)
    (y,) = gmm([x], [w], group_list=np.array([20, M]), group_type=0, split_item=3)
    close(y.numpy(), np.concatenate([f64(x[:20]) @ f64(w[0]), f64(x[20:]) @ f64(w[1])]), np.float32)
    with pytest.raises(TypeError, match="float32 needs a single x"):
        gmm([x, x], [w[0], w[1]], group_type=-1)


def _fp19(s):
    return (np.asarray(s, np.float32).view(np.uint32) & 0xFFFFE000).view(np.float32).astype(np.float64)


def test_gmm_int8_per_channel_int64_scale(sim):
    sizes = [13, 20]
    x, w = randi(-9, 9, M, K), randi(-9, 9, 2, K, N)
    bias = randi(-50, 50, 2, N, dtype=np.int32)
    scale = RNG.uniform(0.01, 0.05, (2, N)).astype(np.float32)
    words = torch_npu.npu_trans_quant_param(scale.reshape(-1)).numpy().reshape(2, N)
    (y,) = gmm([x], [w], bias=[bias], scale=[words], group_list=np.array([13, M]), group_type=0, split_item=3)
    assert y.dtype.name == "int8"
    ref = np.concatenate([np.clip(np.rint((xg.astype(np.int64) @ w[i] + bias[i]) * _fp19(scale[i])), -128, 127)
                          for i, xg in enumerate(_m_groups(x, sizes))])
    assert np.array_equal(y.numpy(), ref)


@pytest.mark.parametrize("act, fn", [
    (0, lambda v: v),
    (1, lambda v: np.maximum(v, 0)),
    (2, lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))),
    (4, lambda v: v / (1 + np.exp(-1.702 * np.abs(v))) * np.exp(0.851 * (v - np.abs(v)))),
    (5, lambda v: v / (1 + np.exp(-v))),
])
def test_gmm_int8_per_token_with_activations(sim, act, fn):
    sizes = [13, 20]
    x, w = randi(-9, 9, M, K), randi(-9, 9, 2, K, N)
    scale = RNG.uniform(0.001, 0.01, (2, N)).astype(np.float32)
    pt = RNG.uniform(0.5, 2, M).astype(np.float32)
    (y,) = gmm([x], [w], scale=[scale], per_token_scale=[pt], group_list=np.array([13, M]), group_type=0,
               split_item=3, output_dtype=5, act_type=act)
    acc = np.concatenate([xg.astype(np.int64) @ w[i] * f64(scale[i]) for i, xg in enumerate(_m_groups(x, sizes))])
    close(y.numpy(), fn(acc * f64(pt)[:, None]))


def test_gmm_int8_bf16_scale_and_int32_output(sim):
    x, w = randi(-9, 9, M, K), randi(-9, 9, 1, K, N)
    scale = RNG.uniform(0.01, 0.02, (1, N)).astype(BF16)
    (y,) = gmm([x], [w], scale=[scale], group_list=np.array([M]), group_type=0, split_item=3, output_dtype=15)
    assert y.dtype.name == "bfloat16"
    close(y.numpy(), (x.astype(np.int64) @ w[0]) * f64(scale[0]), BF16)
    (y32,) = gmm([x], [w], group_list=np.array([M]), group_type=0, split_item=3, output_dtype=3)
    assert np.array_equal(y32.numpy(), x.astype(np.int64) @ w[0])


def test_gmm_int4_per_k_group_scales(sim):
    sizes, k, n, groups = [16, 17], 64, 32, 2
    x, w = RNG.integers(-8, 8, (M, k)), RNG.integers(-8, 8, (2, k, n))
    s = RNG.uniform(0.01, 0.1, (2, groups, n)).astype(np.float32)
    words = np.zeros((2, groups, n), np.uint64) | s.view(np.uint32).astype(np.uint64)   # fp32 bits, low word
    pt = RNG.uniform(0.5, 2, M).astype(np.float32)
    (y,) = gmm([pack_int4(x)], [pack_int4(w)], scale=[words.view(np.int64)], per_token_scale=[pt],
               group_list=np.array([16, M]), group_type=0, split_item=3, output_dtype=5)
    ref = []
    for i, xg in enumerate(_m_groups(x, sizes)):
        v = sum((xg[:, j * 32:(j + 1) * 32] @ w[i, j * 32:(j + 1) * 32]) * f64(s[i, j]) for j in range(groups))
        ref.append(v)
    close(y.numpy(), np.concatenate(ref) * f64(pt)[:, None])


def test_gmm_fake_quant_int8_per_channel_and_int4_per_group(sim):
    sizes = [10, 23]
    x = randn(M, 64)
    w8 = randi(-8, 8, 2, 64, N)
    s8, o8 = RNG.uniform(0.01, 0.1, (2, N)).astype(np.float16), randn(2, N)
    (y,) = gmm([x], [w8], antiquant_scale=[s8], antiquant_offset=[o8], group_list=np.array([10, M]),
               group_type=0, split_item=3)
    deq = [((f64(w8[i]) + f64(o8[i])) * f64(s8[i])).astype(np.float16) for i in range(2)]
    close(y.numpy(), np.concatenate([f64(xg) @ f64(deq[i]) for i, xg in enumerate(_m_groups(x, sizes))]))
    w4 = RNG.integers(-8, 8, (64, 48))
    s4 = RNG.uniform(0.01, 0.1, (2, 48)).astype(np.float16)                 # 2 groups of 32 along K
    (y4,) = gmm([x], [pack_int4(w4)], antiquant_scale=[s4], group_list=np.array([M]), group_type=0, split_item=3)
    deq4 = (f64(w4) * np.repeat(f64(s4), 32, axis=0)).astype(np.float16)
    close(y4.numpy(), f64(x) @ f64(deq4))
    kinds = [r.attrs.get("kernel") for r in rows(sim)]
    assert kinds[:2] == ["npu_grouped_matmul.antiquant", "npu_grouped_matmul"]     # AIV pre-pass, then the cube


def test_gmm_group_list_type_2_index_size_pairs(sim):
    x, w = randi(-9, 9, M, K), randi(-9, 9, 3, K, N)
    scale = torch_npu.npu_trans_quant_param(np.full(3 * N, 0.01, np.float32)).numpy().reshape(3, N)
    pairs = np.array([[2, 20], [0, 13]], np.int64)                          # rows 0..19 -> expert 2, then expert 0
    (y,) = gmm([x], [w], scale=[scale], group_list=pairs, group_type=0, group_list_type=2, split_item=3)
    ref = np.concatenate([x[:20].astype(np.int64) @ w[2], x[20:].astype(np.int64) @ w[0]])
    assert np.array_equal(y.numpy(), np.clip(np.rint(ref * _fp19(0.01)), -128, 127))


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(group_list=np.array([20, 10])), "group_list", "non-decreasing"),
    (dict(group_list=np.array([20, 40])), "group_list", "cover 40 rows"),
    (dict(group_list=np.array([10, 20, 33])), "group_list", "one per group"),
    (dict(group_list=np.array([10, M], np.int32)), "group_list", "int32"),
    (dict(act_type=3), "act_type", "3 is not supported"),
    (dict(act_type=1), "act_type", "per-token"),
    (dict(offset=[np.ones(N, np.float32)]), "offset", "only None"),
    (dict(group_type=1), "group_type", "must be -1"),
    (dict(split_item=0), "split_item", "must be 2 or 3"),
    (dict(split_item=5), "split_item", "0, 1, 2 or 3"),
    (dict(bias=[np.ones(N, np.float16)]), r"bias\[0\]", r"must be \(2, 50\)"),
    (dict(tuning_config=[8]), "tuning_config", "int8"),
])
def test_gmm_rules(sim, kwargs, arg, rule):
    args = dict(group_list=np.array([10, M]), group_type=0, split_item=3)
    args.update(kwargs)
    with pytest.raises((OpError, TypeError), match=f"npu_grouped_matmul: argument '{arg}'.*{rule}"):
        gmm([randn(M, K)], [randn(2, K, N)], **args)


def test_gmm_dtype_rules(sim):
    x, w = randi(-9, 9, M, K), randi(-9, 9, 2, K, N)
    gl = dict(group_list=np.array([10, M]), group_type=0, split_item=3)
    with pytest.raises(TypeError, match="argument .output_dtype. must be float16 with a float32 scale"):
        gmm([x], [w], scale=[np.ones((2, N), np.float32)], **gl)
    with pytest.raises(OpError, match="argument 'scale'.*required for int8"):
        gmm([x], [w], **gl)
    with pytest.raises(TypeError, match="bias\\[0\\]' has dtype float16; this scenario takes int32"):
        gmm([x], [w], bias=[np.ones((2, N), np.float16)], scale=[np.ones((2, N), np.int64)], **gl)
    with pytest.raises(TypeError, match="argument 'group_type'.*quantisation needs group_type -1 or 0"):
        gmm([x], [randi(-9, 9, K, N)], scale=[np.ones(N, np.int64)], group_list=np.array([M]), group_type=2,
            split_item=3)
    with pytest.raises(OpError, match="antiquant_scale'.*required"):
        gmm([randn(M, K)], [w], **gl)


def test_gmm_310p_single_tensors_fp16_only():
    with Simulator("Ascend310P3"):
        x, w = randn(M, K), randn(2, K, 32)
        (y,) = gmm([x], [w], group_list=np.array([10, M]), group_type=0, split_item=3)
        close(y.numpy(), np.concatenate([f64(x[:10]) @ f64(w[0]), f64(x[10:]) @ f64(w[1])]))
        with pytest.raises(OpError, match="supports only group_type 0"):
            gmm([x], [w[0]], group_type=-1)


def test_gmm_plans_groups_into_one_cube_kernel_balanced_for_tensor_lists():
    chip = get_chip("Ascend910B2")
    args = dict(x=[((512, 256), "float16")], weight=[((8, 256, 512), "float16")], group_type=0, split_item=3,
                group_list=((8,), "int64"))
    (plan,) = plan_for("npu_grouped_matmul", chip, **args)
    assert plan.core_type == "AIC" and plan.block_dim == chip.cores.aic
    assert plan.flops == 2 * 512 * 256 * 512                  # every row planned, spread over the groups
    tensors = set(plan.tensors)
    assert {"x[0]", "weight[0]", "out0"} <= tensors


# ============================================================================ studies, modes, timing
def test_plan_for_takes_a_user_tiling_and_checks_it():
    chip = get_chip("Ascend910B2")
    shapes = dict(input=((1024, 1024), "float16"), weight=((1024, 1024), "float16"))
    t = tiling_for("npu_linear", chip, **shapes)
    assert (t.base_m, t.base_n, t.base_k) == (128, 256, 64)
    (p,) = plan_for("npu_linear", chip, MatmulTiling(base_m=64, base_n=64, base_k=64), **shapes)
    assert p.tiling.base_m == 64
    with pytest.raises(ISAError, match="L0A"):
        plan_for("npu_linear", chip, MatmulTiling(base_m=256, base_k=128), **shapes)
    split = plan_for("npu_linear", chip, MatmulTiling(split_k=4), input=((128, 8192), "float16"),
                     weight=((256, 8192), "float16"))
    assert [q.core_type for q in split] == ["AIC", "AIV"] and all(q.workspace_bytes for q in split)


def test_meta_mode_matches_full_mode():
    # the grouped matmul's group sizes are value-dependent: full mode plans from the real ones (here
    # the even split of M=33 over 3 groups), meta mode from its default assumption, routing=uniform
    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            e = torch_npu.empty_with_format
            gl = e((3,), "int64") if mode == "meta" else np.array([11, 22, 33], np.int64)
            y1 = torch_npu.npu_bmmV2(e((2, 1, M, K), "float16"), e((3, K, N), "float16"), [])
            y2 = torch_npu.npu_linear(e((M, K), "float32"), e((N, K), "float32"), e((N,), "float32"))
            y3 = torch_npu.npu_transpose_batchmatmul(e((M, 2, 32), "float16"), e((2, 32, 16), "float16"),
                                                     perm_x1=[1, 0, 2])
            ys = gmm([e((M, K), "float16")], [e((3, K, N), "float16")], group_list=gl, group_type=0, split_item=3)
            shapes = [(y.shape, y.dtype.name) for y in (y1, y2, y3, *ys)]
            return shapes, [(r.name, r.duration_us, r.bytes_read, r.bytes_written) for r in s.report().ops]
    assert run("full") == run("meta")


def test_fp16_gemm_4096_runs_at_80_to_100_percent_of_cube_peak():
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        x = torch_npu.empty_with_format((4096, 4096), "float16")
        w = torch_npu.empty_with_format((4096, 4096), "float16")
        torch_npu.npu_linear(x, w)
        torch_npu.npu_bmmV2(x, w, [])
        peak = sim.chip.cube_peak_tflops("float16") * 1e12
        for r in sim.report().ops:
            assert r.flops == 2 * 4096 ** 3
            assert 0.8 <= r.flops / (r.duration_us * 1e-6) / peak <= 1.0, r.name


def test_nz_weight_beats_nd_when_rows_are_not_512_byte_aligned():
    # decode-shaped linear, K = 4008 (8016-byte rows: not 512-aligned); the second call finds the
    # weight in L2, so the way the weight reaches the cube decides the time
    times = {}
    for nz in (False, True):
        with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
            x = torch_npu.empty_with_format((16, 4008), "float16")
            w = torch_npu.empty_with_format((4096, 4008), "float16")
            if nz:
                w = torch_npu.npu_format_cast(w, 29)
            torch_npu.npu_linear(x, w)
            torch_npu.npu_linear(x, w)
            times[nz] = [r.duration_us for r in rows(sim, "npu_linear")]
    assert times[True][1] < times[False][1]
    assert times[True][0] < times[False][0]


# ============================================================================ K = 0
def test_k0_products_are_zeros_plus_bias_written_by_a_fill_kernel(sim):
    """Found by the fuzz test: a K = 0 matmul failed to plan ("no blocks"). The sum over K is
    empty, so the result is zeros of (M, N) (+ bias), and the call is a normal one (its output
    is not empty): one vector kernel writes the output (no cube work, no MatmulTiling)."""
    y = torch_npu.npu_linear(np.zeros((4, 0), np.float16), np.zeros((8, 0), np.float16))
    assert y.shape == (4, 8) and not y.numpy().any()
    bias = randn(8)
    y = torch_npu.npu_linear(np.zeros((4, 0), np.float16), np.zeros((8, 0), np.float16), bias)
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(bias, (4, 8)))
    z = torch_npu.npu_bmmV2(np.zeros((3, 4, 0), np.float16), np.zeros((1, 0, 8), np.float16), [])
    assert z.shape == (3, 4, 8) and not z.numpy().any()
    i = torch_npu.npu_bmmV2(np.zeros((2, 4, 0), np.int32), np.zeros((2, 0, 8), np.int32), [])   # no cube mode
    assert i.shape == (2, 4, 8) and not i.numpy().any()
    t = torch_npu.npu_transpose_batchmatmul(np.zeros((2, 4, 0), np.float16), np.zeros((2, 0, 16), np.float16),
                                            perm_x1=[0, 1, 2], perm_x2=[0, 1, 2], perm_y=[1, 0, 2])
    assert t.shape == (4, 2, 16) and not t.numpy().any()
    sim.synchronize()
    recs = rows(sim)
    assert [r.name for r in recs] == ["npu_linear"] * 2 + ["npu_bmmV2"] * 2 + ["npu_transpose_batchmatmul"]
    assert all(r.core_type == "AIV" and r.duration_us > 0 and r.flops == 0 for r in recs)
    out_bytes = [4 * 8 * 2, 4 * 8 * 2, 3 * 4 * 8 * 2, 2 * 4 * 8 * 4, 4 * 2 * 16 * 2]
    assert [r.bytes_written for r in recs] == out_bytes             # every output byte, once
    assert recs[1].bytes_read == recs[1].block_dim * 8 * 2 and recs[0].bytes_read == 0   # the bias row, per block


def test_k0_plan_takes_no_matmul_tiling():
    spec_args = dict(input=np.zeros((4, 0), np.float16), weight=np.zeros((8, 0), np.float16))
    assert tiling_for("npu_linear", "Ascend910B2", **spec_args) is None
    (plan,) = plan_for("npu_linear", "Ascend910B2", **spec_args)
    assert plan.core_type == "AIV"
    with pytest.raises(TypeError, match="npu_linear: this op has no tiling to override"):
        plan_for("npu_linear", "Ascend910B2", tiling=MatmulTiling(), **spec_args)


def test_gmm_k0_groups_are_zeros_plus_bias_written_by_a_fill(sim):
    """A grouped matmul whose group has K = 0 (an empty x; along K, an expert with no tokens)
    writes that group's zeros (+ bias) with a vector fill; the other groups run on the cube."""
    bias = randn(16)
    (y,) = torch_npu.npu_grouped_matmul([np.zeros((4, 0), np.float16)], [np.zeros((0, 16), np.float16)],
                                        bias=[bias], split_item=0, group_type=-1)
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(bias, (4, 16)))
    x, w = randn(4, 32), randn(32, 16)
    (y,) = torch_npu.npu_grouped_matmul([x], [w], group_list=np.array([0, 32], np.int64), split_item=3,
                                        group_type=2, group_list_type=0)
    assert not y.numpy()[0].any()
    close(y.numpy()[1], f64(x) @ f64(w))
    sim.synchronize()
    assert [r.core_type for r in rows(sim, "npu_grouped_matmul")] == ["AIV", "AIV", "AIC"]


def test_bmm_batch_of_1_broadcasts_to_0(sim):
    """Fuzz finding: a batch dim of 1 against 0 broadcast to 1 (max), so the output had the wrong
    shape and the numbers failed to reshape. torch broadcasts 1 to 0: an empty result."""
    y = torch_npu.npu_bmmV2(np.zeros((1, 17, 10), np.float16), np.zeros((0, 10, 1), np.float16), [])
    assert y.shape == (0, 17, 1)
    y = torch_npu.npu_bmmV2(np.zeros((0, 3, 1, 1, 0), np.float16), np.zeros((3, 0, 12), np.float16), [])
    assert y.shape == (0, 3, 3, 1, 12)
    sim.synchronize()
    assert rows(sim) == []                        # all-empty outputs: no task
