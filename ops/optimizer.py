"""Optimizer steps: npu_apply_adam -- one op that updates three tensors in place.

Semantics (op-plugin 26.1.0 page ``(beta)torch_npu-npu_apply_adam``, its schema in
op_plugin_functions.yaml and the ApplyAdam kernel it calls, TensorFlow's ApplyAdam)::

    lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power)
    m    = m + (grad - m) * (1 - beta1)
    v    = v + (grad * grad - v) * (1 - beta2)
    var  = var - lr_t * m / (epsilon + sqrt(v))                          use_nesterov False
    var  = var - lr_t * (m * beta1 + (1 - beta1) * grad) / (epsilon + sqrt(v))   use_nesterov True

Choices where the sources disagree or are silent:

* The page shows ``out=(var, m, v)`` as the only way to pass the state, and the schema's
  out-of-place overload is a stub in op-plugin (``TORCH_CHECK(false, "npu_apply_adam is not
  implemented for Tensor")``): without ``out`` the call is an error here too.
* dtypes: the page is silent; op-plugin's tests use float16 and float32, so those two. var, m, v
  and grad share one shape and dtype (the kernel has no broadcasting).
* Numerics: the vector unit works in fp32 (each fp16 tensor cast up once) and each output is
  rounded once to its dtype. op-plugin's test reference computes step by step in the input dtype;
  fp16 tolerance covers the difference.
* ``use_locking`` guards concurrent updates of the same variable; one stream of the simulator
  never races, so it changes nothing.

Timing: one AIV elementwise kernel that streams var, m, v and grad through UB and writes var, m
and v back over themselves (the vector steps above, in fp32 with casts for fp16).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import NPUTensor

from .base import Args, Op, OpSpec
from .common import fp32
from .templates.elementwise import ElementwiseKernel, ElementwiseKernelOp, Operand, VectorStep

_DTYPES = (D.float16, D.float32)
_SCALARS = ("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon")
_STATE = ("var", "m", "v")
_FP32_TEMPS = 3          # fp32 working vectors per element besides the streamed tensors: m_t, v_t, the update


@dataclass(frozen=True, kw_only=True)
class ApplyAdamSpec(OpSpec):
    numel: int
    dtype: D.DType
    beta1_power: float
    beta2_power: float
    lr: float
    beta1: float
    beta2: float
    epsilon: float
    nesterov: bool


class NpuApplyAdam(ElementwiseKernelOp, Op):
    name = "npu_apply_adam"

    def infer(self, a: Args, chip) -> ApplyAdamSpec:
        scalars = {k: self._scalar(a, k) for k in _SCALARS}
        for k in ("use_locking", "use_nesterov"):
            if a.get(k) is not None and not isinstance(a[k], (bool, np.bool_)):
                raise TypeError(f"{self.name}: argument '{k}' must be a bool or None, got {type(a[k]).__name__}")
        out = a.get("out")
        if out is None:
            raise self.fail("out", "required: pass out=(var, m, v); torch_npu has no out-of-place "
                                   "npu_apply_adam (its kernel raises 'not implemented for Tensor')")
        if not isinstance(out, (list, tuple)) or len(out) != 3 or not all(isinstance(t, NPUTensor) for t in out):
            raise self.fail("out", "must be a tuple of three tensors (var, m, v)")
        grad = self.tensor(a, "grad")
        self.check_dtype("grad", grad, _DTYPES)
        for i, t in enumerate((grad, *out)):
            arg = "grad" if i == 0 else f"out[{i - 1}] ({_STATE[i - 1]})"
            if t.format not in (F.Format.ND, F.Format.NCHW, F.Format.NCDHW):
                raise self.fail(arg, f"must be in a base format (ND/NCHW/NCDHW), got {t.format.name}")
            if t.shape != grad.shape:
                raise self.fail(arg, f"shape {t.shape} must equal grad's {grad.shape} (no broadcasting)")
            if t.dtype is not grad.dtype:
                raise TypeError(f"{self.name}: argument '{arg}' has dtype {t.dtype.name}; "
                                f"it must match grad's {grad.dtype.name}")
        if len({id(t) for t in out}) != 3:
            raise self.fail("out", "var, m and v must be three different tensors")
        return ApplyAdamSpec(outputs=tuple(t.meta for t in out), inplace=("out[0]", "out[1]", "out[2]"),
                             numel=math.prod(grad.shape), dtype=grad.dtype, nesterov=bool(a.get("use_nesterov")),
                             **scalars)

    def _scalar(self, a: Args, arg: str) -> float:
        v = a.get(arg)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self.name}: argument '{arg}' must be a number (Scalar), got {type(v).__name__}")
        return float(v)

    def compute(self, s: ApplyAdamSpec, a: Args):
        var, m, v = (fp32(t.data) for t in a.out)
        g = fp32(a.grad.data)
        f = np.float32
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            lr_t = f(s.lr) * np.sqrt(f(1) - f(s.beta2_power)) / (f(1) - f(s.beta1_power))
            m_t = m + (g - m) * (f(1) - f(s.beta1))
            v_t = v + (g * g - v) * (f(1) - f(s.beta2))
            step = m_t * f(s.beta1) + (f(1) - f(s.beta1)) * g if s.nesterov else m_t
            var_t = var - lr_t * step / (f(s.epsilon) + np.sqrt(v_t))
        return tuple(D.cast(x, s.dtype) for x in (var_t, m_t, v_t))

    # ----- the kernel -----
    def kernel(self, s: ApplyAdamSpec, chip) -> ElementwiseKernel:
        item = s.dtype.itemsize
        state = tuple(Operand(f"out[{i}]", item) for i in range(3))
        w = "float32"
        # m: sub, muls, add; v: mul, sub, muls, add; var: sqrt, adds, muls, div, sub (+ muls, muls, add: nesterov)
        steps = [VectorStep("binary", w), VectorStep("unary", w), VectorStep("binary", w),
                 VectorStep("binary", w), VectorStep("binary", w), VectorStep("unary", w), VectorStep("binary", w),
                 VectorStep("sqrt", w), VectorStep("unary", w), VectorStep("unary", w), VectorStep("div", w),
                 VectorStep("binary", w)]
        if s.nesterov:
            steps += [VectorStep("unary", w), VectorStep("unary", w), VectorStep("binary", w)]
        flops = float(len(steps))          # one flop per element per arithmetic step
        if s.dtype is not D.float32:      # cast var, m, v, grad up and var, m, v down
            steps = [VectorStep("unary", w, passes=4)] + steps + [VectorStep("unary", w, passes=3)]
        return ElementwiseKernel(s.numel, state + (Operand("grad", item),), state, tuple(steps),
                                 temps_bytes=_FP32_TEMPS * D.float32.itemsize, flops_per_elem=flops)


OPS = (NpuApplyAdam(),)
