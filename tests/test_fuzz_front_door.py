"""A fuzz test of the whole front door: bad input never crashes or hangs.

For every built function of the API table (``API_TABLE`` less ``torch_npu.not_implemented()``;
a new family adds itself by being built) it draws argument sets from the documented signature:
a valid call of small random shapes, then mutations of it -- shapes (0-size, 1-element, rank
0-6), dtypes (every Ascend dtype, float64, bool, complex, object), Python objects in any
argument, NaN/Inf numbers, non-contiguous views, rank-0 arrays, mismatched or swapped arguments,
missing arguments, unknown keywords -- and, in meta mode, huge shapes (2**24 .. 2**40 elements,
made with ``empty_with_format``). Each outcome must be

* a normal return with the documented kind (Tensor, tuple of n, list, int, None) whose tensors
  have an Ascend dtype, non-negative shapes and, in full mode, numbers of that shape and dtype; or
* a ValueError / TypeError / NPUOutOfMemoryError whose message names the op -- but not an
  ISAError (a plan the op built for a call it accepted: a bug, not a rejection),

each within a per-call time bound enforced here (a SIGALRM timer: FUZZ_CALL_SECONDS, default 5).
Anything else is a finding; the test fails listing every finding with a reproducer.

Runs: ``make test`` (FUZZ_CALLS=600 from a fixed seed, well under a minute); ``make fuzz``
(FUZZ_CALLS=10000); ``FUZZ_SEED`` picks another sequence. Multi-rank: a few ``sim.spmd`` calls
of the fused comm ops where ranks disagree (shapes, group names, one rank raising or never
joining) must give CollectiveMismatchError or that rank's own error, never a hang.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import traceback

import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim import distributed as dist
from ascend_sim.isa import ISAError
from ascend_sim.runtime.memory import NPUOutOfMemoryError
from ascend_sim.runtime.world import CollectiveMismatchError
from ascend_sim.tensor import NPUTensor
from ascend_sim.torch_npu._api_table import API_TABLE
from ascend_sim.torch_npu._dispatch import API_FUNCTIONS

FUZZ_CALLS = int(os.environ.get("FUZZ_CALLS", "600"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "1104"))
CALL_SECONDS = float(os.environ.get("FUZZ_CALL_SECONDS", "5"))
# Huge meta-mode shapes, as log2 of the scaled tensor's element count:
#   "bounded": 2**20..2**26 and 2**37..2**40 (beyond every chip's HBM: out-of-memory at once);
#   "all":     2**20..2**40, with the 2**27..2**36 tensors that fit HBM (``make fuzz``).
# The in-suite run takes "bounded": plans of the elementwise, row and cube templates still grow
# with the tile count (an open finding of issue 11, listed by ``make fuzz``).
FUZZ_HUGE = os.environ.get("FUZZ_HUGE", "bounded")
HUGE_LOG2 = list(range(20, 41)) if FUZZ_HUGE == "all" else list(range(20, 27)) + list(range(37, 41))

BUILT = [e for e in API_TABLE if e.name not in set(torch_npu.not_implemented())]
ENTRY = {e.name: e for e in BUILT}

F16, F32, BF16, I8, I32 = np.float16, np.float32, ml_dtypes.bfloat16, np.int8, np.int32
# every Ascend dtype numpy can hold, plus the ones the simulator must refuse cleanly
DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32,
          np.int64, np.bool_, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, np.complex64, np.complex128,
          np.uint16, np.uint32, np.object_]
OBJECTS = [None, 0, 1, -1, 7, 2 ** 31, 2 ** 40, -2 ** 63, 0.5, 1e-12, float("nan"), float("inf"), -float("inf"),
           True, False, "", "x", "BSND", "TND", "none", "hccl_world_group", b"\x00", [], [0], [1, 2], [[1]], (3, -1),
           {}, {"a": 1}, object(), 1 + 2j, np.float16(1.0), np.int64(3), np.float32("nan"), slice(1), Ellipsis]
CHIPS = ["Ascend910B2"] * 6 + ["Ascend910_9391", "Ascend910A", "Ascend310P3", "Ascend910_95"]


class CallTimeout(BaseException):
    """A call ran past the time bound (a BaseException, so no ``except Exception`` in the code
    under test swallows it)."""


@contextlib.contextmanager
def time_bound(seconds: float):
    def fire(signum, frame):
        raise CallTimeout(f"call exceeded {seconds:.1f} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------- drawing tensors
class Drawer:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def dim(self, lo: int = 1, hi: int = 24) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def t(self, shape, dtype=F16, lo=-2.0, hi=2.0):
        shape = tuple(int(s) for s in shape)
        dt = np.dtype(dtype)
        if dt == np.bool_:
            return self.rng.random(shape) < 0.5
        if dt.kind in "iu":
            info = np.iinfo(dt)
            return self.rng.integers(max(info.min, -8), min(info.max, 7) + 1, size=shape).astype(dt)
        if dt.kind == "c":
            return (self.rng.uniform(lo, hi, shape) + 1j * self.rng.uniform(lo, hi, shape)).astype(dt)
        if dt.kind == "O":
            return np.full(shape, object(), dtype=object)
        return self.rng.uniform(lo, hi, shape).astype(dt)

    def shape(self, rank: int | None = None):
        rank = int(self.rng.integers(0, 7)) if rank is None else rank
        return tuple(self.pick([0, 1, 1, 2, 3, 7, 16, 33]) for _ in range(rank))


# ----------------------------------------------------------------------------- valid base calls
def _bases(d: Drawer):
    """Per built function: a generator of a valid call's keyword arguments (small random shapes)."""
    t, dim = d.t, d.dim

    def elt():
        return {"self": t(d.shape(d.pick([1, 2, 3, 4])), d.pick([F16, F32]))}

    def adam():
        s = (dim(), dim())
        return dict(beta1_power=0.9, beta2_power=0.99, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8,
                    grad=t(s, F32), use_locking=False, use_nesterov=False,
                    out=(t(s, F32), t(s, F32), t(s, F32, 0, 1)))

    def bmm():
        b, m, k, n = dim(1, 4), dim(), dim(), dim()
        return dict(self=t((b, m, k)), mat2=t((b, k, n)), output_sizes=[])

    def ln():
        a, h = dim(), dim()
        return dict(input=t((a, h), F32), normalized_shape=[h], weight=t((h,), F32), bias=t((h,), F32))

    def attn_bsnd():
        b, s, n, dd = dim(1, 2), dim(1, 64), d.pick([1, 2, 4]), d.pick([16, 64, 128])
        q = t((b, s, n, dd))
        return dict(query=q, key=t((b, s, n, dd)), value=t((b, s, n, dd)), head_num=n, input_layout="BSND")

    def attn_bsh(q_seq=None):
        b, s, n, dd = dim(1, 2), dim(1, 64), d.pick([1, 2, 4]), d.pick([16, 64, 128])
        sq = s if q_seq is None else q_seq
        return dict(query=t((b, sq, n * dd)), key=t((b, s, n * dd)), value=t((b, s, n * dd)), num_heads=n,
                    input_layout="BSH")

    def gn(arg_groups):
        g = d.pick([1, 2, 4])
        c = g * dim(1, 4)
        return {"input": t((dim(1, 3), c, dim(), dim(1, 4)), F32), arg_groups: g, "weight": t((c,), F32),
                "bias": t((c,), F32)}

    def rope():
        b, s, n, dd = dim(1, 2), dim(1, 16), dim(1, 4), d.pick([16, 32, 64, 128])
        return dict(input=t((b, s, n, dd)), r1=t((1, s, 1, dd)), r2=t((1, s, 1, dd)))

    def interleave():
        b, n, s, dd = dim(1, 2), dim(1, 4), dim(1, 16), 64
        return dict(x=t((b, n, s, dd)), cos=t((b, 1, s, dd)), sin=t((b, 1, s, dd)))

    def qmm():
        m, k, n = dim(), d.pick([32, 64]), d.pick([16, 32])
        return dict(x1=t((m, k), I8), x2=t((k, n), I8), scale=t((n,), F32, 0.01, 0.1))

    def wqbmm():
        m, k, n = dim(), d.pick([32, 64]), d.pick([16, 32])
        return dict(x=t((m, k)), weight=t((k, n), I8), antiquant_scale=t((n,), F16, 0.01, 0.1))

    def tbmm():
        m, b, k, n = dim(), dim(1, 4), d.pick([32, 64]), d.pick([16, 32])
        return dict(input=t((m, b, k)), weight=t((b, k, n)), perm_x1=[1, 0, 2], perm_x2=[0, 1, 2], perm_y=[1, 0, 2])

    def gmm():
        e, k, n = dim(1, 3), d.pick([32, 64]), d.pick([16, 32])
        return dict(x=[t((dim(), k)) for _ in range(e)], weight=[t((k, n)) for _ in range(e)], split_item=0,
                    group_type=-1)

    def comm(name):
        m, k, n = dim(), d.pick([256, 512]), d.pick([16, 32])
        base = {"hcom": d.pick(["hccl_world_group", "no_such_group", "", "hccl_world_grou"])}
        if name == "npu_mm_all_reduce_base":
            base.update(x1=t((m, k)), x2=t((k, n)))
        elif name == "npu_all_gather_base_mm":
            base.update(x1=t((m, k)), x2=t((k, n)), world_size=1)
        else:
            base.update(input=t((m, k)), x2=t((k, n)), world_size=1)
        return base

    float_status = lambda: {"self": t((8,), F32)}                   # noqa: E731
    return {
        "_npu_dropout": lambda: {"self": t(d.shape(2), F16), "p": 0.5},
        "copy_memory_": lambda: (lambda s: {"self": t(s), "src": t(s)})(d.shape(d.pick([1, 2, 3]))),
        "empty_with_format": lambda: dict(size=list(d.shape(d.pick([1, 2, 4]))), dtype=d.pick([F16, F32, None]),
                                          acl_format=d.pick([2, 29, 0, 3])),
        "fast_gelu": elt, "npu_mish": elt, "npu_silu": elt, "one_": elt,
        "npu_fast_gelu": lambda: {"input": elt()["self"]},
        "npu_gelu": lambda: {"input": elt()["self"], "approximate": d.pick(["none", "tanh"])},
        "npu_alloc_float_status": lambda: {"input": t((8,), F32)},
        "npu_clear_float_status": float_status, "npu_get_float_status": float_status,
        "npu_apply_adam": adam,
        "npu_bmmV2": bmm,
        "npu_dtype_cast": lambda: dict(input=elt()["self"], dtype=d.pick([F16, F32, BF16, I8, I32, 0, 1, 27])),
        "npu_format_cast": lambda: dict(input=t(d.shape(d.pick([2, 3, 4]))), acl_format=d.pick([2, 29, 0, 3])),
        "npu_format_cast_": lambda: (lambda s: dict(input=t(s), src=t(s)))(d.shape(d.pick([2, 3, 4]))),
        "npu_layer_norm_eval": ln,
        "npu_linear": lambda: (lambda m, k, n: dict(input=t((m, k)), weight=t((n, k)), bias=t((n,))))(dim(), dim(), dim()),
        "npu_random_choice_with_mask": lambda: dict(x=t((dim(), dim(1, 3)), np.bool_), count=d.pick([0, 1, 8, 256])),
        "npu_rms_norm": lambda: (lambda a, h: {"self": t((a, h)), "gamma": t((h,))})(dim(), dim()),
        "npu_dropout_with_add_softmax": lambda: (lambda s: dict(self=t(s), x1=t(s), alpha=0.5, prob=0.1, dim=-1))(
            (dim(1, 2), dim(1, 4), d.pick([128, 256]), d.pick([128, 256]))),
        "npu_rotary_mul": rope,
        "npu_scaled_masked_softmax": lambda: (lambda b, n, s: dict(x=t((b, n, s, s)), mask=t((b, 1, s, s), np.bool_)))(
            dim(1, 2), dim(1, 4), d.pick([16, 32, 64])),
        "npu_swiglu": lambda: {"input": t((dim(), 2 * dim()), d.pick([F16, F32])), "dim": -1},
        "npu_group_norm_swish": lambda: gn("num_groups"),
        "npu_group_norm_silu": lambda: gn("group"),
        "npu_anti_quant": lambda: (lambda s: dict(x=t(s, I8), scale=t((s[-1],), F32)))((dim(), dim())),
        "npu_convert_weight_to_int4pack": lambda: {"weight": t((d.pick([8, 64]), d.pick([8, 64])), I32)},
        "npu_fused_infer_attention_score": attn_bsh,
        "npu_fusion_attention": attn_bsnd,
        "npu_incre_flash_attention": lambda: attn_bsh(1),
        "npu_prompt_flash_attention": attn_bsh,
        "npu_grouped_matmul": gmm,
        "npu_mm_all_reduce_base": lambda: comm("npu_mm_all_reduce_base"),
        "npu_all_gather_base_mm": lambda: comm("npu_all_gather_base_mm"),
        "npu_mm_reduce_scatter_base": lambda: comm("npu_mm_reduce_scatter_base"),
        "npu_prefetch": lambda: (lambda x: dict(input=x, dependency=None, max_size=x.nbytes))(elt()["self"]),
        "npu_quant_matmul": qmm,
        "npu_trans_quant_param": lambda: {"scale": t((d.pick([1, 16, 32]),), F32)},
        "npu_weight_quant_batchmatmul": wqbmm,
        "enable_deterministic_with_backward": lambda: {"tensor": elt()["self"]},
        "disable_deterministic_with_backward": lambda: {"tensor": elt()["self"]},
        "empty_with_swapped_memory": lambda: dict(size=list(d.shape(d.pick([1, 2, 3]))), dtype=d.pick([F16, F32, None])),
        "erase_stream": lambda: {"tensor": device_tensor(d.shape(2), F16),
                                 "stream": d.pick([torch_npu.npu.current_stream(), torch_npu.npu.current_stream(),
                                                   None, "stream"])},
        "npu_interleave_rope": interleave,
        "npu_transpose_batchmatmul": tbmm,
        "get_npu_format": elt,
    }


def test_every_built_function_has_a_base_call():
    """A new family is fuzzed once it is built: it needs a valid call here (its signature's
    tensors and options), so the fuzz reaches past the argument checks."""
    with Simulator():
        missing = sorted(set(ENTRY) - set(_bases(Drawer(np.random.default_rng(0)))))
    assert not missing, f"add a base call for: {', '.join(missing)}"


# ----------------------------------------------------------------------------- mutations
def _non_contiguous(d: Drawer, a: np.ndarray) -> np.ndarray:
    if a.ndim == 0:
        return a
    big = np.empty(a.shape[:-1] + (a.shape[-1] * 2,), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]                        # a strided view with the same numbers


def mutate(d: Drawer, kw: dict, params: list[str]) -> tuple[dict, list[str]]:
    kw = dict(kw)
    done = []
    for _ in range(int(d.rng.integers(1, 4))):
        tensors = [k for k, v in kw.items() if isinstance(v, np.ndarray)]
        what = d.pick(["shape", "dtype", "object", "nonfinite", "view", "rank0", "swap", "unknown_kw",
                       "drop", "list", "zero", "one"])
        if what in ("shape", "dtype", "nonfinite", "view", "rank0", "swap", "zero", "one") and not tensors:
            what = "object"
        if what == "shape":
            k = d.pick(tensors)
            kw[k] = d.t(d.shape(), kw[k].dtype if kw[k].dtype.kind != "O" else F16)
        elif what == "zero":                    # one dim of a tensor becomes 0 (a legal empty call or a clear error)
            k = d.pick(tensors)
            s = list(kw[k].shape) or [1]
            s[int(d.rng.integers(len(s)))] = 0
            kw[k] = np.zeros(s, kw[k].dtype)
        elif what == "one":
            k = d.pick(tensors)
            kw[k] = d.t((1,) * kw[k].ndim, kw[k].dtype)
        elif what == "dtype":
            k = d.pick(tensors)
            kw[k] = d.t(kw[k].shape, d.pick(DTYPES))
        elif what == "object":
            k = d.pick(params)
            kw[k] = d.pick(OBJECTS)
        elif what == "nonfinite":
            k = d.pick(tensors)
            a = kw[k].copy()
            if (a.dtype.kind == "f" or a.dtype == np.dtype(BF16)) and a.size:
                flat = a.reshape(-1)
                flat[int(d.rng.integers(flat.size))] = d.pick([np.nan, np.inf, -np.inf])
            kw[k] = a
        elif what == "view":
            k = d.pick(tensors)
            kw[k] = _non_contiguous(d, kw[k])
        elif what == "rank0":
            k = d.pick(tensors)
            kw[k] = np.asarray(kw[k].reshape(-1)[0] if kw[k].size else 1, kw[k].dtype)
        elif what == "swap" and len(tensors) >= 2:
            a, b = d.rng.choice(len(tensors), 2, replace=False)
            kw[tensors[a]], kw[tensors[b]] = kw[tensors[b]], kw[tensors[a]]
        elif what == "unknown_kw":
            kw[d.pick(["bogus", "inplace", "dtype_", "axis"])] = d.pick([1, None, "x"])
        elif what == "drop" and kw:
            kw.pop(d.pick(list(kw)))
        elif what == "list":
            k = d.pick(params)
            kw[k] = d.pick([[d.t((2, 2))], [None], [d.t((2, 2)), 3], (d.t((0,)),), [object()]])
        done.append(what)
    return kw, done


# ----------------------------------------------------------------------------- judging outcomes
def _kinds(returns: str) -> list[str]:
    if returns.startswith("tuple["):
        return [k.strip() for k in returns[len("tuple["):-1].split(",")]
    return [returns]


def check_tensor(name: str, t, meta: bool) -> str | None:
    if not isinstance(t, NPUTensor):
        return f"{name}: returned {type(t).__name__} where a Tensor is documented"
    if any((not isinstance(s, int)) or s < 0 for s in t.shape):
        return f"{name}: returned a tensor of shape {t.shape}"
    if not meta and t.data is not None:
        if tuple(t.data.shape) != tuple(t.shape):
            return f"{name}: returned data of shape {t.data.shape} for a tensor of shape {t.shape}"
        if t.data.dtype != t.dtype.np_dtype:
            return f"{name}: returned data of dtype {t.data.dtype} for a {t.dtype.name} tensor"
    return None


def check_return(entry, out, meta: bool) -> str | None:
    r = entry.returns
    if r == "None":
        return None if out is None else f"{entry.name}: returned {type(out).__name__}, documented None"
    if r == "int":
        return None if isinstance(out, int) else f"{entry.name}: returned {type(out).__name__}, documented int"
    if r.startswith("list"):
        if not isinstance(out, list):
            return f"{entry.name}: returned {type(out).__name__}, documented a list"
        return next((m for m in (check_tensor(entry.name, t, meta) for t in out) if m), None)
    kinds = _kinds(r)
    items = (out,) if len(kinds) == 1 else out
    if len(kinds) > 1 and (not isinstance(out, tuple) or len(out) != len(kinds)):
        return f"{entry.name}: returned {type(out).__name__} of {len(out) if hasattr(out, '__len__') else '?'}, " \
               f"documented {r}"
    for k, item in zip(kinds, items):
        if k == "int":
            if not isinstance(item, (int, NPUTensor)):         # meta mode: the int is a tensor (no data)
                return f"{entry.name}: returned {type(item).__name__} where an int is documented"
        else:
            m = check_tensor(entry.name, item, meta)
            if m:
                return m
    return None


def judge(name: str, fn, entry, meta: bool, kw: dict) -> tuple[str | None, str]:
    """Run one call under the time bound: (None when the outcome is allowed, else the finding;
    the outcome: returned, rejected, oom)."""
    t0 = time.perf_counter()
    try:
        with time_bound(CALL_SECONDS):
            out = fn()
    except CallTimeout as e:
        return f"{name}: HANG ({e})", "hang"
    except ISAError as e:
        return f"{name}: ISAError from a plan of an accepted call: {e}", "crash"
    except (ValueError, TypeError, NPUOutOfMemoryError) as e:
        if name not in str(e):
            return f"{name}: {type(e).__name__} that does not name the op: {e}", "unnamed"
        return None, "oom" if isinstance(e, NPUOutOfMemoryError) else "rejected"
    except Exception as e:                                   # noqa: BLE001 - the finding
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return f"{name}: {type(e).__name__} at {'/'.join(tb.filename.split('/')[-2:])}:{tb.lineno}: {e}", "crash"
    if time.perf_counter() - t0 > CALL_SECONDS:
        return f"{name}: took {time.perf_counter() - t0:.1f} s", "hang"
    if any(out is v for v in kw.values()):
        return None, "returned"                   # a host function handing back its argument (same tensor)
    return check_return(entry, out, meta), "returned"


def _describe(v) -> str:
    if isinstance(v, np.ndarray):
        return f"array{v.shape}:{v.dtype}{'' if v.flags.c_contiguous else ':view'}"
    if isinstance(v, (list, tuple)):
        return type(v)(_describe(x) for x in v).__repr__().replace("'", "")
    if isinstance(v, NPUTensor):
        return f"meta{v.shape}:{v.dtype.name}"
    return repr(v)[:40]


# ----------------------------------------------------------------------------- huge meta-mode calls
def device_tensor(shape, dtype):
    """An NPUTensor without numbers, made by empty_with_format (the documented way) where the chip
    has it, else allocated on the current device directly (the Ascend 950 has no empty_with_format)."""
    from ascend_sim.runtime import current_simulator
    sim = current_simulator()
    if sim.chip.family != "950":
        return torch_npu.empty_with_format(list(shape), dtype=dtype)
    from ascend_sim import dtypes as D
    from ascend_sim.tensor import TensorMeta
    # named as empty_with_format names it (a uint32 input has no Ascend dtype: the op's own error)
    dt = D.get_dtype(np.dtype(dtype), what="empty_with_format: argument 'dtype'")
    try:
        return sim.current_device.new_tensor(TensorMeta(tuple(shape), dt))
    except NPUOutOfMemoryError as e:
        raise NPUOutOfMemoryError(f"empty_with_format: {e}") from None

def _hugify(d: Drawer, kw: dict) -> dict:
    """Meta mode: every tensor argument becomes an NPUTensor of its shape (empty_with_format),
    one of them with a leading dimension scaled to 2**24..2**40 elements."""
    tensors = [k for k, v in kw.items() if isinstance(v, np.ndarray) and v.ndim and v.dtype.kind != "O"
               and v.dtype.kind != "c" and v.size]
    big = d.pick(tensors) if tensors else None
    out = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and v.dtype.kind not in "Oc" and (v.ndim or k == big):
            shape = list(v.shape)
            if k == big:
                target = 2 ** d.pick(HUGE_LOG2)
                shape[0] = max(1, target // max(1, math.prod(shape[1:])))
            out[k] = device_tensor(shape, v.dtype)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- the fuzz loop
def fuzz(n_calls: int, seed: int) -> tuple[list[str], dict]:
    d = Drawer(np.random.default_rng(seed))
    bases = _bases(d)
    names = sorted(ENTRY)
    findings: list[str] = []
    stats = {"calls": 0, "meta": 0, "by_op": {}}
    sims = {}
    for i in range(n_calls):
        name = names[i % len(names)] if i < len(names) else d.pick(names)
        entry = ENTRY[name]
        api = API_FUNCTIONS[name]
        params = list(api.__signature__.parameters)
        meta = d.rng.random() < 0.2
        chip = d.pick(CHIPS)
        key = (chip, meta)
        if key not in sims or stats["calls"] % 50 == 0:          # a fresh simulator now and then (HBM)
            sims[key] = Simulator(chip, mode="meta" if meta else "full")
        sim = sims[key]
        with sim:
            try:
                kw = bases[name]()                # inside the simulator: a base may hold NPUTensors
            except Exception as e:                                # noqa: BLE001
                pytest.fail(f"base call of {name} failed to draw: {e!r}")
            how = ["valid"]
            if d.rng.random() < 0.75:
                kw, how = mutate(d, kw, params)
            if meta:
                try:
                    with time_bound(CALL_SECONDS):
                        kw = _hugify(d, kw)
                except (NPUOutOfMemoryError, ValueError, TypeError) as e:
                    if "empty_with_format" not in str(e):
                        findings.append(f"empty_with_format (making a meta input): unnamed {type(e).__name__}: {e}")
                    continue
                except CallTimeout:
                    findings.append("empty_with_format (making a meta input): HANG")
                    continue
                stats["meta"] += 1
            stats["calls"] += 1
            finding, outcome = judge(name, lambda: api(**kw), entry, meta, kw)
        per = stats["by_op"].setdefault(name, {})
        per[outcome] = per.get(outcome, 0) + 1
        if finding is None:
            continue
        findings.append(f"{finding}\n    call #{i} seed {seed} chip {chip} {'meta' if meta else 'full'} "
                        f"{'+'.join(how)}: {name}(" + ", ".join(f"{k}={_describe(v)}" for k, v in kw.items()) + ")")
    return findings, stats


def test_fuzz_front_door():
    findings, stats = fuzz(FUZZ_CALLS, FUZZ_SEED)
    print(f"fuzz: {stats['calls']} calls ({stats['meta']} in meta mode) of {len(ENTRY)} functions, "
          f"seed {FUZZ_SEED}: {len(findings)} finding(s)")
    for name, per in sorted(stats["by_op"].items()):
        print(f"  {name:<40} " + " ".join(f"{k}={v}" for k, v in sorted(per.items())))
    # the valid base calls reach past the checks: most functions return normally at least once
    never = [n for n, per in stats["by_op"].items() if not per.get("returned")]
    assert FUZZ_CALLS < 10 * len(ENTRY) or len(never) <= len(ENTRY) // 6, f"never returned normally: {never}"
    assert not findings, f"{len(findings)} finding(s):\n" + "\n".join(findings[:40])


# ----------------------------------------------------------------------------- regression cases
def test_empty_calls_return_empty_results_and_queue_no_task():
    """Bullet 1: a 0-size op is legal; an all-empty call returns its empty result, no kernel."""
    with Simulator(trace="ops") as sim:
        x = np.zeros((1, 0), np.float16)
        assert torch_npu.one_(x).shape == (1, 0)
        assert torch_npu.npu_dtype_cast(np.zeros((2, 0, 2), np.float16), np.float32).dtype.name == "float32"
        assert torch_npu.copy_memory_(np.zeros((1, 0), np.float16), np.zeros((1, 0), np.float16)).shape == (1, 0)
        y = torch_npu.npu_bmmV2(np.zeros((7, 0, 16), np.float16), np.zeros((7, 16, 7), np.float16), [])
        assert y.shape == (7, 0, 7) and y.data.shape == (7, 0, 7)
        sim.synchronize()
        assert [o.name for o in sim.report().ops] == []
    with Simulator(mode="meta"):
        assert torch_npu.npu_silu(torch_npu.empty_with_format((0, 64), dtype=np.float16)).shape == (0, 64)
        with pytest.raises(ValueError, match="npu_swiglu: argument .input.: empty tensors are not supported"):
            torch_npu.npu_swiglu(torch_npu.empty_with_format((0, 64), dtype=np.float16))   # its page says so


def test_fusion_attention_batch_0():
    q = np.zeros((0, 128, 8, 64), np.float16)
    out = torch_npu.npu_fusion_attention(q, q, q, 8, "BSND")
    assert out[0].shape == (0, 128, 8, 64) and out[1].shape[0] == 0


def test_conversion_errors_name_the_op_and_the_argument():
    with pytest.raises(TypeError, match=r"fast_gelu: argument 'self': .*complex64 is not an Ascend dtype"):
        torch_npu.fast_gelu(np.zeros((2, 2), np.complex64))
    with pytest.raises(TypeError, match=r"npu_rms_norm: argument 'gamma': .*object"):
        torch_npu.npu_rms_norm(np.zeros((2, 2), np.float16), np.array([object(), object()]))
    with pytest.raises(TypeError, match=r"npu_grouped_matmul: argument 'x': .*complex128"):
        torch_npu.npu_grouped_matmul([np.zeros((2, 2), np.complex128)], [np.zeros((2, 2), np.float16)])


def test_bad_permutation_names_the_op_and_the_argument():
    x, w = np.ones((5, 3, 64), np.float16), np.ones((3, 64, 32), np.float16)
    for bad in ({"a": 1}, [None, 0, 2], "abc", 3):
        with pytest.raises((TypeError, ValueError), match="npu_transpose_batchmatmul: argument 'perm_y'"):
            torch_npu.npu_transpose_batchmatmul(x, w, perm_x1=[1, 0, 2], perm_y=bad)


def test_rank0_input_error_names_the_op():
    with pytest.raises((TypeError, ValueError), match="npu_rms_norm"):
        torch_npu.npu_rms_norm(np.array(1.0, np.float16), np.array(1.0, np.float16))


def test_bad_hcom_names_the_op_and_the_argument():
    x1, x2 = np.ones((4, 32), np.float16), np.ones((32, 16), np.float16)
    with pytest.raises(ValueError, match=r"npu_mm_all_reduce_base: argument 'hcom': unknown process group"):
        torch_npu.npu_mm_all_reduce_base(x1, x2, "no_such_group")
    with pytest.raises(TypeError, match=r"npu_all_gather_base_mm: argument 'hcom'"):
        torch_npu.npu_all_gather_base_mm(x1, x2, 3, 1)


def test_output_larger_than_hbm_fails_at_once_naming_the_op():
    with Simulator(mode="meta") as sim:
        hbm = sim.chip.memory.hbm_bytes
        with pytest.raises(NPUOutOfMemoryError, match="empty_with_format: NPU out of memory"):
            torch_npu.empty_with_format([hbm], dtype=np.float16)
        x = torch_npu.empty_with_format([hbm // 4], dtype=np.float16)        # half of HBM
        t0 = time.perf_counter()
        with pytest.raises(NPUOutOfMemoryError, match="npu_dtype_cast: NPU out of memory"):
            torch_npu.npu_dtype_cast(x, np.float32)                          # needs all of HBM more
        assert time.perf_counter() - t0 < 1.0


# ----------------------------------------------------------------------------- multi-rank
def _mm_args(r, m=16, k=32, n=16):
    return np.ones((m, k), np.float16), np.ones((k, n), np.float16)


def _spmd(n, fn, mode="full"):
    with Simulator("Ascend910B2", world_size=n, mode=mode) as sim:
        return sim.spmd(fn)


MULTI_RANK = {
    # ranks disagree on the shapes of the same fused op
    "shapes": lambda r: torch_npu.npu_mm_all_reduce_base(*_mm_args(r, m=16 + r), dist.get_hccl_comm_name()),
    # one rank calls another op
    "ops": lambda r: (torch_npu.npu_mm_all_reduce_base(*_mm_args(r), dist.get_hccl_comm_name()) if r == 0 else
                      torch_npu.npu_all_gather_base_mm(*_mm_args(r), dist.get_hccl_comm_name(), 2)),
    # one rank names a group that does not exist
    "group": lambda r: torch_npu.npu_mm_all_reduce_base(*_mm_args(r), dist.get_hccl_comm_name() if r else "nope"),
    # one rank never joins
    "absent": lambda r: None if r == 1 else torch_npu.npu_mm_reduce_scatter_base(
        *_mm_args(r, m=32), dist.get_hccl_comm_name(), 2),
    # one rank raises before it joins
    "raises": lambda r: torch_npu.npu_all_gather_base_mm(*_mm_args(r, k=32 if r else 33), dist.get_hccl_comm_name(), 2),
    # a rank with an empty input while the others have data
    "empty": lambda r: torch_npu.npu_mm_all_reduce_base(*_mm_args(r, m=0 if r else 16), dist.get_hccl_comm_name()),
}


@pytest.mark.parametrize("case", sorted(MULTI_RANK))
@pytest.mark.parametrize("mode", ["full", "meta"])
def test_multi_rank_disagreement_never_hangs(case, mode):
    fn = MULTI_RANK[case]

    def call():
        if mode == "meta":
            return _spmd(2, lambda r: fn(r), mode)
        return _spmd(2, fn, mode)
    try:
        with time_bound(4 * CALL_SECONDS):
            call()
    except CallTimeout:
        pytest.fail(f"{case}: the ranks hung")
    except CollectiveMismatchError:
        pass
    except (ValueError, TypeError) as e:
        assert "npu_" in str(e), f"{case}: the rank's error does not name the op: {e}"
    else:
        pytest.fail(f"{case}: ranks that disagree returned normally")
