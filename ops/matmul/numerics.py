"""The matmul family's numbers, once per op on the host: float GEMMs multiply fp32 upcasts
(fp32 accumulation) and round once to the output dtype; integer GEMMs are exact (float64 BLAS
when every partial sum is below 2^53, int64 otherwise)."""
from __future__ import annotations

import math

import numpy as np

from ascend_sim import dtypes as D

from ..base import Args
from ..common import (float_matmul, int4_values, int_matmul, quant_param_offset, quant_param_scale,
                      to_int8_saturated, wrap_int32)
from .checks import BmmSpec, LinearSpec, TransposeBmmSpec
from .grouped_checks import I4, GmmSpec, Group, group_sizes, groups_of

I32 = D.int32


def activation(v: np.ndarray, act_type: int) -> np.ndarray:
    """npu_grouped_matmul's act_type on fp32 values: 1 ReLU, 2 GELU (tanh form), 4 FastGELU, 5 SiLU."""
    if act_type == 0:
        return v
    with np.errstate(over="ignore"):
        if act_type == 1:
            return np.maximum(v, 0).astype(np.float32)
        if act_type == 2:
            c = np.float32(math.sqrt(2.0 / math.pi))
            return (0.5 * v * (1 + np.tanh(c * (v + np.float32(0.044715) * v ** 3)))).astype(np.float32)
        if act_type == 4:   # FastGelu: x / (1 + exp(-1.702|x|)) * exp(0.851 (x - |x|))
            av = np.abs(v)
            return (v / (1 + np.exp(np.float32(-1.702) * av)) * np.exp(np.float32(0.851) * (v - av))).astype(np.float32)
        if act_type == 5:
            return (v / (1 + np.exp(-v))).astype(np.float32)
    raise ValueError(f"act_type {act_type}")


def bmm(spec: BmmSpec, a: Args, op=None):
    out = spec.outputs[0]
    if spec.dtype is I32:
        prod = int_matmul(a.self.data, a.mat2.data)
        if spec.reduce:
            prod = prod.sum(axis=spec.reduce, keepdims=True)
        return (wrap_int32(prod).reshape(out.shape),)
    prod = float_matmul(a.self.data, a.mat2.data)
    if spec.reduce:
        prod = prod.sum(axis=spec.reduce, keepdims=True, dtype=np.float32)
    return (D.cast(prod.reshape(out.shape), out.dtype),)


def linear(spec: LinearSpec, a: Args, op=None):
    x, w, bias = a.input, a.weight, a.get("bias")
    out = spec.outputs[0].dtype
    if x.dtype.is_integer and (bias is None or bias.dtype.is_integer):
        acc = int_matmul(x.data, w.data.T)
        if bias is not None:
            acc = acc + bias.data.astype(np.int64)
        return (D.cast(acc, out),)
    acc = float_matmul(x.data, w.data.T)
    if bias is not None:
        acc = acc + bias.data.astype(np.float32)
    return (D.cast(acc, out),)


def transpose_bmm(spec: TransposeBmmSpec, a: Args, op=None):
    m, b, n = spec.m, spec.b, spec.n
    y = float_matmul(np.transpose(a.input.data, spec.perm_x1), np.transpose(a.weight.data, spec.perm_x2))
    y = np.transpose(y, (1, 0, 2))                                            # perm_y: (M, B, N)
    if spec.scale:
        words = a.scale.data
        flat = y.reshape(m, b * n) * quant_param_scale(words) + quant_param_offset(words)
        return (to_int8_saturated(flat).reshape(m, 1, b * n),)
    if spec.split > 1:
        y = y.reshape(m, spec.split, (b // spec.split) * n).transpose(1, 0, 2)
    return (D.cast(np.ascontiguousarray(y), spec.outputs[0].dtype),)


# ----- npu_grouped_matmul -----
def _weight_values(spec: GmmSpec, a: Args, g: Group) -> np.ndarray:
    """The (K, N) weight of a group as numbers (int4 words unpacked)."""
    w = a.weight[g.w].data
    if spec.stacked:
        w = w[g.slot]
    if spec.w_dt is I4:
        w = int4_values(w.T).T if spec.w_transposed else int4_values(w)
    return w[g.wrow0:g.wrow0 + g.k] if spec.scenario == "KSPLIT" else w


def _param(spec: GmmSpec, a: Args, arg: str, g: Group) -> np.ndarray | None:
    lst = a.get(arg)
    if lst is None:
        return None
    return lst[0].data[g.param] if spec.stacked else lst[g.param].data


def _antiquant_weight(spec: GmmSpec, a: Args, g: Group, wg: np.ndarray) -> np.ndarray:
    s = _param(spec, a, "antiquant_scale", g).astype(np.float32)
    o = _param(spec, a, "antiquant_offset", g)
    wf = wg.astype(np.float32)
    if s.ndim == 2:     # per group along K
        reps = g.k // s.shape[0]
        s = np.repeat(s, reps, axis=0)
        o = None if o is None else np.repeat(o.astype(np.float32), reps, axis=0)
    if o is not None:
        wf = wf + o.astype(np.float32)
    return D.cast(wf * s, spec.x_dt)                    # the cube consumes x's dtype


def _group_result(spec: GmmSpec, a: Args, g: Group, xg: np.ndarray, wg: np.ndarray, tokens) -> np.ndarray:
    bias = _param(spec, a, "bias", g)
    mode = spec.mode
    if mode in ("float", "antiquant"):
        acc = float_matmul(xg, _antiquant_weight(spec, a, g, wg) if mode == "antiquant" else wg)
        if bias is not None:
            acc = acc + bias.astype(np.float32)
        return D.cast(acc, spec.out_dt)
    sw = _param(spec, a, "scale", g)
    if mode == "int4":      # per K-group partials scaled by the group's weight scale
        sf = quant_param_scale(sw).reshape(-1, g.n)
        gk = g.k // sf.shape[0]
        v = np.zeros((g.m, g.n), dtype=np.float32)
        for j in range(sf.shape[0]):
            part = int_matmul(xg[:, j * gk:(j + 1) * gk], wg[j * gk:(j + 1) * gk])
            v = v + part.astype(np.float32) * sf[j]
        if tokens is not None:
            v = v * tokens
        return D.cast(activation(v, spec.act), spec.out_dt)
    acc = int_matmul(xg, wg)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    if mode == "int32":
        return wrap_int32(acc)
    if mode == "fixpipe":
        return to_int8_saturated(acc.astype(np.float32) * quant_param_scale(sw) + quant_param_offset(sw))
    v = acc.astype(np.float32) * sw.astype(np.float32)
    if mode == "pertoken":
        v = activation(v * tokens, spec.act)
    return D.cast(v, spec.out_dt)


def _rows(v: np.ndarray) -> np.ndarray:
    """``v`` as a matrix of its last axis (also when that axis is 0: reshape(-1, 0) cannot infer)."""
    return v.reshape(math.prod(v.shape[:-1]), v.shape[-1])


def grouped(spec: GmmSpec, a: Args, op=None):
    sizes, slots = group_sizes(op, spec, None if a.get("group_list") is None or spec.gl_kind != "tensor"
                               else a.group_list.data)
    results = [np.zeros(o.shape, dtype=o.dtype.np_dtype) for o in spec.outputs]
    flat = [_rows(r) if spec.scenario != "KSPLIT" else r for r in results]
    xs = []
    for t in a.x:
        v = int4_values(t.data) if spec.x_dt is I4 else t.data
        xs.append(_rows(v))
    pts = a.get("per_token_scale")
    for g in groups_of(spec, sizes, slots):
        if g.m == 0:
            continue
        xg = xs[g.x][g.row0:g.row0 + g.m, g.col0:g.col0 + g.k]
        tokens = None if pts is None else pts[g.x].data[g.row0:g.row0 + g.m, None].astype(np.float32)
        y = _group_result(spec, a, g, xg, _weight_values(spec, a, g), tokens)
        if spec.scenario == "KSPLIT":
            flat[0][g.oslot] = y
        else:
            flat[g.out][g.orow0:g.orow0 + g.m] = y
    return tuple(results)
