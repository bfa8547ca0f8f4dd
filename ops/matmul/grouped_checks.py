"""npu_grouped_matmul's argument checks, one feature at a time, composing into :class:`GmmSpec`.

Each check reads the arguments it is about and adds what it found to the call's facts: the
tensor lists, the grouping (group_type, group_list and its form), the dtype mode, the shapes and
scenario, the number of groups, the quantisation parameters, the outputs. The spec keeps shapes
and dtypes only (hashable), plus the group sizes the plan is built from (``sizes``, ``slots``):
a List[int] group_list's (host data, planned as given in both modes) are set by the checks; a
group_list tensor's by :func:`resolve_groups` (the op's ``resolve_work``) -- the real sizes read
from its numbers in full mode, the declared assumption in meta mode (see :data:`ASSUMPTIONS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import NPUTensor, TensorMeta

from ..base import Args, OpSpec
from ..common import INT4_PER_INT32, is_310p, matrix_format

F16, BF16, F32, I8, I32, I64, I4 = D.float16, D.bfloat16, D.float32, D.int8, D.int32, D.int64, D.int4
FLOATS = (F16, BF16, F32)
INNER_LIMIT = 65536           # last dims must stay below this
GMM_MAX_LIST = 128            # x / weight list length; also group_list length for types 1 and 2
GMM_MAX_GROUPS = 1024         # groups of a single stacked weight
GMM_ACT_TYPES = (0, 1, 2, 4, 5)
#: meta mode, a group_list tensor: how its numbers are assumed. ``routing="uniform"``: the rows (K
#: for group_type 2) spread evenly over the groups, the first ``total % groups`` one row larger;
#: ``group_sizes=(...)``: one size per group, checked as real sizes are (it wins over routing).
ASSUMPTIONS = MappingProxyType({"routing": "uniform", "group_sizes": None})
ROUTINGS = ("uniform",)


@dataclass(frozen=True, kw_only=True)
class GmmSpec(OpSpec):
    """The static facts of one npu_grouped_matmul call (everything but a group_list tensor's values)."""

    x_shapes: tuple
    w_shapes: tuple
    w_nz: tuple               # per weight: FRACTAL_NZ
    scenario: str             # "MMM", "SMM", "SMS", "MMS", "SSS", "KSPLIT"
    legacy: bool              # group_list is a List[int] (the older API)
    gl_kind: str              # "none", "list", "tensor"
    gl_type: int
    gl_values: tuple          # a List[int] group_list
    n_groups: int
    x_dt: D.DType             # logical dtypes (int4 for packed int32 words)
    w_dt: D.DType
    out_dt: D.DType
    mode: str                 # "float", "int32", "fixpipe", "dequant", "pertoken", "int4", "antiquant"
    act: int
    stacked: bool             # one (E, K, N) weight
    w_transposed: bool        # int4 words packed along K ((K/8, N) as torch shows a transposed (N, K/8))
    ks: tuple                 # K of each x
    ns: tuple                 # N of each weight
    aq_groups: tuple          # antiquant K-groups per weight (0: per-channel)
    kgroups: int              # int4: scale K-groups
    bias_item: float          # 0: no bias
    scale_item: float         # 0: no scale
    per_token: bool
    aq_offset: bool
    sizes: tuple | None = None    # group sizes along the grouped axis (None: a group_list tensor not yet resolved)
    slots: tuple | None = None    # expert slot of each group

    @property
    def x_rows(self) -> list[int]:
        return [math.prod(s[:-1]) for s in self.x_shapes]

    @property
    def n_experts(self) -> int:
        return self.w_shapes[0][0] if self.stacked else len(self.w_shapes)

    @property
    def out_shapes(self) -> list[tuple]:
        return [o.shape for o in self.outputs]


@dataclass(frozen=True)
class Group:
    """One GEMM of a grouped matmul: where its A, B and output live."""

    x: int          # index into the x list
    row0: int       # first row of the group inside x[x] (m-axis grouping)
    col0: int       # first column inside x[x] (k-axis grouping)
    m: int
    k: int
    n: int
    w: int          # index into the weight list
    slot: int       # expert of a stacked (E, K, N) weight; 0 for a 2-D weight
    wrow0: int      # first weight row (k-axis grouping)
    out: int        # output index
    orow0: int      # first output row
    oslot: int      # output batch (k-axis grouping: one (M, N) result per group)
    param: int      # index of the group's bias / scale / antiquant parameters


# ============================================================================================
# Per-feature checks: each adds to the facts ``f``
# ============================================================================================
def tensor_list(op, a: Args, arg: str, *, optional: bool = True) -> list | None:
    v = a.get(arg)
    if v is None:
        if optional:
            return None
        raise TypeError(f"{op.name}: argument '{arg}' is required (a list of tensors)")
    if isinstance(v, NPUTensor) or not isinstance(v, (list, tuple)):
        raise TypeError(f"{op.name}: argument '{arg}' must be a list of tensors, got {type(v).__name__}")
    if not v:
        if optional:
            return None
        raise op.fail(arg, "must not be empty")
    for i, t in enumerate(v):
        if not isinstance(t, NPUTensor):
            raise TypeError(f"{op.name}: argument '{arg}[{i}]' must be a tensor, got {type(t).__name__}")
    if len(v) > GMM_MAX_LIST:
        raise op.fail(arg, f"has {len(v)} tensors; at most {GMM_MAX_LIST}")
    return list(v)


def _int(op, a: Args, arg: str, default: int) -> int:
    return default if a.get(arg) is None else op.int_arg(a, arg)


def check_lists(op, a: Args, f) -> None:
    """x and weight lists; the arguments this page fixes to None."""
    f.xs = tensor_list(op, a, "x", optional=False)
    f.ws = tensor_list(op, a, "weight", optional=False)
    for arg in ("offset", "activation_input", "activation_quant_scale", "activation_quant_offset"):
        if a.get(arg) is not None:
            raise op.fail(arg, "only None is supported")
    for arg in ("x_dtype", "weight_dtype", "scale_dtype", "per_token_scale_dtype"):
        if a.get(arg) is not None:
            raise op.fail(arg, "must be None (the hifloat8 / MX formats it selects are not on this page)")


def check_grouping(op, a: Args, f) -> None:
    """split_item, group_list's form, group_type, group_list_type, act_type."""
    split = _int(op, a, "split_item", 0)
    if split not in (0, 1, 2, 3):
        raise op.fail("split_item", f"must be 0, 1, 2 or 3; got {split}")
    f.single_y = split in (2, 3)
    gl = f.gl = a.get("group_list")
    if gl is None:
        f.gl_kind = "none"
    elif isinstance(gl, NPUTensor):
        f.gl_kind = "tensor"
    elif isinstance(gl, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                               for v in gl):
        f.gl_kind = "list"
    else:
        raise TypeError(f"{op.name}: argument 'group_list' must be a List[int] or an int64 tensor")
    gt = a.get("group_type")
    f.gl_type = _int(op, a, "group_list_type", 0)
    f.act = _int(op, a, "act_type", 0)
    f.legacy = f.gl_kind == "list"
    if f.legacy:
        if gt is not None:
            raise op.fail("group_type", "must be None when group_list is a List[int]")
        if f.gl_type != 0:
            raise op.fail("group_list_type", "must be left at its default when group_list is a List[int]")
        if f.act != 0:
            raise op.fail("act_type", "must be left at its default when group_list is a List[int]")
        gt = 0 if len(gl) else -1
    else:
        if gt is None:
            raise op.fail("group_type", "must be -1, 0 or 2 unless group_list is a List[int]")
        gt = op.int_arg(a, "group_type")
        if gt not in (-1, 0, 2):
            raise op.fail("group_type", f"must be -1 (no grouping), 0 (m axis) or 2 (k axis); got {gt}")
        if f.gl_type not in (0, 1, 2):
            raise op.fail("group_list_type", "must be 0 (cumsum), 1 (sizes) or 2 ([index, size] pairs); got "
                                             f"{f.gl_type}")
    f.gt = gt
    if f.act not in GMM_ACT_TYPES:
        raise op.fail("act_type", f"must be one of {GMM_ACT_TYPES} (0 none, 1 ReLU, 2 GELU-tanh, 4 FastGELU, "
                                  f"5 SiLU; 3 is not supported); got {f.act}")


def check_dtypes(op, a: Args, f, chip) -> None:
    """One dtype per list; the documented (x, weight) combinations -> the mode."""
    f.p310 = chip is not None and is_310p(chip)
    x_dtype, w_dtype = f.xs[0].dtype, f.ws[0].dtype
    for arg, lst, dt in (("x", f.xs, x_dtype), ("weight", f.ws, w_dtype)):
        for i, t in enumerate(lst):
            if t.dtype is not dt:
                raise TypeError(f"{op.name}: argument '{arg}[{i}]' has dtype {t.dtype.name}; every tensor of "
                                f"'{arg}' must have {arg}[0]'s dtype {dt.name}")
    allowed = (F16,) if f.p310 else (F16, F32, BF16, I8, I32)
    op.check_dtype("x[0]", f.xs[0], allowed)
    op.check_dtype("weight[0]", f.ws[0], allowed)
    if x_dtype in FLOATS and w_dtype is x_dtype:
        f.mode, f.x_dt, f.w_dt = "float", x_dtype, w_dtype
    elif x_dtype in (F16, BF16) and w_dtype in (I8, I32):
        f.mode, f.x_dt, f.w_dt = "antiquant", x_dtype, (I4 if w_dtype is I32 else I8)
    elif x_dtype is I8 and w_dtype is I8:
        f.mode, f.x_dt, f.w_dt = "int8", I8, I8
    elif x_dtype is I32 and w_dtype is I32:
        f.mode, f.x_dt, f.w_dt = "int4", I4, I4
    else:
        raise TypeError(f"{op.name}: argument 'weight' has dtype {w_dtype.name}; with x {x_dtype.name} that "
                        "is not a documented combination")
    if f.legacy and f.mode == "int4":
        raise TypeError(f"{op.name}: argument 'group_list' must be a tensor for int4 inputs")
    if f.legacy and f.mode == "antiquant" and f.w_dt is I4:
        raise TypeError(f"{op.name}: argument 'group_list' must be a tensor for int4 weights")


def check_shapes(op, f) -> None:
    """Ranks, formats and limits of every x and weight; K and N of each (int4 words unpacked)."""
    for i, t in enumerate(f.xs):
        if F.is_fractal(t.format):
            raise op.fail(f"x[{i}]", f"format must be ND; got {t.format.name}")
        if t.ndim < 2 or t.ndim > 6:
            raise op.fail(f"x[{i}]", f"must have 2 to 6 dimensions; got shape {t.shape}")
        if t.shape[-1] >= INNER_LIMIT:
            raise op.fail(f"x[{i}]", f"last dimension {t.shape[-1]} must be below {INNER_LIMIT}")
    f.w_nz = tuple(matrix_format(op, f"weight[{i}]", t) for i, t in enumerate(f.ws))
    for i, t in enumerate(f.ws):
        if t.ndim not in (2, 3):
            raise op.fail(f"weight[{i}]", f"must be 2-D or 3-D; got shape {t.shape}")
        if t.shape[-1] >= INNER_LIMIT:
            raise op.fail(f"weight[{i}]", f"last dimension {t.shape[-1]} must be below {INNER_LIMIT}")
    f.stacked = len(f.ws) == 1 and f.ws[0].ndim == 3
    if any(t.ndim == 3 for t in f.ws) and not f.stacked:
        raise op.fail("weight", "a 3-D weight must be the only tensor of the list (one stacked (E, K, N) weight)")
    x4, w4 = f.x_dt is I4, f.w_dt is I4
    f.ks = [t.shape[-1] * (INT4_PER_INT32 if x4 else 1) for t in f.xs]
    f.x_rows = [math.prod(t.shape[:-1]) for t in f.xs]
    # int4 words are packed along N, or (shown as (K/8, N)) along K for a transposed weight
    w0 = f.ws[0]
    f.w_transposed = bool(w4 and w0.shape[-2] * INT4_PER_INT32 == f.ks[0] and w0.shape[-2] != f.ks[0])
    f.ns, f.wks = [], []
    for t in f.ws:
        if w4 and f.w_transposed:
            f.ns.append(t.shape[-1])
            f.wks.append(t.shape[-2] * INT4_PER_INT32)
        else:
            f.ns.append(t.shape[-1] * (INT4_PER_INT32 if w4 else 1))
            f.wks.append(t.shape[-2])
    f.n_w = w0.shape[0] if f.stacked else len(f.ws)


def _scenario_of(op, f) -> str:
    single_x = len(f.xs) == 1
    if f.gt == -1:
        if f.gl_kind != "none":
            raise op.fail("group_list", "must be None when group_type is -1 (no grouping)")
        if f.single_y:
            raise op.fail("split_item", "must be 0 or 1 when group_type is -1 (one output per group)")
        return "MMM"
    if f.gt == 2:
        if f.gl_kind != "tensor":
            raise op.fail("group_list", "is required (an int64 tensor) when group_type is 2 (k-axis grouping)")
        if f.mode != "float":
            raise TypeError(f"{op.name}: argument 'group_type' 2 (k-axis grouping) supports float16/bfloat16/float32 "
                            "only; quantisation needs group_type -1 or 0")
        if not single_x or len(f.ws) != 1 or f.stacked or f.xs[0].ndim != 2:
            raise op.fail("weight", "group_type 2 takes one 2-D x (M, K) and one 2-D weight (K, N)")
        if not f.single_y:
            raise op.fail("split_item", "must be 2 or 3 when group_type is 2 (one output tensor)")
        return "KSPLIT"
    if f.stacked:
        if not single_x:
            raise op.fail("x", "a stacked (E, K, N) weight takes a single x")
        sc = "SSS"
    elif single_x:
        sc = "SMS" if f.single_y else "SMM"
    else:
        sc = "MMS" if f.single_y else "MMM"
    if sc == "SMM" and not f.legacy:
        raise op.fail("split_item", "must be 2 or 3 when x is one tensor and group_list a tensor (single output)")
    if sc in ("SSS", "SMS", "SMM") and f.gl_kind == "none":
        raise op.fail("group_list", "is required when x is a single tensor split into groups")
    if sc == "SSS" and not f.single_y:
        raise op.fail("split_item", "must be 2 or 3 with a stacked weight (single output)")
    return sc


def check_scenario(op, f, chip) -> None:
    """Which of the page's scenarios the lists and group_type make, and its shape rules."""
    sc = f.scenario = _scenario_of(op, f)
    xs, ws = f.xs, f.ws
    if f.p310 and sc != "SSS":
        raise op.fail("group_type", f"{chip.name} supports only group_type 0 with single x, weight and y")
    if sc in ("SMS", "SMM", "MMS", "SSS", "KSPLIT") and any(t.ndim != 2 for t in xs):
        raise op.fail("x", "every x tensor must be 2-D when groups share an x or an output")
    if sc == "MMM" and len(xs) != len(ws):
        raise op.fail("weight", f"has {len(ws)} tensors; one per x tensor ({len(xs)}) when each group is separate")
    if sc == "MMS" and len(xs) != len(ws):
        raise op.fail("weight", f"has {len(ws)} tensors; one per x tensor ({len(xs)})")
    if sc == "MMM" and len({t.ndim for t in xs}) != 1:
        raise op.fail("x", "every x tensor must have the same number of dimensions")
    if sc == "MMM" and f.gl_kind == "list" and any(t.ndim != 2 for t in xs):
        raise op.fail("group_list", "must be omitted when x tensors have more than 2 dimensions")
    if f.single_y and len(set(f.ns)) != 1:
        raise op.fail("weight", f"every weight must have the same N for a single output; got {f.ns}")
    pairs = list(zip(range(len(xs)), range(len(ws)))) if sc in ("MMM", "MMS") else [(0, i) for i in range(len(ws))]
    for xi, wi in pairs:
        if f.ks[xi] != f.wks[wi]:
            raise op.fail(f"weight[{wi}]", f"K={f.wks[wi]} must equal x[{xi}]'s K={f.ks[xi]}")


def check_group_list(op, a: Args, f) -> None:
    """The number of groups, and group_list's dtype, rank and length for its form."""
    sc = f.scenario
    if sc == "SSS":
        n_groups = f.n_w if f.gl_type != 2 else None
        if f.n_w > GMM_MAX_GROUPS:
            raise op.fail("weight", f"{f.n_w} experts exceed the {GMM_MAX_GROUPS} groups supported")
    elif sc == "KSPLIT":
        n_groups = None
    else:
        n_groups = len(f.ws) if sc != "MMM" else len(f.xs)
    gl = f.gl
    if f.gl_kind == "tensor":
        op.check_dtype("group_list", gl, [I64])
        if f.gl_type == 2:
            if f.mode != "int8" or f.gt != 0:
                raise op.fail("group_list_type", "2 is supported only for int8 x and weight with group_type 0")
            if gl.ndim != 2 or gl.shape[1] != 2:
                raise op.fail("group_list", f"must be (E, 2) [[index, size], ...] for group_list_type 2; got {gl.shape}")
        else:
            if gl.ndim != 1:
                raise op.fail("group_list", f"must be 1-D; got shape {gl.shape}")
            if f.gl_type == 1 and gl.shape[0] == 1 and sc != "SSS":
                raise op.fail("group_list", "must not have length 1 when group_list_type is 1")
        count = gl.shape[0]
        if n_groups is not None and f.gl_type != 2 and count != n_groups:
            raise op.fail("group_list", f"has {count} entries; one per group ({n_groups}) is required")
        limit = GMM_MAX_GROUPS if sc in ("SSS", "KSPLIT") else GMM_MAX_LIST
        if count > limit:
            raise op.fail("group_list", f"has {count} entries; at most {limit}")
        if n_groups is None:
            n_groups = count
    elif f.gl_kind == "list":
        if len(gl) == 1:
            raise op.fail("group_list", "a List[int] group_list must not have length 1")
        if any(v < 0 for v in gl) or any(b <= a_ for a_, b in zip(gl, gl[1:])):
            raise op.fail("group_list", f"must be a non-negative strictly increasing sequence; got {list(gl)}")
        if len(gl) != n_groups:
            raise op.fail("group_list", f"has {len(gl)} entries; one per group ({n_groups}) is required")
    f.n_groups = n_groups
    if a.get("tuning_config") is not None:
        tc = a.tuning_config
        if not isinstance(tc, (list, tuple)) or not tc or not all(isinstance(v, (int, np.integer)) for v in tc):
            raise TypeError(f"{op.name}: argument 'tuning_config' must be a non-empty list of ints")
        if f.mode != "int8" or len(f.xs) != 1 or len(f.ws) != 1:
            raise op.fail("tuning_config", "is only for int8 quantisation with a single x and a single weight")


def _param_list(op, a: Args, arg: str, count: int) -> list | None:
    lst = tensor_list(op, a, arg)
    if lst is not None and len(lst) != count:
        raise op.fail(arg, f"has {len(lst)} tensors; it must have {count} (one per "
                           f"{'x' if arg == 'per_token_scale' else 'weight'} tensor)")
    return lst


def _scale_groups(op, scale, f, kgroups) -> int:
    """Shapes of per-group quantisation scales; returns the number of K-groups (int4)."""
    g_seen = 1
    for i, t in enumerate(scale):
        n = f.ns[0] if f.stacked else f.ns[i]
        lead = (f.n_w,) if f.stacked else ()
        ok = t.shape == (*lead, n)
        grouped = t.ndim == len(lead) + 2 and t.shape[:len(lead)] == lead and t.shape[-1] == n
        if kgroups is None and not ok and grouped:
            g_seen = t.shape[-2]
            ok = True
        if not ok:
            want = f"{(*lead, n)}" + (f" or {(*lead, 'G', n)}" if kgroups is None else "")
            raise op.fail(f"scale[{i}]", f"shape {t.shape} must be {want}")
    return g_seen


def _aq_groups(op, arg, t, f, n, k) -> int:
    lead = (f.n_w,) if f.stacked else ()
    if t.shape == (*lead, n):
        return 0
    if t.ndim == len(lead) + 2 and t.shape[:len(lead)] == lead and t.shape[-1] == n:
        g = t.shape[-2]
        if f.w_dt is I8:
            raise op.fail(arg, "int8 weights support per-channel antiquantisation only")
        if g < 1 or k % g:
            raise op.fail(arg, f"its {g} per-group partitions must divide K={k}")
        return g
    raise op.fail(arg, f"shape {t.shape} must be {(*lead, n)} (per channel) or {(*lead, 'G', n)} (per group)")


def _check_float(op, f) -> None:
    f.out_dt = f.x_dt
    f.want_bias = {F16: F16, BF16: F32, F32: F32}[f.x_dt]
    if f.x_dt is F32 and not f.legacy and not (len(f.xs) == 1 and len(f.ws) == 1 and f.single_y):
        raise TypeError(f"{op.name}: argument 'x': float32 needs a single x, a single weight and a single output")


def _check_antiquant(op, f, aqs, aqo) -> None:
    if f.gt == 2:
        raise op.fail("group_type", "fake quantisation needs group_type -1 or 0")
    if aqs is None:
        raise op.fail("antiquant_scale", "is required for float x with int8/int4 weights")
    f.out_dt = f.x_dt
    f.want_bias = {F16: F16, BF16: F32}[f.x_dt]
    for i, t in enumerate(aqs):
        if t.dtype is not f.x_dt:
            raise TypeError(f"{op.name}: argument 'antiquant_scale[{i}]' has dtype {t.dtype.name}; it must "
                            f"match x's {f.x_dt.name}")
    if aqo is not None:
        for i, (o, s_) in enumerate(zip(aqo, aqs)):
            if o.dtype is not s_.dtype:
                raise TypeError(f"{op.name}: argument 'antiquant_offset[{i}]' has dtype {o.dtype.name}; it "
                                f"must match antiquant_scale's {s_.dtype.name}")
            if o.shape != s_.shape:
                raise op.fail(f"antiquant_offset[{i}]", f"shape {o.shape} must equal antiquant_scale's {s_.shape}")
    groups = [_aq_groups(op, f"antiquant_scale[{i}]", t, f, f.ns[i] if not f.stacked else f.ns[0], f.wks[i])
              for i, t in enumerate(aqs)]
    f.aq_groups = [groups[0]] if f.stacked else groups


def _check_int8(op, f, scale, pts, out_req) -> None:
    if f.gt == 2:
        raise op.fail("group_type", "quantisation needs group_type -1 or 0")
    f.want_bias = I32
    if scale is None:
        if out_req is not I32:
            raise op.fail("scale", "is required for int8 inputs unless output_dtype is int32")
        f.mode, f.out_dt = "int32", I32
        return
    sd = scale[0].dtype
    for i, t in enumerate(scale):
        if t.dtype is not sd:
            raise TypeError(f"{op.name}: argument 'scale[{i}]' has dtype {t.dtype.name}; every scale must have "
                            f"scale[0]'s dtype {sd.name}")
    if f.legacy and sd is not I64:
        raise TypeError(f"{op.name}: argument 'scale' must be int64 when group_list is a List[int]")
    if sd is I64:
        if pts is not None:
            raise op.fail("per_token_scale", "per-token quantisation takes a float32 or bfloat16 scale")
        if out_req not in (None, I8):
            raise TypeError(f"{op.name}: argument 'output_dtype' must be None or int8 with an int64 scale (int8 "
                            "output)")
        f.mode, f.out_dt = "fixpipe", I8
    elif sd in (BF16, F32):
        want_out = BF16 if sd is BF16 else F16
        if out_req is not want_out:
            raise TypeError(f"{op.name}: argument 'output_dtype' must be {want_out.name} with a {sd.name} scale")
        f.mode, f.out_dt = ("pertoken" if pts is not None else "dequant"), want_out
    else:
        raise TypeError(f"{op.name}: argument 'scale' has dtype {sd.name}; allowed: int64, bfloat16, float32")
    _scale_groups(op, scale, f, 1)


def _check_int4(op, f, scale, out_req) -> None:
    if f.gt == 2:
        raise op.fail("group_type", "quantisation needs group_type -1 or 0")
    f.want_bias = None
    if scale is None:
        raise op.fail("scale", "is required for int4 x and weight")
    for i, t in enumerate(scale):
        if t.dtype is not I64:
            raise TypeError(f"{op.name}: argument 'scale[{i}]' must be int64 (uint64 words) for int4 inputs")
    if out_req not in (F16, BF16):
        raise TypeError(f"{op.name}: argument 'output_dtype' must be float16 or bfloat16 for int4 inputs")
    f.out_dt = out_req
    f.kgroups = _scale_groups(op, scale, f, None)
    if f.ks[0] % f.kgroups:
        raise op.fail("scale", f"its {f.kgroups} K-groups must divide K={f.ks[0]}")


def check_quantisation(op, a: Args, f) -> None:
    """scale / per_token_scale / antiquant parameters and output_dtype for the mode."""
    f.bias = _param_list(op, a, "bias", len(f.ws))
    f.scale = scale = _param_list(op, a, "scale", len(f.ws))
    f.pts = pts = _param_list(op, a, "per_token_scale", len(f.xs))
    aqs = _param_list(op, a, "antiquant_scale", len(f.ws))
    f.aqo = aqo = _param_list(op, a, "antiquant_offset", len(f.ws))
    out_req = None if a.get("output_dtype") is None else op.dtype_arg(a, "output_dtype")
    mode = f.mode
    if f.legacy and pts is not None:
        raise op.fail("per_token_scale", "must be None when group_list is a List[int]")
    if mode in ("float", "antiquant", "int4") or (mode == "int8" and scale is None):
        if mode != "int4" and pts is not None:
            raise op.fail("per_token_scale", "is only for int8/int4 per-token quantisation")
    if mode != "antiquant" and (aqs is not None or aqo is not None):
        raise op.fail("antiquant_scale" if aqs is not None else "antiquant_offset",
                      "is only for float x with int8/int4 weights (fake quantisation)")
    if mode in ("float", "antiquant") and scale is not None:
        raise op.fail("scale", "is only for int8/int4 inputs")
    f.kgroups, f.aq_groups = 1, [0] * len(f.ws)
    if mode == "float":
        _check_float(op, f)
    elif mode == "antiquant":
        _check_antiquant(op, f, aqs, aqo)
    elif mode == "int8":
        _check_int8(op, f, scale, pts, out_req)
    else:
        _check_int4(op, f, scale, out_req)
    if f.mode not in ("pertoken", "int4") and f.act != 0:
        raise op.fail("act_type", "activations are supported only in per-token quantisation")
    if out_req is not None and out_req is not f.out_dt:
        raise TypeError(f"{op.name}: argument 'output_dtype' is {out_req.name}; this scenario outputs "
                        f"{f.out_dt.name}")


def check_bias_and_tokens(op, f, chip) -> None:
    if f.bias is not None:
        if f.want_bias is None:
            raise op.fail("bias", "is not supported for int4 inputs")
        if f.scenario == "KSPLIT":
            raise op.fail("bias", "is not supported with group_type 2")
        for i, t in enumerate(f.bias):
            if t.dtype is not f.want_bias:
                raise TypeError(f"{op.name}: argument 'bias[{i}]' has dtype {t.dtype.name}; this scenario takes "
                                f"{f.want_bias.name}")
            want = (f.n_w, f.ns[0]) if f.stacked else (f.ns[i],)
            if t.shape != want:
                raise op.fail(f"bias[{i}]", f"shape {t.shape} must be {want}")
    if f.pts is not None:
        for i, t in enumerate(f.pts):
            op.check_dtype(f"per_token_scale[{i}]", t, [F32])
            if t.shape != (f.x_rows[i],):
                raise op.fail(f"per_token_scale[{i}]", f"shape {t.shape} must be ({f.x_rows[i]},): one per row of x")
    if f.p310 and (f.out_dt is not F16 or f.ns[0] % chip.cube.n0):
        raise op.fail("weight", f"{chip.name}: float16 only, with N a multiple of {chip.cube.n0}")


def output_shapes(f) -> list[tuple]:
    if f.scenario == "KSPLIT":
        return [(f.n_groups, f.xs[0].shape[0], f.ns[0])]
    if f.single_y:
        return [(sum(f.x_rows), f.ns[0])]
    if f.scenario == "SMM":
        cum = [0] + list(f.gl)
        return [(cum[i + 1] - cum[i], f.ns[i]) for i in range(len(f.ws))]
    return [(*t.shape[:-1], f.ns[i]) for i, t in enumerate(f.xs)]


def gmm_spec(op, a: Args, chip) -> GmmSpec:
    """Every check of npu_grouped_matmul, in the page's order, composed into the spec."""
    f = SimpleNamespace()
    check_lists(op, a, f)
    check_grouping(op, a, f)
    check_dtypes(op, a, f, chip)
    check_shapes(op, f)
    check_scenario(op, f, chip)
    check_group_list(op, a, f)
    check_quantisation(op, a, f)
    check_bias_and_tokens(op, f, chip)
    outs = tuple(TensorMeta(tuple(s), f.out_dt) for s in output_shapes(f))
    spec = GmmSpec(
        outputs=outs, attrs=(("group_type", a.get("group_type")), ("split_item", a.get("split_item", 0)),
                             ("group_list_type", a.get("group_list_type", 0))),
        x_shapes=tuple(t.shape for t in f.xs), w_shapes=tuple(t.shape for t in f.ws), w_nz=f.w_nz,
        scenario=f.scenario, legacy=f.legacy, gl_kind=f.gl_kind, gl_type=f.gl_type,
        gl_values=tuple(int(v) for v in f.gl) if f.gl_kind == "list" else (), n_groups=f.n_groups, x_dt=f.x_dt,
        w_dt=f.w_dt, out_dt=f.out_dt, mode=f.mode, act=f.act, stacked=f.stacked, w_transposed=f.w_transposed,
        ks=tuple(f.ks), ns=tuple(f.ns), aq_groups=tuple(f.aq_groups), kgroups=f.kgroups,
        bias_item=0.0 if f.bias is None else f.bias[0].dtype.itemsize,
        scale_item=0.0 if f.scale is None else f.scale[0].dtype.itemsize, per_token=f.pts is not None,
        aq_offset=f.aqo is not None)
    if f.gl_kind == "list":
        check_list_sizes(op, spec)
    elif f.gl_kind == "tensor":
        if f.gl.data is not None:
            group_sizes(op, spec, a.group_list.data)    # value checks where the values exist (full mode)
        return spec                                     # sizes: resolve_groups
    sizes, slots = group_sizes(op, spec)                # host data: planned as given
    return spec.replace(sizes=tuple(sizes), slots=tuple(slots))


# ============================================================================================
# Group sizes and the groups they make
# ============================================================================================
def check_list_sizes(op, spec: GmmSpec) -> None:
    """A List[int] group_list: cumulative ends along x's rows."""
    gl, x_rows = list(spec.gl_values), spec.x_rows
    sizes = [b - a_ for a_, b in zip([0] + gl, gl)]
    if spec.scenario in ("MMM", "MMS"):
        if sizes != x_rows:
            raise op.fail("group_list", f"its differences {sizes} must equal each x tensor's rows {x_rows}")
    elif gl[-1] != x_rows[0]:
        raise op.fail("group_list", f"its last value {gl[-1]} must equal x's rows {x_rows[0]}")


def _grouped_total(spec: GmmSpec) -> tuple[int, str]:
    """(length of the grouped axis, its name in messages)."""
    if spec.scenario == "KSPLIT":
        return spec.ks[0], "K"
    return spec.x_rows[0], "x's rows"


def uniform_sizes(spec: GmmSpec) -> tuple[list[int], list[int]]:
    """A group_list tensor under ``routing="uniform"``: the grouped axis spread evenly (the first
    ``total % groups`` groups one larger), group i on expert slot i (mod the experts)."""
    g = spec.n_groups
    if spec.scenario == "MMS":            # each group is one x tensor: its rows are fixed by the shapes
        return spec.x_rows, list(range(g))
    base, extra = divmod(_grouped_total(spec)[0], g)
    return [base + (i < extra) for i in range(g)], [i % spec.n_experts for i in range(g)]


def check_sizes(spec: GmmSpec, sizes: list[int], fail) -> None:
    """Group sizes against the call: non-negative, within the grouped axis (MMS: each x's rows).
    ``fail(rule)`` makes the error (naming the argument or the assumption)."""
    x_rows = spec.x_rows
    total, axis = _grouped_total(spec)
    if any(s < 0 for s in sizes):
        raise fail(f"group sizes must be non-negative; got {sizes}")
    if spec.scenario == "MMS":
        if sizes != x_rows:
            raise fail(f"group sizes {sizes} must equal each x tensor's rows {x_rows}")
    elif sum(sizes) > total:
        raise fail(f"its groups cover {sum(sizes)} rows; {axis} has only {total}")


def group_sizes(op, spec: GmmSpec, values=None) -> tuple[list[int], list[int]]:
    """(group sizes along the grouped axis, expert slot per group): from a group_list tensor's
    ``values`` (checked; group_list_type 0 cumulative, 1 counts, 2 [index, size] pairs), a
    List[int] as given; no values: the spec's resolved sizes (or, unresolved, the even split)."""
    x_rows = spec.x_rows
    g = spec.n_groups
    if spec.gl_kind == "list":
        gl = list(spec.gl_values)
        return [b - a_ for a_, b in zip([0] + gl, gl)], list(range(g))
    if spec.gl_kind == "none":
        return x_rows, list(range(len(x_rows)))
    if values is None:
        if spec.sizes is not None:
            return list(spec.sizes), list(spec.slots)
        return uniform_sizes(spec)
    v = np.asarray(values).astype(np.int64)
    if spec.gl_type == 2:
        slots, sizes = v[:, 0].tolist(), v[:, 1].tolist()
        if any(s < 0 or s >= spec.n_experts for s in slots):
            raise op.fail("group_list", f"group indices {slots} must lie in [0, {spec.n_experts})")
    elif spec.gl_type == 1:
        sizes, slots = v.tolist(), list(range(g))
    else:
        if (np.diff(v) < 0).any() if v.size else False:
            raise op.fail("group_list", f"must be non-decreasing for group_list_type 0; got {v.tolist()}")
        sizes, slots = np.diff(np.concatenate([[0], v])).tolist(), list(range(g))
    check_sizes(spec, sizes, lambda rule: op.fail("group_list", rule))
    return sizes, slots


def _assumed_sizes(op, spec: GmmSpec, assumptions) -> tuple[list[int], list[int], str]:
    """Meta mode: (sizes, slots, what the report row shows) from the op's assumptions."""
    gs = assumptions.get("group_sizes")
    if gs is not None:
        def fail(rule):
            return ValueError(f"{op.name}: assumption group_sizes: {rule}")
        if isinstance(gs, np.ndarray):
            gs = gs.tolist()
        if not isinstance(gs, (list, tuple)) or \
                not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in gs):
            raise fail(f"must be a tuple of ints, one size per group; got {gs!r}")
        if len(gs) != spec.n_groups:
            raise fail(f"has {len(gs)} sizes; this call has {spec.n_groups} groups (group_list's entries)")
        sizes = [int(v) for v in gs]
        check_sizes(spec, sizes, fail)
        return sizes, uniform_sizes(spec)[1], f"group_sizes={tuple(sizes)}"
    routing = assumptions.get("routing", ASSUMPTIONS["routing"])
    if routing not in ROUTINGS:
        raise ValueError(f"{op.name}: assumption routing must be one of {list(ROUTINGS)} (or give "
                         f"group_sizes=(...), one size per group); got {routing!r}")
    sizes, slots = uniform_sizes(spec)
    return sizes, slots, "" if spec.scenario == "MMS" else f"routing={routing}"


def resolve_groups(op, spec: GmmSpec, a: Args, outputs, assumptions) -> GmmSpec:
    """The op's ``resolve_work``: a group_list tensor's group sizes into the spec -- in full mode
    (``outputs`` computed) the real ones read from its numbers, in meta mode the assumed ones
    (``spec.assumed`` says which). Other group_list forms are host data, already in the spec."""
    if spec.gl_kind != "tensor":
        return spec
    if outputs is not None:
        sizes, slots = group_sizes(op, spec, a.group_list.data)
        assumed = ""
    else:
        sizes, slots, assumed = _assumed_sizes(op, spec, assumptions)
    return spec.replace(sizes=tuple(int(v) for v in sizes), slots=tuple(int(v) for v in slots), assumed=assumed)


def groups_of(spec: GmmSpec, sizes: list[int], slots: list[int]) -> list[Group]:
    out = []
    cum = 0
    ks, ns = spec.ks, spec.ns
    for i, size in enumerate(sizes):
        sc = spec.scenario
        if sc == "MMM":
            out.append(Group(i, 0, 0, size, ks[i], ns[i], i, 0, 0, i, 0, 0, i))
        elif sc == "SMM":
            out.append(Group(0, cum, 0, size, ks[0], ns[i], i, 0, 0, i, 0, 0, i))
        elif sc == "SMS":
            out.append(Group(0, cum, 0, size, ks[0], ns[i], i, 0, 0, 0, cum, 0, i))
        elif sc == "MMS":
            out.append(Group(i, 0, 0, size, ks[i], ns[i], i, 0, 0, 0, cum, 0, i))
        elif sc == "SSS":
            s = slots[i]
            out.append(Group(0, cum, 0, size, ks[0], ns[0], 0, s, 0, 0, cum, 0, s))
        else:   # KSPLIT
            out.append(Group(0, 0, cum, spec.x_shapes[0][0], size, ns[0], 0, 0, cum, 0, 0, i, 0))
        cum += size
    return out
