"""Norm ops against float64 references written from the op pages, their rules, meta mode, timing."""
import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.ops import OpError

NP = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32}
RTOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def rnd(shape, dtype, seed=0, scale=1.0, shift=0.0):
    """Random values rounded to ``dtype``; and their float64 (what the reference sees)."""
    x = np.random.default_rng(seed).standard_normal(shape) * scale + shift
    xd = np.asarray(x).astype(NP[dtype])
    return xd, xd.astype(np.float64)


def assert_close(out, ref64, dtype, *, centred=False):
    """``out`` against the float64 reference rounded to ``dtype``. ``centred`` outputs come from x - mean:
    near-zero ones carry the cancellation error of any fp32 kernel, so they are held to an absolute
    tolerance on the O(1) scale of normalised data as well."""
    out = np.asarray(out)
    assert out.dtype == NP[dtype]
    ref = ref64.astype(NP[dtype]).astype(np.float64)
    atol = RTOL[dtype] if centred else float(ml_dtypes.finfo(NP[dtype]).smallest_normal)
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=RTOL[dtype], atol=atol)


def ref_rms_norm(x, gamma, eps):
    axes = tuple(range(x.ndim - gamma.ndim, x.ndim))
    rstd = 1 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    return x * rstd * gamma, rstd


def ref_layer_norm(x, r, weight, bias, eps):
    axes = tuple(range(x.ndim - r, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return y * (1 if weight is None else weight) + (0 if bias is None else bias)


def ref_group_norm_swish(x, groups, weight, bias, eps, scale):
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    y = ((g - mean) * rstd).reshape(x.shape)
    y = y * (1 if weight is None else weight.reshape(bshape)) + (0 if bias is None else bias.reshape(bshape))
    return y / (1 + np.exp(-scale * y)), mean.reshape(n, groups), rstd.reshape(n, groups)


@pytest.fixture
def sim():
    with Simulator("Ascend910B2") as s:
        yield s


# ----------------------------------------------------------------------------------- npu_rms_norm
RMS_PAIRS = [("float16", "float32"), ("bfloat16", "float32"), ("float16", "float16"),
             ("bfloat16", "bfloat16"), ("float32", "float32")]


@pytest.mark.parametrize("xdt,gdt", RMS_PAIRS)
@pytest.mark.parametrize("shape,gshape", [((3, 37), (37,)), ((2, 5, 33), (33,)), ((2, 5, 33), (5, 33)),
                                          ((24, 1, 128), (128,))])
def test_rms_norm_numbers(sim, xdt, gdt, shape, gshape):
    x, x64 = rnd(shape, xdt, seed=1, scale=2.0, shift=0.5)
    g, g64 = rnd(gshape, gdt, seed=2)
    y, rstd = torch_npu.npu_rms_norm(x, g, epsilon=1e-5)
    ry, rr = ref_rms_norm(x64, g64, 1e-5)
    assert y.shape == shape and y.dtype.name == xdt
    assert rstd.shape == shape[:len(shape) - len(gshape)] + (1,) * len(gshape) and rstd.dtype.name == "float32"
    assert_close(y.numpy(), ry, xdt)
    assert_close(rstd.numpy(), rr, "float32")


def test_rms_norm_default_epsilon_is_1e_6(sim):
    x = np.full((2, 16), 1e-3, np.float32)                   # mean(x^2) = 1e-6: eps doubles it
    _, rstd = torch_npu.npu_rms_norm(x, np.ones(16, np.float32))
    np.testing.assert_allclose(rstd.numpy().ravel(), 1 / np.sqrt(2e-6), rtol=1e-5)


@pytest.mark.parametrize("xdt,gdt", [("float32", "float32"), ("bfloat16", "float32")])
def test_rms_norm_epsilon_is_used(sim, xdt, gdt):
    x, x64 = rnd((4, 40), xdt, seed=17, scale=0.1)            # mean(x^2) ~ 0.01: eps = 0.02 dominates
    g, g64 = rnd((40,), gdt, seed=18)
    y, rstd = torch_npu.npu_rms_norm(x, g, 0.02)
    ry, rr = ref_rms_norm(x64, g64, 0.02)
    assert_close(y.numpy(), ry, xdt)
    assert_close(rstd.numpy(), rr, "float32")


def test_rms_norm_rules(sim):
    x = np.zeros((4, 32), np.float32)
    with pytest.raises(TypeError, match=r"npu_rms_norm: arguments 'self' \(float32\) and 'gamma' \(float16\)"):
        torch_npu.npu_rms_norm(x, np.ones(32, np.float16))
    with pytest.raises(TypeError, match=r"npu_rms_norm: arguments 'self' \(float16\) and 'gamma' \(bfloat16\)"):
        torch_npu.npu_rms_norm(x.astype(np.float16), np.ones(32, ml_dtypes.bfloat16))
    with pytest.raises(OpError, match="npu_rms_norm: argument 'gamma': shape .* trailing dims of self"):
        torch_npu.npu_rms_norm(x, np.ones(31, np.float32))
    with pytest.raises(OpError, match="npu_rms_norm: argument 'gamma': must have 1 to self.dim"):
        torch_npu.npu_rms_norm(x, np.ones((1, 4, 32), np.float32))
    with pytest.raises(OpError, match="npu_rms_norm: argument 'self': must have 2 to 8 dimensions"):
        torch_npu.npu_rms_norm(np.zeros(32, np.float32), np.ones(32, np.float32))
    with pytest.raises(OpError, match="npu_rms_norm: argument 'self': must have 2 to 8 dimensions"):
        torch_npu.npu_rms_norm(np.zeros((1,) * 9, np.float32), np.ones(1, np.float32))
    with pytest.raises(TypeError, match="npu_rms_norm: argument 'epsilon' must be a float"):
        torch_npu.npu_rms_norm(x, np.ones(32, np.float32), epsilon="1e-6")
    with pytest.raises(TypeError, match="npu_rms_norm: argument 'gamma' must be a tensor"):
        torch_npu.npu_rms_norm(x, None)


def test_rms_norm_on_training_and_inference_products():
    with Simulator("Ascend910A"):
        with pytest.raises(TypeError, match=r"npu_rms_norm: arguments 'self' \(float16\) and 'gamma' \(float32\)"):
            torch_npu.npu_rms_norm(np.zeros((4, 32), np.float16), np.ones(32, np.float32))
        x, x64 = rnd((4, 32), "float16", seed=3)
        y, _ = torch_npu.npu_rms_norm(x, np.ones(32, np.float16))
        assert_close(y.numpy(), ref_rms_norm(x64, np.ones(32), 1e-6)[0], "float16")
    with Simulator("Ascend310P3"):
        torch_npu.npu_rms_norm(np.zeros((4, 16), np.float16), np.ones(16, np.float16))     # 32-byte tail
        with pytest.raises(OpError, match="npu_rms_norm: argument 'self': the tail axis .* at least 32 bytes"):
            torch_npu.npu_rms_norm(np.zeros((4, 8), np.float16), np.ones(8, np.float16))


def test_rms_norm_empty_input(sim):
    y, rstd = torch_npu.npu_rms_norm(np.zeros((0, 16), np.float16), np.ones(16, np.float16))
    assert y.shape == (0, 16) and rstd.shape == (0, 1)


# ---------------------------------------------------------------------------- npu_layer_norm_eval
def test_layer_norm_eval_documented_example(sim):
    x = np.array([[0.1863, 0.3755, 0.1115, 0.7308], [0.6004, 0.6832, 0.8951, 0.2087],
                  [0.8548, 0.0176, 0.8498, 0.3703], [0.5609, 0.0114, 0.5021, 0.1242],
                  [0.3966, 0.3022, 0.2323, 0.3914], [0.1554, 0.0149, 0.1718, 0.4972]], np.float32)
    expected = [[-0.6879, 0.1022, -1.0002, 1.5859], [0.0143, 0.3474, 1.1999, -1.5616],
                [0.9422, -1.4361, 0.9280, -0.4341], [1.1061, -1.2204, 0.8571, -0.7428],
                [0.9685, -0.4173, -1.4434, 0.8922], [-0.3078, -1.1025, -0.2151, 1.6255]]
    y = torch_npu.npu_layer_norm_eval(x, [4], np.ones(4, np.float32), np.zeros(4, np.float32), 1e-5)
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("dt,wdt", [("float32", "float32"), ("float16", "float16"), ("float16", "float32"),
                                    ("bfloat16", "bfloat16"), ("bfloat16", "float32")])
@pytest.mark.parametrize("shape,ns", [((3, 37), (37,)), ((2, 5, 33), (33,)), ((2, 5, 33), (5, 33))])
@pytest.mark.parametrize("affine", ["none", "weight", "both"])
def test_layer_norm_eval_numbers(sim, dt, wdt, shape, ns, affine):
    x, x64 = rnd(shape, dt, seed=4, scale=3.0, shift=1.0)
    w, w64 = rnd(ns, wdt, seed=5) if affine != "none" else (None, None)
    b, b64 = rnd(ns, wdt, seed=6) if affine == "both" else (None, None)
    y = torch_npu.npu_layer_norm_eval(x, list(ns), weight=w, bias=b, eps=1e-4)
    assert y.shape == shape
    assert_close(y.numpy(), ref_layer_norm(x64, len(ns), w64, b64, 1e-4), dt, centred=True)


def test_layer_norm_eval_rules(sim):
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(OpError, match="npu_layer_norm_eval: argument 'normalized_shape': \\[5\\] must equal"):
        torch_npu.npu_layer_norm_eval(x, [5])
    with pytest.raises(OpError, match="npu_layer_norm_eval: argument 'normalized_shape': \\[2, 4, 6\\] must"):
        torch_npu.npu_layer_norm_eval(x, [2, 4, 6])
    with pytest.raises(OpError, match="npu_layer_norm_eval: argument 'normalized_shape': must have at least one"):
        torch_npu.npu_layer_norm_eval(x, [])
    with pytest.raises(TypeError, match="npu_layer_norm_eval: argument 'normalized_shape' must be a list of ints"):
        torch_npu.npu_layer_norm_eval(x, [6.0])
    with pytest.raises(OpError, match="npu_layer_norm_eval: argument 'weight': shape \\(3,\\) must equal"):
        torch_npu.npu_layer_norm_eval(x, [6], np.ones(3, np.float32))
    with pytest.raises(OpError, match="npu_layer_norm_eval: argument 'bias': shape \\(4, 6\\) must equal"):
        torch_npu.npu_layer_norm_eval(x, [6], None, np.ones((4, 6), np.float32))
    with pytest.raises(TypeError, match="npu_layer_norm_eval: argument 'weight' has dtype float16"):
        torch_npu.npu_layer_norm_eval(x, [6], np.ones(6, np.float16))          # lower precision than input
    with pytest.raises(TypeError, match="npu_layer_norm_eval: arguments 'weight' \\(float32\\) and 'bias'"):
        torch_npu.npu_layer_norm_eval(x.astype(np.float16), [6], np.ones(6, np.float32), np.ones(6, np.float16))
    with pytest.raises(TypeError, match="npu_layer_norm_eval: argument 'input' has dtype int32"):
        torch_npu.npu_layer_norm_eval(x.astype(np.int32), [6])
    with pytest.raises(TypeError, match="npu_layer_norm_eval: argument 'eps' must be a float"):
        torch_npu.npu_layer_norm_eval(x, [6], eps=None)
    with Simulator("Ascend910A"):
        with pytest.raises(TypeError, match="npu_layer_norm_eval: argument 'input' has dtype bfloat16"):
            torch_npu.npu_layer_norm_eval(x.astype(ml_dtypes.bfloat16), [6])


# ------------------------------------------------------------- npu_group_norm_silu / _swish
@pytest.mark.parametrize("dt,wdt", [("float32", "float32"), ("float16", "float16"), ("float16", "float32"),
                                    ("bfloat16", "bfloat16"), ("bfloat16", "float32")])
@pytest.mark.parametrize("shape,groups", [((2, 6, 5, 7), 3), ((3, 4, 11), 2), ((2, 8), 8), ((2, 6, 3, 2, 2), 1)])
def test_group_norm_silu_numbers(sim, dt, wdt, shape, groups):
    x, x64 = rnd(shape, dt, seed=7, scale=2.0, shift=-0.5)
    w, w64 = rnd(shape[1], wdt, seed=8)
    b, b64 = rnd(shape[1], wdt, seed=9)
    out, mean, rstd = torch_npu.npu_group_norm_silu(x, w, b, groups, eps=1e-4)
    ro, rm, rr = ref_group_norm_swish(x64, groups, w64, b64, 1e-4, 1.0)
    assert out.shape == shape and mean.shape == rstd.shape == (shape[0], groups)
    assert out.dtype.name == mean.dtype.name == rstd.dtype.name == dt
    assert_close(out.numpy(), ro, dt, centred=True)
    assert_close(mean.numpy(), rm, dt, centred=True)
    assert_close(rstd.numpy(), rr, dt)


def test_group_norm_silu_without_affine(sim):
    x, x64 = rnd((2, 6, 9), "float32", seed=10)
    out, _, _ = torch_npu.npu_group_norm_silu(x, None, None, 2)
    assert_close(out.numpy(), ref_group_norm_swish(x64, 2, None, None, 1e-5, 1.0)[0], "float32", centred=True)


@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape,groups", [((3, 4, 6), 4), ((2, 6, 5, 7), 2)])
def test_group_norm_swish_numbers(sim, dt, shape, groups):
    x, x64 = rnd(shape, dt, seed=11, scale=1.5, shift=0.3)
    w, w64 = rnd(shape[1], dt, seed=12)
    b, b64 = rnd(shape[1], dt, seed=13)
    out, mean, rstd = torch_npu.npu_group_norm_swish(x, groups, w, b, eps=1e-5, swish_scale=1.7)
    ro, rm, rr = ref_group_norm_swish(x64, groups, w64, b64, 1e-5, 1.7)
    assert mean.shape == rstd.shape == (shape[0], groups) and mean.dtype.name == dt
    assert_close(out.numpy(), ro, dt, centred=True)
    assert_close(mean.numpy(), rm, dt, centred=True)
    assert_close(rstd.numpy(), rr, dt)


def test_group_norm_swish_optional_scalars_take_their_defaults(sim):
    x, x64 = rnd((2, 4, 5), "float32", seed=14)
    w, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    out, _, _ = torch_npu.npu_group_norm_swish(x, 2, w, b, eps=None, swish_scale=None)
    assert_close(out.numpy(), ref_group_norm_swish(x64, 2, None, None, 1e-5, 1.0)[0], "float32", centred=True)


@pytest.mark.parametrize("op", ["npu_group_norm_silu", "npu_group_norm_swish"])
def test_group_norm_shared_rules(sim, op):
    garg = "group" if op == "npu_group_norm_silu" else "num_groups"

    def call(x, groups, w, b, **kw):
        if op == "npu_group_norm_silu":
            return torch_npu.npu_group_norm_silu(x, w, b, groups, **kw)
        return torch_npu.npu_group_norm_swish(x, groups, w, b, **kw)

    x, w = np.zeros((2, 6, 4), np.float32), np.ones(6, np.float32)
    with pytest.raises(OpError, match=f"{op}: argument '{garg}': must divide dimension 1 of input \\(6\\), got 4"):
        call(x, 4, w, w)
    with pytest.raises(OpError, match=f"{op}: argument '{garg}': must be >= 1"):
        call(x, 0, w, w)
    with pytest.raises(OpError, match=f"{op}: argument 'input': must have 2 to 8 dimensions"):
        call(np.zeros(6, np.float32), 2, w, w)
    with pytest.raises(OpError, match=f"{op}: argument 'input': must have 2 to 8 dimensions"):
        call(np.zeros((1, 6) + (1,) * 7, np.float32), 2, w, w)
    with pytest.raises(OpError, match=f"{op}: argument 'weight': must be 1-D with 6 elements"):
        call(x, 2, np.ones(4, np.float32), w)
    with pytest.raises(OpError, match=f"{op}: argument 'bias': must be 1-D with 6 elements"):
        call(x, 2, w, np.ones((1, 6), np.float32))
    with pytest.raises(TypeError, match=f"{op}: argument 'weight' has dtype float16"):
        call(x, 2, w.astype(np.float16), w.astype(np.float16))               # lower precision than input
    with pytest.raises(TypeError, match=f"{op}: argument 'input' has dtype int32"):
        call(x.astype(np.int32), 2, w, w)


def test_group_norm_silu_rules(sim):
    x, w = np.zeros((2, 6, 4), np.float16), np.ones(6, np.float32)
    with pytest.raises(TypeError, match=r"npu_group_norm_silu: arguments 'weight' \(float32\) and 'bias' \(float16\)"):
        torch_npu.npu_group_norm_silu(x, w, w.astype(np.float16), 2)
    with pytest.raises(OpError, match="npu_group_norm_silu: argument 'eps': must be > 0"):
        torch_npu.npu_group_norm_silu(x, w, w, 2, eps=0.0)
    with pytest.raises(OpError, match="npu_group_norm_silu: argument 'input': every dimension must be > 0"):
        torch_npu.npu_group_norm_silu(np.zeros((2, 6, 0), np.float16), w, w, 2)
    with Simulator("Ascend310P3"):
        with pytest.raises(TypeError, match="npu_group_norm_silu: argument 'input' has dtype bfloat16"):
            torch_npu.npu_group_norm_silu(x.astype(ml_dtypes.bfloat16), None, None, 2)


def test_group_norm_swish_rules(sim):
    x, w = np.zeros((2, 6, 4), np.float16), np.ones(6, np.float16)
    with pytest.raises(TypeError, match="npu_group_norm_swish: argument 'weight' has dtype float32"):
        torch_npu.npu_group_norm_swish(x, 2, w.astype(np.float32), w)           # must equal the input's
    with pytest.raises(TypeError, match="npu_group_norm_swish: argument 'bias' must be a tensor"):
        torch_npu.npu_group_norm_swish(x, 2, w, None)                           # required
    bad = x.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(OpError, match="npu_group_norm_swish: argument 'input': must not contain inf"):
        torch_npu.npu_group_norm_swish(bad, 2, w, w)
    with pytest.raises(OpError, match="npu_group_norm_swish: argument 'weight': must not contain inf"):
        torch_npu.npu_group_norm_swish(x, 2, np.full(6, np.nan, np.float16), w)
    with pytest.raises(TypeError, match="npu_group_norm_swish: argument 'swish_scale' must be a float"):
        torch_npu.npu_group_norm_swish(x, 2, w, w, swish_scale="2")


# ------------------------------------------------------------------------ meta mode and timing
def _run(mode, calls):
    with Simulator("Ascend910B2", mode=mode, trace="ops") as sim:
        outs = [o for fn in calls for o in fn()]
        rows = [(r.name, r.duration_us, r.bytes_read, r.bytes_written) for r in sim.report().ops]
    return [(o.shape, o.dtype, o.format) for o in outs], rows


def test_meta_mode_gives_the_same_shapes_and_time():
    x = rnd((64, 5, 96), "bfloat16", seed=15)[0]
    g32 = np.ones(96, np.float32)
    img = rnd((2, 32, 9, 9), "float16", seed=16)[0]
    c16 = np.ones(32, np.float16)
    calls = [lambda: torch_npu.npu_rms_norm(x, g32),
             lambda: (torch_npu.npu_layer_norm_eval(x, [5, 96]),),
             lambda: torch_npu.npu_group_norm_silu(img, c16, c16, 8),
             lambda: torch_npu.npu_group_norm_swish(img, 4, c16, c16, swish_scale=0.5)]
    full, meta = _run("full", calls), _run("meta", calls)
    assert full == meta
    assert len(full[1]) == len(calls) and all(r[1] > 0 for r in full[1])


def test_rms_norm_8192_square_is_memory_or_vector_bound():
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        x = torch_npu.empty_with_format((8192, 8192), "float16")
        g = torch_npu.empty_with_format((8192,), "float16")
        torch_npu.npu_rms_norm(x, g)
        (row,) = sim.report().ops
    x_bytes = 8192 * 8192 * 2
    assert row.bytes_written == x_bytes + 8192 * 4                   # y and the fp32 rstd
    assert x_bytes < row.bytes_read <= x_bytes + sim.chip.vector_cores * 8192 * 2   # x once, gamma per core
    assert row.bound in ("hbm", "vector") and row.block_dim == sim.chip.vector_cores
    # HBM carries the reads and the written lines L2 evicts (the rest stays dirty in L2)
    hbm_us = row.hbm_bytes / (sim.chip.memory.hbm_bandwidth_GBps * 1e3)
    vector_us = row.pipe_busy_us["VECTOR"] / row.attrs["cores_used"]     # per core
    assert hbm_us <= row.duration_us <= max(hbm_us, vector_us) / 0.7


def test_rows_longer_than_ub_are_streamed_twice():
    cols = 128 * 1024                                   # 512 KiB of fp32 per row: more than UB holds
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        x = torch_npu.empty_with_format((96, cols), "float32")
        torch_npu.npu_rms_norm(x, torch_npu.empty_with_format((cols,), "float32"))
        torch_npu.npu_layer_norm_eval(x, [cols])
        rms, ln = sim.report().ops
    x_bytes = 96 * cols * 4
    assert rms.bytes_read >= 2 * x_bytes and ln.bytes_read >= 2 * x_bytes      # statistics, then normalise
    assert rms.bytes_written >= x_bytes and ln.bytes_written == x_bytes


def test_long_rows_do_their_vector_work_once():
    """Streaming a row twice re-reads it, but each vector step still runs once over it: the vector
    busy time of long rows matches that of the same elements in short rows."""
    def vector_us(shape):
        with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
            x = torch_npu.empty_with_format(shape, "float32")
            torch_npu.npu_rms_norm(x, torch_npu.empty_with_format(shape[1:], "float32"))
            (row,) = sim.report().ops
        return row.pipe_busy_us["VECTOR"]
    assert vector_us((96, 128 * 1024)) == pytest.approx(vector_us((96 * 32, 4096)), rel=0.05)
