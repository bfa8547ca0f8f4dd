"""Normalisation ops: npu_rms_norm, npu_layer_norm_eval, npu_group_norm_silu, npu_group_norm_swish.

What is modelled, per op page of the torch_npu documentation (Ascend/op-plugin 26.1.0,
``docs/en/custom_APIs/torch_npu``):

* ``(beta)torch_npu-npu_rms_norm``: y = x / sqrt(mean(x^2) + eps) * gamma over the trailing dims that
  ``gamma`` covers, and rstd = 1 / sqrt(mean(x^2) + eps) in float32. ``self`` has 2-8 dims; ``gamma``
  must equal the trailing dims of ``self``. The page says gamma has "2 to 8" dims but its own example
  passes a 1-D gamma; we accept 1 to self.dim() dims. The page calls rstd's shape "the leading
  dimensions" of self; torch_npu (op-plugin's rms_norm output size) keeps the reduced dims as 1, e.g.
  (24, 1, 128) with gamma (128,) -> rstd (24, 1, 1), and that is what we return. (self, gamma)
  dtypes: on A2/A3 (fp16, fp32), (bf16, fp32), (fp16, fp16), (bf16, bf16), (fp32, fp32); on 910/310P
  (fp16, fp16), (fp32, fp32). On 310P (Atlas inference) the tail axis of self and gamma must be at
  least 32 bytes.
* ``(beta)torch_npu-npu_layer_norm_eval``: torch.nn.functional.layer_norm (population variance) over
  ``normalized_shape``; missing weight/bias act as ones/zeros. The page names no dtypes: we accept
  float16/float32 (and bfloat16 on A2/A3, which have it), weight/bias in the input's dtype or float32,
  the two of one dtype. ``normalized_shape`` must be non-empty, as torch's layer_norm requires.
* ``torch_npu-npu_group_norm_silu`` and ``torch_npu-npu_group_norm_swish``: GroupNorm over the channel
  dimension 1 (the pages' "first dimension"; N is the 0-th) split into groups, then
  y / (1 + exp(-scale y)) (scale 1 for silu, ``swish_scale`` for swish). Outputs out (input's shape
  and dtype), mean and rstd of shape (N, groups) in the input's dtype. group_norm_silu: weight/bias
  optional, of one dtype, no lower precision than the input (the input's dtype or float32); every dim
  > 0; group > 0; eps > 0. group_norm_swish: weight/bias required, of the input's dtype; input, weight
  and bias must be finite (checked when numbers exist, i.e. not in meta mode). Its backward-only limit
  (C / num_groups <= 4000) does not apply to this forward op.

Numerics: statistics in float32 (16-bit inputs widened first, as the vector unit does), outputs
rounded once to their dtype.

Timing: row kernels (templates.rows). A row is one normalised slice (rms/layer norm) or one (sample,
group) block, which is contiguous in NCHW-like layouts; gamma/beta are "shared" operands loaded once
per core; mean/rstd are "per_row" outputs. Rows that do not fit UB take two passes (statistics, then
normalise), each streaming the row again.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .common import fp32, is_310p, supports_bf16
from .templates.rows import RowKernel, RowKernelOp, RowOperand, RowStep, RowTiling

FP16_FP32 = (D.float16, D.float32)
FP16_FP32_BF16 = (D.float16, D.float32, D.bfloat16)
MIN_DIMS, MAX_DIMS = 2, 8
RMS_NORM_PAIRS_A2 = ((D.float16, D.float32), (D.bfloat16, D.float32), (D.float16, D.float16),
                     (D.bfloat16, D.bfloat16), (D.float32, D.float32))
RMS_NORM_PAIRS_910 = ((D.float16, D.float16), (D.float32, D.float32))
RMS_NORM_310P_MIN_TAIL_BYTES = 32   # Atlas inference products: tail axis of self and gamma
STATS_PASSES = 2                     # long rows: one pass for the statistics, one to normalise
F32 = "float32"


def _float_arg(op: Op, a: Args, arg: str, default: float | None = None) -> float:
    v = a.get(arg)
    if v is None and default is not None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op.name}: argument '{arg}' must be a float, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise op.fail(arg, f"must be finite, got {v}")
    return v


def _base_layout(op: Op, arg: str, t) -> None:
    if F.is_fractal(t.format):
        raise op.fail(arg, f"must be in ND layout, got {t.format.name}")


def _fp16_fp32_bf16(chip) -> tuple[D.DType, ...]:
    return FP16_FP32_BF16 if supports_bf16(chip) else FP16_FP32


def _convert_steps(dtype: D.DType) -> list[RowStep]:
    """One cast between a 16-bit row and its fp32 working copy in UB (nothing for fp32)."""
    return [] if dtype is D.float32 else [RowStep("unary", F32)]


@dataclass(frozen=True, kw_only=True)
class NormSpec(OpSpec):
    """A normalisation call: x as ``rows`` x ``cols`` normalised slices; ``affine``: the
    (argument, itemsize) of each gamma/weight/bias given."""

    dtype: D.DType
    rows: int
    cols: int
    eps: float
    affine: tuple[tuple[str, float], ...] = ()
    groups: int = 0              # group norms: groups, channels (dimension 1), spatial elements
    channels: int = 0
    swish_scale: float = 1.0


class _RowNorm(RowKernelOp, Op):
    """A norm's row kernel: statistics and normalisation per row. A row too long for UB is streamed
    twice (statistics, then normalise); the template runs every step on every pass, so each step is
    given 1/passes of its work there: the vector unit then does each step's work once in total, as
    the kernel does."""

    @abc.abstractmethod
    def kernel(self, spec: NormSpec, chip) -> RowKernel:
        """The row kernel with each step's whole work."""

    def plan(self, spec: NormSpec, chip, tiling: RowTiling):
        k = self.kernel(spec, chip)
        if tiling.col_chunk < k.cols:
            k = replace(k, steps=tuple(replace(s, count=s.count / STATS_PASSES) for s in k.steps))
        return k.plan(self.name, chip, tiling)


# per-row scalar work: rstd = 1 / sqrt(sum * (1/n) + eps) -- muls, adds, sqrt, div
_RSTD_STEPS = [RowStep("unary", F32, "row"), RowStep("unary", F32, "row"), RowStep("sqrt", F32, "row"),
               RowStep("div", F32, "row")]


class NpuRmsNorm(_RowNorm):
    name = "npu_rms_norm"

    def infer(self, a: Args, chip) -> NormSpec:
        x = self.tensor(a, "self")
        g = self.tensor(a, "gamma")
        pairs = RMS_NORM_PAIRS_A2 if supports_bf16(chip) else RMS_NORM_PAIRS_910
        if (x.dtype, g.dtype) not in pairs:
            listed = ", ".join(f"({s.name}, {t.name})" for s, t in pairs)
            raise TypeError(f"{self.name}: arguments 'self' ({x.dtype.name}) and 'gamma' ({g.dtype.name}): "
                            f"unsupported dtype pair on {chip.name}; allowed (self, gamma): {listed}")
        nd, gd = len(x.shape), len(g.shape)
        if not MIN_DIMS <= nd <= MAX_DIMS:
            raise self.fail("self", f"must have {MIN_DIMS} to {MAX_DIMS} dimensions, got {nd}")
        if not 1 <= gd <= nd:
            raise self.fail("gamma", f"must have 1 to self.dim() = {nd} dimensions, got {gd}")
        if tuple(g.shape) != tuple(x.shape[nd - gd:]):
            raise self.fail("gamma", f"shape {g.shape} must equal the trailing dims of self {x.shape[nd - gd:]}")
        _base_layout(self, "self", x)
        _base_layout(self, "gamma", g)
        if is_310p(chip) and x.numel:
            for arg, t in (("self", x), ("gamma", g)):
                if t.shape[-1] * t.dtype.itemsize < RMS_NORM_310P_MIN_TAIL_BYTES:
                    raise self.fail(arg, f"the tail axis ({t.shape[-1]} x {t.dtype.itemsize} B) must be at least "
                                         f"{RMS_NORM_310P_MIN_TAIL_BYTES} bytes on {chip.name}")
        eps = _float_arg(self, a, "epsilon", default=1e-6)           # schema: float epsilon=1e-06
        rstd_shape = tuple(x.shape[:nd - gd]) + (1,) * gd
        return NormSpec(outputs=(TensorMeta(x.shape, x.dtype, x.format), TensorMeta(rstd_shape, D.float32)),
                        device_work=x.numel > 0, attrs=(("epsilon", eps),), dtype=x.dtype,
                        rows=math.prod(x.shape[:nd - gd]), cols=g.numel, eps=eps,
                        affine=(("gamma", g.dtype.itemsize),))

    def compute(self, spec: NormSpec, a: Args):
        rows, cols, outs = spec.rows, spec.cols, spec.outputs
        x = fp32(a.self.data).reshape(rows, cols)
        ms = np.mean(x * x, axis=1) if cols else np.zeros(rows, np.float32)
        rstd = (np.float32(1) / np.sqrt(ms + np.float32(spec.eps))).astype(np.float32)
        y = x * rstd[:, None] * fp32(a.gamma.data).reshape(1, cols)
        return D.cast(y.reshape(outs[0].shape), outs[0].dtype), rstd.reshape(outs[1].shape)

    def kernel(self, spec: NormSpec, chip) -> RowKernel:
        xd, xi = spec.dtype, spec.dtype.itemsize
        # one fp32 working row: x (widened, for 16-bit x), then x^2 for the sum; x is widened again
        # from its input buffer to normalise
        steps = [*_convert_steps(xd), RowStep("binary", F32), RowStep("reduce_sum", F32), *_RSTD_STEPS,
                 *_convert_steps(xd), RowStep("binary", F32), RowStep("binary", F32), *_convert_steps(xd)]
        (gamma, g_item), = spec.affine
        return RowKernel(spec.rows, spec.cols, (RowOperand("self", xi), RowOperand(gamma, g_item, "shared")),
                         (RowOperand("out0", xi), RowOperand("out1", D.float32.itemsize, "per_row")),
                         tuple(steps), STATS_PASSES, D.float32.itemsize,
                         flops_per_elem=4)       # square, sum, * rstd, * gamma


def _layer_stats_steps(dtype: D.DType) -> list[RowStep]:
    """Mean, then the centred sum of squares: sum, muls(1/n), sub, mul, sum, and the rstd. The centred
    row x - mean stays in UB (fp32 scratch) for the normalisation; its square overwrites the fp32 copy
    of x (16-bit inputs) or the output buffer (fp32), both free by then."""
    return [*_convert_steps(dtype), RowStep("reduce_sum", F32), RowStep("unary", F32, "row"),
            RowStep("binary", F32), RowStep("binary", F32), RowStep("reduce_sum", F32), *_RSTD_STEPS]


def _centred_scratch(dtype: D.DType) -> float:
    """fp32 x: one scratch row for (x - mean); 16-bit x: its fp32 copy as well."""
    return D.float32.itemsize * (1 if dtype is D.float32 else 2)


class NpuLayerNormEval(_RowNorm):
    name = "npu_layer_norm_eval"

    def normalized_shape(self, a: Args) -> tuple[int, ...]:
        ns = a.normalized_shape
        if isinstance(ns, (int, np.integer)) and not isinstance(ns, bool):
            ns = (ns,)
        if not isinstance(ns, (list, tuple)) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in ns):
            raise TypeError(f"{self.name}: argument 'normalized_shape' must be a list of ints, got {ns!r}")
        return tuple(int(s) for s in ns)

    def infer(self, a: Args, chip) -> NormSpec:
        x = self.tensor(a, "input")
        self.check_dtype("input", x, _fp16_fp32_bf16(chip))
        _base_layout(self, "input", x)
        ns = self.normalized_shape(a)
        if not ns:
            raise self.fail("normalized_shape", "must have at least one dimension")
        if len(ns) > len(x.shape) or tuple(x.shape[len(x.shape) - len(ns):]) != ns:
            raise self.fail("normalized_shape", f"{list(ns)} must equal the trailing dims of input {x.shape}")
        affine = []
        for arg in ("weight", "bias"):
            t = self.tensor(a, arg, optional=True)
            if t is None:
                continue
            self.check_dtype(arg, t, tuple(dict.fromkeys((x.dtype, D.float32))))
            if tuple(t.shape) != ns:
                raise self.fail(arg, f"shape {t.shape} must equal normalized_shape {list(ns)}")
            _base_layout(self, arg, t)
            affine.append((arg, t))
        if len(affine) == 2 and affine[0][1].dtype is not affine[1][1].dtype:
            raise TypeError(f"{self.name}: arguments 'weight' ({affine[0][1].dtype.name}) and 'bias' "
                            f"({affine[1][1].dtype.name}) must have the same dtype")
        eps = _float_arg(self, a, "eps")
        return NormSpec(outputs=(TensorMeta(x.shape, x.dtype, x.format),), device_work=x.numel > 0,
                        attrs=(("normalized_shape", ns), ("eps", eps)), dtype=x.dtype,
                        rows=math.prod(x.shape[:len(x.shape) - len(ns)]), cols=math.prod(ns), eps=eps,
                        affine=tuple((arg, t.dtype.itemsize) for arg, t in affine))

    def compute(self, spec: NormSpec, a: Args):
        rows, cols, out = spec.rows, spec.cols, spec.outputs[0]
        x = fp32(a.input.data).reshape(rows, cols)
        if cols == 0 or rows == 0:
            return (np.empty(out.shape, out.dtype.np_dtype),)
        mean = np.mean(x, axis=1, keepdims=True)
        centred = x - mean
        var = np.mean(centred * centred, axis=1, keepdims=True)
        y = centred * (np.float32(1) / np.sqrt(var + np.float32(spec.eps)))
        if a.get("weight") is not None:
            y = y * fp32(a.weight.data).reshape(1, cols)
        if a.get("bias") is not None:
            y = y + fp32(a.bias.data).reshape(1, cols)
        return (D.cast(y.reshape(out.shape), out.dtype),)

    def kernel(self, spec: NormSpec, chip) -> RowKernel:
        xd = spec.dtype
        inputs = [RowOperand("input", xd.itemsize)]
        steps = _layer_stats_steps(xd)
        steps.append(RowStep("binary", F32))                 # (x - mean), kept from the statistics, * rstd
        for arg, item in spec.affine:
            inputs.append(RowOperand(arg, item, "shared"))
            steps.append(RowStep("binary", F32))            # * weight, + bias
        steps += _convert_steps(xd)
        flops = 5 + len(spec.affine)          # sum, sub, square, sum, * rstd (+ weight, + bias)
        return RowKernel(spec.rows, spec.cols, tuple(inputs), (RowOperand("out0", xd.itemsize),), tuple(steps),
                         STATS_PASSES, _centred_scratch(xd), flops_per_elem=flops)


class _GroupNormSwish(_RowNorm):
    """GroupNorm over (N, C, *) with C split into groups, then y / (1 + exp(-scale y))."""

    groups_arg = "num_groups"
    affine_optional = False

    def allowed(self, chip) -> tuple[D.DType, ...]:
        return FP16_FP32_BF16

    def affine_dtypes(self, x_dtype: D.DType) -> tuple[D.DType, ...]:
        return (x_dtype,)

    @abc.abstractmethod
    def eps(self, a: Args) -> float:
        """The op's epsilon argument."""

    def swish_scale(self, a: Args) -> float:
        return 1.0

    def infer(self, a: Args, chip) -> NormSpec:
        x = self.tensor(a, "input")
        self.check_dtype("input", x, self.allowed(chip))
        nd = len(x.shape)
        if not MIN_DIMS <= nd <= MAX_DIMS:
            raise self.fail("input", f"must have {MIN_DIMS} to {MAX_DIMS} dimensions, got {nd}")
        _base_layout(self, "input", x)
        self.check_shape(x)
        groups = self.int_arg(a, self.groups_arg, lo=1)
        channels = x.shape[1]
        if channels % groups:
            raise self.fail(self.groups_arg, f"must divide dimension 1 of input ({channels}), got {groups}")
        affine = []
        for arg in ("weight", "bias"):
            t = self.tensor(a, arg, optional=self.affine_optional)
            if t is None:
                continue
            self.check_dtype(arg, t, self.affine_dtypes(x.dtype))
            if len(t.shape) != 1 or t.shape[0] != channels:
                raise self.fail(arg, f"must be 1-D with {channels} elements (dimension 1 of input), "
                                     f"got shape {t.shape}")
            _base_layout(self, arg, t)
            affine.append((arg, t))
        if len(affine) == 2 and affine[0][1].dtype is not affine[1][1].dtype:
            raise TypeError(f"{self.name}: arguments 'weight' ({affine[0][1].dtype.name}) and 'bias' "
                            f"({affine[1][1].dtype.name}) must have the same dtype")
        eps, scale = self.eps(a), self.swish_scale(a)
        self.check_values(a, [x, *(t for _, t in affine)])
        stats = TensorMeta((x.shape[0], groups), x.dtype)
        return NormSpec(outputs=(TensorMeta(x.shape, x.dtype, x.format), stats, stats), device_work=x.numel > 0,
                        attrs=self.attrs(groups, eps, scale), dtype=x.dtype, rows=x.shape[0] * groups,
                        cols=channels // groups * math.prod(x.shape[2:]), eps=eps,
                        affine=tuple((arg, t.dtype.itemsize) for arg, t in affine), groups=groups,
                        channels=channels, swish_scale=scale)

    def attrs(self, groups: int, eps: float, scale: float) -> tuple:
        return ((self.groups_arg, groups), ("eps", eps), ("swish_scale", scale))

    def check_shape(self, x) -> None:
        """Extra shape rules of one page (none by default)."""

    def check_values(self, a: Args, tensors) -> None:
        """Rules on the numbers themselves (none by default)."""

    def compute(self, spec: NormSpec, a: Args):
        n, groups, channels = spec.rows // spec.groups, spec.groups, spec.channels
        dt = spec.outputs[0].dtype
        if a.input.numel == 0:
            empty = np.zeros((n, groups), dt.np_dtype)
            return np.empty(spec.outputs[0].shape, dt.np_dtype), empty, empty.copy()
        x = fp32(a.input.data).reshape(n, groups, -1)
        mean = np.mean(x, axis=2, keepdims=True)
        centred = x - mean
        var = np.mean(centred * centred, axis=2, keepdims=True)
        rstd = np.float32(1) / np.sqrt(var + np.float32(spec.eps))
        y = (centred * rstd).reshape(n, channels, -1)
        if a.get("weight") is not None:
            y = y * fp32(a.weight.data).reshape(1, channels, 1)
        if a.get("bias") is not None:
            y = y + fp32(a.bias.data).reshape(1, channels, 1)
        with np.errstate(over="ignore", under="ignore"):
            out = y / (np.float32(1) + np.exp(np.float32(-spec.swish_scale) * y))
        return (D.cast(out.reshape(spec.outputs[0].shape), dt), D.cast(mean.reshape(n, groups), dt),
                D.cast(rstd.reshape(n, groups), dt))

    def kernel(self, spec: NormSpec, chip) -> RowKernel:
        xd, xi = spec.dtype, spec.dtype.itemsize
        per_group = spec.channels // spec.groups
        inputs = [RowOperand("input", xi)] + [RowOperand(arg, item, "shared", cols=spec.channels)
                                              for arg, item in spec.affine]
        steps = _layer_stats_steps(xd)
        # per channel: scale_c = rstd * weight_c (mul), then y = (x - mean) * scale_c + bias_c over the
        # channel's spatial run (muls, adds); x - mean is kept from the statistics
        steps += [RowStep("binary", F32, "row", count=per_group), RowStep("unary", F32), RowStep("unary", F32)]
        # swish: y / (1 + exp(-scale y)) -- muls, exp, adds, div
        steps += [RowStep("unary", F32), RowStep("exp", F32), RowStep("unary", F32), RowStep("div", F32),
                  *_convert_steps(xd)]
        outputs = (RowOperand("out0", xi), RowOperand("out1", xi, "per_row"), RowOperand("out2", xi, "per_row"))
        return RowKernel(spec.rows, spec.cols, tuple(inputs), outputs, tuple(steps), STATS_PASSES,
                         _centred_scratch(xd), flops_per_elem=10)   # sum, sub, square, sum, * scale, + shift, swish (4)


class NpuGroupNormSilu(_GroupNormSwish):
    name = "npu_group_norm_silu"
    groups_arg = "group"
    affine_optional = True
    allowed = staticmethod(_fp16_fp32_bf16)

    def affine_dtypes(self, x_dtype):
        # "precision not lower than input's": the input's own dtype or float32
        return tuple(dict.fromkeys((x_dtype, D.float32)))

    def check_shape(self, x):
        if any(s <= 0 for s in x.shape):
            raise self.fail("input", f"every dimension must be > 0, got shape {x.shape}")

    def eps(self, a):
        v = _float_arg(self, a, "eps")
        if v <= 0:
            raise self.fail("eps", f"must be > 0, got {v}")
        return v

    def attrs(self, groups, eps, scale):
        return (("group", groups), ("eps", eps))


class NpuGroupNormSwish(_GroupNormSwish):
    name = "npu_group_norm_swish"
    groups_arg = "num_groups"

    def eps(self, a):
        return _float_arg(self, a, "eps", default=1e-5)            # schema: float? eps=1e-5

    def swish_scale(self, a):
        return _float_arg(self, a, "swish_scale", default=1.0)     # schema: float? swish_scale=1.0

    def check_values(self, a, tensors: Sequence):
        for arg, t in zip(("input", "weight", "bias"), tensors):
            if t.data is not None and t.numel and not np.isfinite(t.data.astype(np.float32)).all():
                raise self.fail(arg, "must not contain inf, -inf or nan")


OPS = (NpuRmsNorm(), NpuLayerNormEval(), NpuGroupNormSilu(), NpuGroupNormSwish())
