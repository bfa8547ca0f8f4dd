"""Softmax and dropout ops: numbers against float64 formulas from the op pages, the dropout
masks' format, statistics and consistency, the documented rules, meta mode, and timing."""
import math

import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.ops import OpError

BF16 = ml_dtypes.bfloat16
# relative tolerance of each dtype against a float64 reference; the absolute floor covers
# probabilities near fp16's subnormal range
TOL = {np.float32: 1e-5, np.float16: 2e-3, BF16: 1.6e-2}
ATOL = 1e-6


@pytest.fixture
def sim():
    with Simulator("Ascend910B2", trace="ops") as s:
        yield s


def rng(seed=0):
    return np.random.default_rng(seed)


def ref_softmax(y):
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_scaled_masked_softmax(x, mask, scale):
    """softmax over the last axis of x * scale, with masked (True) positions set to -10000."""
    y = np.asarray(x).astype(np.float64) * scale
    return ref_softmax(np.where(mask, -10000.0, y))


def assert_close(out, ref, dtype):
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=TOL[dtype], atol=ATOL)


def kept_fraction_bound(n, keep):
    """Five standard deviations of a binomial fraction: a fair mask is outside with p < 1e-6."""
    return 5 * math.sqrt(keep * (1 - keep) / n)


# ----- npu_scaled_masked_softmax -----
@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
@pytest.mark.parametrize("x_shape,mask_shape", [((2, 3, 32, 96), (2, 3, 32, 96)), ((2, 3, 64, 96), (2, 1, 64, 96)),
                                                ((1, 5, 64, 128), (1, 1, 64, 128)), ((3, 2, 32, 64), (1, 2, 32, 64))])
@pytest.mark.parametrize("scale", [0.7, 2])
def test_scaled_masked_softmax_matches_the_formula(sim, dtype, x_shape, mask_shape, scale):
    x = (rng(1).standard_normal(x_shape) * 3).astype(dtype)
    mask = rng(2).random(mask_shape) < 0.3
    out = torch_npu.npu_scaled_masked_softmax(x, mask, scale)
    assert out.shape == x_shape
    assert_close(out.numpy(), ref_scaled_masked_softmax(x, mask, scale), dtype)


def test_true_in_the_mask_suppresses_a_position(sim):
    x = np.zeros((1, 1, 32, 64), np.float32)
    mask = np.zeros(x.shape, bool)
    mask[..., 32:] = True
    out = torch_npu.npu_scaled_masked_softmax(x, mask).numpy()
    assert np.allclose(out[..., :32], 1 / 32) and np.all(out[..., 32:] < 1e-30)


def test_a_fully_masked_row_is_uniform_not_nan(sim):
    x = rng(3).standard_normal((1, 1, 32, 64)).astype(np.float16)
    out = torch_npu.npu_scaled_masked_softmax(x, np.ones(x.shape, bool)).numpy()
    assert np.allclose(out.astype(np.float32), 1 / 64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_fixed_triu_mask_masks_above_the_diagonal_instead_of_mask(sim, dtype):
    x = rng(4).standard_normal((2, 2, 64, 96)).astype(dtype)
    everything = np.ones((2, 1, 64, 96), bool)                   # ignored when fixed_triu_mask=True
    out = torch_npu.npu_scaled_masked_softmax(x, everything, 0.5, True).numpy()
    triu = np.triu(np.ones((64, 96), bool), 1)
    assert_close(out, ref_scaled_masked_softmax(x, triu, 0.5), dtype)
    assert np.all(out[0, 0, 0, 1:] == 0) and out[0, 0, 0, 0] == 1


def test_fractal_nz_input_gives_the_same_numbers(sim):
    x = rng(5).standard_normal((1, 2, 32, 64)).astype(np.float16)
    mask = rng(6).random((1, 1, 32, 64)) < 0.5
    nd = torch_npu.npu_scaled_masked_softmax(x, mask).numpy()
    nz = torch_npu.npu_scaled_masked_softmax(torch_npu.npu_format_cast(x, 29), mask)
    assert nz.npu_format == 29 and np.array_equal(nz.numpy(), nd)


@pytest.mark.parametrize("x_shape,mask_shape,arg,rule", [
    ((2, 3, 37, 64), (2, 3, 37, 64), "x", "H = 37 must lie in \\[32, 4096\\] and be a multiple of 32"),
    ((2, 3, 32, 4128), (2, 3, 32, 4128), "x", "W = 4128"),
    ((2, 3, 32, 16), (2, 3, 32, 16), "x", "W = 16"),
    ((3, 32, 64), (3, 32, 64), "x", "4-D"),
    ((2, 3, 32, 64), (3, 32, 64), "mask", "4-D"),
    ((2, 3, 32, 64), (2, 3, 32, 32), "mask", "last two dimensions"),
    ((2, 3, 32, 64), (2, 2, 32, 64), "mask", "does not broadcast"),
    ((2, 3, 32, 64), (3, 3, 32, 64), "mask", "does not broadcast"),
])
def test_scaled_masked_softmax_rules(sim, x_shape, mask_shape, arg, rule):
    with pytest.raises(OpError, match=f"npu_scaled_masked_softmax: argument '{arg}': .*{rule}"):
        torch_npu.npu_scaled_masked_softmax(np.zeros(x_shape, np.float16), np.zeros(mask_shape, bool))


def test_scaled_masked_softmax_formats(sim):
    x, m = np.zeros((1, 2, 32, 32), np.float16), np.zeros((1, 1, 32, 32), bool)
    with pytest.raises(OpError, match="argument 'x': format must be ND or FRACTAL_NZ, got NC1HWC0"):
        torch_npu.npu_scaled_masked_softmax(torch_npu.npu_format_cast(x, 3), m)


def test_scaled_masked_softmax_types(sim):
    x, m = np.zeros((1, 1, 32, 32), np.float16), np.zeros((1, 1, 32, 32), bool)
    with pytest.raises(TypeError, match="argument 'x' has dtype int32"):
        torch_npu.npu_scaled_masked_softmax(x.astype(np.int32), m)
    with pytest.raises(TypeError, match="argument 'mask' has dtype uint8"):
        torch_npu.npu_scaled_masked_softmax(x, m.astype(np.uint8))
    with pytest.raises(TypeError, match="argument 'scale' must be a float"):
        torch_npu.npu_scaled_masked_softmax(x, m, "0.5")
    with pytest.raises(TypeError, match="argument 'fixed_triu_mask' must be a bool"):
        torch_npu.npu_scaled_masked_softmax(x, m, 1.0, 1)


# ----- npu_dropout_with_add_softmax -----
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("prob", [0.0, 0.1, 0.9])
def test_dropout_with_add_softmax(sim, dtype, prob):
    shape = (1, 32, 128, 256)
    x, x1 = (rng(s).random(shape).astype(dtype) for s in (7, 8))
    alpha = 2
    mask, soft, dropped = torch_npu.npu_dropout_with_add_softmax(x, x1, alpha, prob, -1)
    # softmax(x1 + alpha * self) over the last axis
    ref = ref_softmax(x1.astype(np.float64) + alpha * x.astype(np.float64))
    assert soft.shape == dropped.shape == shape
    assert soft.numpy().dtype == dropped.numpy().dtype == np.dtype(dtype)
    assert_close(soft.numpy(), ref, dtype)
    # the mask: one 0/1 byte per element
    m = mask.numpy()
    assert m.dtype == np.uint8 and m.shape == (math.prod(shape),) and set(np.unique(m)) <= {0, 1}
    keep = 1 - prob
    kept = m.reshape(shape).astype(bool)
    assert abs(kept.mean() - keep) <= kept_fraction_bound(kept.size, keep)
    # the dropout output is the softmax with the mask applied and kept values scaled by 1/(1-prob)
    assert_close(dropped.numpy(), np.where(kept, soft.numpy().astype(np.float64) / keep, 0), dtype)
    assert np.all(dropped.numpy()[~kept] == 0)
    if prob == 0:
        assert kept.all() and np.array_equal(dropped.numpy(), soft.numpy())


@pytest.mark.parametrize("kwargs,arg,rule", [
    (dict(prob=1.0), "prob", "0 <= prob < 1"),
    (dict(prob=-0.1), "prob", "0 <= prob < 1"),
    (dict(dim=3), "dim", "must be -1"),
    (dict(shape=(1, 32, 100, 128)), "self", "H = 100 must be one of 128, 256, 384, 512"),
    (dict(shape=(1, 32, 128, 640)), "self", "W = 640"),
    (dict(shape=(1, 16, 128, 128)), "self", "N \\* C = 16 must be a multiple of 32"),
    (dict(shape=(32, 128, 128)), "self", "4-D"),
    (dict(x1_shape=(1, 32, 128, 256)), "x1", "self's shape"),
])
def test_dropout_with_add_softmax_rules(sim, kwargs, arg, rule):
    shape = kwargs.pop("shape", (1, 32, 128, 128))
    x1_shape = kwargs.pop("x1_shape", shape)
    args = dict(alpha=1.0, prob=0.1, dim=-1) | kwargs
    with pytest.raises(OpError, match=f"npu_dropout_with_add_softmax: argument '{arg}': .*{rule}"):
        torch_npu.npu_dropout_with_add_softmax(np.zeros(shape, np.float16), np.zeros(x1_shape, np.float16), **args)


def test_dropout_with_add_softmax_types(sim):
    x = np.zeros((1, 32, 128, 128), np.float16)
    with pytest.raises(TypeError, match="argument 'self' has dtype bfloat16"):
        torch_npu.npu_dropout_with_add_softmax(x.astype(BF16), x.astype(BF16), 1.0, 0.1, -1)
    with pytest.raises(TypeError, match="argument 'x1' has dtype float32; it must be self's dtype"):
        torch_npu.npu_dropout_with_add_softmax(x, x.astype(np.float32), 1.0, 0.1, -1)
    with pytest.raises(TypeError, match="argument 'alpha' must be a float"):
        torch_npu.npu_dropout_with_add_softmax(x, x, None, 0.1, -1)


# ----- _npu_dropout -----
def unpack(mask, n):
    """The keep bits of a _npu_dropout mask: element i is bit i % 8 of byte i // 8."""
    return np.unpackbits(mask, bitorder="little")[:n].astype(bool)


def test_npu_dropout_page_example_shapes(sim):
    out, mask = torch_npu._npu_dropout(np.array([1., 2., 3., 4.], np.float32), 0.3)
    assert out.shape == (4,) and mask.shape == (16,) and mask.numpy().dtype == np.uint8   # 128 bits for 4 elements
    kept = unpack(mask.numpy(), 4)
    np.testing.assert_allclose(out.numpy(), np.where(kept, np.array([1., 2., 3., 4.]) / 0.7, 0), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
@pytest.mark.parametrize("shape,p", [((300, 77), 0.25), ((2, 3, 37, 64), 0.5), ((1 << 20,), 0.3)])
def test_npu_dropout_mask_statistics_and_consistency(sim, dtype, shape, p):
    x = (rng(9).random(shape) + 0.5).astype(dtype)              # no zeros: a zero output means dropped
    out, mask = torch_npu._npu_dropout(x, p)
    n = x.size
    m = mask.numpy()
    assert out.shape == shape and out.numpy().dtype == np.dtype(dtype)
    assert m.dtype == np.uint8 and m.shape == (-(-n // 128) * 16,)
    kept = unpack(m, n).reshape(shape)
    assert abs(kept.mean() - (1 - p)) <= kept_fraction_bound(n, 1 - p)
    # applying the mask to the input reproduces the output
    assert np.array_equal(out.numpy() != 0, kept)
    assert_close(out.numpy(), np.where(kept, x.astype(np.float64) / (1 - p), 0), dtype)


def test_npu_dropout_edge_probabilities(sim):
    x = rng(10).standard_normal((5, 37)).astype(np.float16)
    out, mask = torch_npu._npu_dropout(x, 0.0)
    assert np.array_equal(out.numpy(), x) and np.all(mask.numpy() == 0xFF)
    out, mask = torch_npu._npu_dropout(x, 1.0)
    assert not out.numpy().any() and not mask.numpy().any()


def test_npu_dropout_of_an_empty_tensor(sim):
    out, mask = torch_npu._npu_dropout(np.zeros((0, 3), np.float32), 0.5)
    assert out.shape == (0, 3) and mask.shape == (0,)


def test_npu_dropout_masks_are_deterministic_per_call(sim):
    x = rng(11).standard_normal((64, 64)).astype(np.float32)
    _, a = torch_npu._npu_dropout(x, 0.5)
    _, b = torch_npu._npu_dropout(x, 0.5)
    _, c = torch_npu._npu_dropout(x + 1, 0.5)
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), c.numpy())


def test_npu_dropout_rules(sim):
    x = np.ones(8, np.float16)
    for p in (1.5, -0.1):
        with pytest.raises(OpError, match="_npu_dropout: argument 'p': .*0 <= p <= 1"):
            torch_npu._npu_dropout(x, p)
    with pytest.raises(TypeError, match="_npu_dropout: argument 'p' must be a float"):
        torch_npu._npu_dropout(x, "0.5")
    with pytest.raises(TypeError, match="_npu_dropout: argument 'self' has dtype int32"):
        torch_npu._npu_dropout(x.astype(np.int32), 0.5)


# ----- the kernels -----
def test_meta_mode_gives_the_same_shapes_dtypes_and_time():
    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            x = torch_npu.empty_with_format((2, 4, 64, 512), "bfloat16")
            m = torch_npu.empty_with_format((2, 1, 64, 512), "bool")
            a = torch_npu.empty_with_format((1, 32, 128, 256), "float16")
            d = torch_npu.empty_with_format((3, 1000), "float32")
            outs = [torch_npu.npu_scaled_masked_softmax(x, m, 0.125),
                    torch_npu.npu_scaled_masked_softmax(x, m, 0.125, True),
                    *torch_npu.npu_dropout_with_add_softmax(a, a, 0.5, 0.1, -1),
                    *torch_npu._npu_dropout(d, 0.2)]
            rows = [(r.name, r.attrs.get("kernel"), r.duration_us, r.bytes_read, r.bytes_written)
                    for r in s.report().ops]
            return [(o.shape, o.dtype, o.format) for o in outs], rows
    full, meta = run("full"), run("meta")
    assert full == meta
    assert [k for _, k, *_ in full[1]] == [None, None, "npu_dropout_with_add_softmax.gen_mask",
                                          "npu_dropout_with_add_softmax", "_npu_dropout.gen_mask",
                                          "_npu_dropout.do_mask"]


def test_long_rows_stream_in_three_passes():
    """A row too long for UB (made so by a chip with a small UB) is read three times; its vector
    work is what the passes do (the scale and mask in every pass, exp in two, max, sum and the
    product once: 13 fp32 ops per element against 7 for a row that fits), not three times all of it."""
    from dataclasses import replace
    from ascend_sim.hw import get_chip
    chip = get_chip("Ascend910B2")
    rows = {}
    for ub in (chip.buffers.ub, 32 * 1024):
        with Simulator(replace(chip, name=f"B2-ub{ub}", buffers=replace(chip.buffers, ub=ub)), mode="meta",
                       trace="ops") as s:
            x = torch_npu.empty_with_format((1, 2, 64, 4096), "float32")
            m = torch_npu.empty_with_format((1, 1, 64, 4096), "bool")
            torch_npu.npu_scaled_masked_softmax(x, m)
            (rows[ub],) = s.report().ops
    whole, chunked = rows[chip.buffers.ub], rows[32 * 1024]
    assert whole.bytes_read == x.numel * 4 + x.numel                # x and its mask, once
    assert chunked.bytes_read == 3 * whole.bytes_read                # once per pass
    assert chunked.bytes_written == whole.bytes_written == x.numel * 4
    ratio = chunked.pipe_busy_us["VECTOR"] / whole.pipe_busy_us["VECTOR"]
    assert 13 / 7 <= ratio < 2.5                                     # plus each chunk's partial reductions


def masked_softmax_row(shape):
    """npu_scaled_masked_softmax of an fp16 x of `shape` (B, N, S, S) with a (B, 1, S, S) mask, meta
    mode on Ascend910B2: (its report row, x's element count, the chip)."""
    B, _, S, S2 = shape
    with Simulator("Ascend910B2", mode="meta", trace="ops") as s:
        x = torch_npu.empty_with_format(shape, "float16")
        m = torch_npu.empty_with_format((B, 1, S, S2), "bool")
        torch_npu.npu_scaled_masked_softmax(x, m)
        (row,) = s.report().ops
    return row, x.numel, s.chip


def check_softmax_streams_at_hbm_bandwidth(row, numel, chip):
    assert numel * 2 > chip.memory.l2_bytes
    assert row.bytes_written == numel * 2
    assert row.bytes_read == numel * 2 + numel              # x, and a mask row per x row
    gbps = (row.bytes_read + row.bytes_written) / (row.duration_us * 1e3)
    assert gbps >= 0.6 * chip.memory.hbm_bandwidth_GBps
    assert row.block_dim == chip.vector_cores


def test_large_softmax_reaches_hbm_bandwidth():
    # x is 256 MiB, more than L2 holds (192 MiB): the bytes stream from and to HBM, not L2. The
    # 1 GiB case (8, 16, 2048, 2048) is in benchmarks/big_cases.py.
    check_softmax_streams_at_hbm_bandwidth(*masked_softmax_row((2, 16, 2048, 2048)))
