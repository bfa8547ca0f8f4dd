"""Fused matmul + communication: npu_mm_all_reduce_base, npu_all_gather_base_mm and
npu_mm_reduce_scatter_base against float64 references written from the op-plugin pages (every
scenario the pages define, on 2 and 4 ranks), their rules, meta mode, and the pipeline's timing on
8 x Ascend910B2: faster than the matmul followed by the collective, never faster than either alone,
communication overlapping compute."""
import ml_dtypes
import numpy as np
import pytest

import ascend_sim.distributed as dist
from ascend_sim import Simulator, torch_npu
from ascend_sim import dtypes as D
from ascend_sim.hw import get_chip
from ascend_sim.isa import CommStep, KernelPlan
from ascend_sim.ops import OpError
from ascend_sim.ops.comm_matmul import row_chunks
from ascend_sim.ops.study import plan_for

BF16 = ml_dtypes.bfloat16
AR, AG, RS = "npu_mm_all_reduce_base", "npu_all_gather_base_mm", "npu_mm_reduce_scatter_base"


# ----------------------------------------------------------------------------- helpers
def rng(seed):
    return np.random.default_rng(seed)


def f64(a):
    return np.asarray(a).astype(np.float64)


def normal(seed, shape, dtype):
    return (rng(seed).standard_normal(shape)).astype(dtype)


def ints(seed, shape, lo=-8, hi=8, dtype=np.int8):
    return rng(seed).integers(lo, hi, shape).astype(dtype)


def fp19(s):
    """The scale FIXPIPE applies from an npu_trans_quant_param word: float32 with 13 low bits cleared."""
    return (np.asarray(s, np.float32).view(np.uint32) & 0xFFFFE000).view(np.float32).astype(np.float64)


def close(got, ref, dtype=np.float16):
    eps = {np.float16: 2 ** -10, BF16: 2 ** -7}[dtype]
    np.testing.assert_allclose(f64(got), ref, rtol=2 * eps, atol=4 * eps * (np.abs(ref).max() + 1))


def spmd(n, fn, mode="full"):
    """Run fn(rank) on n ranks of Ascend910B2; returns (per-rank results, report)."""
    with Simulator("Ascend910B2", world_size=n, trace="ops", mode=mode) as sim:
        outs = sim.spmd(fn)
        rep = sim.report()
    return outs, rep


def host(t):
    return np.asarray(t.data)


def on(rep, device=0):
    return [o for o in rep.ops if o.device == device]


# ============================================================================ npu_mm_all_reduce_base
@pytest.mark.parametrize("n, dtype, x1_shape", [(2, np.float16, (37, 64)), (4, BF16, (3, 13, 48))])
def test_all_reduce_float_with_bias_and_x3(n, dtype, x1_shape):
    """allreduce(x1 @ x2 + bias + x3): every rank's bias and x3 enter the sum (the page's formula)."""
    k, cols = x1_shape[-1], 40

    def args(r):
        return (normal(r, x1_shape, dtype), normal(10 + r, (k, cols), dtype), normal(20 + r, (cols,), dtype),
                normal(30 + r, (*x1_shape[:-1], cols), dtype))

    def fn(r):
        x1, x2, bias, x3 = args(r)
        return host(torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name(), bias=bias, x3=x3))

    outs, rep = spmd(n, fn)
    ref = sum(f64(x1) @ f64(x2) + f64(b) + f64(x3) for x1, x2, b, x3 in map(args, range(n)))
    for out in outs:
        assert out.shape == (*x1_shape[:-1], cols) and out.dtype == dtype
        close(out, ref, dtype)
        assert np.array_equal(f64(out), f64(outs[0]))
    # 37 (and 39) rows: two chunks, the second not a multiple of 16, one all-reduce each
    assert sum(o.stream == "hccl" for o in on(rep)) == 2


@pytest.mark.parametrize("dtype, granularity, offset", [(np.float16, "group", True), (BF16, "channel", False),
                                                        (np.float16, "tensor", True)])
def test_all_reduce_weight_quant(dtype, granularity, offset):
    """x1 @ ((x2 + antiquant_offset) * antiquant_scale), per group of 32 rows of K, per channel, per tensor."""
    n, m, k, cols, group = 2, 40, 96, 64, 32
    shape = {"group": (k // group, cols), "channel": (cols,), "tensor": (1,)}[granularity]

    def args(r):
        return (normal(r, (m, k), dtype), ints(10 + r, (k, cols)),
                rng(20 + r).uniform(0.01, 0.05, shape).astype(dtype),
                rng(30 + r).uniform(-2, 2, shape).astype(dtype) if offset else None)

    def weight(x2, s, o):
        s, o = f64(s), (0.0 if o is None else f64(o))
        if granularity == "group":
            s, o = np.repeat(s, group, axis=0), (np.repeat(o, group, axis=0) if offset else o)
        return (f64(x2) + o) * s

    def fn(r):
        x1, x2, s, o = args(r)
        return host(torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name(), antiquant_scale=s,
                                                     antiquant_offset=o,
                                                     antiquant_group_size=group if granularity == "group" else 0))

    outs, _ = spmd(n, fn)
    ref = sum(f64(x1) @ weight(x2, s, o) for x1, x2, s, o in map(args, range(n)))
    for out in outs:
        assert out.dtype == dtype
        close(out, ref, dtype)


@pytest.mark.parametrize("mode", ["int64", "bf16", "f32_pertoken", "bf16_pertoken"])
def test_all_reduce_full_quant_table(mode):
    """The page's four full-quantisation rows: dequant_scale * (x1 @ x2 + int32 bias) [* pertoken] + x3."""
    n, m, k, cols = 2, 36, 64, 48
    out_dt = BF16 if mode.startswith("bf16") else np.float16
    pertoken = mode.endswith("pertoken")

    def args(r):
        scale = rng(20 + r).uniform(0.001, 0.01, cols).astype(np.float32)
        return (ints(r, (m, k)), ints(10 + r, (k, cols)), ints(40 + r, (cols,), -500, 500, np.int32), scale,
                rng(50 + r).uniform(0.5, 2, m).astype(np.float32) if pertoken else None,
                normal(30 + r, (m, cols), out_dt))

    def fn(r):
        x1, x2, bias, scale, pts, x3 = args(r)
        if mode == "int64":
            ds = torch_npu.npu_trans_quant_param(scale)
        else:
            ds = scale.astype(BF16) if mode.startswith("bf16") else scale
        return host(torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name(), bias=bias, x3=x3,
                                                     dequant_scale=ds, pertoken_scale=pts))

    outs, _ = spmd(n, fn)
    ref = 0
    for x1, x2, bias, scale, pts, x3 in map(args, range(n)):
        s = fp19(scale) if mode == "int64" else (f64(scale.astype(BF16)) if mode.startswith("bf16") else f64(scale))
        v = (f64(x1) @ f64(x2) + f64(bias)) * s
        ref = ref + (v * f64(pts)[:, None] if pertoken else v) + f64(x3)
    for out in outs:
        assert out.dtype == out_dt
        close(out, ref, out_dt)


def test_all_reduce_int8_communication():
    """comm_quant_scale_1/2: y / s1 quantised to int8, all-to-all, summed and requantised by s1/s2,
    all-gathered, x s2 (aclnnQuantMatmulAllReduceV3, case 3): every result is a whole multiple of s2."""
    n, m, k, cols = 4, 40, 64, 32

    def args(r):
        return ints(r, (m, k)), ints(10 + r, (k, cols)), rng(20).uniform(0.01, 0.02, cols).astype(BF16)

    s1 = np.full(cols, 0.5, BF16)
    s2 = np.full(cols, 2.0, BF16)

    def fn(r):
        x1, x2, ds = args(r)
        return host(torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name(), dequant_scale=ds,
                                                     comm_quant_scale_1=s1, comm_quant_scale_2=s2))

    outs, rep = spmd(n, fn)
    sat = lambda v: np.clip(np.rint(v), -128, 127)          # noqa: E731
    q = sum(sat(f64(x1) @ f64(x2) * f64(ds) / f64(s1)) for x1, x2, ds in map(args, range(n)))
    ref = sat(q * f64(s1) / f64(s2)) * f64(s2)
    plain = sum(f64(x1) @ f64(x2) * f64(ds) for x1, x2, ds in map(args, range(n)))
    for out in outs:
        assert out.dtype == BF16
        got = f64(out)
        assert np.array_equal(got / 2.0, np.rint(got / 2.0))              # whole multiples of s2
        assert np.abs(got - ref).max() <= 2.0                             # at most one quantum off (roundings)
        assert np.mean(got == ref) > 0.95
    assert not np.allclose(f64(outs[0]), plain, atol=0.5)                 # the int8 path really quantised
    names = {o.name for o in on(rep) if o.stream == "hccl"}
    assert names == {f"{AR}.all_to_all", f"{AR}.all_gather"}


def test_all_reduce_rules_name_the_op_and_argument():
    x1, x2 = normal(0, (32, 64), np.float16), normal(1, (64, 16), np.float16)
    i1, i2 = ints(0, (32, 64)), ints(1, (64, 16))
    with Simulator("Ascend910B2"):
        h = dist.get_hccl_comm_name()
        call = torch_npu.npu_mm_all_reduce_base
        with pytest.raises(OpError, match=f"{AR}: argument 'reduce_op'.*'sum'"):
            call(x1, x2, h, reduce_op="max")
        with pytest.raises(OpError, match=f"{AR}: argument 'comm_turn'"):
            call(x1, x2, h, comm_turn=2)
        with pytest.raises(OpError, match=f"{AR}: argument 'x2'.*k=64"):
            call(x1, normal(1, (32, 16), np.float16), h)
        with pytest.raises(TypeError, match=f"{AR}: argument 'x2'"):
            call(x1, x2.astype(BF16), h)
        with pytest.raises(TypeError, match=f"{AR}: argument 'x2'"):
            call(x1, i2.astype(np.int32), h)                  # int4 weights are not on this page
        with pytest.raises(OpError, match=f"{AR}: argument 'x3'.*shape"):
            call(x1, x2, h, x3=normal(2, (32, 8), np.float16))
        with pytest.raises(TypeError, match=f"{AR}: argument 'bias'"):
            call(x1, x2, h, bias=normal(2, (16,), BF16))
        with pytest.raises(OpError, match=f"{AR}: argument 'dequant_scale'.*None"):
            call(x1, x2, h, dequant_scale=np.ones(16, np.float32))
        with pytest.raises(TypeError, match=f"{AR}: argument 'dequant_scale'.*npu_trans_quant_param"):
            call(i1, i2, h, dequant_scale=np.ones(16, np.float32))
        with pytest.raises(OpError, match=f"{AR}: argument 'comm_quant_scale_2'"):
            call(i1, i2, h, dequant_scale=np.ones(16, BF16), comm_quant_scale_1=np.ones(16, BF16))
        with pytest.raises(OpError, match=f"{AR}: argument 'antiquant_group_size'.*multiple of 32"):
            call(x1, i2, h, antiquant_scale=np.ones((4, 16), np.float16), antiquant_group_size=16)
        with pytest.raises(OpError, match=f"{AR}: argument 'antiquant_scale'.*required"):
            call(x1, i2, h)


def test_nz_weights():
    """x2 may be FRACTAL_NZ (npu_format_cast(x2, 29)) for mm_all_reduce; for all_gather_base_mm and
    mm_reduce_scatter_base only with comm_mode='aiv'."""
    x1, w = normal(0, (40, 256), np.float16), ints(1, (256, 32))
    with Simulator("Ascend910B2"):
        h = dist.get_hccl_comm_name()
        w_nz = torch_npu.npu_format_cast(w, 29)
        out = torch_npu.npu_mm_all_reduce_base(x1, w_nz, h, antiquant_scale=np.full(32, 0.125, np.float16))
        close(host(out), f64(x1) @ (f64(w) * 0.125))
        x2_nz = torch_npu.npu_format_cast(normal(2, (256, 32), np.float16), 29)
        with pytest.raises(OpError, match=f"{AG}: argument 'x2'.*FRACTAL_NZ.*aiv"):
            torch_npu.npu_all_gather_base_mm(x1, x2_nz, h, 2)
        with pytest.raises(OpError, match=f"{RS}: argument 'x2'.*FRACTAL_NZ.*aiv"):
            torch_npu.npu_mm_reduce_scatter_base(x1, x2_nz, h, 2)


def test_all_reduce_group_size_must_be_documented():
    def fn(r):
        torch_npu.npu_mm_all_reduce_base(normal(r, (16, 32), np.float16), normal(1, (32, 16), np.float16),
                                         dist.get_hccl_comm_name())
    with pytest.raises(OpError, match=f"{AR}: argument 'hcom'.*3 ranks"):
        spmd(3, fn)


# ============================================================================ npu_all_gather_base_mm
@pytest.mark.parametrize("n, dtype, gather_output", [(2, np.float16, True), (4, BF16, False), (4, np.float16, True)])
def test_all_gather_float(n, dtype, gather_output):
    m, k, cols = 40, 256, 48

    def fn(r):
        out, gathered = torch_npu.npu_all_gather_base_mm(normal(r, (m, k), dtype), normal(99, (k, cols), dtype),
                                                         dist.get_hccl_comm_name(), n, bias=np.zeros(cols, dtype),
                                                         gather_output=gather_output)
        return host(out), host(gathered)

    outs, rep = spmd(n, fn)
    x = np.concatenate([normal(r, (m, k), dtype) for r in range(n)])
    ref = f64(x) @ f64(normal(99, (k, cols), dtype))
    for out, gathered in outs:
        assert out.shape == (n * m, cols) and out.dtype == dtype
        close(out, ref, dtype)
        if gather_output:
            assert np.array_equal(f64(gathered), f64(x))
        else:
            assert gathered.shape == (0,) and gathered.dtype == dtype
    # communication first; each gathered chunk's matmul after its all-gather
    ops = on(rep)
    comm = [o for o in ops if o.stream == "hccl"]
    kern = [o for o in ops if o.stream == "default"]
    assert len(comm) == 2 and len(kern) == 3                  # 40 rows: chunks of 32 and 8
    assert min(c.start_us for c in comm) <= min(k_.start_us for k_ in kern)
    for c, k_ in zip(comm, kern[1:]):
        assert k_.start_us >= c.end_us - 1e-6


@pytest.mark.parametrize("x2_int64", [False, True])
def test_all_gather_quant(x2_int64):
    """comm_mode='aiv', int8: (allgather(x1_scale) * x2_scale) * (allgather(x1) @ x2); an int64 x2_scale
    (npu_trans_quant_param) gives float16, float32 scales give output_dtype."""
    n, m, k, cols = 2, 24, 256, 32
    x2 = ints(99, (k, cols))
    x2s = rng(98).uniform(0.01, 0.02, (1, cols)).astype(np.float32)

    def x1s(r):
        return rng(50 + r).uniform(0.5, 1.5, (m, 1)).astype(np.float32)

    def fn(r):
        if x2_int64:
            kw = dict(x2_scale=torch_npu.npu_trans_quant_param(x2s.reshape(-1)).reshape((1, cols)))
        else:
            kw = dict(x1_scale=x1s(r), x2_scale=x2s, output_dtype="float16")
        out, gathered = torch_npu.npu_all_gather_base_mm(ints(r, (m, k)), x2, dist.get_hccl_comm_name(), n,
                                                         comm_mode="aiv", **kw)
        return host(out), host(gathered)

    outs, _ = spmd(n, fn)
    x = np.concatenate([ints(r, (m, k)) for r in range(n)])
    acc = f64(x) @ f64(x2)
    if x2_int64:
        ref = acc * fp19(x2s)
    else:
        ref = acc * f64(x2s) * np.concatenate([f64(x1s(r)) for r in range(n)])
    for out, gathered in outs:
        assert out.dtype == np.float16
        close(out, ref)
        assert np.array_equal(gathered, x)


def test_all_gather_rules_name_the_op_and_argument():
    x1, x2 = normal(0, (16, 256), np.float16), normal(1, (256, 32), np.float16)
    with Simulator("Ascend910B2"):
        h = dist.get_hccl_comm_name()
        call = torch_npu.npu_all_gather_base_mm
        with pytest.raises(OpError, match=f"{AG}: argument 'world_size'.*\\[2, 4, 8\\]"):
            call(x1, x2, h, 3)
        with pytest.raises(OpError, match=f"{AG}: argument 'x1'.*\\[256, 65535\\)"):
            call(normal(0, (16, 128), np.float16), normal(1, (128, 32), np.float16), h, 2)
        with pytest.raises(OpError, match=f"{AG}: argument 'gather_index'"):
            call(x1, x2, h, 2, gather_index=1)
        with pytest.raises(OpError, match=f"{AG}: argument 'gather_output'.*aiv"):
            call(x1, x2, h, 2, gather_output=False, comm_mode="aiv")
        with pytest.raises(OpError, match=f"{AG}: argument 'comm_mode'.*aiv"):
            call(ints(0, (16, 256)), ints(1, (256, 32)), h, 2, x2_scale=np.ones((1, 32), np.float32))
        with pytest.raises(OpError, match=f"{AG}: argument 'bias'.*non-zero"):
            call(x1, x2, h, 2, bias=np.ones(32, np.float16))
        with pytest.raises(OpError, match=f"{AG}: argument 'bias'.*aiv"):
            call(x1, x2, h, 2, bias=np.zeros(32, np.float16), comm_mode="aiv")
        with pytest.raises(OpError, match=f"{AG}: argument 'output_dtype'"):
            call(x1, x2, h, 2, output_dtype="bfloat16")
        with pytest.raises(TypeError, match=f"{AG}: argument 'x2'"):
            call(x1, x2.astype(BF16), h, 2)


def test_world_sizes_and_products_per_chip():
    x1, x2 = normal(0, (16, 256), np.float16), normal(1, (256, 32), np.float16)
    with Simulator("Ascend910B2"):
        with pytest.raises(OpError, match=f"{AG}: argument 'world_size'.*\\[2, 4, 8\\] on Ascend910B2"):
            torch_npu.npu_all_gather_base_mm(x1, x2, dist.get_hccl_comm_name(), 16)
    with Simulator("Ascend910_9391"):                  # A3: 16 and 32 ranks too -- but this group has 1
        with pytest.raises(OpError, match=f"{AG}: argument 'world_size'.*group.*1 ranks"):
            torch_npu.npu_all_gather_base_mm(x1, x2, dist.get_hccl_comm_name(), 16)
        with pytest.raises(ValueError, match=f"{AR} is not supported on Ascend910_9391"):
            torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name())


def test_world_size_must_match_the_group():
    def fn(r):
        torch_npu.npu_all_gather_base_mm(normal(r, (16, 256), np.float16), normal(1, (256, 16), np.float16),
                                         dist.get_hccl_comm_name(), 4)
    with pytest.raises(OpError, match=f"{AG}: argument 'world_size'.*group.*2 ranks"):
        spmd(2, fn)


# ============================================================================ npu_mm_reduce_scatter_base
@pytest.mark.parametrize("n, dtype", [(2, np.float16), (4, BF16)])
def test_reduce_scatter_float(n, dtype):
    """reducescatter(x1 @ x2 + bias): rank i gets rows i*m/N .. of the sum."""
    m, k, cols = 40 * n, 256, 48

    def args(r):
        return normal(r, (m, k), dtype), normal(10 + r, (k, cols), dtype)

    def fn(r):
        x1, x2 = args(r)
        return host(torch_npu.npu_mm_reduce_scatter_base(x1, x2, dist.get_hccl_comm_name(), n,
                                                         bias=np.zeros(cols, dtype)))

    outs, rep = spmd(n, fn)
    ref = sum(f64(x1) @ f64(x2) for x1, x2 in map(args, range(n)))
    rows = m // n
    for i, out in enumerate(outs):
        assert out.shape == (rows, cols) and out.dtype == dtype
        close(out, ref[i * rows:(i + 1) * rows], dtype)
    # 40 rows per rank: chunks of 32 and 8, each reduce-scattered after its own matmul
    ops = on(rep)
    comm = [o for o in ops if o.stream == "hccl"]
    kern = [o for o in ops if o.stream == "default"]
    assert len(comm) == len(kern) == 2
    for k_, c in zip(kern, comm):
        assert c.start_us >= k_.end_us - 1e-6


@pytest.mark.parametrize("scales", ["x1_x2_f32", "x2_int64"])
def test_reduce_scatter_quant(scales):
    n, m, k, cols = 2, 64, 256, 32

    def args(r):
        return (ints(r, (m, k)), ints(10 + r, (k, cols)), rng(20 + r).uniform(0.5, 1.5, (m, 1)).astype(np.float32),
                rng(30).uniform(0.01, 0.02, (1, cols)).astype(np.float32))

    def fn(r):
        x1, x2, x1s, x2s = args(r)
        if scales == "x2_int64":
            kw = dict(x2_scale=torch_npu.npu_trans_quant_param(x2s.reshape(-1)).reshape((1, cols)))
        else:
            kw = dict(x1_scale=x1s, x2_scale=x2s)
        return host(torch_npu.npu_mm_reduce_scatter_base(x1, x2, dist.get_hccl_comm_name(), n, comm_mode="aiv", **kw))

    outs, _ = spmd(n, fn)
    ref = 0
    for x1, x2, x1s, x2s in map(args, range(n)):
        acc = f64(x1) @ f64(x2)
        ref = ref + (acc * fp19(x2s) if scales == "x2_int64" else acc * f64(x1s) * f64(x2s))
    out_dt = np.float16 if scales == "x2_int64" else BF16        # float32 scales: output_dtype, bfloat16 default
    for i, out in enumerate(outs):
        assert out.dtype == out_dt
        close(out, ref[i * m // n:(i + 1) * m // n], out_dt)


def test_reduce_scatter_rules_name_the_op_and_argument():
    x1, x2 = normal(0, (30, 256), np.float16), normal(1, (256, 32), np.float16)
    i1, i2 = ints(0, (32, 256)), ints(1, (256, 32))
    with Simulator("Ascend910B2"):
        h = dist.get_hccl_comm_name()
        call = torch_npu.npu_mm_reduce_scatter_base
        with pytest.raises(OpError, match=f"{RS}: argument 'input'.*divisible by world_size=4"):
            call(x1, x2, h, 4)
        with pytest.raises(OpError, match=f"{RS}: argument 'reduce_op'"):
            call(x1[:28], x2, h, 4, reduce_op="max")
        with pytest.raises(OpError, match=f"{RS}: argument 'output_dtype'.*int64"):
            call(i1, i2, h, 2, x2_scale=np.ones((1, 32), np.int64), output_dtype="bfloat16", comm_mode="aiv")
        with pytest.raises(OpError, match=f"{RS}: argument 'x2_scale'.*required"):
            call(i1, i2, h, 2, comm_mode="aiv")
        with pytest.raises(OpError, match=f"{RS}: argument 'x1_scale'.*None"):
            call(x1[:28], x2, h, 2, x1_scale=np.ones((28, 1), np.float32))


# ============================================================================ the pipelines' plans
def _items(op, ranks=tuple(range(8)), **args):
    return plan_for(op, get_chip("Ascend910B2"), ranks=ranks, **args)


def _shape(items):
    return ["K" if isinstance(i, KernelPlan) else (f"C:{i.kind}" if isinstance(i, CommStep) else f"W{i.step}")
            for i in items]


def test_plans_interleave_each_chunk_with_its_communication():
    f16 = "float16"
    ar = _items(AR, x1=((40, 64), f16), x2=((64, 32), f16), hcom="g", x3=((40, 32), f16))
    assert _shape(ar) == ["K", "K", "C:all_reduce"] * 2                      # matmul, + x3, all-reduce
    assert [i.nbytes for i in ar if isinstance(i, CommStep)] == [32 * 32 * 2, 8 * 32 * 2]
    # all-gather: every chunk's communication first, the local rows, then each gathered chunk after its wait
    ag = _items(AG, x1=((40, 256), f16), x2=((256, 32), f16), hcom="g", world_size=4)
    assert _shape(ag) == ["C:all_gather", "C:all_gather", "K", "W0", "K", "W1", "K"]
    assert [i.nbytes for i in ag if isinstance(i, CommStep)] == [4 * 32 * 256 * 2, 4 * 8 * 256 * 2]
    # reduce-scatter: each chunk holds rows of every rank's slice
    rs = _items(RS, input=((160, 256), f16), x2=((256, 32), f16), hcom="g", world_size=4)
    assert _shape(rs) == ["K", "C:reduce_scatter"] * 2
    assert [i.nbytes for i in rs if isinstance(i, CommStep)] == [4 * 32 * 32 * 2, 4 * 8 * 32 * 2]
    # int8 communication: quantise + all-to-all per chunk; the previous chunk is reduced meanwhile
    q = _items(AR, x1=((40, 64), "int8"), x2=((64, 32), "int8"), hcom="g", dequant_scale=((32,), "bfloat16"),
               comm_quant_scale_1=((32,), "bfloat16"), comm_quant_scale_2=((32,), "bfloat16"))
    assert _shape(q) == ["K", "K", "K", "C:reduce_scatter", "K", "K", "K", "C:reduce_scatter", "W0", "K",
                         "C:all_gather", "W1", "K", "C:all_gather", "W0", "W1", "W2", "W3", "K"]


# ============================================================================ the group's size
@pytest.mark.parametrize("shape, chunks", [((2048, 4096, 4096), {2: 6, 4: 4, 8: 4}),
                                           ((4096, 1024, 4096), {2: 4, 4: 4, 8: 3})])
def test_all_reduce_chunks_with_the_group_it_is_given(shape, chunks):
    """The module's rule: row_chunks with world = len(ranks) -- a rank of an N-rank group puts
    LINK_PASSES x bytes / N on a link, so 2- and 4-rank groups get their own chunk count."""
    m, k, cols = shape
    chip = get_chip("Ascend910B2")
    for n_ranks, count in chunks.items():
        items = _items(AR, ranks=tuple(range(n_ranks)), x1=((m, k), "float16"), x2=((k, cols), "float16"), hcom="g")
        rows = [i.nbytes // (cols * 2) for i in items if isinstance(i, CommStep)]
        want = row_chunks(chip, m, n=cols, k=k, cube_dtype=D.float16, flops_per_row=2.0 * k * cols,
                          comm_kind="all_reduce", comm_bytes_per_row=cols * 2, world=n_ranks, tasks_per_chunk=2)
        assert rows == [r for _, r in want] and len(rows) == count, n_ranks
        assert sum(rows) == m


def test_int8_all_reduce_pads_and_slices_by_the_group_size():
    """comm_quant: chunks of 32 and 10 rows; the all-to-all pads each to a multiple of N rows, the
    all-gather returns N slices of ceil(rows / N) rows (n = 32 int8 columns)."""
    args = dict(x1=((42, 64), "int8"), x2=((64, 32), "int8"), hcom="g", dequant_scale=((32,), "bfloat16"),
                comm_quant_scale_1=((32,), "bfloat16"), comm_quant_scale_2=((32,), "bfloat16"))
    for n_ranks in (2, 4, 8):
        steps = [(i.kind, i.nbytes) for i in _items(AR, ranks=tuple(range(n_ranks)), **args) if isinstance(i, CommStep)]
        padded = [-(-rows // n_ranks) * n_ranks * 32 for rows in (32, 10)]
        assert steps == [("reduce_scatter", padded[0]), ("reduce_scatter", padded[1]),
                         ("all_gather", padded[0]), ("all_gather", padded[1])], n_ranks


def test_a_2_rank_group_runs_its_own_chunking():
    def fn(r):
        e = torch_npu.empty_with_format
        torch_npu.npu_mm_all_reduce_base(e((2048, 4096), "float16"), e((4096, 4096), "float16"),
                                         dist.get_hccl_comm_name())

    _, rep = spmd(2, fn, mode="meta")
    for dev in (0, 1):
        comm = [o for o in on(rep, dev) if o.stream == "hccl"]
        assert [o.name for o in comm] == [f"{AR}.all_reduce"] * 6       # 8 ranks would have given 4


# ============================================================================ meta mode
@pytest.mark.parametrize("op", [AR, AG, RS])
def test_meta_mode_gives_the_same_shapes_and_times(op):
    n, m, k, cols = 2, 64, 256, 64

    def fn(r):
        h = dist.get_hccl_comm_name()
        x1, x2 = normal(r, (m, k), np.float16), normal(9, (k, cols), np.float16)
        if op == AR:
            outs = (torch_npu.npu_mm_all_reduce_base(x1, x2, h, x3=normal(3, (m, cols), np.float16)),)
        elif op == AG:
            outs = torch_npu.npu_all_gather_base_mm(x1, x2, h, n)
        else:
            outs = (torch_npu.npu_mm_reduce_scatter_base(x1, x2, h, n),)
        return [(o.shape, o.dtype) for o in outs]

    full, rep_full = spmd(n, fn)
    meta, rep_meta = spmd(n, fn, mode="meta")
    assert full == meta
    assert [(o.name, o.stream) for o in rep_full.ops] == [(o.name, o.stream) for o in rep_meta.ops]
    assert [o.duration_us for o in rep_full.ops] == pytest.approx([o.duration_us for o in rep_meta.ops])
    assert rep_full.total_us == pytest.approx(rep_meta.total_us)


# ============================================================================ timing: the point of fusing
def _timed(fn):
    with Simulator("Ascend910B2", world_size=8, trace="ops", mode="meta") as sim:
        sim.spmd(fn)
        return sim.report()


def fused_all_reduce_reports(m, k, cols):
    """8 x 910B2, a TP row-parallel GEMM (m, k) @ (k, cols): the reports of the fused op, of the
    matmul followed by an all_reduce, of the matmul alone and of the all_reduce alone."""
    def operands():
        return (torch_npu.empty_with_format((m, k), "float16"), torch_npu.empty_with_format((k, cols), "float16"))

    def fused(r):
        x1, x2 = operands()
        torch_npu.npu_mm_all_reduce_base(x1, x2, dist.get_hccl_comm_name())

    def matmul(r):
        return torch_npu.npu_bmmV2(*operands(), [])

    def matmul_then_all_reduce(r):
        dist.all_reduce(matmul(r))

    def all_reduce(r):
        dist.all_reduce(torch_npu.empty_with_format((m, cols), "float16"))

    return tuple(_timed(fn) for fn in (fused, matmul_then_all_reduce, matmul, all_reduce))


def check_fused_all_reduce_pipelines(f, seq, mm, ar):
    assert f.total_us < seq.total_us                                    # (1) fusing pays
    assert f.total_us >= max(mm.total_us, ar.total_us)                  # (2) never faster than either alone
    assert 0.5 < mm.total_us / ar.total_us < 2                          # the shape is one where both matter
    ops = on(f)
    comm = [o for o in ops if o.stream == "hccl"]
    kern = [o for o in ops if o.stream == "default"]
    assert len(comm) >= 2 and all(o.name == f"{AR}.all_reduce" for o in comm)
    # (3) chunk i's all-reduce runs while chunk i+1's matmul computes
    assert any(c.start_us < k_.end_us and k_.start_us < c.end_us for c in comm for k_ in kern)


def test_fused_all_reduce_pipelines_compute_and_communication():
    """8 x 910B2, a TP row-parallel GEMM whose matmul and all-reduce take comparable time: 2048 x
    1024 x 2048 is two chunks (~16 us of matmul, ~23 us of all-reduce each), so a pipeline that
    serialised its chunks would lose to the matmul followed by the all-reduce. The 4096 x 1024 x
    4096 case (three chunks) is in benchmarks/big_cases.py."""
    check_fused_all_reduce_pipelines(*fused_all_reduce_reports(2048, 1024, 2048))
