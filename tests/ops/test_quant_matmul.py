"""npu_quant_matmul and npu_weight_quant_batchmatmul: every dtype row and quantisation granularity
of the op-plugin pages against int64/float64 references, int4 packing, rules, plans and timing."""
import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.dtypes import pack_int4
from ascend_sim.ops import OpError

RNG = np.random.default_rng(11)
M, K, N = 33, 80, 50
BF16 = ml_dtypes.bfloat16


@pytest.fixture
def sim():
    with Simulator("Ascend910B2", trace="ops") as s:
        yield s


def f64(a):
    return np.asarray(a).astype(np.float64)


def ints(lo, hi, *shape, dtype=np.int8):
    return RNG.integers(lo, hi, shape).astype(dtype)


def fp19(s):
    """The FP19 FIXPIPE uses: float32 bits with the low 13 cleared (npu_trans_quant_param)."""
    return (np.asarray(s, np.float32).view(np.uint32) & 0xFFFFE000).view(np.float32).astype(np.float64)


def sat8(v):
    return np.clip(np.rint(v), -128, 127)


def close(got, ref, dtype=np.float16):
    eps = {np.float16: 2 ** -10, BF16: 2 ** -7}[dtype]
    np.testing.assert_allclose(f64(got), ref, rtol=2 * eps, atol=4 * eps * (np.abs(ref).max() + 1))


def kernels(sim, name):
    return [r.attrs.get("kernel", r.name) for r in sim.report().ops if r.name == name]


# ============================================================================ npu_quant_matmul
@pytest.fixture
def ab():
    x1, x2 = ints(-9, 9, M, K), ints(-9, 9, K, N)
    return x1, x2, x1.astype(np.int64) @ x2


@pytest.mark.parametrize("per_channel", [True, False])
def test_int64_scale_fixpipe_to_fp16_and_int8(sim, ab, per_channel):
    x1, x2, acc = ab
    scale = RNG.uniform(0.01, 0.05, N if per_channel else 1).astype(np.float32)
    offset = RNG.uniform(-5, 5, N if per_channel else 1).astype(np.float32)
    bias = ints(-100, 100, N, dtype=np.int32)
    words = torch_npu.npu_trans_quant_param(scale)
    y16 = torch_npu.npu_quant_matmul(x1, x2, words, bias=bias, output_dtype=5)
    assert y16.dtype.name == "float16"
    close(y16.numpy(), (acc + bias) * fp19(scale))
    words_off = torch_npu.npu_trans_quant_param(scale, offset)
    y8 = torch_npu.npu_quant_matmul(x1, x2, words_off, bias=bias)               # int8 by default
    assert y8.dtype.name == "int8"
    assert np.array_equal(y8.numpy(), sat8((acc + bias) * fp19(scale) + np.rint(offset)))
    assert kernels(sim, "npu_quant_matmul") == ["npu_quant_matmul"] * 2         # one cube kernel each


def test_float32_scale_goes_through_trans_quant_param_first(sim, ab):
    x1, x2, acc = ab
    scale = RNG.uniform(0.01, 0.05, N).astype(np.float32)
    offset = np.full(N, 2.5, np.float32)                                        # rounds half to even: 2
    y = torch_npu.npu_quant_matmul(x1, x2, scale, offset=offset)
    assert np.array_equal(y.numpy(), sat8(acc * fp19(scale) + 2))
    assert kernels(sim, "npu_quant_matmul") == ["npu_quant_matmul.trans_quant_param", "npu_quant_matmul"]


@pytest.mark.parametrize("scale_dt, bias_dt, with_pt", [
    (np.float32, None, True), (BF16, np.float32, False), (np.float32, BF16, True), (BF16, np.int32, True),
])
def test_bf16_output_dequantises_in_a_vector_epilogue(sim, ab, scale_dt, bias_dt, with_pt):
    x1, x2, acc = ab
    scale = RNG.uniform(0.01, 0.05, N).astype(scale_dt)
    pt = RNG.uniform(0.5, 2, M).astype(np.float32) if with_pt else None
    bias = None if bias_dt is None else (ints(-50, 50, N, dtype=np.int32) if bias_dt is np.int32
                                         else RNG.standard_normal(N).astype(bias_dt))
    y = torch_npu.npu_quant_matmul(x1, x2, scale, pertoken_scale=pt, bias=bias, output_dtype=15)
    ref = acc + (bias if bias_dt is np.int32 else 0)
    ref = ref * f64(scale) * (f64(pt)[:, None] if with_pt else 1)
    if bias_dt in (np.float32, BF16):
        ref = ref + f64(bias)
    assert y.dtype.name == "bfloat16"
    close(y.numpy(), ref, BF16)
    assert kernels(sim, "npu_quant_matmul") == ["npu_quant_matmul", "npu_quant_matmul.dequant"]


def test_per_token_fp16_output_with_fp16_bias(sim, ab):
    x1, x2, acc = ab
    scale = RNG.uniform(0.01, 0.05, N).astype(np.float32)
    pt = RNG.uniform(0.5, 2, M).astype(np.float32)
    bias = RNG.standard_normal(N).astype(np.float16)
    y = torch_npu.npu_quant_matmul(x1, x2, scale, pertoken_scale=pt, bias=bias, output_dtype=5)
    close(y.numpy(), acc * f64(scale) * f64(pt)[:, None] + f64(bias))


def test_int32_output_is_the_exact_product_plus_bias(sim, ab):
    x1, x2, acc = ab
    bias = ints(-1000, 1000, N, dtype=np.int32)
    y = torch_npu.npu_quant_matmul(x1, x2, np.ones(N, np.float32) * 7, bias=bias, output_dtype=3)
    assert y.dtype.name == "int32" and np.array_equal(y.numpy(), acc + bias)     # scales take no part


def test_batch_broadcast_with_3d_bias(sim):
    x1, x2 = ints(-9, 9, 1, M, K), ints(-9, 9, 3, K, N)
    bias = ints(-50, 50, 3, 1, N, dtype=np.int32)
    words = torch_npu.npu_trans_quant_param(np.array([0.05], np.float32))
    y = torch_npu.npu_quant_matmul(x1, x2, words, bias=bias, output_dtype=5)
    assert y.shape == (3, M, N)
    close(y.numpy(), (x1.astype(np.int64) @ x2 + bias) * fp19(0.05))


def test_fractal_nz_weight(sim, ab):
    x1, x2, acc = ab
    words = torch_npu.npu_trans_quant_param(np.full(N, 0.03, np.float32))
    y = torch_npu.npu_quant_matmul(x1, torch_npu.npu_format_cast(x2, 29), words, output_dtype=5)
    close(y.numpy(), acc * fp19(0.03))


def test_int4_hand_worked_packed_example(sim):
    row = np.array([[1, -1, 2, -2, 3, -3, 4, -4]])
    x1 = pack_int4(row)
    assert (int(x1[0, 0]) & 0xFFFFFFFF) == 0xC4D3E2F1            # nibble j = element j: C 4 D 3 E 2 F 1
    eye = np.eye(8, dtype=np.int64)
    words = torch_npu.npu_trans_quant_param(np.ones(8, np.float32))
    y = torch_npu.npu_quant_matmul(x1, pack_int4(eye), words, output_dtype=5)    # (1, 1) @ (8, 1) words
    assert y.shape == (1, 8) and y.numpy().tolist() == [[1, -1, 2, -2, 3, -3, 4, -4]]


@pytest.mark.parametrize("packed_along_k", [False, True])
def test_int4_matmul_both_weight_layouts(sim, packed_along_k):
    k, n = 64, 48
    a, b = RNG.integers(-8, 8, (M, k)), RNG.integers(-8, 8, (k, n))
    x2 = pack_int4(b.T).T.copy() if packed_along_k else pack_int4(b)   # (k/8, n) or (k, n/8) words
    assert x2.shape == ((k // 8, n) if packed_along_k else (k, n // 8))
    scale = RNG.uniform(0.01, 0.05, n).astype(np.float32)
    y = torch_npu.npu_quant_matmul(pack_int4(a), x2, scale, output_dtype=5)
    close(y.numpy(), (a @ b) * fp19(scale))


def test_int4_per_group_asymmetric_k_g(sim):
    k, n, gk = 128, 32, 64
    a, b = RNG.integers(-8, 8, (M, k)), RNG.integers(-8, 8, (k, n))
    scale = RNG.uniform(0.01, 0.05, (k // gk, n)).astype(np.float32)
    offset = RNG.integers(-3, 3, (k // gk, n)).astype(np.float16)
    pt = RNG.uniform(0.5, 2, M).astype(np.float32)
    y = torch_npu.npu_quant_matmul(pack_int4(a), pack_int4(b), scale, offset=offset, pertoken_scale=pt,
                                   output_dtype=15, group_sizes=[0, 0, gk])
    ref = sum((a[:, j * gk:(j + 1) * gk] @ (b[j * gk:(j + 1) * gk] - f64(offset[j]))) * f64(scale[j])
              for j in range(k // gk)) * f64(pt)[:, None]
    close(y.numpy(), ref, BF16)
    assert kernels(sim, "npu_quant_matmul") == ["npu_quant_matmul", "npu_quant_matmul.dequant"]


def test_int8_per_block_g_b(sim):
    m, k, n = 20, 256, 160
    x1, x2 = ints(-9, 9, m, k), ints(-9, 9, k, n)
    pt = RNG.uniform(0.5, 2, (m, 2)).astype(np.float32)
    scale = RNG.uniform(0.01, 0.05, (2, 2)).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32)
    y = torch_npu.npu_quant_matmul(x1, x2, scale, pertoken_scale=pt, bias=bias, output_dtype=15,
                                   group_sizes=[1, 128, 128])
    col_block = np.arange(n) // 128
    ref = sum((x1[:, j * 128:(j + 1) * 128].astype(np.int64) @ x2[j * 128:(j + 1) * 128])
              * f64(pt[:, j:j + 1]) * f64(scale[j, col_block]) for j in range(2)) + f64(bias)
    close(y.numpy(), ref, BF16)


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(scale=np.ones(7, np.float32)), "scale", r"\(1,\) or \(n,\)"),
    (dict(pertoken_scale=np.ones(M + 1, np.float32), output_dtype=15), "pertoken_scale", r"\(m,\)"),
    (dict(bias=np.ones((1, N), np.int32)), "bias", r"must be \(n,\)"),
    (dict(bias=np.ones(N, BF16), output_dtype=5), "bias", "combination"),
    (dict(offset=np.ones(N, np.float32), output_dtype=5), "offset", "combination"),
    (dict(output_dtype=6), "output_dtype", "float32"),
    (dict(group_sizes=[1, 2]), "group_sizes", "three"),
    (dict(group_sizes=[1, 64, 64], pertoken_scale=np.ones(M, np.float32), output_dtype=15), "group_sizes",
     r"\[1, 128, 128\]"),
    (dict(y_scale=np.ones(N, np.int64)), "y_scale", "None"),
])
def test_quant_matmul_rules(sim, ab, kwargs, arg, rule):
    x1, x2, _ = ab
    args = dict(scale=np.ones(N, np.float32))
    args.update(kwargs)
    with pytest.raises((OpError, TypeError), match=f"npu_quant_matmul: argument '{arg}'.*{rule}"):
        torch_npu.npu_quant_matmul(x1, x2, **args)


def test_quant_matmul_shape_and_dtype_rules(sim):
    s = np.ones(N, np.float32)
    with pytest.raises(TypeError, match="argument 'x2' has dtype int32; it must match x1's int8"):
        torch_npu.npu_quant_matmul(ints(0, 2, M, K), ints(0, 2, K, N, dtype=np.int32), s)
    with pytest.raises(OpError, match="argument 'x2'.*rows .81. must equal x1's last dimension k=80"):
        torch_npu.npu_quant_matmul(ints(0, 2, M, K), ints(0, 2, K + 1, N), s)
    with pytest.raises(OpError, match="argument 'x2'.*int4 x2 must be"):
        torch_npu.npu_quant_matmul(pack_int4(np.zeros((M, 64))), pack_int4(np.zeros((32, 48))), s[:48])
    with pytest.raises(OpError, match="argument 'x1'.*2 to 6 dimensions"):
        torch_npu.npu_quant_matmul(ints(0, 2, *(1,) * 5, M, K), ints(0, 2, K, N), s)


def test_quant_matmul_on_310p():
    with Simulator("Ascend310P3"):
        x1, x2 = ints(-9, 9, M, K), ints(-9, 9, K, N)
        words = torch_npu.npu_trans_quant_param(np.full(N, 0.02, np.float32))
        y = torch_npu.npu_quant_matmul(x1, x2, words, output_dtype=5)
        close(y.numpy(), (x1.astype(np.int64) @ x2) * fp19(0.02))
        with pytest.raises(TypeError, match="argument 'output_dtype' is bfloat16"):
            torch_npu.npu_quant_matmul(x1, x2, np.ones(N, np.float32), output_dtype=15)
        with pytest.raises(OpError, match="argument 'pertoken_scale'.*not supported on Ascend310P3"):
            torch_npu.npu_quant_matmul(x1, x2, np.ones(N, np.float32), pertoken_scale=np.ones(M, np.float32),
                                       output_dtype=5)


# ============================================================================ npu_weight_quant_batchmatmul
def deq(w, scale, offset=None, group=None, to=np.float16):
    """(w + offset) * scale in float64, rounded to the cube's input dtype (one rounding)."""
    s, o = f64(scale), None if offset is None else f64(offset)
    if group:
        s = np.repeat(s, group, axis=0)[:w.shape[0]]
        o = None if o is None else np.repeat(o, group, axis=0)[:w.shape[0]]
    v = f64(w) + (0 if o is None else o)
    return (v * s).astype(to).astype(np.float64)


@pytest.mark.parametrize("scale_shape", [(1,), (1, 1), (N,), (1, N)])
def test_weight_quant_per_tensor_and_per_channel(sim, scale_shape):
    x, w = RNG.standard_normal((M, K)).astype(np.float16), ints(-8, 8, K, N)
    s = RNG.uniform(0.01, 0.1, scale_shape).astype(np.float16)
    o = RNG.standard_normal(scale_shape).astype(np.float16)
    b = RNG.standard_normal(N).astype(np.float16)
    y = torch_npu.npu_weight_quant_batchmatmul(x, w, s, o, bias=b)
    assert y.dtype.name == "float16" and y.shape == (M, N)
    close(y.numpy(), f64(x) @ deq(w, s.reshape(1, -1), o.reshape(1, -1)) + f64(b))
    (r,) = sim.report().ops
    assert r.core_type == "MIX"               # AIVs dequantise the weight chunks their AIC multiplies next


@pytest.mark.parametrize("group", [32, 64])
def test_weight_quant_per_group_bf16(sim, group):
    x, w = RNG.standard_normal((M, K)).astype(BF16), ints(-8, 8, K, N)
    g = -(-K // group)
    s = RNG.uniform(0.01, 0.1, (g, N)).astype(BF16)
    o = RNG.standard_normal((g, N)).astype(BF16)
    b = RNG.standard_normal(N).astype(np.float32)
    y = torch_npu.npu_weight_quant_batchmatmul(x, w, s, o, bias=b, antiquant_group_size=group)
    assert y.dtype.name == "bfloat16"
    close(y.numpy(), f64(x) @ deq(w, s, o, group, BF16) + f64(b), BF16)


@pytest.mark.parametrize("packed_along_k", [False, True])
def test_weight_quant_int4_layouts(sim, packed_along_k):
    k, n = 64, 48
    x, w = RNG.standard_normal((M, k)).astype(np.float16), RNG.integers(-8, 8, (k, n))
    words = pack_int4(w.T).T.copy() if packed_along_k else torch_npu.npu_convert_weight_to_int4pack(
        w.astype(np.int32)).numpy()
    s = RNG.uniform(0.01, 0.1, (1, n)).astype(np.float16)
    y = torch_npu.npu_weight_quant_batchmatmul(x, words, s)
    close(y.numpy(), f64(x) @ deq(w, s))


def test_weight_quant_int64_scale_with_int32_offset(sim):
    m, k, n = 16, 64, 128
    x, w = RNG.standard_normal((m, k)).astype(np.float16), ints(-8, 8, k, n)
    scale = RNG.uniform(0.01, 0.1, n).astype(np.float32)
    words = torch_npu.npu_trans_quant_param(scale).numpy().reshape(1, n)
    off = ints(-5, 5, 1, n, dtype=np.int32)
    y = torch_npu.npu_weight_quant_batchmatmul(x, w, words, off)
    close(y.numpy(), f64(x) @ deq(w, fp19(scale).reshape(1, n), off))


@pytest.mark.parametrize("int64_scale", [False, True])
def test_weight_quant_output_quantised_to_int8(sim, int64_scale):
    x, w = RNG.standard_normal((M, K)).astype(np.float16), ints(-8, 8, K, N)
    s = RNG.uniform(0.001, 0.01, (1, N)).astype(np.float16)
    qs = RNG.uniform(0.5, 2, (1, N)).astype(np.float32)
    qo = RNG.integers(-3, 3, (1, N)).astype(np.float32)
    acc = f64(x) @ deq(w, s)
    if int64_scale:
        y = torch_npu.npu_weight_quant_batchmatmul(x, w, s, quant_scale=torch_npu.npu_trans_quant_param(qs, qo))
        ref = sat8(acc * fp19(qs) + qo)
    else:
        y = torch_npu.npu_weight_quant_batchmatmul(x, w, s, quant_scale=qs, quant_offset=qo)
        ref = sat8(acc * f64(qs) + qo)
    assert y.dtype.name == "int8"
    assert np.abs(y.numpy() - ref).max() <= 1                   # fp32 vs float64 accumulation at .5 edges


def test_weight_quant_nz_weight(sim):
    x, w = RNG.standard_normal((M, K)).astype(np.float16), ints(-8, 8, K, N)
    s = RNG.uniform(0.01, 0.1, N).astype(np.float16)
    y = torch_npu.npu_weight_quant_batchmatmul(x, torch_npu.npu_format_cast(w, 29), s)
    close(y.numpy(), f64(x) @ deq(w, s.reshape(1, -1)))


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(antiquant_scale=np.ones(N, np.float32)), "antiquant_scale", "must match x's float16"),
    (dict(antiquant_scale=np.ones((3, N), np.float16)), "antiquant_scale", "must be one of"),
    (dict(antiquant_scale=np.ones((3, N), np.float16), antiquant_group_size=30), "antiquant_group_size",
     "multiple of 32"),
    (dict(antiquant_scale=np.ones((1, N), np.float16), antiquant_group_size=80), "antiquant_scale", ""),
    (dict(antiquant_scale=np.ones((2, N), np.float16), antiquant_group_size=48), "antiquant_group_size",
     "multiple of 32"),
    (dict(antiquant_offset=np.ones(N + 1, np.float16)), "antiquant_offset", "must equal"),
    (dict(quant_offset=np.ones(N, np.float32)), "quant_offset", "without quant_scale"),
    (dict(quant_scale=np.ones(N + 1, np.float32)), "quant_scale", "must be"),
    (dict(bias=np.ones(N, np.float32)), "bias", "must be float16"),
    (dict(antiquant_scale=np.ones(N, np.int64)), "antiquant_scale", "M in \\[1, 96\\]"),
])
def test_weight_quant_rules(sim, kwargs, arg, rule):
    args = dict(x=RNG.standard_normal((M, K)).astype(np.float16), weight=ints(-8, 8, K, N),
                antiquant_scale=np.ones(N, np.float16))
    args.update(kwargs)
    if arg == "antiquant_scale" and rule == "":
        torch_npu.npu_weight_quant_batchmatmul(**args)          # (1, N) is per channel: group size ignored
        return
    with pytest.raises((OpError, TypeError), match=f"npu_weight_quant_batchmatmul: argument '{arg}'.*{rule}"):
        torch_npu.npu_weight_quant_batchmatmul(**args)


def test_weight_quant_shape_rules(sim):
    x, s = RNG.standard_normal((M, K)).astype(np.float16), np.ones(N, np.float16)
    with pytest.raises(OpError, match="argument 'x'.*2-D"):
        torch_npu.npu_weight_quant_batchmatmul(x[None], ints(-8, 8, K, N), s)
    with pytest.raises(OpError, match="argument 'weight'.*must equal x's K=80"):
        torch_npu.npu_weight_quant_batchmatmul(x, ints(-8, 8, K + 1, N), s)
    with pytest.raises(OpError, match="argument 'quant_scale'.*ND weight"):
        torch_npu.npu_weight_quant_batchmatmul(x, torch_npu.npu_format_cast(ints(-8, 8, K, N), 29), s,
                                               quant_scale=np.ones(N, np.float32))
    with Simulator("Ascend310P3"), pytest.raises(TypeError, match="argument 'weight' has dtype int32"):
        torch_npu.npu_weight_quant_batchmatmul(x, pack_int4(np.zeros((K, 48))), np.ones(48, np.float16))


# ============================================================================ modes and timing
def test_meta_mode_matches_full_mode():
    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            e = torch_npu.empty_with_format
            torch_npu.npu_quant_matmul(e((M, K), "int8"), e((K, N), "int8"), e((N,), "float32"))
            torch_npu.npu_quant_matmul(e((M, K), "int8"), e((K, N), "int8"), e((N,), "float32"),
                                       pertoken_scale=e((M,), "float32"), output_dtype=15)
            torch_npu.npu_weight_quant_batchmatmul(e((M, K), "float16"), e((K, N), "int8"), e((N,), "float16"))
            return [(r.name, r.attrs.get("kernel"), r.duration_us, r.bytes_read, r.bytes_written)
                    for r in s.report().ops]
    full, meta = run("full"), run("meta")
    assert full == meta and len(full) == 5


def test_int8_quant_matmul_beats_the_fp16_gemm_of_the_same_shape():
    m = k = n = 2048
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        e = torch_npu.empty_with_format
        torch_npu.npu_linear(e((m, k), "float16"), e((n, k), "float16"))
        torch_npu.npu_quant_matmul(e((m, k), "int8"), e((k, n), "int8"), e((n,), "int64"), output_dtype=5)
        fp16, int8 = sim.report().ops
    assert int8.duration_us < 0.75 * fp16.duration_us
    assert int8.flops == fp16.flops == 2 * m * n * k


def test_weight_quant_is_one_mix_kernel_handing_the_weight_over_in_gm():
    k = n = 4096
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        e = torch_npu.empty_with_format
        torch_npu.npu_weight_quant_batchmatmul(e((8, k), "float16"), e((k, n), "int8"), e((n,), "float16"))
        (r,) = sim.report().ops
    assert r.core_type == "MIX" and r.block_dim == sim.chip.cores.aic
    # the AIVs read the int8 weight once and write it as fp16; the cube reads that fp16 copy once
    assert k * n * 3 <= r.bytes_read < k * n * 3.2       # (+ x, and scales per chunk)
    assert k * n * 2 <= r.bytes_written < k * n * 2.01
    assert r.l2_hit_rate > 0.6                 # the hand-over stays in L2
