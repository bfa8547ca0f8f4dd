"""Rotary position embedding ops: numbers against float64 formulas from the op pages, the
documented rules, meta mode, and the kernel's timing."""
import math

import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.ops import Args, OpError, get_op
from ascend_sim.ops.templates.tables import table_row_view

BF16 = ml_dtypes.bfloat16
# tolerance of each dtype against a float64 reference (one rounding to the dtype, plus fp32 work)
TOL = {np.float32: 1e-5, np.float16: 2e-3, BF16: 1.6e-2}


@pytest.fixture
def sim():
    with Simulator("Ascend910B2", trace="ops") as s:
        yield s


def rng(seed=0):
    return np.random.default_rng(seed)


def angles(shape, seed):
    """cos and sin tables of random angles, as RoPE builds them."""
    theta = rng(seed).uniform(-np.pi, np.pi, shape)
    return np.cos(theta), np.sin(theta)


# ----- float64 references written from the pages -----
def ref_rotate_half(x):
    x1, x2 = np.split(x, 2, axis=-1)
    return np.concatenate([-x2, x1], axis=-1)


def ref_rotate_interleave(x):
    pairs = np.stack([-x[..., 1::2], x[..., 0::2]], axis=-1)       # (..., D/2, 2)
    return pairs.reshape(x.shape)


def ref_rotary_mul(x, r1, r2, mode="half", rotate=None):
    x64, c, s = (np.asarray(v).astype(np.float64) for v in (x, r1, r2))
    if rotate is not None:
        rot = x64 @ np.asarray(rotate).astype(np.float64)
    else:
        rot = ref_rotate_half(x64) if mode == "half" else ref_rotate_interleave(x64)
    return x64 * c + rot * s


def ref_interleave_rope(x, cos, sin):
    b, n, s, d = x.shape
    q = np.asarray(x).astype(np.float64).reshape(b, n, s, d // 2, 2).swapaxes(-1, -2).reshape(b, n, s, d)
    return q * np.asarray(cos).astype(np.float64) + ref_rotate_half(q) * np.asarray(sin).astype(np.float64)


def assert_close(out, ref, dtype):
    assert out.dtype == np.dtype(dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=tol, atol=tol)


# (x shape, r1 shape): BNSD 11SD / B1SD / BNSD, BSND 1S1D / BS1D, SBND S11D, TND T1D / TND
HALF_CASES = [((2, 3, 37, 64), (1, 1, 37, 64)), ((2, 3, 37, 64), (2, 1, 37, 64)), ((2, 3, 37, 64), (2, 3, 37, 64)),
              ((1, 5, 33, 128), (1, 5, 1, 128)), ((2, 5, 3, 128), (2, 5, 1, 128)), ((33, 2, 5, 64), (33, 1, 1, 64)),
              ((37, 4, 64), (37, 1, 64)), ((37, 4, 64), (37, 4, 64))]
INTERLEAVE_CASES = [((2, 3, 37, 64), (1, 1, 37, 64)), ((2, 33, 5, 128), (1, 33, 1, 128)),
                    ((33, 2, 5, 64), (33, 1, 1, 64)), ((37, 4, 64), (37, 1, 64))]


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
@pytest.mark.parametrize("mode,shapes", [("half", c) for c in HALF_CASES] +
                         [("interleave", c) for c in INTERLEAVE_CASES])
def test_rotary_mul_matches_the_formula(sim, dtype, mode, shapes):
    xs, rs = shapes
    x = rng(1).standard_normal(xs).astype(dtype)
    cos, sin = (t.astype(dtype) for t in angles(rs, 2))
    out = torch_npu.npu_rotary_mul(x, cos, sin, rotary_mode=mode)
    assert out.shape == xs
    assert_close(out.numpy(), ref_rotary_mul(x, cos, sin, mode), dtype)


def test_the_two_modes_differ(sim):
    x = rng(3).standard_normal((1, 2, 8, 64)).astype(np.float32)
    cos, sin = (t.astype(np.float32) for t in angles((1, 1, 8, 64), 4))
    half = torch_npu.npu_rotary_mul(x, cos, sin, "half").numpy()
    inter = torch_npu.npu_rotary_mul(x, cos, sin, "interleave").numpy()
    assert not np.allclose(half, inter)


def half_matrix(d):
    m = np.zeros((d, d), np.float32)
    m[:d // 2, d // 2:] = np.eye(d // 2)
    m[d // 2:, :d // 2] = -np.eye(d // 2)
    return m


def interleave_matrix(d):
    # x @ m maps each pair (a, b) to (-b, a), the 'interleave' rotation
    m = np.zeros((d, d), np.float32)
    for i in range(0, d, 2):
        m[i + 1, i] = -1
        m[i, i + 1] = 1
    return m


@pytest.mark.parametrize("mode,matrix", [("half", half_matrix), ("interleave", interleave_matrix)])
def test_rotate_matrix_reproduces_the_modes(sim, mode, matrix):
    x = rng(5).standard_normal((2, 3, 37, 64)).astype(np.float16)
    cos, sin = (t.astype(np.float16) for t in angles((1, 1, 37, 64), 6))
    by_mode = torch_npu.npu_rotary_mul(x, cos, sin, mode).numpy()
    by_matrix = torch_npu.npu_rotary_mul(x, cos, sin, mode, matrix(64).astype(BF16)).numpy()
    assert np.array_equal(by_mode, by_matrix)


def test_a_general_rotate_matrix_is_a_product(sim):
    # the page's example: fp32 input, bf16 rotate matrix
    x = rng(7).standard_normal((2, 2, 5, 128)).astype(np.float32)
    cos, sin = (t.astype(np.float32) for t in angles((1, 2, 1, 128), 8))
    rot = rng(9).standard_normal((128, 128)).astype(BF16)
    out = torch_npu.npu_rotary_mul(x, cos, sin, "half", rot)
    np.testing.assert_allclose(out.numpy(), ref_rotary_mul(x, cos, sin, rotate=rot), rtol=1e-5, atol=1e-4)


def test_r1_r2_of_another_dtype_are_cast_to_the_input_dtype(sim):
    x = rng(10).standard_normal((1, 4, 33, 64)).astype(np.float16)
    cos, sin = angles((1, 1, 33, 64), 11)
    out = torch_npu.npu_rotary_mul(x, cos.astype(np.float32), sin.astype(np.float32)).numpy()
    assert out.dtype == np.float16
    assert_close(out, ref_rotary_mul(x, cos.astype(np.float16), sin.astype(np.float16)), np.float16)
    # a table value below fp16's range is 0 once cast: the product vanishes
    tiny = np.full((1, 1, 33, 64), 1e-8, np.float32)
    out = torch_npu.npu_rotary_mul(np.full(x.shape, 1e4, np.float16), tiny, np.zeros_like(tiny)).numpy()
    assert not out.any()


# ----- rules -----
X = (2, 3, 37, 64)


def call(x_shape=X, r1_shape=(1, 1, 37, 64), r2_shape=None, mode="half", rotate=None, dtype=np.float16,
         r_dtype=np.float16):
    x = np.zeros(x_shape, dtype)
    r1 = np.zeros(r1_shape, r_dtype)
    r2 = np.zeros(r2_shape or r1_shape, r_dtype)
    return torch_npu.npu_rotary_mul(x, r1, r2, mode, rotate)


@pytest.mark.parametrize("kwargs,arg,rule", [
    (dict(x_shape=(37, 64), r1_shape=(37, 64)), "input", "3 .* or 4"),
    (dict(x_shape=(2, 3, 37, 63), r1_shape=(1, 1, 37, 63)), "input", "even"),
    (dict(x_shape=(1, 1, 2, 896), r1_shape=(1, 1, 2, 896)), "input", "< 896"),
    (dict(x_shape=(1000, 2, 4, 8), r1_shape=(1, 1, 4, 8)), "input", "B and N must each be < 1000"),
    (dict(x_shape=(40, 25, 2, 8), r1_shape=(1, 1, 2, 8), mode="interleave"), "input", "B \\* N must be < 1000"),
    (dict(r1_shape=(1, 3, 37, 64)), "r1", "not a layout"),
    (dict(r1_shape=(1, 1, 1, 64)), "r1", "not a layout"),
    (dict(r1_shape=(2, 1, 37, 64), mode="interleave"), "r1", "not a layout"),
    (dict(r1_shape=(1, 1, 37, 32)), "r1", "last dimension"),
    (dict(r1_shape=(1, 37, 64)), "r1", "as many dimensions"),
    (dict(r1_shape=(1, 2, 37, 64)), "r1", "must be 1 or"),
    (dict(r2_shape=(2, 1, 37, 64)), "r2", "shape of r1"),
    (dict(mode="quarter"), "rotary_mode", "one of"),
    (dict(rotate=np.zeros((64, 32), np.float16)), "rotate", "64, 64"),
])
def test_each_rule_broken_names_the_argument(sim, kwargs, arg, rule):
    with pytest.raises(OpError, match=f"npu_rotary_mul: argument '{arg}': .*{rule}"):
        call(**kwargs)


@pytest.mark.parametrize("kwargs,arg", [(dict(dtype=np.int32), "input"), (dict(r_dtype=np.float64), "r1"),
                                        (dict(rotate=np.zeros((64, 64), np.int8)), "rotate")])
def test_dtypes_outside_the_page_are_type_errors(sim, kwargs, arg):
    with pytest.raises(TypeError, match=f"npu_rotary_mul: argument '{arg}' has dtype"):
        call(**kwargs)


def test_training_products_run_the_older_kernel():
    with Simulator("Ascend910A"):
        x = np.zeros((2, 3, 8, 128), np.float16)
        r = np.zeros((1, 1, 8, 128), np.float16)
        assert torch_npu.npu_rotary_mul(x, r, r).shape == x.shape
        with pytest.raises(OpError, match="'rotary_mode': only 'half'"):
            torch_npu.npu_rotary_mul(x, r, r, "interleave")
        with pytest.raises(OpError, match="'input': the last dimension D must be 128"):
            torch_npu.npu_rotary_mul(x[..., :64], r[..., :64], r[..., :64])
        with pytest.raises(OpError, match="'rotate': is not supported"):
            torch_npu.npu_rotary_mul(x, r, r, "half", half_matrix(128))
        with pytest.raises(OpError, match="'r1': broadcasts over 1200 elements"):
            torch_npu.npu_rotary_mul(np.zeros((2, 600, 2, 128), np.float16), r[:, :, :2], r[:, :, :2])
        with pytest.raises(OpError, match="'input': B and N must each be <= 1000"):
            torch_npu.npu_rotary_mul(np.zeros((1001, 1, 2, 128), np.float16), r[:, :, :2], r[:, :, :2])


# ----- npu_interleave_rope -----
@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("x_shape,cos_shape", [((2, 3, 37, 64), (2, 1, 37, 64)), ((32, 32, 1, 64), (32, 1, 1, 64)),
                                                ((2, 5, 33, 64), (2, 1, 1, 64))])
def test_interleave_rope_matches_the_formula(sim, dtype, x_shape, cos_shape):
    x = rng(12).standard_normal(x_shape).astype(dtype)
    cos, sin = (t.astype(dtype) for t in angles(cos_shape, 13))
    out = torch_npu.npu_interleave_rope(x, cos, sin)
    assert out.shape == x_shape
    assert_close(out.numpy(), ref_interleave_rope(x, cos, sin), dtype)


@pytest.mark.parametrize("x_shape,cos_shape,sin_shape,arg,rule", [
    ((2, 3, 5), (2, 1, 5), None, "x", "4-D"),
    ((2, 3, 5, 128), (2, 1, 5, 128), None, "x", "must be 64"),
    ((2, 3, 5, 64), (2, 3, 5, 64), None, "cos", "N .* must be 1"),
    ((2, 3, 5, 64), (1, 1, 5, 64), None, "cos", "B .* must equal"),
    ((2, 3, 5, 64), (2, 1, 4, 64), None, "cos", "S .* must be 1 or"),
    ((2, 3, 5, 64), (2, 1, 5, 32), None, "cos", "must be 64"),
    ((2, 3, 5, 64), (2, 1, 5, 64), (2, 1, 1, 64), "sin", "shape of cos"),
])
def test_interleave_rope_rules(sim, x_shape, cos_shape, sin_shape, arg, rule):
    x = np.zeros(x_shape, np.float16)
    with pytest.raises(OpError, match=f"npu_interleave_rope: argument '{arg}': .*{rule}"):
        torch_npu.npu_interleave_rope(x, np.zeros(cos_shape, np.float16), np.zeros(sin_shape or cos_shape, np.float16))


def test_interleave_rope_dtypes(sim):
    with pytest.raises(TypeError, match="argument 'x' has dtype float32"):
        torch_npu.npu_interleave_rope(*(np.zeros(s, np.float32) for s in ((1, 2, 3, 64), (1, 1, 3, 64), (1, 1, 3, 64))))
    with pytest.raises(TypeError, match="argument 'sin' has dtype bfloat16; it must be x's dtype"):
        torch_npu.npu_interleave_rope(np.zeros((1, 2, 3, 64), np.float16), np.zeros((1, 1, 3, 64), np.float16),
                                      np.zeros((1, 1, 3, 64), BF16))


def test_interleave_rope_tables_take_the_format_of_x(sim):
    x = np.zeros((1, 2, 32, 64), np.float16)
    cos = np.zeros((1, 1, 32, 64), np.float16)
    assert torch_npu.npu_interleave_rope(x, torch_npu.empty_with_format(cos.shape, "float16"), cos).shape == x.shape
    with pytest.raises(OpError, match="argument 'cos': must have x's format \\(NCHW\\), got FRACTAL_NZ"):
        torch_npu.npu_interleave_rope(x, torch_npu.npu_format_cast(cos, 29), cos)


# ----- the kernel -----
def test_meta_mode_gives_the_same_shapes_dtypes_and_time():
    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            x = torch_npu.empty_with_format((2, 16, 37, 128), "bfloat16")
            c = torch_npu.empty_with_format((2, 16, 1, 128), "bfloat16")
            xi = torch_npu.empty_with_format((4, 8, 33, 64), "float16")
            ci = torch_npu.empty_with_format((4, 1, 33, 64), "float16")
            c1 = torch_npu.empty_with_format((1, 16, 1, 128), "bfloat16")
            rot = torch_npu.empty_with_format((128, 128), "bfloat16")
            c32 = torch_npu.empty_with_format((2, 16, 1, 128), "float32")
            outs = [torch_npu.npu_rotary_mul(x, c, c), torch_npu.npu_rotary_mul(x, c1, c1, "interleave"),
                    torch_npu.npu_rotary_mul(x, c, c, "half", rot), torch_npu.npu_rotary_mul(x, c32, c32),
                    torch_npu.npu_interleave_rope(xi, ci, ci)]
            rows = [(r.name, r.attrs.get("kernel"), r.duration_us, r.bytes_read, r.bytes_written)
                    for r in s.report().ops]
            return [(o.shape, o.dtype, o.format) for o in outs], rows
    full, meta = run("full"), run("meta")
    assert full == meta
    # a rotate matrix adds a cube matmul; fp32 tables for a bf16 input add the adapter's two casts
    assert [k for _, k, *_ in full[1]] == [None, None, "npu_rotary_mul.rotate_matmul", "npu_rotary_mul",
                                          "npu_rotary_mul.cast_r1", "npu_rotary_mul.cast_r2", "npu_rotary_mul", None]


def test_rotate_matrix_runs_a_cube_matmul_into_the_output_first():
    with Simulator("Ascend910B2", mode="meta", trace="ops") as s:
        x = torch_npu.empty_with_format((2, 64, 8, 128), "float16")
        c = torch_npu.empty_with_format((1, 64, 1, 128), "float16")
        torch_npu.npu_rotary_mul(x, c, c, "half", torch_npu.empty_with_format((128, 128), "float16"))
        mm, rope = s.report().ops
    rows = x.numel // 128
    assert mm.core_type == "AIC" and mm.flops == 2 * rows * 128 * 128
    assert mm.bytes_written == x.numel * 2                      # x @ rotate, in the output buffer
    assert rope.core_type == "AIV" and rope.bytes_written == x.numel * 2
    positions = 2 * 64                                          # (b, s) rows of N*D elements
    assert rope.bytes_read == 2 * x.numel * 2 + 2 * positions * 128 * 2   # x, x @ rotate, a table piece per row


def test_tables_are_read_where_they_lie():
    """A 1S1D table for a BSND input with B = 2: every load of the table stays inside it, and the
    loads of both batches read the same table rows."""
    chip = Simulator("Ascend910B2").chip
    a = Args(input=torch_npu.empty_with_format((2, 64, 8, 64), "float16"),
             r1=torch_npu.empty_with_format((1, 64, 1, 64), "float16"),
             r2=torch_npu.empty_with_format((1, 64, 1, 64), "float16"), rotary_mode="half", rotate=None)
    op = get_op("npu_rotary_mul")
    spec = op.infer(a, chip)
    plan = op.plan(spec, chip, op.default_tiling(spec, chip))
    table_bytes = 64 * 64 * 2
    spans = [(acc.offset, acc.offset + (acc.rows - 1) * acc.stride + acc.row_bytes)
             for blk in plan.blocks for prog in blk for acc in prog.accesses if acc.tensor == "r1"]
    assert spans and all(0 <= lo and hi <= table_bytes for lo, hi in spans)
    covered = np.zeros(table_bytes, bool)
    for lo, hi in spans:
        covered[lo:hi] = True
    assert covered.all()
    def payload(name):
        return sum(acc.payload for blk in plan.blocks for prog in blk for acc in prog.accesses if acc.tensor == name)
    assert payload("input") == 2 * 64 * 8 * 64 * 2               # x read once
    assert payload("r1") == 2 * table_bytes                     # each (b, s) row reads its D-piece of the table


def test_shared_tables_when_every_row_uses_the_same_one():
    view = table_row_view((4, 32, 1, 128), (1, 1, 1, 128))     # decode: one position
    assert (view.kind, view.rows, view.cols, view.table_cols) == ("shared", 128, 128, 128)
    view = table_row_view((8, 32, 16, 128), (1, 1, 16, 128), shared_min_rows=48)   # BNSD 11SD
    assert (view.kind, view.rows, view.cols) == ("shared", 256, 16 * 128)


def test_long_sequence_rotary_is_memory_or_vector_bound():
    with Simulator("Ascend910B2", mode="meta", trace="ops") as s:
        x = torch_npu.empty_with_format((1, 32768, 32, 128), "float16")
        c = torch_npu.empty_with_format((1, 32768, 1, 128), "float16")
        torch_npu.npu_rotary_mul(x, c, c)
        (row,) = s.report().ops
    numel = math.prod(x.shape)
    assert row.bytes_written == numel * 2
    assert row.bytes_read == numel * 2 + 2 * c.numel * 2        # x once, each table once
    assert row.bound in ("hbm", "l2", "mte2", "mte3", "vector")
    assert row.block_dim == s.chip.vector_cores
    # streaming x in and out takes at least the HBM time of those bytes, and not much more
    # HBM carries the reads and the written lines L2 evicts (the rest stays dirty in L2)
    hbm_us = row.hbm_bytes / (s.chip.memory.hbm_bandwidth_GBps * 1e3)
    assert 2 * numel * 2 - s.chip.memory.l2_bytes <= row.hbm_bytes <= 2 * numel * 2
    assert hbm_us <= row.duration_us < 1.5 * hbm_us
