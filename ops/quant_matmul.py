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
from ascend_sim.isa import GM, XWAIT, Buf, ISAError, KernelPlan, Pipe, Program, ProgramBuilder
from ascend_sim.tensor import TensorMeta

from .base import Args, LegacyOp as Op
from .matmul import (BF16, F16, F32, I4, I8, I32, I64, INNER_LIMIT, INT4_PER_INT32, GemmSide, aligned,
                     broadcast_batch, dequant_epilogue_plan, float_matmul, gemm_plans, int_matmul, matrix_bytes,
                     matrix_format, relayout, rows_locator, share_workspace, wrap_int32)
from .quant import (as_float32, int4_values, is_310p, pack_quant_param, quant_param_offset, quant_param_scale,
                    to_int8_saturated, trans_quant_param_plan)
from .templates.matmul import MatmulProblem, Operand as CubeOperand, matmul_plan

GB_GROUP = 128               # npu_quant_matmul G-B mode: [group_m, group_n, group_k] = [1, 128, 128]


def unpack_words(words: np.ndarray, packed_along_k: bool) -> np.ndarray:
    """int32 words of a (k, n) int4 matrix -> int8 values (k, n). Packed along n: (k, n/8) words;
    packed along k: (k/8, n) words (the transpose of (n, k/8))."""
    if packed_along_k:
        return int4_values(np.swapaxes(words, -1, -2)).swapaxes(-1, -2)
    return int4_values(words)


# ============================================================================================
# npu_quant_matmul
# ============================================================================================
@dataclass
class _QSpec:
    int4: bool
    x2_packed_k: bool
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

    def _spec(self, a: Args, chip) -> _QSpec:
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
        matrix_format(self, "x2", x2)
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
        return _QSpec(int4, packed_k, m, k, n, batch, aligned(x1.shape[:-2], len(batch)),
                      aligned(x2.shape[:-2], len(batch)), out_dt, mode, convert, gk,
                      groups is not None and not int4)

    def infer(self, a: Args, chip):
        s = self._spec(a, chip)
        return (TensorMeta((*s.batch, s.m, s.n), s.out_dt),)

    def _values(self, a: Args, s: _QSpec):
        if s.int4:
            return int4_values(a.x1.data), unpack_words(a.x2.data, s.x2_packed_k)
        return a.x1.data, a.x2.data

    def compute(self, a: Args, outs):
        s = self._spec(a, None)
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

    def _kgroup(self, a: Args, s: _QSpec, x1, x2) -> np.ndarray:
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

    def _plans(self, a: Args, outs, chip, tiling=None):
        s = self._spec(a, chip)
        cube_dt = I4 if s.int4 else I8
        x2 = a.x2
        A = GemmSide("x1", cube_dt, s.m, s.k, s.x1_batch)
        B = GemmSide("x2", cube_dt, s.k, s.n, s.x2_batch, transposed=s.x2_packed_k, nz=matrix_format(self, "x2", x2))
        bias = a.get("bias")
        int_bias = "bias" if bias is not None and bias.dtype is I32 else None
        rows = math.prod(s.batch) * s.m
        if s.mode == "int32":
            return gemm_plans(self.name, chip, s.batch, A, B, "out0", I32, bias=int_bias, tiling=tiling)
        if s.mode == "fixpipe" and not chip.buffers.fb:
            # no fixpipe buffer for per-channel scales on this chip (310P): the AI Core's vector
            # unit dequantises the int32 result instead
            cube = gemm_plans(self.name, chip, s.batch, A, B, "workspace", I32, bias=int_bias, tiling=tiling)
            cube[0].workspace_bytes = rows * s.n * 4
            post = dequant_epilogue_plan(self.name + ".dequant", chip, rows, s.n, "out0", s.out_dt,
                                         scale=("scale", a.scale.dtype.itemsize, a.scale.numel))
            return share_workspace(cube + [post])
        if s.mode == "fixpipe":
            pre = []
            scale_name = "scale"
            if s.convert:
                off = a.get("offset")
                n_words = max(a.scale.numel, 1 if off is None else off.numel)
                pre = [trans_quant_param_plan(self.name + ".trans_quant_param", chip, n_words, scale="scale",
                                              scale_len=a.scale.numel, offset=None if off is None else "offset",
                                              offset_len=1 if off is None else off.numel, out="workspace")]
                pre[0].workspace_bytes = n_words * 8
                scale_name = "workspace"
            cube = gemm_plans(self.name, chip, s.batch, A, B, "out0", s.out_dt, bias=int_bias, scale=scale_name,
                              scale_per_tensor=a.scale.numel == 1, tiling=tiling)
            return share_workspace(pre + cube)
        if s.mode == "epilogue":
            cube = gemm_plans(self.name, chip, s.batch, A, B, "workspace", I32, bias=int_bias, tiling=tiling)
            if len(cube) > 1:
                raise ISAError(f"{self.name}: split_k is not supported when a vector epilogue dequantises")
            cube[0].workspace_bytes = rows * s.n * 4
            pts = a.get("pertoken_scale")
            post = dequant_epilogue_plan(self.name + ".dequant", chip, rows, s.n, "out0", s.out_dt,
                                         scale=("scale", a.scale.dtype.itemsize, a.scale.numel),
                                         pertoken=None if pts is None else ("pertoken_scale", 4.0),
                                         bias=None if bias is None or int_bias else ("bias", bias.dtype.itemsize))
            return share_workspace(cube + [post])
        return self._kgroup_plans(a, s, chip, tiling)

    def _kgroup_plans(self, a: Args, s: _QSpec, chip, tiling):
        """K-grouped dequantisation: the cube writes one int32 partial per K-group (a batch of
        K-slices of x1 and x2), the epilogue scales and sums them."""
        cube_dt = I4 if s.int4 else I8
        it = cube_dt.itemsize
        gk, ng = s.group_k, -(-s.k // s.group_k)
        nz = matrix_format(self, "x2", a.x2)
        stored = (s.n, gk) if s.x2_packed_k else (gk, s.n)
        A = CubeOperand("x1", s.m, gk, cube_dt, batch_stride=int(s.m * gk * it))
        B = CubeOperand("x2", gk, s.n, cube_dt, s.x2_packed_k, nz, batch_stride=matrix_bytes(*stored, cube_dt, nz))
        p = MatmulProblem(ng, s.m, s.n, gk, A, B, "workspace", I32, out_batch_stride=s.m * s.n * 4)
        cube = matmul_plan(self.name, chip, p, tiling)
        if isinstance(cube, list):
            raise ISAError(f"{self.name}: split_k is not supported with group_sizes")
        # K-group j of x1 is columns j*gk.. of rows k apart; of x2 (stored (n, k)) the same
        relayout(cube, chip, "x1", rows_locator(int(gk * it), int(s.k * it), batch_bytes=int(s.m * gk * it),
                                                place=lambda j: int(j * gk * it)), stride=int(s.k * it))
        if s.x2_packed_k and not nz:
            relayout(cube, chip, "x2", rows_locator(int(gk * it), int(s.k * it), batch_bytes=int(s.n * gk * it),
                                                    place=lambda j: int(j * gk * it)), stride=int(s.k * it))
        cube.workspace_bytes = ng * s.m * s.n * 4
        extra = []
        if not s.gb:     # the offset term needs each row's K-group sums of x1
            extra.append(("x1", it, "row", s.k))
        post = dequant_epilogue_plan(self.name + ".dequant", chip, s.m, s.n, "out0", s.out_dt, partials=ng,
                                     scale=("scale", 4.0, a.scale.numel),
                                     pertoken=("pertoken_scale", 4.0 * (ng if s.gb else 1)),
                                     offset=None if s.gb else ("offset", 2.0, a.offset.numel),
                                     bias=("bias", 4.0) if a.get("bias") is not None else None, extra=extra)
        return share_workspace([cube, post])

    def plan(self, a: Args, outs, chip):
        return self._plans(a, outs, chip)

    def attrs(self, a: Args) -> dict:
        return {"output_dtype": str(a.get("output_dtype"))}


# ============================================================================================
# npu_weight_quant_batchmatmul
# ============================================================================================
@dataclass
class _WSpec:
    m: int
    k: int
    n: int
    w_dt: D.DType          # int8 or int4
    packed_k: bool         # int4 words packed along k: (k/8, n)
    nz: bool
    granularity: str       # "tensor", "channel", "group"
    group: int
    out_dt: D.DType


def _copy_with_cross_waits(prog: Program, tensor: str, flag: int) -> tuple[Program, list]:
    """A copy of a cube program that waits for its AIVs (cross-core ``flag``) before every MTE2
    load of ``tensor``; also returns those loads' GM accesses, in order."""
    out = Program(prog.core)
    loads = []
    xwait = out.name_id("cross_wait")
    for i, kind in enumerate(prog.kind):
        if kind == GM:
            acc = prog.accesses[prog.arg[i]]
            if acc.tensor == tensor and not acc.write:
                out.kind.append(XWAIT)
                out.pipe.append(int(prog.pipe[i]))
                out.name.append(xwait)
                out.cycles.append(0.0)
                out.latency.append(0.0)
                out.arg.append(("AIV", flag))
                loads.append(acc)
            out.accesses.append(acc)
            arg = len(out.accesses) - 1
        else:
            arg = prog.arg[i]
        out.kind.append(kind)
        out.pipe.append(prog.pipe[i])
        out.name.append(out.name_id(prog.names[prog.name[i]]))
        out.cycles.append(prog.cycles[i])
        out.latency.append(prog.latency[i])
        out.arg.append(arg)
    out.flops = prog.flops
    return out, loads


def antiquant_mix_plan(name: str, chip, cube: KernelPlan, *, k: int, n: int, weight: str, w_item: float,
                       w_rows_along_n: bool, scale: str, s_item: float, s_count: int, group: int,
                       offset: str | None, o_item: float, out_item: float) -> KernelPlan:
    """The weight-quant kernel as Ascend runs it: a MIX kernel whose AIC blocks are ``cube`` (B read
    from the workspace in NZ) and whose AIV blocks, just ahead of each of their AIC's B loads,
    dequantise exactly that K x N chunk of the low-bit weight into the workspace and raise a
    cross-core flag the AIC waits for. Both halves of a block share one GM workspace, so the
    handover stays in L2 and AIV work overlaps the cube's."""
    ratio = 1 if chip.cores.coupled else 2
    fp_c0 = int(32 // out_item)                           # NZ column block of the dequantised dtype
    col_bytes = -(-k // 16) * 16 * 32                     # bytes of one NZ column block
    flag = 0
    V, M2, M3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3
    blocks = []
    for blk in cube.blocks:
        aic, loads = _copy_with_cross_waits(blk[0], "workspace", flag)
        vecs = []
        for a_idx in range(ratio):
            b = ProgramBuilder(chip, "AIV")
            j = 0
            for acc in loads:
                cb0, rr0 = acc.offset // col_bytes, (acc.offset % col_bytes) // 32
                rows_all = acc.row_bytes // 32
                c0 = cb0 * fp_c0
                cols = max(1, min(n, (cb0 + acc.rows) * fp_c0) - c0)
                share = -(-rows_all // ratio)
                r_lo, r_hi = rr0 + a_idx * share, min(rr0 + rows_all, rr0 + (a_idx + 1) * share)
                per_row = cols * (w_item + 4 + out_item)                 # weight, fp32 temp, result
                scales = math.ceil(cols * (s_item + (o_item if offset else 0)) * (1 + (group > 0)) / 32) * 32
                sub = max(1, int((chip.buffers.ub // 2 - scales) // per_row))
                slot = math.ceil(sub * per_row / 32) * 32 + scales
                for r0 in range(r_lo, r_hi, sub):
                    rr = min(sub, r_hi - r0)
                    base = (j % 2) * slot
                    # event ids of their own for each AIV: the engine keys intra-core flags per
                    # block, so the two AIVs of a block must not share ids
                    buf = a_idx * 2 + j % 2
                    if j >= 2:
                        b.wait_flag(V, M2, buf)
                    if w_rows_along_n:            # int4 words packed along K: stored (N, K)
                        b.load_gm(Buf.UB, base, weight, int((c0 * k + r0) * w_item), cols, max(1, int(rr * w_item)),
                                  max(1, int(k * w_item)))
                    else:
                        b.load_gm(Buf.UB, base, weight, int((r0 * n + c0) * w_item), rr, max(1, int(cols * w_item)),
                                  max(1, int(n * w_item)))
                    s_row = (r0 // group) if group else 0
                    s_off = int((s_row * n + c0) * s_item) if s_count > 1 else 0
                    s_len = max(1, int((cols if s_count > 1 else 1) * s_item * (1 + (group > 0))))
                    b.load_gm(Buf.UB, base + slot - scales, scale, s_off, 1, s_len)
                    if offset:
                        b.load_gm(Buf.UB, base + slot - scales, offset, int(s_off * o_item / s_item), 1,
                                  max(1, int(s_len * o_item / s_item)))
                    b.set_flag(M2, V, buf)
                    b.wait_flag(M2, V, buf)
                    if j >= 2:
                        b.wait_flag(M3, V, buf)
                    elems = rr * cols
                    b.vector("unary", "float32", elems, addrs=(base,))          # widen to fp32
                    if offset:
                        b.vector("binary", "float32", elems, addrs=(base,))     # + offset
                    b.vector("binary", "float32", elems, addrs=(base,))         # * scale
                    b.vector("unary", "float32", elems, addrs=(base,))          # round to fp16/bf16
                    b.set_flag(V, M2, buf)
                    b.set_flag(V, M3, buf)
                    b.wait_flag(V, M3, buf)
                    b.store_gm(base, "workspace", int(cb0 * col_bytes + r0 * 32), acc.rows, int(rr * 32), col_bytes)
                    b.set_flag(M3, V, buf)
                    j += 1
                b.cross_set(M3, flag)     # this chunk's rows are in the workspace
            vecs.append(b.build())
        blocks.append([aic] + vecs)
    tensors = tuple(dict.fromkeys(cube.tensors + (weight, scale) + ((offset,) if offset else ())))
    return KernelPlan(name, "MIX", blocks, tensors=tensors, mix_ratio=ratio, tiling=cube.tiling, flops=cube.flops,
                      workspace_bytes=matrix_bytes(k, n, D.float16, True))


class NpuWeightQuantBatchmatmul(Op):
    name = "npu_weight_quant_batchmatmul"
    DIM_LIMIT = 65535
    M_LIMIT = 2 ** 31 - 1
    GROUP_QUANTUM = 32
    INT64_SCALE_M = 96           # int64 antiquant scale: M in [1, 96], K and N aligned to 64
    INT64_SCALE_ALIGN = 64
    NZ_INT4_GROUPS = (64, 128)   # FRACTAL_NZ int4 weight, per-group: group size 64 or 128, N aligned to 64

    def _spec(self, a: Args, chip) -> _WSpec:
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
        return _WSpec(m, k, n, w_dt, packed_k, nz, gran, gsz, I8 if qs is not None else x.dtype)

    def infer(self, a: Args, chip):
        s = self._spec(a, chip)
        return (TensorMeta((s.m, s.n), s.out_dt),)

    def dequantised_weight(self, a: Args, s: _WSpec) -> np.ndarray:
        """The (K, N) weight the cube multiplies: (w + offset) * scale in fp32, rounded to x's dtype."""
        w = unpack_words(a.weight.data, s.packed_k) if s.w_dt is I4 else a.weight.data
        scale, offset = a.antiquant_scale, a.get("antiquant_offset")
        sf = quant_param_scale(scale.data) if scale.dtype is I64 else as_float32(scale)
        of = None if offset is None else offset.data.astype(np.float32)
        if s.granularity == "group":
            sf = np.repeat(sf, s.group, axis=0)[:s.k]
            of = None if of is None else np.repeat(of, s.group, axis=0)[:s.k]
        else:
            sf = sf.reshape(1, -1)
            of = None if of is None else of.reshape(1, -1)
        wf = w.astype(np.float32)
        if of is not None:
            wf = wf + of
        return D.cast(wf * sf, a.x.dtype)

    def compute(self, a: Args, outs):
        s = self._spec(a, None)
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

    def _plans(self, a: Args, outs, chip, tiling=None):
        s = self._spec(a, chip)
        x_dt = a.x.dtype
        scale, offset = a.antiquant_scale, a.get("antiquant_offset")
        A = GemmSide("x", x_dt, s.m, s.k)
        B = GemmSide("workspace", x_dt, s.k, s.n, nz=True)      # the dequantised weight, in the cube's NZ layout
        bias = a.get("bias")
        qs = a.get("quant_scale")
        cube = gemm_plans(self.name, chip, (), A, B, "out0", s.out_dt, bias=None if bias is None else "bias",
                          bias_itemsize=4.0 if bias is None else bias.dtype.itemsize,
                          scale=None if qs is None else "quant_scale",
                          scale_per_tensor=qs is not None and qs.numel == 1, tiling=tiling)
        if len(cube) > 1:
            raise ISAError(f"{self.name}: split_k is not supported (the weight is dequantised per cube tile)")
        return antiquant_mix_plan(self.name, chip, cube[0], k=s.k, n=s.n, weight="weight", w_item=s.w_dt.itemsize,
                                  w_rows_along_n=s.packed_k, scale="antiquant_scale", s_item=scale.dtype.itemsize,
                                  s_count=scale.numel, group=s.group if s.granularity == "group" else 0,
                                  offset=None if offset is None else "antiquant_offset",
                                  o_item=0 if offset is None else offset.dtype.itemsize, out_item=x_dt.itemsize)

    def plan(self, a: Args, outs, chip):
        return self._plans(a, outs, chip)


OPS = (NpuQuantMatmul(), NpuWeightQuantBatchmatmul())
