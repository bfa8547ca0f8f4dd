"""Quantised matmuls: npu_quant_matmul (int8 / int4 x int8 / int4 with dequantisation) and
npu_weight_quant_batchmatmul (float activations, int8 / int4 weights dequantised on the fly).

Semantics follow the op-plugin pages (26.1.0) ``torch_npu-npu_quant_matmul`` and
``torch_npu-npu_weight_quant_batchmatmul`` (with aclnnQuantMatmulV5 / op-plugin's
QuantMatmulKernelNpuOpApi where the page leaves a detail open):

npu_quant_matmul: ``out = (x1 @ x2 [+ int32 bias]) * scale [* pertoken_scale] [+ offset | + float bias]``,
the integer product exact in int32. How each documented dtype combination runs:

* int64 ``scale`` (npu_trans_quant_param words), output int8/float16: the cube's FIXPIPE dequantises
  on the way out with the FP19 scale; int8 output adds the offset (the ``offset`` tensor if given,
  else the word's 9-bit offset field) and rounds half to even with saturation;
* float32 ``scale`` with output int8/float16 and no ``pertoken_scale``: torch_npu first runs
  npu_trans_quant_param(scale, offset) -- a separate kernel, and the scale is truncated to FP19 and
  the offset rounded to an integer in [-256, 255] exactly as there -- then the same cube kernel;
* bfloat16 output, ``pertoken_scale``, or a bfloat16 scale: the cube writes int32 partials to the
  workspace and a vector epilogue kernel scales them in float32 (per channel, per token), adds a
  float bias and rounds;
* int32 output: ``x1 @ x2 + bias`` and the scales take no part (aclnnQuantMatmulV5);
* int32 ``x1``/``x2`` hold eight int4 values per word; ``x2`` is (k, n/8), or (k/8, n) for a
  weight packed along k (the transpose of a contiguous (n, k/8), recognised by its shape);
* ``group_sizes``: [0, 0, gk] with int4 inputs, a (ceil(k/gk), n) float32 scale and float16 offset
  (K-G: ``pertoken * sum_g scale_g * (x1_g @ x2_g - rowsum(x1_g) * offset_g)``); [1, 128, 128] with
  int8 inputs, pertoken (m, ceil(k/128)) and scale (ceil(k/128), ceil(n/128)) (G-B). The cube
  writes one int32 partial per K-group; the epilogue combines them.

npu_weight_quant_batchmatmul: ``y = x @ ((w + antiquant_offset) * antiquant_scale) + bias``,
optionally requantised to int8 by ``quant_scale``/``quant_offset``. The weight dequantisation is
computed in float32 and rounded once to x's dtype (what the cube consumes); the product
accumulates in float32. Per-tensor, per-channel and per-group (``antiquant_group_size``) scales; an
int64 antiquant scale (npu_trans_quant_param words) with an int32 offset. Modelled as Ascend's
weight-quant kernels work on split AIC/AIV chips: one MIX kernel in which each block's vector cores
dequantise, just ahead of their cube core, each K x N chunk it is about to load -- writing it to the
GM workspace in NZ (the cube's own layout) and raising a cross-core flag -- while the cube multiplies
the previous chunk (FIXPIPE requantises the output when asked).

Numerics are computed once per op on the host; meta mode queues the same kernels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.isa import ISAError
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec
from .common import (INT4_PER_INT32, aligned_batch, as_float32, broadcast_batch, dequantise_weight, float_matmul, int4_values,
                     int_matmul, is_310p, matrix_format, pack_quant_param, quant_param_offset, quant_param_scale,
                     to_int8_saturated, unpack_int4_matrix, wrap_int32)
from .quant import trans_quant_param_plan
from .templates.cube import Layout, Operand
from .templates.gemm import (AntiquantWeight, GemmSide, antiquant_cube, antiquant_mix_plan, dequant_epilogue_plan,
                             gemm_plans, gemm_tiling, matrix_bytes, share_workspace)
from .templates.matmul import MatmulProblem, default_tiling, matmul_plan

F16, BF16, F32, I4, I8, I32, I64 = D.float16, D.bfloat16, D.float32, D.int4, D.int8, D.int32, D.int64
INNER_LIMIT = 65536
GB_GROUP = 128               # npu_quant_matmul G-B mode: [group_m, group_n, group_k] = [1, 128, 128]


# ============================================================================================
# npu_quant_matmul
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class QSpec(OpSpec):
    int4: bool
    x2_packed_k: bool
    x2_nz: bool
    m: int
    k: int
    n: int
    batch: tuple
    x1_batch: tuple
    x2_batch: tuple
    out_dt: D.DType
    mode: str            # "fixpipe", "epilogue", "int32", "kgroup"
    convert: bool        # float32 scale turned into FIXPIPE words by npu_trans_quant_param first
    group_k: int         # kgroup: K per group
    gb: bool             # kgroup: G-B (int8) rather than K-G (int4)
    scale: tuple         # (dtype, numel)
    offset: tuple        # (dtype, numel) or ()
    bias: D.DType | None
    pertoken: bool


class NpuQuantMatmul(Op):
    name = "npu_quant_matmul"
    MIN_RANK, MAX_RANK = 2, 6

    # documented (x1, scale, offset, bias, pertoken_scale, output) combinations; None = absent
    COMBOS_A2 = (
        (I8, (I64, F32), (None,), (I32, None), (None,), (F16,)),
        (I8, (I64, F32), (F32, None), (I32, None), (None,), (I8,)),
        (I8, (F32, BF16), (None,), (I32, BF16, F32, None), (F32, None), (BF16,)),
        # the page lists bfloat16 bias here; torch_npu's own check and aclnnQuantMatmulV5 take float16
        (I8, (F32,), (None,), (I32, F16, F32, None), (F32,), (F16,)),
        (I32, (I64, F32), (None,), (I32, None), (None,), (F16,)),
        (I32, (F32,), (F16,), (None,), (F32,), (BF16, F16)),
        (I8, (F32, BF16), (None,), (I32, None), (None,), (I32,)),
    )
    COMBOS_310P = (
        (I8, (I64, F32), (None,), (I32, None), (None,), (F16,)),
        (I8, (I64, F32), (F32, None), (I32, None), (None,), (I8,)),
    )

    def infer(self, a: Args, chip) -> QSpec:
        x1, x2 = self.tensor(a, "x1"), self.tensor(a, "x2")
        scale = self.tensor(a, "scale")
        offset = self.tensor(a, "offset", optional=True)
        pts = self.tensor(a, "pertoken_scale", optional=True)
        bias = self.tensor(a, "bias", optional=True)
        p310 = chip is not None and is_310p(chip)
        for arg in ("x1_dtype", "x2_dtype", "pertoken_scale_dtype", "scale_dtype", "y_scale"):
            if a.get(arg) is not None:
                raise self.fail(arg, "must be None (the float8 / float4 / MX modes it selects are not on this page)")
        self.check_dtype("x1", x1, [I8] if p310 else [I8, I32])
        if x2.dtype is not x1.dtype:
            raise TypeError(f"{self.name}: argument 'x2' has dtype {x2.dtype.name}; it must match x1's {x1.dtype.name}")
        int4 = x1.dtype is I32
        for arg, t in (("x1", x1), ("x2", x2)):
            if not self.MIN_RANK <= t.ndim <= self.MAX_RANK:
                raise self.fail(arg, f"must have 2 to 6 dimensions; got shape {t.shape}")
            if t.shape[-1] > INNER_LIMIT - 1:
                raise self.fail(arg, f"last dimension {t.shape[-1]} exceeds 65535")
            if t.numel == 0:
                raise self.fail(arg, "must not be empty")
        if F.is_fractal(x1.format):
            raise self.fail("x1", f"format must be ND; got {x1.format.name}")
        x2_nz = matrix_format(self, "x2", x2)
        if int4:
            if x1.ndim != 2 or x2.ndim != 2:
                raise self.fail("x2" if x1.ndim == 2 else "x1", "int4 (int32 words) inputs must be 2-D")
            k = x1.shape[-1] * INT4_PER_INT32
            packed_k = x2.shape[-2] == x1.shape[-1]
            if packed_k:
                n = x2.shape[-1]
            else:
                if x2.shape[-2] != k:
                    raise self.fail("x2", f"int4 x2 must be (k, n/8) = ({k}, n/8) or (k/8, n) = ({x1.shape[-1]}, n) "
                                          f"words; got {x2.shape}")
                n = x2.shape[-1] * INT4_PER_INT32
        else:
            k, n, packed_k = x1.shape[-1], x2.shape[-1], False
            if x2.shape[-2] != k:
                raise self.fail("x2", f"its rows ({x2.shape[-2]}) must equal x1's last dimension k={k}")
        m = x1.shape[-2]
        batch = broadcast_batch(self, x1.shape[:-2], x2.shape[:-2], "x1", "x2")
        out_dt = I8 if a.get("output_dtype") is None else self.dtype_arg(a, "output_dtype")
        outs_allowed = (I8, F16) if p310 else (I8, F16, BF16, I32)
        if out_dt not in outs_allowed:
            raise TypeError(f"{self.name}: argument 'output_dtype' is {out_dt.name}; allowed: "
                            f"{', '.join(d.name for d in outs_allowed)}")
        if pts is not None and p310:
            raise self.fail("pertoken_scale", f"is not supported on {chip.name}")
        # group sizes
        gs = a.get("group_sizes")
        groups = None
        if gs is not None:
            if not isinstance(gs, (list, tuple)) or len(gs) != 3 or not all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in gs):
                raise self.fail("group_sizes", f"must be a list of three non-negative ints [m, n, k]; got {gs!r}")
            if any(v > 1 for v in gs):
                groups = tuple(int(v) for v in gs)
        # the dtype combination
        combos = self.COMBOS_310P if p310 else self.COMBOS_A2
        key = (x1.dtype, scale.dtype, None if offset is None else offset.dtype, None if bias is None else bias.dtype,
               None if pts is None else pts.dtype, out_dt)
        if groups is not None and not int4 and groups == (1, GB_GROUP, GB_GROUP):
            ok = key[:2] == (I8, F32) and key[2] is None and key[3] in (F32, None) and key[4] is F32 and out_dt is BF16
        else:
            ok = any(key[0] is c[0] and key[1] in c[1] and key[2] in c[2] and key[3] in c[3] and key[4] in c[4]
                     and key[5] in c[5] for c in combos)
        if not ok:
            # name the argument that departs from the closest documented row
            arg = "scale"
            for c in combos:
                if key[0] is c[0] and key[1] in c[1]:
                    arg = next((nm for nm, d, allowed in zip(("offset", "bias", "pertoken_scale", "output_dtype"),
                                                              key[2:], c[2:]) if d not in allowed), "scale")
                    break
            names = ", ".join(f"{nm}={'None' if d is None else d.name}" for nm, d in
                              zip(("x1", "scale", "offset", "bias", "pertoken_scale", "output_dtype"), key))
            raise TypeError(f"{self.name}: argument '{arg}': the combination {names} is not in the page's table of "
                            "supported dtypes")
        # shapes of the quantisation parameters
        if groups is None:
            if scale.ndim != 1 or scale.shape[0] not in (1, n):
                raise self.fail("scale", f"must be 1-D (1,) or (n,) = ({n},); got shape {scale.shape}")
            if offset is not None and (offset.ndim != 1 or offset.shape[0] not in (1, n)):
                raise self.fail("offset", f"must be 1-D (1,) or (n,) = ({n},); got shape {offset.shape}")
            if pts is not None and pts.shape != (m,):
                raise self.fail("pertoken_scale", f"must be 1-D (m,) = ({m},); got shape {pts.shape}")
            if offset is not None and offset.dtype is F16:
                raise self.fail("offset", "a float16 offset goes with a 2-D (per-group) scale and group_sizes")
        else:
            if int4:
                if groups[0] or groups[1] or not groups[2]:
                    raise self.fail("group_sizes", f"int4 per-group quantisation takes [0, 0, group_k]; got {list(gs)}")
                gk = groups[2]
                ng = -(-k // gk)
                if scale.shape != (ng, n):
                    raise self.fail("scale", f"must be (ceil(k/group_k), n) = ({ng}, {n}); got {scale.shape}")
                if offset is None or offset.shape != scale.shape:
                    raise self.fail("offset", f"is required with a 2-D scale and must have its shape {scale.shape}")
                if pts is None or pts.shape not in ((m,), (m, 1)):
                    raise self.fail("pertoken_scale", f"must be (m,) = ({m},) in per-group quantisation")
            else:
                if groups != (1, GB_GROUP, GB_GROUP):
                    raise self.fail("group_sizes", f"int8 inputs take 0s or [1, 128, 128]; got {list(gs)}")
                if len(batch):
                    raise self.fail("x1", "per-block quantisation needs 2-D x1 and x2")
                ng, nn = -(-k // GB_GROUP), -(-n // GB_GROUP)
                if pts is None or pts.shape != (m, ng):
                    raise self.fail("pertoken_scale", f"must be (m, ceil(k/128)) = ({m}, {ng}) for [1, 128, 128] "
                                                      "groups")
                if scale.shape != (ng, nn):
                    raise self.fail("scale", f"must be (ceil(k/128), ceil(n/128)) = ({ng}, {nn}); got {scale.shape}")
        if int4 and groups is None and (scale.ndim != 1):
            raise self.fail("scale", "int4 inputs without group_sizes take a 1-D scale")
        if bias is not None:
            out_rank = len(batch) + 2
            if bias.shape == (n,):
                pass
            elif bias.ndim == 3 and out_rank == 3 and not int4 and bias.shape == (batch[0], 1, n):
                pass
            else:
                rule = f"(n,) = ({n},)" + ("" if int4 or out_rank != 3 else f" or (batch, 1, n) = ({batch[0]}, 1, {n})")
                raise self.fail("bias", f"must be {rule}; got shape {bias.shape}")
        # how it runs
        convert = False
        if groups is not None:
            mode = "kgroup"
        elif out_dt is I32:
            mode = "int32"
        elif scale.dtype is I64:
            mode = "fixpipe"
        elif scale.dtype is F32 and pts is None and out_dt in (I8, F16):
            mode, convert = "fixpipe", True
        else:
            mode = "epilogue"
        gk = groups[2] if groups else k
        return QSpec(outputs=(TensorMeta((*batch, m, n), out_dt),),
                     attrs=(("output_dtype", str(a.get("output_dtype"))),), int4=int4, x2_packed_k=packed_k,
                     x2_nz=x2_nz, m=m, k=k, n=n, batch=batch, x1_batch=aligned_batch(x1.shape[:-2], len(batch)),
                     x2_batch=aligned_batch(x2.shape[:-2], len(batch)), out_dt=out_dt, mode=mode, convert=convert,
                     group_k=gk, gb=groups is not None and not int4, scale=(scale.dtype, scale.numel),
                     offset=() if offset is None else (offset.dtype, offset.numel),
                     bias=None if bias is None else bias.dtype, pertoken=pts is not None)

    def _values(self, a: Args, s: QSpec):
        if s.int4:
            return int4_values(a.x1.data), unpack_int4_matrix(a.x2.data, s.x2_packed_k)
        return a.x1.data, a.x2.data

    def compute(self, s: QSpec, a: Args):
        x1, x2 = self._values(a, s)
        bias, pts, offset = a.get("bias"), a.get("pertoken_scale"), a.get("offset")
        if s.mode == "kgroup":
            return (self._kgroup(a, s, x1, x2),)
        acc = int_matmul(x1, x2)
        if bias is not None and bias.dtype is I32:
            acc = acc + bias.data.astype(np.int64)
        if s.mode == "int32":
            return (wrap_int32(acc),)
        v = acc.astype(np.float32)
        if s.mode == "fixpipe":
            words = a.scale.data
            if s.convert:        # what npu_trans_quant_param(scale, offset) hands the cube
                n_words = max(a.scale.numel, 1 if offset is None else offset.numel)
                words = pack_quant_param(np.broadcast_to(a.scale.data, (n_words,)),
                                         None if offset is None else np.broadcast_to(offset.data, (n_words,)))
            v = v * quant_param_scale(words)
            if s.out_dt is I8:
                if offset is not None and not s.convert:
                    v = v + offset.data.astype(np.float32)
                else:
                    v = v + quant_param_offset(words)
                return (to_int8_saturated(v),)
            return (D.cast(v, s.out_dt),)
        v = v * as_float32(a.scale)
        if pts is not None:
            v = v * pts.data.astype(np.float32)[:, None]
        if bias is not None and bias.dtype is not I32:
            v = v + as_float32(bias)
        return (D.cast(v, s.out_dt),)

    def _kgroup(self, a: Args, s: QSpec, x1, x2) -> np.ndarray:
        gk = s.group_k
        ng = -(-s.k // gk)
        scale = as_float32(a.scale)
        pts = as_float32(a.pertoken_scale)
        v = np.zeros((s.m, s.n), dtype=np.float32)
        for j in range(ng):
            x1j, x2j = x1[:, j * gk:(j + 1) * gk], x2[j * gk:(j + 1) * gk]
            part = int_matmul(x1j, x2j).astype(np.float32)
            if s.gb:         # per (row, K-block) and per (K-block, 128 columns) scales
                col_scale = np.repeat(scale[j], GB_GROUP)[:s.n]
                v = v + part * pts[:, j:j + 1] * col_scale
            else:            # K-G: asymmetric weight groups, then the token scale
                rowsum = x1j.astype(np.float32).sum(axis=1, keepdims=True)
                part = part - rowsum * as_float32(a.offset)[j]
                v = v + part * scale[j]
        if s.gb:
            if a.get("bias") is not None:
                v = v + as_float32(a.bias)
        else:
            v = v * pts.reshape(s.m, 1)
        return D.cast(v, s.out_dt)

    def _sides(self, s: QSpec):
        cube_dt = I4 if s.int4 else I8
        A = GemmSide("x1", cube_dt, s.m, s.k, s.x1_batch)
        B = GemmSide("x2", cube_dt, s.k, s.n, s.x2_batch, transposed=s.x2_packed_k, nz=s.x2_nz)
        return A, B

    def _kgroup_problem(self, s: QSpec, chip) -> MatmulProblem:
        """K-grouped dequantisation: one int32 partial per K-group, a batch of K-slices of x1 and
        x2 -- K-group j of x1 is columns j*gk.. of rows k apart; of x2 (stored (n, k)) the same."""
        cube_dt = I4 if s.int4 else I8
        it = cube_dt.itemsize
        gk, ng = s.group_k, -(-s.k // s.group_k)
        stored = (s.n, gk) if s.x2_packed_k else (gk, s.n)
        A = Operand("x1", s.m, gk, cube_dt, layout=Layout(ld=s.k * it, batch_stride=int(gk * it)))
        b_at = Layout(ld=s.k * it, batch_stride=int(gk * it)) if s.x2_packed_k and not s.x2_nz else \
            Layout(batch_stride=matrix_bytes(chip, *stored, cube_dt, s.x2_nz))
        B = Operand("x2", gk, s.n, cube_dt, s.x2_packed_k, s.x2_nz, b_at)
        return MatmulProblem(ng, s.m, s.n, gk, A, B, "workspace", I32)

    def default_tiling(self, s: QSpec, chip):
        if s.mode == "kgroup":
            return default_tiling(chip, self._kgroup_problem(s, chip))
        return gemm_tiling(chip, s.batch, *self._sides(s))

    def plan(self, s: QSpec, chip, tiling=None):
        A, B = self._sides(s)
        int_bias = "bias" if s.bias is I32 else None
        rows = math.prod(s.batch) * s.m
        scale_dt, scale_n = s.scale
        if s.mode == "int32":
            return gemm_plans(self.name, chip, s.batch, A, B, "out0", I32, bias=int_bias, tiling=tiling)
        if s.mode == "fixpipe" and not chip.buffers.fb:
            # no fixpipe buffer for per-channel scales on this chip (310P): the AI Core's vector
            # unit dequantises the int32 result instead
            cube = gemm_plans(self.name, chip, s.batch, A, B, "workspace", I32, bias=int_bias, tiling=tiling)
            cube[0].workspace_bytes = rows * s.n * 4
            post = dequant_epilogue_plan(self.name + ".dequant", chip, rows, s.n, "out0", s.out_dt,
                                         scale=("scale", scale_dt.itemsize, scale_n))
            return share_workspace(cube + [post])
        if s.mode == "fixpipe":
            pre = []
            scale_name = "scale"
            if s.convert:
                off_n = s.offset[1] if s.offset else 1
                n_words = max(scale_n, off_n)
                pre = [trans_quant_param_plan(self.name + ".trans_quant_param", chip, n_words, scale="scale",
                                              scale_len=scale_n, offset="offset" if s.offset else None,
                                              offset_len=off_n, out="workspace")]
                pre[0].workspace_bytes = n_words * 8
                scale_name = "workspace"
            cube = gemm_plans(self.name, chip, s.batch, A, B, "out0", s.out_dt, bias=int_bias, scale=scale_name,
                              scale_per_tensor=scale_n == 1, tiling=tiling)
            return share_workspace(pre + cube)
        if s.mode == "epilogue":
            cube = gemm_plans(self.name, chip, s.batch, A, B, "workspace", I32, bias=int_bias, tiling=tiling,
                              single="a vector epilogue dequantises")
            cube[0].workspace_bytes = rows * s.n * 4
            post = dequant_epilogue_plan(self.name + ".dequant", chip, rows, s.n, "out0", s.out_dt,
                                         scale=("scale", scale_dt.itemsize, scale_n),
                                         pertoken=("pertoken_scale", 4.0) if s.pertoken else None,
                                         bias=None if s.bias is None or int_bias else ("bias", s.bias.itemsize))
            return share_workspace(cube + [post])
        return self._kgroup_plans(s, chip, tiling)

    def _kgroup_plans(self, s: QSpec, chip, tiling):
        """The cube writes one int32 partial per K-group, the epilogue scales and sums them."""
        it = (I4 if s.int4 else I8).itemsize
        ng = -(-s.k // s.group_k)
        if tiling is not None and tiling.split_k > 1:
            raise ISAError(f"{self.name}: split_k is not supported with group_sizes")
        cube = matmul_plan(self.name, chip, self._kgroup_problem(s, chip), tiling)
        cube.workspace_bytes = ng * s.m * s.n * 4
        extra = []
        if not s.gb:     # the offset term needs each row's K-group sums of x1
            extra.append(("x1", it, "row", s.k))
        post = dequant_epilogue_plan(self.name + ".dequant", chip, s.m, s.n, "out0", s.out_dt, partials=ng,
                                     scale=("scale", 4.0, s.scale[1]),
                                     pertoken=("pertoken_scale", 4.0 * (ng if s.gb else 1)),
                                     offset=None if s.gb else ("offset", 2.0, s.offset[1]),
                                     bias=("bias", 4.0) if s.bias is not None else None, extra=extra)
        return share_workspace([cube, post])


# ============================================================================================
# npu_weight_quant_batchmatmul
# ============================================================================================
@dataclass(frozen=True, kw_only=True)
class WSpec(OpSpec):
    m: int
    k: int
    n: int
    x_dt: D.DType
    w_dt: D.DType          # int8 or int4
    packed_k: bool         # int4 words packed along k: (k/8, n)
    nz: bool
    granularity: str       # "tensor", "channel", "group"
    group: int
    out_dt: D.DType
    scale: tuple           # antiquant_scale (dtype, numel)
    offset: D.DType | None
    bias: D.DType | None
    quant_scale: int       # quant_scale's numel (0: none)


class NpuWeightQuantBatchmatmul(Op):
    name = "npu_weight_quant_batchmatmul"
    DIM_LIMIT = 65535
    M_LIMIT = 2 ** 31 - 1
    GROUP_QUANTUM = 32
    INT64_SCALE_M = 96           # int64 antiquant scale: M in [1, 96], K and N aligned to 64
    INT64_SCALE_ALIGN = 64
    NZ_INT4_GROUPS = (64, 128)   # FRACTAL_NZ int4 weight, per-group: group size 64 or 128, N aligned to 64

    def infer(self, a: Args, chip) -> WSpec:
        x, w = self.tensor(a, "x"), self.tensor(a, "weight")
        scale = self.tensor(a, "antiquant_scale")
        offset = self.tensor(a, "antiquant_offset", optional=True)
        qs = self.tensor(a, "quant_scale", optional=True)
        qo = self.tensor(a, "quant_offset", optional=True)
        bias = self.tensor(a, "bias", optional=True)
        p310 = chip is not None and is_310p(chip)
        self.check_dtype("x", x, [F16] if p310 else [F16, BF16])
        self.check_dtype("weight", w, [I8] if p310 else [I8, I32])
        if x.ndim != 2:
            raise self.fail("x", f"must be 2-D (M, K); got shape {x.shape}")
        if w.ndim != 2:
            raise self.fail("weight", f"must be 2-D (K, N); got shape {w.shape}")
        if F.is_fractal(x.format):
            raise self.fail("x", f"format must be ND; got {x.format.name}")
        nz = matrix_format(self, "weight", w)
        wd = a.get("weight_dtype")
        if wd is not None:
            wdt = self.dtype_arg(a, "weight_dtype")
            if wdt is not (I4 if w.dtype is I32 else w.dtype):
                raise self.fail("weight_dtype", f"{wdt.name} does not describe a {w.dtype.name} weight")
        m, k = x.shape
        if w.dtype is I32:
            w_dt = I4
            if w.shape[0] == k:
                packed_k, n = False, w.shape[1] * INT4_PER_INT32
            elif w.shape[0] * INT4_PER_INT32 == k:
                packed_k, n = True, w.shape[1]
            else:
                raise self.fail("weight", f"int4 words must be (K, N/8) = ({k}, N/8) or (K/8, N) = ({k / 8:g}, N); "
                                          f"got {w.shape}")
        else:
            w_dt, packed_k = I8, False
            if w.shape[0] != k:
                raise self.fail("weight", f"its rows ({w.shape[0]}) must equal x's K={k}")
            n = w.shape[1]
        if not 1 <= k <= self.DIM_LIMIT or not 1 <= n <= self.DIM_LIMIT:
            raise self.fail("weight", f"K={k} and N={n} must lie in [1, 65535]")
        if not 1 <= m <= self.M_LIMIT:
            raise self.fail("x", f"M={m} must lie in [1, 2^31 - 1]")
        # antiquant scale / offset
        if scale.dtype is I64:
            if p310:
                raise TypeError(f"{self.name}: argument 'antiquant_scale': int64 is not supported on {chip.name}")
            if x.dtype is not F16 or w_dt is not I8 or nz:
                raise TypeError(f"{self.name}: an int64 antiquant_scale needs float16 x and an ND int8 weight")
        elif scale.dtype is not x.dtype:
            raise TypeError(f"{self.name}: argument 'antiquant_scale' has dtype {scale.dtype.name}; it must match "
                            f"x's {x.dtype.name} (or be int64)")
        gsz = self.int_arg(a, "antiquant_group_size", lo=0) if a.get("antiquant_group_size") is not None else 0
        if scale.numel == 1 and scale.shape in ((1,), (1, 1)):
            gran = "tensor"
        elif scale.shape in ((n,), (1, n)):
            gran = "channel"
        elif scale.ndim == 2 and scale.shape[1] == n and gsz > 0 and scale.shape[0] == -(-k // gsz):
            gran = "group"
        else:
            want = f"(1,), (1, 1), ({n},), (1, {n})" + (f" or ({-(-k // gsz)}, {n})" if gsz > 0 else
                                                         " (or (ceil(K/g), N) with antiquant_group_size g)")
            raise self.fail("antiquant_scale", f"shape {scale.shape} must be one of {want}")
        if gran == "group":
            if gsz % self.GROUP_QUANTUM or not self.GROUP_QUANTUM <= gsz <= k - 1:
                raise self.fail("antiquant_group_size", f"must be a multiple of 32 in [32, K-1={k - 1}]; got {gsz}")
        if scale.dtype is I64:
            if gran != "channel":
                raise self.fail("antiquant_scale", "an int64 scale supports per-channel quantisation only")
            if not 1 <= m <= self.INT64_SCALE_M or k % self.INT64_SCALE_ALIGN or n % self.INT64_SCALE_ALIGN:
                raise self.fail("antiquant_scale", "an int64 scale needs M in [1, 96] and K, N multiples of 64; "
                                                   f"got M={m}, K={k}, N={n}")
        if offset is not None:
            want_dt = I32 if scale.dtype is I64 else scale.dtype
            if offset.dtype is not want_dt:
                raise TypeError(f"{self.name}: argument 'antiquant_offset' has dtype {offset.dtype.name}; with a "
                                f"{scale.dtype.name} antiquant_scale it must be {want_dt.name}")
            if offset.shape != scale.shape:
                raise self.fail("antiquant_offset", f"shape {offset.shape} must equal antiquant_scale's {scale.shape}")
        if nz and w_dt is I4 and gran == "group":
            if gsz not in self.NZ_INT4_GROUPS or k % gsz or n % 64:
                raise self.fail("antiquant_group_size", "a FRACTAL_NZ int4 weight per group needs group size 64 or "
                                                        f"128 dividing K and N a multiple of 64; got {gsz}, K={k}, "
                                                        f"N={n}")
        inner = a.get("inner_precise")
        if inner is not None:
            self.int_arg(a, "inner_precise", lo=0, hi=1)
        # output quantisation
        if qo is not None and qs is None:
            raise self.fail("quant_offset", "cannot be given without quant_scale")
        if qs is not None:
            if p310:
                raise self.fail("quant_scale", f"is not supported on {chip.name}")
            if nz:
                raise self.fail("quant_scale", "is supported only with an ND weight")
            if scale.dtype is I64:
                raise self.fail("quant_scale", "must be None when antiquant_scale is int64")
            self.check_dtype("quant_scale", qs, [F32, I64])
            if qs.shape not in ((n,), (1,), (1, n)):
                raise self.fail("quant_scale", f"must be ({n},), (1,) or (1, {n}); got {qs.shape}")
            if qo is not None:
                self.check_dtype("quant_offset", qo, [F32])
                if qo.shape != qs.shape:
                    raise self.fail("quant_offset", f"shape {qo.shape} must equal quant_scale's {qs.shape}")
        if bias is not None:
            want_b = F16 if (x.dtype is F16 or p310) else F32
            if bias.dtype is not want_b:
                raise TypeError(f"{self.name}: argument 'bias' has dtype {bias.dtype.name}; with {x.dtype.name} x it "
                                f"must be {want_b.name}")
            if bias.shape not in ((n,), (1, n)):
                raise self.fail("bias", f"must be ({n},) or (1, {n}); got {bias.shape}")
        return WSpec(outputs=(TensorMeta((m, n), I8 if qs is not None else x.dtype),), m=m, k=k, n=n, x_dt=x.dtype,
                     w_dt=w_dt, packed_k=packed_k, nz=nz, granularity=gran, group=gsz,
                     out_dt=I8 if qs is not None else x.dtype, scale=(scale.dtype, scale.numel),
                     offset=None if offset is None else offset.dtype, bias=None if bias is None else bias.dtype,
                     quant_scale=0 if qs is None else qs.numel)

    def dequantised_weight(self, a: Args, s: WSpec) -> np.ndarray:
        """The (K, N) weight the cube multiplies: (w + offset) * scale in fp32, rounded to x's dtype."""
        w = unpack_int4_matrix(a.weight.data, s.packed_k) if s.w_dt is I4 else a.weight.data
        scale, offset = a.antiquant_scale, a.get("antiquant_offset")
        sf = quant_param_scale(scale.data) if scale.dtype is I64 else as_float32(scale)
        return dequantise_weight(w, sf, None if offset is None else offset.data.astype(np.float32),
                                 s.group if s.granularity == "group" else 0, s.k, a.x.dtype)

    def compute(self, s: WSpec, a: Args):
        acc = float_matmul(a.x.data, self.dequantised_weight(a, s))
        bias = a.get("bias")
        if bias is not None:
            acc = acc + as_float32(bias).reshape(1, -1)
        qs = a.get("quant_scale")
        if qs is None:
            return (D.cast(acc, s.out_dt),)
        qo = a.get("quant_offset")
        if qs.dtype is I64:
            v = acc * quant_param_scale(qs.data).reshape(1, -1)
            v = v + (qo.data.astype(np.float32).reshape(1, -1) if qo is not None
                     else quant_param_offset(qs.data).reshape(1, -1))
        else:
            v = acc * as_float32(qs).reshape(1, -1)
            if qo is not None:
                v = v + as_float32(qo).reshape(1, -1)
        return (to_int8_saturated(v),)

    def _weight(self, s: WSpec) -> AntiquantWeight:
        return AntiquantWeight(k=s.k, n=s.n, weight="weight", w_item=s.w_dt.itemsize, w_rows_along_n=s.packed_k,
                               scale="antiquant_scale", s_item=s.scale[0].itemsize, s_count=s.scale[1],
                               group=s.group if s.granularity == "group" else 0,
                               offset=None if s.offset is None else "antiquant_offset",
                               o_item=0 if s.offset is None else s.offset.itemsize, out_item=s.x_dt.itemsize)

    def default_tiling(self, s: WSpec, chip):
        return gemm_tiling(chip, (), GemmSide("x", s.x_dt, s.m, s.k), GemmSide("workspace", s.x_dt, s.k, s.n, nz=True))

    def plan(self, s: WSpec, chip, tiling=None):
        cube = antiquant_cube(self.name, chip, GemmSide("x", s.x_dt, s.m, s.k), self._weight(s), "out0", s.out_dt,
                              tiling=tiling, bias=None if s.bias is None else "bias",
                              bias_itemsize=4.0 if s.bias is None else s.bias.itemsize,
                              scale="quant_scale" if s.quant_scale else None, scale_per_tensor=s.quant_scale == 1)
        return antiquant_mix_plan(self.name, chip, cube, self._weight(s))


OPS = (NpuQuantMatmul(), NpuWeightQuantBatchmatmul())
