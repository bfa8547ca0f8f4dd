"""Activation ops against float64 references written from the op pages, their rules, meta mode, timing."""
import math

import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.ops import OpError

MiB = 1 << 20
NP = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32}
# relative tolerance per output dtype: a few units in the last place of the dtype
RTOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
SHAPES = [(3, 37), (2, 5, 33), (2, 3, 4, 5)]

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def ref_fast_gelu(x):
    return x / (1 + np.exp(-1.702 * x))


def ref_fast_gelu_910(x):
    """The page's formula for Atlas training/inference products (exponent read as 0.851 (x - |x|))."""
    return x / (1 + np.exp(-1.702 * np.abs(x))) * np.exp(0.851 * (x - np.abs(x)))


def ref_gelu_erf(x):
    return 0.5 * x * _erfc(-x / math.sqrt(2))          # = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))


def ref_gelu_tanh(x):
    """0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). For u < 0, 1 + tanh(u) cancels even in
    float64, so there it is taken as the identical 2 e^(2u) / (1 + e^(2u))."""
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    e = np.exp(2 * np.minimum(u, 0))
    one_plus_tanh = np.where(u < 0, 2 * e / (1 + e), 1 + np.tanh(u))
    return 0.5 * x * one_plus_tanh


def ref_silu(x):
    return x / (1 + np.exp(-x))


def ref_mish(x):
    return x * np.tanh(np.log1p(np.exp(x)))


def sample(shape, dtype, seed=0):
    """Normal values spread to +-12 (saturated tails included), rounded to ``dtype``; and their float64."""
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    x.flat[:2] = (-12.0, 12.0)
    xd = x.astype(NP[dtype])
    return xd, xd.astype(np.float64)


def assert_close(out, ref64, dtype):
    """``out`` against the float64 reference rounded to ``dtype``; relative within the dtype's normal range."""
    out = np.asarray(out)
    assert out.dtype == NP[dtype]
    ref = ref64.astype(NP[dtype]).astype(np.float64)
    tiny = float(ml_dtypes.finfo(NP[dtype]).smallest_normal)
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=RTOL[dtype], atol=tiny)


@pytest.fixture
def sim():
    with Simulator("Ascend910B2") as s:
        yield s


CASES = [  # op, reference, dtypes its page lists for A2
    ("fast_gelu", ref_fast_gelu, ("float16", "float32")),
    ("npu_fast_gelu", ref_fast_gelu, ("float16", "float32", "bfloat16")),
    ("npu_gelu", ref_gelu_erf, ("float16", "float32", "bfloat16")),
    ("npu_silu", ref_silu, ("float16", "float32")),
    ("npu_mish", ref_mish, ("float16", "float32")),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op,ref,dtypes", CASES, ids=[c[0] for c in CASES])
def test_numbers_match_the_formula(sim, op, ref, dtypes, shape):
    for dt in dtypes:
        xd, x64 = sample(shape, dt)
        y = getattr(torch_npu, op)(xd)
        assert y.shape == shape and y.dtype.name == dt
        assert_close(y.numpy(), ref(x64), dt)


@pytest.mark.parametrize("dt", ["float16", "float32", "bfloat16"])
def test_gelu_tanh_mode(sim, dt):
    xd, x64 = sample((3, 37), dt, seed=1)
    y = torch_npu.npu_gelu(xd, approximate="tanh")
    assert_close(y.numpy(), ref_gelu_tanh(x64), dt)
    erf = torch_npu.npu_gelu(xd).numpy()
    if dt == "float32":        # the two modes differ by up to ~1e-3: visible in fp32
        assert np.abs(erf.astype(np.float64) - y.numpy()).max() > 1e-5


def test_fast_gelu_documented_example(sim):
    y = torch_npu.fast_gelu(np.array([0.5991, 0.4094], np.float32)).numpy()
    np.testing.assert_allclose(y, [0.4403, 0.2733], atol=1e-4)


@pytest.mark.parametrize("chip", ["Ascend910A", "Ascend310P3"])
def test_fast_gelu_on_training_and_inference_products(chip):
    with Simulator(chip):
        for op in ("fast_gelu", "npu_fast_gelu"):
            xd, x64 = sample((3, 37), "float32", seed=2)
            assert_close(getattr(torch_npu, op)(xd).numpy(), ref_fast_gelu_910(x64), "float32")
        with pytest.raises(TypeError, match="npu_fast_gelu: argument 'input' has dtype bfloat16"):
            torch_npu.npu_fast_gelu(np.zeros((2, 3), ml_dtypes.bfloat16))
        if chip == "Ascend310P3":
            with pytest.raises(TypeError, match="npu_gelu: argument 'input' has dtype bfloat16"):
                torch_npu.npu_gelu(np.zeros((2, 3), ml_dtypes.bfloat16))


@pytest.mark.parametrize("dt", ["float16", "float32", "bfloat16"])
@pytest.mark.parametrize("shape,dim", [((3, 38), -1), ((2, 5, 34), 2), ((4, 6, 33), 1), ((6, 5, 3), 0),
                                       ((2, 4, 6, 3), -3)])
def test_swiglu_is_silu_of_the_first_half_times_the_second(sim, dt, shape, dim):
    xd, x64 = sample(shape, dt, seed=3)
    a, b = np.split(x64, 2, axis=dim)
    y = torch_npu.npu_swiglu(xd, dim=dim)
    assert y.shape == a.shape
    assert_close(y.numpy(), ref_silu(a) * b, dt)


def test_swiglu_order_and_default_dim(sim):
    a = np.array([[-1.0, 0.5, 2.0]], np.float32)
    y = torch_npu.npu_swiglu(np.concatenate([a, np.ones_like(a)], axis=-1)).numpy()
    np.testing.assert_allclose(y, ref_silu(a.astype(np.float64)), rtol=1e-6)     # A is activated, B gates


@pytest.mark.parametrize("op", ["fast_gelu", "npu_fast_gelu", "npu_gelu", "npu_silu", "npu_mish"])
def test_activation_dtype_rules(sim, op):
    arg = "input" if op in ("npu_fast_gelu", "npu_gelu") else "self"
    with pytest.raises(TypeError, match=f"{op}: argument '{arg}' has dtype int32"):
        getattr(torch_npu, op)(np.zeros((2, 3), np.int32))
    if op in ("fast_gelu", "npu_silu", "npu_mish"):          # their pages list float16/float32 only
        with pytest.raises(TypeError, match=f"{op}: argument 'self' has dtype bfloat16"):
            getattr(torch_npu, op)(np.zeros((2, 3), ml_dtypes.bfloat16))


@pytest.mark.parametrize("op", ["npu_fast_gelu", "npu_gelu"])
def test_at_most_8_dims(sim, op):
    getattr(torch_npu, op)(np.zeros((1,) * 8, np.float32))
    with pytest.raises(OpError, match=f"{op}: argument 'input': must have at most 8 dimensions"):
        getattr(torch_npu, op)(np.zeros((1,) * 9, np.float32))


def test_gelu_approximate_rule(sim):
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(OpError, match="npu_gelu: argument 'approximate': must be 'none' or 'tanh'"):
        torch_npu.npu_gelu(x, approximate="erf")
    with pytest.raises(TypeError, match="npu_gelu: argument 'approximate' must be a str"):
        torch_npu.npu_gelu(x, approximate=None)


def test_gelu_products():
    with Simulator("Ascend910_9391"):            # an A3 chip: npu_gelu's page does not list it
        with pytest.raises(ValueError, match="npu_gelu is not supported on Ascend910_9391"):
            torch_npu.npu_gelu(np.zeros((2, 3), np.float32))


def test_swiglu_rules(sim):
    with pytest.raises(OpError, match="npu_swiglu: argument 'input': size 5 of dimension 1 .* divisible by 2"):
        torch_npu.npu_swiglu(np.zeros((4, 5), np.float32))
    with pytest.raises(OpError, match="npu_swiglu: argument 'dim': must be <= 1"):
        torch_npu.npu_swiglu(np.zeros((4, 6), np.float32), dim=2)
    with pytest.raises(OpError, match="npu_swiglu: argument 'dim': must be >= -2"):
        torch_npu.npu_swiglu(np.zeros((4, 6), np.float32), dim=-3)
    with pytest.raises(OpError, match="npu_swiglu: argument 'input': empty tensors are not supported"):
        torch_npu.npu_swiglu(np.zeros((0, 6), np.float32))
    with pytest.raises(OpError, match="npu_swiglu: argument 'input': must have 1 to 8 dimensions"):
        torch_npu.npu_swiglu(np.zeros((2,) * 9, np.float32))
    with pytest.raises(TypeError, match="npu_swiglu: argument 'input' has dtype int8"):
        torch_npu.npu_swiglu(np.zeros((4, 6), np.int8))
    with pytest.raises(TypeError, match="npu_swiglu: argument 'dim' must be an int"):
        torch_npu.npu_swiglu(np.zeros((4, 6), np.float32), dim=1.0)
    with Simulator("Ascend910_9391"):            # documented for Atlas A2 only
        with pytest.raises(ValueError, match="npu_swiglu is not supported on Ascend910_9391"):
            torch_npu.npu_swiglu(np.zeros((4, 6), np.float32))


def test_empty_input_queues_no_kernel():
    with Simulator(trace="ops") as sim:
        y = torch_npu.npu_silu(np.zeros((0, 7), np.float16))
        assert y.shape == (0, 7) and sim.report().ops == []


def _run(mode, calls):
    with Simulator("Ascend910B2", mode=mode, trace="ops") as sim:
        outs = [fn() for fn in calls]
        rows = [(r.name, r.duration_us, r.bytes_read, r.bytes_written) for r in sim.report().ops]
    return [(o.shape, o.dtype, o.format) for o in outs], rows


def test_meta_mode_gives_the_same_shapes_and_time():
    x16 = sample((64, 300), "float16")[0]
    xbf = sample((2, 96, 70), "bfloat16")[0]
    calls = [lambda: torch_npu.fast_gelu(x16), lambda: torch_npu.npu_fast_gelu(xbf),
             lambda: torch_npu.npu_gelu(xbf), lambda: torch_npu.npu_gelu(x16, approximate="tanh"),
             lambda: torch_npu.npu_silu(x16), lambda: torch_npu.npu_mish(x16),
             lambda: torch_npu.npu_swiglu(xbf, dim=1)]
    full, meta = _run("full", calls), _run("meta", calls)
    assert full == meta
    assert len(full[1]) == len(calls) and all(r[1] > 0 for r in full[1])


def test_silu_of_256mib_streams_at_hbm_bandwidth():
    with Simulator("Ascend910B2", mode="meta", trace="ops") as sim:
        torch_npu.npu_silu(torch_npu.empty_with_format((128 * MiB,), "float16"))
        (row,) = sim.report().ops
    assert row.bytes_read == row.bytes_written == 256 * MiB
    gbps = (row.bytes_read + row.bytes_written) / (row.duration_us * 1e3)
    assert gbps >= 0.7 * sim.chip.memory.hbm_bandwidth_GBps
    assert row.bound == "hbm" and row.core_type == "AIV" and row.block_dim == sim.chip.vector_cores


def _time_alone(chip, call):
    """One op on a fresh simulator (a cold L2), in meta mode: its report row."""
    with Simulator(chip, mode="meta", trace="ops") as sim:
        call(torch_npu.empty_with_format((4 * MiB,), "float32"))
        (row,) = sim.report().ops
    return row


@pytest.mark.parametrize("chip,slower", [("Ascend910B2", False), ("Ascend910A", True)])
def test_fast_gelu_kernel_follows_the_product_formula(chip, slower):
    """A2/A3 run x / (1 + exp(-1.702 x)), silu's instruction mix; 910/310P add |x|, a second exp and
    two multiplies, which makes the kernel vector-bound there."""
    gelu = _time_alone(chip, torch_npu.fast_gelu)
    silu = _time_alone(chip, torch_npu.npu_silu)
    if slower:
        assert gelu.duration_us > 1.2 * silu.duration_us and gelu.bound == "vector"
    else:
        assert gelu.duration_us == pytest.approx(silu.duration_us, rel=1e-9)


def test_instruction_mix_orders_the_kernels():
    """Same bytes, more vector work: gelu (erf polynomial) > gelu (tanh) > silu in simulated time."""
    erf = _time_alone("Ascend910B2", torch_npu.npu_gelu)
    tanh = _time_alone("Ascend910B2", lambda x: torch_npu.npu_gelu(x, approximate="tanh"))
    silu = _time_alone("Ascend910B2", torch_npu.npu_silu)
    assert erf.duration_us > tanh.duration_us > silu.duration_us
    # silu's 16 MiB output stays in the write-back L2, so its kernel is shorter than its launch
    assert erf.bound == "vector" and silu.bound in ("hbm", "launch")
    assert erf.flops > tanh.flops > silu.flops > 0


def test_numba_cache_goes_to_a_user_cache_dir_not_the_package(tmp_path):
    """cache=True kernels (npu_gelu's erf) are cached under $XDG_CACHE_HOME/ascend-sim/numba, not in ops/."""
    import os
    import subprocess
    import sys
    code = ("import glob, os, numpy as np\n"
            "from ascend_sim import torch_npu, ops\n"
            "torch_npu.npu_gelu(np.linspace(-3, 3, 64, dtype=np.float32), approximate='none')\n"
            "pkg = os.path.dirname(ops.__file__)\n"
            "print(len(glob.glob(os.path.join(pkg, '**', '*.nbi'), recursive=True)))\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "0"                      # nothing cached inside the package
    assert list((tmp_path / "ascend-sim" / "numba").rglob("*.nbi"))
