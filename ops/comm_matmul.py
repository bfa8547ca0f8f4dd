"""Fused matmul + communication (MC2) ops: npu_mm_all_reduce_base, npu_all_gather_base_mm and
npu_mm_reduce_scatter_base.

Semantics follow the op-plugin pages (26.1.0) ``torch_npu-npu_mm_all_reduce_base``,
``torch_npu-npu_all_gather_base_mm`` and ``torch_npu-npu_mm_reduce_scatter_base``, with
op-plugin's KernelNpuOpApi wrappers (MatmulAllReduceBase, AllGatherBaseMatmul,
MatmulReduceScatterBase) and the aclnn pages they call (aclnnMatmulAllReduceV2,
aclnnQuantMatmulAllReduceV3, aclnnMatmulReduceScatterV2) where the torch page leaves a detail open.

npu_mm_all_reduce_base: ``out = allreduce(x1 @ W + bias + x3)`` over the ranks of ``hcom``, every
rank adding its own bias and x3 before the reduction as the page's formula (and the kernel's
per-tile "add x3, then commit the all-reduce") has it. Three scenarios, chosen by the dtypes:

* float (x1, x2 float16 / bfloat16, bias and x3 of the same dtype): ``W = x2``;
* weight quantisation (x1 float, x2 int8): ``W = (x2 + antiquant_offset) * antiquant_scale``,
  per tensor, per channel or per group of ``antiquant_group_size`` rows of K, rounded to x1's dtype
  (what the cube consumes) -- int4 weights are not on this page (torch_npu rejects int32 x2);
* full quantisation (x1, x2 int8, int32 bias): ``dequant_scale * (x1 @ x2 + bias) [* pertoken_scale]``
  with the page's four (dequant_scale, pertoken_scale) -> output rows: int64 (npu_trans_quant_param
  words) -> float16, bfloat16 -> bfloat16, float32 + pertoken -> float16, bfloat16 + pertoken ->
  bfloat16. With ``comm_quant_scale_1/2`` the communication itself is int8 (aclnnQuantMatmulAllReduceV3
  case 3): each rank quantises its result per channel by scale 1, an all-to-all and a vector
  reduce-sum give every rank its slice of the sum, requantised by scale1/scale2, and an all-gather
  returns every slice, dequantised by scale 2.

npu_all_gather_base_mm: ``gather_out = allgather(x1)`` (rank order along dim 0) and
``out = gather_out @ x2 + bias``; with ``comm_mode='aiv'`` and int8 inputs
``out = (allgather(x1_scale) * x2_scale) * (allgather(x1) @ x2)``. ``gather_output=False`` returns an
empty (0,) tensor as its second output.

npu_mm_reduce_scatter_base: ``out = reducescatter(x1 @ x2 + bias)``, rank i getting rows
i*m/N .. (i+1)*m/N; int8 inputs (``comm_mode='aiv'``) are dequantised by ``x2_scale`` and the optional
per-token ``x1_scale`` before the reduction.

Decisions where the pages are open (see each op's checks): quantisation needs comm_mode 'aiv', which
takes no bias; an int64 ``x2_scale`` gives float16 (the Return Values section and op-plugin), so
``output_dtype`` then may only be float16; "non-zero bias is not supported" is read literally: a
bias tensor is accepted with comm_mode 'ai_cpu' and must hold zeros (checked when its numbers are
known); ``reduce_op`` is 'sum' only; comm_turn 0 only; gather_index 0 only.

Numerics: each rank's part is computed in float32 (fp16/bf16 products accumulate in float32, int8
products exactly), parts are summed in float32 and rounded once to the output dtype. (The hardware
rounds each rank's part to the output dtype before the collective; this is the project's rule.)

Timing (the point of fusing): the matmul is cut along M into chunks, each chunk's cube kernel
followed by its collective on the device's communication stream ("hccl"), so chunk i+1 computes
while chunk i communicates. :func:`row_chunks` picks the number of chunks: sqrt(min(T_mm, T_comm) /
the collective's link latencies) -- what minimises the exposed pipeline fill/drain plus the
per-chunk latencies -- kept low enough that the host's launches of the op's tasks hide behind the
longer stream, at least 2 when M has two cube fractals (m0) of rows, at most as many as keep every
chunk a full wave of base tiles over the cube cores; chunks are multiples of m0 rows, the last one
takes the rest. all_gather_base_mm communicates first: every chunk's all-gather is queued at once,
the local rows are multiplied meanwhile, and each gathered chunk's matmul waits for its all-gather.
mm_reduce_scatter_base's chunk c holds rows c.. of every rank's slice of M (one batched cube
kernel), so that its reduce-scatter hands each rank its own rows. Weight quantisation runs each
chunk as npu_weight_quant_batchmatmul's MIX kernel; full quantisation as npu_quant_matmul's cube
kernel (FIXPIPE dequant for an int64 scale) or cube + vector epilogue; x3 is a vector add per chunk
before its collective. A plan is shared by every rank and does not know which rank runs it: a
rank's own rows are addressed as rank 0's, gathered chunks chunk after chunk; and
npu_mm_all_reduce_base, whose arguments do not say the group's size, estimates with 8 ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.isa import CommStep, ISAError, KernelPlan, WaitComm
from ascend_sim.tensor import TensorMeta

from .base import Args, LegacyCommOp as CommOp
from .matmul import (BF16, F16, F32, I8, I32, I64, GemmSide, batch_locator, float_matmul, gemm_plans,
                     int_matmul, matrix_format, relayout, shift)
from .quant import as_float32, quant_param_scale, to_int8_saturated
from .quant_matmul import antiquant_mix_plan
from .templates.elementwise import Operand as EOp, VectorStep, elementwise_plan
from .templates.matmul import MatmulProblem, Operand as CubeOperand, default_tiling
from .templates.rows import RowOperand, RowStep, row_plan

# ----- documented limits -----
INT_MAX = 2 ** 31 - 1
INNER_LIMIT = 65535                  # quantised mm_all_reduce: last dims of x1 and x2; weight quant: k, n
AG_RS_K_RANGE = (256, 65535)         # all_gather_base_mm / mm_reduce_scatter_base: k in [256, 65535)
AR_RANKS = (1, 2, 4, 8)              # mm_all_reduce_base on A2: 1, 2, 4 or 8 ranks in an HCCS mesh
AG_RS_RANKS = {"A2": (2, 4, 8), "A3": (2, 4, 8, 16, 32)}
GROUP_QUANTUM = 32                   # antiquant_group_size: a multiple of 32
COMM_MODES = ("ai_cpu", "aiv")

# ----- the collectives' shape on an HCCS full mesh (engine/collectives.py, mesh algorithm) -----
# per-link share of a collective's nbytes (as CommStep counts it) over N ranks is LINK_PASSES / N,
# in LINK_STEPS latency-bound steps: all-reduce = reduce-scatter then all-gather
LINK_PASSES = {"all_reduce": 2, "reduce_scatter": 1, "all_gather": 1}
LINK_STEPS = {"all_reduce": 2, "reduce_scatter": 1, "all_gather": 1}


# ============================================================================================
# Chunking: how many pieces the pipeline cuts M into
# ============================================================================================
def _link(chip):
    """The link a collective inside one server runs on (HCCS where the chip has it)."""
    if "hccs" in chip.links:
        return chip.links["hccs"]
    return max(chip.links.values(), key=lambda link: link.bandwidth_GBps)


def _rows_per_wave(chip, rows: int, n: int, k: int, dtype: D.DType, batch: int) -> int:
    """Rows (per batch) that give every cube core one base tile of the default tiling."""
    a = CubeOperand("a", max(rows, 1), k, dtype)
    b = CubeOperand("b", k, n, dtype)
    t = default_tiling(chip, MatmulProblem(batch, max(rows, 1), n, k, a, b, "out", F16))
    tiles_n = -(-n // t.base_n) * batch
    return t.base_m * -(-chip.cores.aic // tiles_n)


def row_chunks(chip, rows: int, *, n: int, k: int, cube_dtype: D.DType, flops_per_row: float,
               comm_kind: str, comm_bytes_per_row: float, world: int, tasks_per_chunk: int = 2,
               batch: int = 1) -> list[tuple[int, int]]:
    """Cut ``rows`` into [(first row, rows)] chunks for the compute/communication pipeline.

    With C chunks the pipeline exposes about min(T_mm, T_comm) / C (its fill and drain) and pays
    C times a collective's fixed link latencies T_o: C = sqrt(min / T_o) minimises the sum. The host
    launches each of the op's tasks in turn (``tasks_per_chunk`` per chunk, kernel_launch_us each)
    and a chunk cannot start before its launch, so C also stays below max(T_mm, T_comm) /
    (tasks_per_chunk x launch): the launches hide behind the longer stream. Estimates come from the
    chip preset (cube peak, link bandwidth and latency, launch cost); the engine times the real
    thing. Chunks are multiples of the cube's m0 rows (the last one takes the rest): at least 2 when
    there are two m0's of rows, at most as many as keep each chunk a full wave of base tiles over
    the cube cores (``batch``: matmuls of a chunk's rows that run side by side)."""
    m0 = chip.cube.m0
    if world <= 1 or rows < 2 * m0:
        return [(0, rows)]
    link = _link(chip)
    t_mm = flops_per_row * rows / (chip.cube_peak_tflops(cube_dtype.name) * 1e6)            # us
    t_comm = LINK_PASSES[comm_kind] * comm_bytes_per_row * rows / world / (link.bandwidth_GBps * 1e3)
    latency = LINK_STEPS[comm_kind] * link.latency_us
    ideal = math.sqrt(min(t_mm, t_comm) / latency) if latency > 0 else rows / m0
    launch = tasks_per_chunk * chip.runtime.kernel_launch_us
    if launch > 0:
        ideal = min(ideal, max(t_mm, t_comm) / launch)
    most = min(rows // m0, max(1, rows // _rows_per_wave(chip, rows, n, k, cube_dtype, batch)))
    count = max(2, min(int(ideal), most))
    per_chunk = -(-rows // count)
    step = -(-per_chunk // m0) * m0
    return [(s, min(step, rows - s)) for s in range(0, rows, step)]


# ============================================================================================
# Kernel builders for one chunk of rows
# ============================================================================================
def _gemm(name: str, chip, a_name: str, a_dtype: D.DType, rows: int, k: int, b: GemmSide, out: str,
          out_dtype: D.DType, n: int, *, a_row: int = 0, a_base: int = 0, out_row: int = 0, batch: int = 1,
          batch_rows: int = 0, rename_a: str | None = None, rename_out: str | None = None,
          out_base: int = 0, bias: str | None = None, bias_itemsize: float = 4.0, scale: str | None = None,
          scale_per_tensor: bool = False) -> KernelPlan:
    """The cube kernel of ``rows`` rows of A (from row ``a_row`` of ``a_name``, plus ``a_base``
    bytes; with ``batch`` > 1, ``batch`` pieces of ``rows`` rows, piece i from row i * ``batch_rows``
    + ``a_row``) times B, into rows ``out_row``.. of ``out`` (plus ``out_base`` bytes).
    ``rename_*``: the GM tensor a placeholder name stands for (the workspace holds several regions)."""
    A = GemmSide(a_name, a_dtype, rows, k, (batch,) if batch > 1 else ())
    plans = gemm_plans(name, chip, (batch,) if batch > 1 else (), A, b, out, out_dtype, bias=bias,
                       bias_itemsize=bias_itemsize, scale=scale, scale_per_tensor=scale_per_tensor)
    if len(plans) != 1:
        raise ISAError(f"{name}: a chunk's matmul must be one cube kernel (split_k is not used here)")
    plan = plans[0]
    a_row_bytes = a_dtype.nbytes(k)
    if batch > 1:
        relayout(plan, chip, a_name, batch_locator(rows * a_row_bytes,
                                                   lambda i: a_base + (i * batch_rows + a_row) * a_row_bytes),
                 rename=rename_a)
    elif a_row or a_base or rename_a:
        relayout(plan, chip, a_name, shift(a_base + a_row * a_row_bytes), rename=rename_a)
    out_item = out_dtype.itemsize
    if out_row or out_base or rename_out:
        relayout(plan, chip, out, shift(out_base + int(out_row * n * out_item)), rename=rename_out,
                 out_itemsize=out_item)
    return plan


def _dequant_rows(name: str, chip, rows: int, n: int, out: str, out_dtype: D.DType, *, partial_base: int,
                  scale: tuple, pertoken: str | None, pertoken_locate, out_locate, rename_out: str | None = None,
                  rename_pertoken: str | None = None) -> KernelPlan:
    """The vector epilogue that turns ``rows`` x ``n`` int32 partials (workspace at
    ``partial_base``) into the output dtype: x scale per column, x pertoken per row."""
    plan = row_plan(name, chip, rows, n, *_epilogue_operands(out, out_dtype, scale, pertoken), temps_bytes=4.0)
    relayout(plan, chip, "partial", shift(partial_base), rename="workspace")
    if pertoken is not None:
        relayout(plan, chip, pertoken, pertoken_locate, rename=rename_pertoken)
    relayout(plan, chip, out, out_locate, rename=rename_out)
    return plan


def _epilogue_operands(out: str, out_dtype: D.DType, scale: tuple, pertoken: str | None):
    inputs = [RowOperand("partial", 4.0), RowOperand(scale[0], scale[1], "shared", cols=None if scale[2] > 1 else 1)]
    steps = [RowStep("unary", "float32"), RowStep("binary", "float32")]          # widen, x scale
    if pertoken is not None:
        inputs.append(RowOperand(pertoken, 4.0, "per_row"))
        steps.append(RowStep("binary", "float32"))                               # x token scale
    steps.append(RowStep("unary", "float32"))                                    # round to the output
    return inputs, [RowOperand(out, out_dtype.itemsize)], steps


def _add_rows(name: str, chip, rows: int, n: int, dst: str, src: str, dtype: D.DType, row0: int) -> KernelPlan:
    """``dst[row0:row0+rows] += src[row0:row0+rows]`` on the vector cores (x3 after the matmul)."""
    it = dtype.itemsize
    plan = elementwise_plan(name, chip, rows * n, [EOp(dst, it), EOp(src, it)], [EOp(dst, it)],
                            [VectorStep("unary", "float32", 2), VectorStep("binary", "float32"),
                             VectorStep("unary", "float32")], temps_bytes=8.0)
    for t in (dst, src):
        relayout(plan, chip, t, shift(int(row0 * n * it)))
    return plan


def _ws_regions(chip, sizes: dict[str, int]) -> dict[str, int]:
    """Byte offsets of named workspace regions laid out one after another, each starting on a burst
    (L2 line) boundary so that no region's accesses pay for a neighbour's misalignment."""
    align = chip.memory.burst_bytes
    out, at = {}, 0
    for key, size in sizes.items():
        out[key] = at
        at += -(-int(size) // align) * align
    out["_total"] = at
    return out


def _with_workspace(items: list, nbytes: int) -> list:
    """Every kernel of the call shares one workspace of ``nbytes`` (the front door allocates the
    largest any kernel asks for)."""
    for it in items:
        if isinstance(it, KernelPlan) and "workspace" in it.tensors:
            it.workspace_bytes = max(it.workspace_bytes, int(nbytes))
    return items


# ============================================================================================
# Shared checks
# ============================================================================================
class _FusedMatmulComm(CommOp):
    """Checks every fused op shares (the reduction, the communication mode, the world size)."""

    def _str_choice(self, a: Args, arg: str, allowed: tuple, default: str | None = None) -> str:
        v = a.get(arg)
        if v is None and default is not None:
            return default
        if not isinstance(v, str):
            raise TypeError(f"{self.name}: argument '{arg}' must be a str, got {type(v).__name__}")
        if v not in allowed:
            raise self.fail(arg, f"must be one of {list(allowed)} (the page), got {v!r}")
        return v

    def _common(self, a: Args) -> None:
        if not isinstance(a.get(self.group_arg), str):
            raise TypeError(f"{self.name}: argument '{self.group_arg}' must be the str from get_hccl_comm_name, "
                            f"got {type(a.get(self.group_arg)).__name__}")
        if "reduce_op" in a:
            self._str_choice(a, "reduce_op", ("sum",))
        if a.get("comm_turn") is not None and self.int_arg(a, "comm_turn") != 0:
            raise self.fail("comm_turn", f"only 0 (the default splitting) is supported; got {a.comm_turn}")

    def _world_size(self, a: Args, chip) -> int:
        ws = self.int_arg(a, "world_size", lo=1)
        if chip is not None:
            allowed = AG_RS_RANKS.get(chip.family, AG_RS_RANKS["A3"])
            if ws not in allowed:
                raise self.fail("world_size", f"must be one of {list(allowed)} on {chip.name} (the page), got {ws}")
        return ws

    def check_group(self, a: Args, ranks: tuple) -> None:
        """The group named by hcom must match what the call says about it."""
        ws = a.get("world_size")
        if ws is not None and len(ranks) != ws:
            raise self.fail("world_size", f"is {ws}, but the group {a.get(self.group_arg)!r} has {len(ranks)} ranks "
                                          "(it must equal the communication domain's size)")

    def _zero_bias(self, a: Args) -> None:
        bias = a.get("bias")
        if bias is not None and bias.data is not None and np.any(as_float32(bias) != 0):
            raise self.fail("bias", "holds non-zero values; the page: the current version does not support non-zero "
                                    "bias")

    def _out_dtype(self, a: Args, quant: bool, x2_scale, x_dtype: D.DType) -> D.DType:
        """output_dtype of all_gather_base_mm / mm_reduce_scatter_base."""
        want = None if a.get("output_dtype") is None else self.dtype_arg(a, "output_dtype")
        if not quant:
            if want is not None and want is not x_dtype:
                raise self.fail("output_dtype", f"can be set only in the quantisation scenario; got {want.name} for "
                                                f"{x_dtype.name} inputs")
            return x_dtype
        if x2_scale.dtype is I64:
            if want not in (None, F16):
                raise self.fail("output_dtype", f"must be float16 (or None) with an int64 x2_scale; got {want.name}")
            return F16
        if want is None:
            return BF16
        if want not in (BF16, F16):
            raise self.fail("output_dtype", f"must be bfloat16 or float16; got {want.name}")
        return want

    def _ag_rs_quant_args(self, a: Args, x1_arg: str, m: int, n: int, quant: bool, comm_mode: str):
        """x1_scale / x2_scale of all_gather_base_mm and mm_reduce_scatter_base."""
        x1s = self.tensor(a, "x1_scale", optional=True)
        x2s = self.tensor(a, "x2_scale", optional=True)
        if not quant:
            for arg, t in (("x1_scale", x1s), ("x2_scale", x2s)):
                if t is not None:
                    raise self.fail(arg, f"must be None for float16/bfloat16 {x1_arg} (only int8 is quantised)")
            return None, None
        if comm_mode != "aiv":
            raise self.fail("comm_mode", f"int8 {x1_arg} (the quantisation scenario) needs comm_mode='aiv'; "
                                         f"'{comm_mode}' supports the basic scenario only")
        if x2s is None:
            raise self.fail("x2_scale", f"is required with int8 {x1_arg} (per-channel dequantisation)")
        self.check_dtype("x2_scale", x2s, [F32, I64])
        if x2s.shape not in ((1, n), (n,)):
            raise self.fail("x2_scale", f"must be (1, n) = (1, {n}); got {x2s.shape}")
        if x1s is not None:
            self.check_dtype("x1_scale", x1s, [F32])
            if x1s.shape not in ((m, 1), (m,)):
                raise self.fail("x1_scale", f"must be (m, 1) = ({m}, 1) (per token); got {x1s.shape}")
        return x1s, x2s

    def _ag_rs_matrices(self, a: Args, x1_arg: str):
        x1, x2 = self.tensor(a, x1_arg), self.tensor(a, "x2")
        for arg, t in ((x1_arg, x1), ("x2", x2)):
            if t.ndim != 2:
                raise self.fail(arg, f"must be 2-D; got shape {t.shape}")
            if t.numel == 0:
                raise self.fail(arg, "must not be empty")
        self.check_dtype(x1_arg, x1, [F16, BF16, I8])
        if x2.dtype is not x1.dtype:
            raise TypeError(f"{self.name}: argument 'x2' has dtype {x2.dtype.name}; it must match {x1_arg}'s "
                            f"{x1.dtype.name}")
        if F.is_fractal(x1.format):
            raise self.fail(x1_arg, f"format must be ND; got {x1.format.name}")
        nz = matrix_format(self, "x2", x2)
        m, k = x1.shape
        if x2.shape[0] != k:
            raise self.fail("x2", f"its first dimension ({x2.shape[0]}) must equal {x1_arg}'s k={k}")
        lo, hi = AG_RS_K_RANGE
        if not lo <= k < hi:
            raise self.fail(x1_arg, f"k={k} must lie in [{lo}, {hi})")
        comm_mode = self._str_choice(a, "comm_mode", COMM_MODES, default="ai_cpu")
        if nz and comm_mode != "aiv":
            raise self.fail("x2", "FRACTAL_NZ is supported only with comm_mode='aiv'")
        return x1, x2, m, k, x2.shape[1], nz, comm_mode

    def _ag_rs_bias(self, a: Args, x_dtype: D.DType, n: int, comm_mode: str) -> None:
        bias = self.tensor(a, "bias", optional=True)
        if bias is None:
            return
        if comm_mode == "aiv":
            raise self.fail("bias", "must be None with comm_mode='aiv' (only nullptr is supported)")
        if bias.dtype is not x_dtype:
            raise TypeError(f"{self.name}: argument 'bias' has dtype {bias.dtype.name}; it must match the input's "
                            f"{x_dtype.name}")
        if bias.shape != (n,):
            raise self.fail("bias", f"must be 1-D (n,) = ({n},); got {bias.shape}")
        self._zero_bias(a)


def _scale_values(t) -> np.ndarray:
    """A dequantisation scale's float32 values: int64 words carry FIXPIPE's FP19 scale."""
    return quant_param_scale(t.data) if t.dtype is I64 else as_float32(t)


# ============================================================================================
# npu_mm_all_reduce_base
# ============================================================================================
@dataclass
class _ARSpec:
    scenario: str          # "float", "weight_quant", "quant"
    m: int                 # rows of x1 flattened (b*s for 3-D x1)
    k: int
    n: int
    out_shape: tuple
    out_dt: D.DType
    nz: bool
    quant_mode: str        # quant: "fixpipe" (int64 dequant_scale) or "epilogue"
    granularity: str       # weight quant: "tensor", "channel", "group"
    group: int
    comm_quant: bool


class NpuMmAllReduceBase(_FusedMatmulComm):
    name = "npu_mm_all_reduce_base"
    UNDOCUMENTED_NONE = ("y_dtype", "x1_dtype", "x2_dtype", "dequant_scale_dtype", "pertoken_scale_dtype")

    def _spec(self, a: Args, chip=None) -> _ARSpec:
        self._common(a)
        x1, x2 = self.tensor(a, "x1"), self.tensor(a, "x2")
        for arg in self.UNDOCUMENTED_NONE:
            if a.get(arg) is not None:
                raise self.fail(arg, "must be None (it selects the float8/float4 modes this page does not document)")
        if a.get("group_sizes") not in (None, [], ()):
            raise self.fail("group_sizes", "must be None (per-block quantisation is not on this page)")
        if a.get("comm_quant_mode") is not None and self.int_arg(a, "comm_quant_mode") != 0:
            raise self.fail("comm_quant_mode", "must be 0 (the int8 communication this page documents is selected by "
                                               "comm_quant_scale_1/2)")
        if a.get("comm_mode") is not None:
            self._str_choice(a, "comm_mode", COMM_MODES)
        if x1.ndim not in (2, 3):
            raise self.fail("x1", f"must be 2-D (m, k) or 3-D (b, s, k); got shape {x1.shape}")
        if x2.ndim != 2:
            raise self.fail("x2", f"must be 2-D (k, n); got shape {x2.shape}")
        for arg, t in (("x1", x1), ("x2", x2)):
            if t.numel == 0:
                raise self.fail(arg, "must not be empty")
        self.check_dtype("x1", x1, [I8, F16, BF16])
        self.check_dtype("x2", x2, [F16, I8, BF16])
        if F.is_fractal(x1.format):
            raise self.fail("x1", f"format must be ND; got {x1.format.name}")
        nz = matrix_format(self, "x2", x2)
        k = x1.shape[-1]
        if x2.shape[0] != k:
            raise self.fail("x2", f"its first dimension ({x2.shape[0]}) must equal x1's last dimension k={k}")
        n = x2.shape[1]
        m = math.prod(x1.shape[:-1])
        if x1.dtype is I8 and x2.dtype is I8:
            scenario = "quant"
        elif x1.dtype is not I8 and x2.dtype is I8:
            scenario = "weight_quant"
        elif x1.dtype is not I8 and x2.dtype is x1.dtype:
            scenario = "float"
        else:
            raise TypeError(f"{self.name}: argument 'x2' has dtype {x2.dtype.name} with {x1.dtype.name} x1; the page "
                            "supports float16/bfloat16 x1 with the same x2 or int8 x2, and int8 x1 with int8 x2")
        out_shape = (*x1.shape[:-1], n)
        present = {arg: self.tensor(a, arg, optional=True) for arg in
                   ("bias", "antiquant_scale", "antiquant_offset", "x3", "dequant_scale", "pertoken_scale",
                    "comm_quant_scale_1", "comm_quant_scale_2")}
        allowed = {"float": ("bias", "x3"),
                   "weight_quant": ("bias", "x3", "antiquant_scale", "antiquant_offset"),
                   "quant": ("bias", "x3", "dequant_scale", "pertoken_scale", "comm_quant_scale_1",
                             "comm_quant_scale_2")}[scenario]
        for arg, t in present.items():
            if t is not None and arg not in allowed:
                raise self.fail(arg, f"must be None in the {scenario.replace('_', ' ')} scenario "
                                     f"(x1 {x1.dtype.name}, x2 {x2.dtype.name})")
        gsz = self.int_arg(a, "antiquant_group_size", lo=0, hi=INT_MAX) \
            if a.get("antiquant_group_size") is not None else 0
        if gsz and scenario != "weight_quant":
            raise self.fail("antiquant_group_size", "must be 0 outside weight (fake) quantisation")
        granularity, quant_mode, comm_quant = "", "", False
        if scenario == "float":
            out_dt = x1.dtype
            if not (1 <= m <= INT_MAX and 1 <= k <= INT_MAX and 1 <= n <= INT_MAX):
                raise self.fail("x1", f"m, k, n must lie in [1, 2147483647]; got {m}, {k}, {n}")
            bias_dt = x1.dtype
        elif scenario == "weight_quant":
            out_dt, bias_dt = x1.dtype, x1.dtype
            if not (1 <= k <= INNER_LIMIT and 1 <= n <= INNER_LIMIT) or m > INT_MAX:
                raise self.fail("x2", f"weight quantisation needs k and n in [1, 65535] and m <= 2^31-1; got m={m}, "
                                      f"k={k}, n={n}")
            granularity = self._antiquant(a, present, x1.dtype, k, n, gsz)
        else:
            bias_dt = I32
            if k > INNER_LIMIT or n > INNER_LIMIT or m > INT_MAX:
                raise self.fail("x2", f"full quantisation needs the last dimensions of x1 and x2 (k={k}, n={n}) in "
                                      f"[1, 65535] and m <= 2^31-1")
            out_dt, quant_mode = self._dequant(a, present, m, n)
            comm_quant = self._comm_quant(a, present, out_dt, n)
        bias = present["bias"]
        if bias is not None:
            if bias.dtype is not bias_dt:
                raise TypeError(f"{self.name}: argument 'bias' has dtype {bias.dtype.name}; in the "
                                f"{scenario.replace('_', ' ')} scenario it must be {bias_dt.name}")
            if bias.shape != (n,):
                raise self.fail("bias", f"must be 1-D (n,) = ({n},); got {bias.shape}")
        x3 = present["x3"]
        if x3 is not None:
            if x3.dtype is not out_dt:
                raise TypeError(f"{self.name}: argument 'x3' has dtype {x3.dtype.name}; it must be the output's "
                                f"{out_dt.name}")
            if x3.shape != out_shape:
                raise self.fail("x3", f"must have the output's shape {out_shape}; got {x3.shape}")
            if F.is_fractal(x3.format):
                raise self.fail("x3", f"format must be ND; got {x3.format.name}")
        return _ARSpec(scenario, m, k, n, out_shape, out_dt, nz, quant_mode, granularity, gsz, comm_quant)

    def _antiquant(self, a: Args, present: dict, x_dt: D.DType, k: int, n: int, gsz: int) -> str:
        scale, offset = present["antiquant_scale"], present["antiquant_offset"]
        if scale is None:
            raise self.fail("antiquant_scale", "is required with int8 x2 and float x1 (weight quantisation)")
        if scale.dtype is not x_dt:
            raise TypeError(f"{self.name}: argument 'antiquant_scale' has dtype {scale.dtype.name}; it must match "
                            f"x1's {x_dt.name}")
        groups = -(-k // gsz) if gsz else 0
        if gsz and scale.shape == (groups, n):
            granularity = "group"
            if gsz % GROUP_QUANTUM or not GROUP_QUANTUM <= gsz <= min(k - 1, INT_MAX):
                raise self.fail("antiquant_group_size", f"must be a multiple of 32 in [32, min(k-1, INT_MAX)] = "
                                                        f"[32, {k - 1}]; got {gsz}")
        elif scale.shape == (1,):
            granularity = "tensor"
        elif scale.shape in ((n,), (1, n)):
            granularity = "channel"
        else:
            want = f"[1], [{n}], [1, {n}]" + (f" or [ceil(k/g), n] = [{groups}, {n}]" if gsz else "")
            raise self.fail("antiquant_scale", f"shape {scale.shape} must be one of {want}")
        if gsz and granularity != "group":
            raise self.fail("antiquant_group_size", f"must be 0 unless antiquant_scale is per group "
                                                    f"([ceil(k/g), n]); got {gsz} with a per-{granularity} scale")
        if offset is not None:
            if offset.dtype is not scale.dtype or offset.shape != scale.shape:
                raise self.fail("antiquant_offset", f"must have antiquant_scale's dtype and shape "
                                                    f"({scale.dtype.name} {scale.shape}); got {offset.dtype.name} "
                                                    f"{offset.shape}")
        return granularity

    def _dequant(self, a: Args, present: dict, m: int, n: int) -> tuple[D.DType, str]:
        ds, pts = present["dequant_scale"], present["pertoken_scale"]
        if ds is None:
            raise self.fail("dequant_scale", "is required with int8 x1 and x2 (full quantisation)")
        self.check_dtype("dequant_scale", ds, [I64, BF16, F32])
        if ds.shape not in ((1,), (n,), (1, n)):
            raise self.fail("dequant_scale", f"must be [1] (per tensor), [n] or [1, n] = [1, {n}] (per channel); got "
                                             f"{ds.shape}")
        if pts is not None:
            self.check_dtype("pertoken_scale", pts, [F32])
            if pts.shape != (m,):
                raise self.fail("pertoken_scale", f"must be 1-D of x1's rows (m or b*s) = ({m},); got {pts.shape}")
            if ds.dtype is I64:
                raise TypeError(f"{self.name}: argument 'dequant_scale': with pertoken_scale it must be float32 "
                                "(float16 output) or bfloat16 (bfloat16 output), not int64")
        elif ds.dtype is F32:
            raise TypeError(f"{self.name}: argument 'dequant_scale': a float32 scale without pertoken_scale must first "
                            "be converted to int64 by npu_trans_quant_param (the page's note)")
        out_dt = BF16 if ds.dtype is BF16 else F16
        return out_dt, ("fixpipe" if ds.dtype is I64 else "epilogue")

    def _comm_quant(self, a: Args, present: dict, out_dt: D.DType, n: int) -> bool:
        s1, s2 = present["comm_quant_scale_1"], present["comm_quant_scale_2"]
        if (s1 is None) != (s2 is None):
            raise self.fail("comm_quant_scale_2" if s2 is None else "comm_quant_scale_1",
                            "comm_quant_scale_1 and comm_quant_scale_2 must be given together or not at all")
        if s1 is None:
            return False
        for arg, t in (("comm_quant_scale_1", s1), ("comm_quant_scale_2", s2)):
            if t.dtype is not out_dt:
                raise TypeError(f"{self.name}: argument '{arg}' has dtype {t.dtype.name}; it must be the output's "
                                f"{out_dt.name}")
            if t.shape not in ((n,), (1, n)):
                raise self.fail(arg, f"must be [n] or [1, n] = [1, {n}]; got {t.shape}")
        if s1.shape != s2.shape:
            raise self.fail("comm_quant_scale_2", f"must have comm_quant_scale_1's shape {s1.shape}; got {s2.shape}")
        return True

    def infer(self, a: Args, chip):
        s = self._spec(a, chip)
        return (TensorMeta(s.out_shape, s.out_dt),)

    def check_group(self, a: Args, ranks: tuple) -> None:
        if len(ranks) not in AR_RANKS:
            raise self.fail("hcom", f"names a group of {len(ranks)} ranks; the page supports {list(AR_RANKS)} ranks")

    # ----- numerics -----
    def _partial(self, a: Args, s: _ARSpec) -> np.ndarray:
        """This rank's x1 @ W + bias + x3, float32 (m, n)."""
        x1 = a.x1.data.reshape(s.m, s.k)
        bias, x3 = a.get("bias"), a.get("x3")
        if s.scenario == "quant":
            acc = int_matmul(x1, a.x2.data)
            if bias is not None:
                acc = acc + bias.data.astype(np.int64)
            v = acc.astype(np.float32) * _scale_values(a.dequant_scale).reshape(1, -1)
            pts = a.get("pertoken_scale")
            if pts is not None:
                v = v * as_float32(pts).reshape(-1, 1)
        else:
            w = a.x2.data if s.scenario == "float" else self._weight(a, s)
            v = float_matmul(x1, w)
            if bias is not None:
                v = v + as_float32(bias).reshape(1, -1)
        if x3 is not None:
            v = v + as_float32(x3).reshape(s.m, s.n)
        return v.astype(np.float32)

    def _weight(self, a: Args, s: _ARSpec) -> np.ndarray:
        """(x2 + antiquant_offset) * antiquant_scale in float32, rounded to x1's dtype."""
        sf = as_float32(a.antiquant_scale)
        off = a.get("antiquant_offset")
        of = None if off is None else as_float32(off)
        if s.granularity == "group":
            sf = np.repeat(sf, s.group, axis=0)[:s.k]
            of = None if of is None else np.repeat(of, s.group, axis=0)[:s.k]
        else:
            sf = sf.reshape(1, -1)
            of = None if of is None else of.reshape(1, -1)
        w = a.x2.data.astype(np.float32)
        if of is not None:
            w = w + of
        return D.cast(w * sf, a.x1.dtype)

    def local(self, a: Args):
        s = self._spec(a)
        v = self._partial(a, s)
        if not s.comm_quant:
            return v
        # int8 communication: the rank's result in the output dtype, / scale 1 -> fp16 -> int8
        y = D.cast(v, s.out_dt).astype(np.float32)
        t = y / as_float32(a.comm_quant_scale_1).reshape(1, -1)
        return to_int8_saturated(t.astype(np.float16))

    def combine(self, parts: dict, a: Args, ranks: tuple) -> dict:
        self.check_group(a, ranks)
        s = self._spec(a)
        total = np.zeros((s.m, s.n), dtype=np.float32)
        for r in ranks:
            total += np.asarray(parts[r], dtype=np.float32)
        if s.comm_quant:
            s1 = as_float32(a.comm_quant_scale_1).reshape(1, -1)
            s2 = as_float32(a.comm_quant_scale_2).reshape(1, -1)
            requant = to_int8_saturated((total * (s1 / s2)).astype(np.float16))
            total = requant.astype(np.float32) * s2
        out = D.cast(total, s.out_dt).reshape(s.out_shape)
        return {r: (out,) for r in parts}

    # ----- plan -----
    def plan(self, a: Args, outs, chip):
        s = self._spec(a, chip)
        cube_dt = I8 if s.scenario == "quant" else a.x1.dtype
        out_it = s.out_dt.itemsize
        comm_it = 1.0 if s.comm_quant else out_it
        # the group's size is not known to a plan: assume the largest documented group (it enters
        # only the communication estimate and the int8 all-to-all's padding of rows to N)
        world = max(AR_RANKS)
        kernels = 1 + (s.quant_mode == "epilogue") + (a.get("x3") is not None)
        tasks = kernels + 1 + (3 if s.comm_quant else 0)    # + quant, reduce-sum kernels and the all-gather
        chunks = row_chunks(chip, s.m, n=s.n, k=s.k, cube_dtype=cube_dt, flops_per_row=2.0 * s.k * s.n,
                            comm_kind="all_reduce", comm_bytes_per_row=s.n * comm_it, world=world,
                            tasks_per_chunk=tasks)
        max_rows = max(r for _, r in chunks)
        pad = lambda rows: -(-rows // world) * world       # noqa: E731 - all-to-all slices rows by rank
        padded = sum(pad(r) for _, r in chunks)
        ws = _ws_regions(chip, {"partial": max_rows * s.n * 4 if s.quant_mode == "epilogue" else 0,
                                "send": padded * s.n if s.comm_quant else 0,
                                "recv": padded * s.n if s.comm_quant else 0})
        items: list = []
        n_steps = 0
        pending = None                    # comm-quant: the last chunk whose all-to-all is in flight
        send_row = 0
        for r0, rows in chunks:
            items += self._chunk_kernels(a, s, chip, r0, rows, ws)
            if not s.comm_quant:
                items.append(CommStep("all_reduce", int(rows * s.n * out_it), f"{self.name}.all_reduce"))
                n_steps += 1
                continue
            # int8 communication: quantise this chunk, all-to-all it; then reduce the previous chunk
            items.append(self._quant_kernel(a, s, chip, r0, rows, ws["send"] + send_row * s.n))
            # (an all-to-all whose receiver sums what it gets is a mesh reduce-scatter)
            items.append(CommStep("reduce_scatter", int(pad(rows) * s.n), f"{self.name}.all_to_all"))
            a2a_step = n_steps
            n_steps += 1
            if pending is not None:
                n_steps = self._reduce_and_gather(a, s, chip, items, pending, n_steps, ws, world)
            pending = (a2a_step, rows, send_row)
            send_row += pad(rows)
        if s.comm_quant:
            n_steps = self._reduce_and_gather(a, s, chip, items, pending, n_steps, ws, world)
            items += [WaitComm(i) for i in range(n_steps)]
            items.append(self._comm_dequant(a, s, chip, ws["recv"]))
        # (the weight-quant MIX kernel asks for its own workspace: the dequantised weight in NZ)
        return _with_workspace(items, ws["_total"])

    def _chunk_kernels(self, a: Args, s: _ARSpec, chip, r0: int, rows: int, ws: dict) -> list[KernelPlan]:
        """The kernels that leave rows r0.. of this rank's x1 @ W (+ bias, + x3) in out0."""
        nm = self.name
        bias = a.get("bias")
        b_args = dict(bias=None if bias is None else "bias", bias_itemsize=4.0 if bias is None else bias.dtype.itemsize)
        if s.scenario == "float":
            kernels = [_gemm(nm, chip, "x1", a.x1.dtype, rows, s.k, GemmSide("x2", a.x2.dtype, s.k, s.n, nz=s.nz),
                             "out0", s.out_dt, s.n, a_row=r0, out_row=r0, **b_args)]
        elif s.scenario == "weight_quant":
            cube = _gemm(nm, chip, "x1", a.x1.dtype, rows, s.k, GemmSide("workspace", a.x1.dtype, s.k, s.n, nz=True),
                         "out0", s.out_dt, s.n, a_row=r0, out_row=r0, **b_args)
            scale, offset = a.antiquant_scale, a.get("antiquant_offset")
            kernels = [antiquant_mix_plan(nm, chip, cube, k=s.k, n=s.n, weight="x2", w_item=1.0, w_rows_along_n=False,
                                          scale="antiquant_scale", s_item=scale.dtype.itemsize, s_count=scale.numel,
                                          group=s.group if s.granularity == "group" else 0,
                                          offset=None if offset is None else "antiquant_offset",
                                          o_item=0 if offset is None else offset.dtype.itemsize,
                                          out_item=a.x1.dtype.itemsize)]
        elif s.quant_mode == "fixpipe":
            ds = a.dequant_scale
            kernels = [_gemm(nm, chip, "x1", I8, rows, s.k, GemmSide("x2", I8, s.k, s.n, nz=s.nz), "out0", s.out_dt,
                             s.n, a_row=r0, out_row=r0, bias=None if bias is None else "bias",
                             scale="dequant_scale", scale_per_tensor=ds.numel == 1)]
        else:
            ds, pts = a.dequant_scale, a.get("pertoken_scale")
            cube = _gemm(nm, chip, "x1", I8, rows, s.k, GemmSide("x2", I8, s.k, s.n, nz=s.nz), "partial", I32, s.n,
                         a_row=r0, rename_out="workspace", out_base=ws["partial"],
                         bias=None if bias is None else "bias")
            post = _dequant_rows(nm + ".dequant", chip, rows, s.n, "out0", s.out_dt, partial_base=ws["partial"],
                                 scale=("dequant_scale", ds.dtype.itemsize, ds.numel),
                                 pertoken=None if pts is None else "pertoken_scale", pertoken_locate=shift(r0 * 4),
                                 out_locate=shift(int(r0 * s.n * s.out_dt.itemsize)))
            kernels = [cube, post]
        if a.get("x3") is not None:
            kernels.append(_add_rows(nm + ".add_x3", chip, rows, s.n, "out0", "x3", s.out_dt, r0))
        return kernels

    def _quant_kernel(self, a: Args, s: _ARSpec, chip, r0: int, rows: int, send_base: int) -> KernelPlan:
        """Rows r0.. of the result, / comm_quant_scale_1 per column, to int8 in the send buffer."""
        it, s_it = s.out_dt.itemsize, a.comm_quant_scale_1.dtype.itemsize
        plan = row_plan(self.name + ".comm_quant", chip, rows, s.n,
                        [RowOperand("out0", it), RowOperand("comm_quant_scale_1", s_it, "shared")],
                        [RowOperand("send", 1.0)],
                        [RowStep("unary", "float32"), RowStep("div", "float32"), RowStep("unary", "float32", count=2)],
                        temps_bytes=4.0)
        relayout(plan, chip, "out0", shift(int(r0 * s.n * it)))
        relayout(plan, chip, "send", shift(send_base), rename="workspace")
        return plan

    def _reduce_and_gather(self, a: Args, s: _ARSpec, chip, items: list, pending, n_steps: int, ws: dict,
                           world: int) -> int:
        """Wait for a chunk's all-to-all, sum the world's int8 slices (requantised by scale1/scale2)
        and all-gather them: the second half of the int8 all-reduce."""
        step, rows, send_row = pending
        s_it = a.comm_quant_scale_1.dtype.itemsize
        slice_rows = -(-rows // world)
        items.append(WaitComm(step))
        plan = row_plan(self.name + ".comm_reduce_sum", chip, slice_rows, s.n,
                        [RowOperand("recv", float(world)), RowOperand("comm_quant_scale_1", s_it, "shared"),
                         RowOperand("comm_quant_scale_2", s_it, "shared")],
                        [RowOperand("reduced", 1.0)],
                        [RowStep("unary", "float32", count=2 * world), RowStep("binary", "float32", count=world - 1),
                         RowStep("binary", "float32"), RowStep("unary", "float32", count=2)], temps_bytes=8.0)
        relayout(plan, chip, "recv", shift(ws["recv"] + send_row * s.n), rename="workspace")
        relayout(plan, chip, "reduced", shift(ws["recv"] + send_row * s.n), rename="workspace")
        items.append(plan)
        items.append(CommStep("all_gather", int(slice_rows * world * s.n), f"{self.name}.all_gather"))
        return n_steps + 1

    def _comm_dequant(self, a: Args, s: _ARSpec, chip, recv_base: int) -> KernelPlan:
        """The gathered int8 result x comm_quant_scale_2 -> the output dtype."""
        it, s_it = s.out_dt.itemsize, a.comm_quant_scale_2.dtype.itemsize
        plan = row_plan(self.name + ".comm_dequant", chip, s.m, s.n,
                        [RowOperand("gathered", 1.0), RowOperand("comm_quant_scale_2", s_it, "shared")],
                        [RowOperand("out0", it)],
                        [RowStep("unary", "float32", count=2), RowStep("binary", "float32"),
                         RowStep("unary", "float32")], temps_bytes=4.0)
        relayout(plan, chip, "gathered", shift(recv_base), rename="workspace")
        return plan

    def attrs(self, a: Args) -> dict:
        return {"reduce_op": a.get("reduce_op"), "comm_turn": a.get("comm_turn")}


# ============================================================================================
# npu_all_gather_base_mm
# ============================================================================================
@dataclass
class _CommSpec:
    """The shapes and mode of an all-gather or reduce-scatter matmul call."""

    m: int                 # local rows
    k: int
    n: int
    world: int
    dt: D.DType
    out_dt: D.DType
    nz: bool
    quant: bool
    mode: str              # "float", "fixpipe", "epilogue"
    gather_output: bool = False


class NpuAllGatherBaseMm(_FusedMatmulComm):
    name = "npu_all_gather_base_mm"

    def _spec(self, a: Args, chip=None) -> _CommSpec:
        self._common(a)
        x1, x2, m, k, n, nz, comm_mode = self._ag_rs_matrices(a, "x1")
        world = self._world_size(a, chip)
        if a.get("gather_index") is not None and self.int_arg(a, "gather_index") != 0:
            raise self.fail("gather_index", f"only 0 (gather x1) is supported in the current version; got "
                                            f"{a.gather_index}")
        go = a.get("gather_output")
        go = True if go is None else go
        if not isinstance(go, (bool, np.bool_)):
            raise TypeError(f"{self.name}: argument 'gather_output' must be a bool, got {type(go).__name__}")
        if comm_mode == "aiv" and not go:
            raise self.fail("gather_output", "must be True with comm_mode='aiv'")
        quant = x1.dtype is I8
        x1s, x2s = self._ag_rs_quant_args(a, "x1", m, n, quant, comm_mode)
        self._ag_rs_bias(a, x1.dtype, n, comm_mode)
        out_dt = self._out_dtype(a, quant, x2s, x1.dtype)
        mode = "float" if not quant else ("fixpipe" if x2s.dtype is I64 and x1s is None else "epilogue")
        return _CommSpec(m, k, n, world, x1.dtype, out_dt, nz, quant, mode, bool(go))

    def infer(self, a: Args, chip):
        s = self._spec(a, chip)
        gathered = (s.m * s.world, s.k) if s.gather_output else (0,)
        return (TensorMeta((s.m * s.world, s.n), s.out_dt), TensorMeta(gathered, s.dt))

    # ----- numerics -----
    def local(self, a: Args):
        x1s = a.get("x1_scale")
        return a.x1.data, None if x1s is None else as_float32(x1s).reshape(-1)

    def combine(self, parts: dict, a: Args, ranks: tuple) -> dict:
        self.check_group(a, ranks)
        s = self._spec(a)
        gathered = np.concatenate([parts[r][0] for r in ranks])
        if s.quant:
            v = int_matmul(gathered, a.x2.data).astype(np.float32) * _scale_values(a.x2_scale).reshape(1, -1)
            if a.get("x1_scale") is not None:
                v = v * np.concatenate([parts[r][1] for r in ranks]).reshape(-1, 1)
        else:
            v = float_matmul(gathered, a.x2.data)
            if a.get("bias") is not None:
                v = v + as_float32(a.bias).reshape(1, -1)
        out = D.cast(v, s.out_dt)
        second = gathered.copy() if s.gather_output else np.zeros((0,), dtype=s.dt.np_dtype)
        return {r: (out, second) for r in parts}

    # ----- plan -----
    def plan(self, a: Args, outs, chip):
        s = self._spec(a, chip)
        it = s.dt.itemsize
        has_x1s = a.get("x1_scale") is not None
        chunks = row_chunks(chip, s.m, n=s.n, k=s.k, cube_dtype=s.dt, flops_per_row=2.0 * s.k * s.n * (s.world - 1),
                            comm_kind="all_gather", comm_bytes_per_row=s.world * s.k * it, world=s.world,
                            tasks_per_chunk=2 + (s.mode == "epilogue"), batch=max(1, s.world - 1))
        gathered_rows = s.m * s.world
        max_rows = max(s.m, (s.world - 1) * max(r for _, r in chunks))
        ws = _ws_regions(chip, {"gathered": 0 if s.gather_output else gathered_rows * s.k * it,
                                "scales": gathered_rows * 4 if has_x1s else 0,
                                "partial": max_rows * s.n * 4 if s.mode == "epilogue" else 0})
        gathered = "out1" if s.gather_output else "workspace"
        g_base = 0 if s.gather_output else ws["gathered"]
        # communication first: every chunk's all-gather (with its token scales) is queued at once
        items: list = [CommStep("all_gather", int(s.world * rows * (s.k * it + (4 if has_x1s else 0))),
                                f"{self.name}.all_gather") for _, rows in chunks]
        # the local rows need nothing from the other ranks
        items += self._rows(a, s, chip, "x1", None, 0, s.m, 0, ws, scale_tensor="x1_scale", scale_base=0)
        row = s.m
        for c, (_, rows) in enumerate(chunks):
            items.append(WaitComm(c))
            grows = (s.world - 1) * rows
            items += self._rows(a, s, chip, "gathered_x1", gathered, g_base + row * s.k * it, grows, row, ws,
                                scale_tensor="workspace", scale_base=ws["scales"] + row * 4)
            row += grows
        return _with_workspace(items, ws["_total"])

    def _rows(self, a: Args, s: _CommSpec, chip, a_name: str, rename_a, a_base: int, rows: int, out_row: int, ws: dict,
              *, scale_tensor: str, scale_base: int) -> list[KernelPlan]:
        """The kernels of ``rows`` rows of the product, A from ``a_name`` at byte ``a_base``."""
        nm = self.name
        B = GemmSide("x2", s.dt, s.k, s.n, nz=s.nz)
        if s.mode == "float":
            bias = a.get("bias")
            return [_gemm(nm, chip, a_name, s.dt, rows, s.k, B, "out0", s.out_dt, s.n, a_base=a_base, out_row=out_row,
                          rename_a=rename_a, bias=None if bias is None else "bias",
                          bias_itemsize=4.0 if bias is None else bias.dtype.itemsize)]
        if s.mode == "fixpipe":
            return [_gemm(nm, chip, a_name, I8, rows, s.k, B, "out0", s.out_dt, s.n, a_base=a_base, out_row=out_row,
                          rename_a=rename_a, scale="x2_scale", scale_per_tensor=a.x2_scale.numel == 1)]
        cube = _gemm(nm, chip, a_name, I8, rows, s.k, B, "partial", I32, s.n, a_base=a_base, rename_a=rename_a,
                     rename_out="workspace", out_base=ws["partial"])
        has_x1s = a.get("x1_scale") is not None
        post = _dequant_rows(nm + ".dequant", chip, rows, s.n, "out0", s.out_dt, partial_base=ws["partial"],
                             scale=("x2_scale", a.x2_scale.dtype.itemsize, a.x2_scale.numel),
                             pertoken="token_scale" if has_x1s else None, pertoken_locate=shift(scale_base),
                             rename_pertoken=scale_tensor, out_locate=shift(int(out_row * s.n * s.out_dt.itemsize)))
        return [cube, post]

    def attrs(self, a: Args) -> dict:
        return {"world_size": a.get("world_size"), "gather_output": a.get("gather_output"),
                "comm_mode": a.get("comm_mode") or "ai_cpu"}


# ============================================================================================
# npu_mm_reduce_scatter_base
# ============================================================================================
class NpuMmReduceScatterBase(_FusedMatmulComm):
    name = "npu_mm_reduce_scatter_base"

    def _spec(self, a: Args, chip=None) -> _CommSpec:
        self._common(a)
        x1, x2, m, k, n, nz, comm_mode = self._ag_rs_matrices(a, "input")
        world = self._world_size(a, chip)
        if m % world:
            raise self.fail("input", f"its m dimension ({m}) must be divisible by world_size={world}")
        quant = x1.dtype is I8
        x1s, x2s = self._ag_rs_quant_args(a, "input", m, n, quant, comm_mode)
        self._ag_rs_bias(a, x1.dtype, n, comm_mode)
        out_dt = self._out_dtype(a, quant, x2s, x1.dtype)
        mode = "float" if not quant else ("fixpipe" if x2s.dtype is I64 and x1s is None else "epilogue")
        return _CommSpec(m, k, n, world, x1.dtype, out_dt, nz, quant, mode)

    def infer(self, a: Args, chip):
        s = self._spec(a, chip)
        return (TensorMeta((s.m // s.world, s.n), s.out_dt),)

    # ----- numerics -----
    def local(self, a: Args):
        s = self._spec(a)
        bias = a.get("bias")
        if s.quant:
            v = int_matmul(a.input.data, a.x2.data).astype(np.float32) * _scale_values(a.x2_scale).reshape(1, -1)
            if a.get("x1_scale") is not None:
                v = v * as_float32(a.x1_scale).reshape(-1, 1)
            return v.astype(np.float32)
        v = float_matmul(a.input.data, a.x2.data)
        if bias is not None:
            v = v + as_float32(bias).reshape(1, -1)
        return v.astype(np.float32)

    def combine(self, parts: dict, a: Args, ranks: tuple) -> dict:
        self.check_group(a, ranks)
        s = self._spec(a)
        total = np.zeros((s.m, s.n), dtype=np.float32)
        for r in ranks:
            total += parts[r]
        rows = s.m // len(ranks)
        out = D.cast(total, s.out_dt)
        return {r: (out[ranks.index(r) * rows:(ranks.index(r) + 1) * rows].copy(),) for r in parts}

    # ----- plan -----
    def plan(self, a: Args, outs, chip):
        s = self._spec(a, chip)
        per_rank = s.m // s.world
        out_it = s.out_dt.itemsize
        chunks = row_chunks(chip, per_rank, n=s.n, k=s.k, cube_dtype=s.dt, flops_per_row=2.0 * s.k * s.n * s.world,
                            comm_kind="reduce_scatter", comm_bytes_per_row=s.world * s.n * out_it, world=s.world,
                            tasks_per_chunk=2 + (s.mode == "epilogue"), batch=s.world)
        max_rows = s.world * max(r for _, r in chunks)
        ws = _ws_regions(chip, {"send": s.m * s.n * out_it,
                                "partial": max_rows * s.n * 4 if s.mode == "epilogue" else 0})
        items: list = []
        for r0, rows in chunks:
            # chunk: rows r0.. of every rank's slice of M, laid out slice after slice in the send buffer
            send = ws["send"] + int(r0 * s.world * s.n * out_it)
            items += self._chunk(a, s, chip, r0, rows, per_rank, send, ws)
            items.append(CommStep("reduce_scatter", int(s.world * rows * s.n * out_it),
                                  f"{self.name}.reduce_scatter"))
        return _with_workspace(items, ws["_total"])

    def _chunk(self, a: Args, s: _CommSpec, chip, r0: int, rows: int, per_rank: int, send: int,
               ws: dict) -> list[KernelPlan]:
        nm = self.name
        B = GemmSide("x2", s.dt, s.k, s.n, nz=s.nz)
        pieces = dict(a_row=r0, batch=s.world, batch_rows=per_rank) if s.world > 1 else dict(a_row=r0)
        if s.mode == "float":
            bias = a.get("bias")
            return [_gemm(nm, chip, "input", s.dt, rows, s.k, B, "send", s.out_dt, s.n, rename_out="workspace",
                          out_base=send, bias=None if bias is None else "bias",
                          bias_itemsize=4.0 if bias is None else bias.dtype.itemsize, **pieces)]
        if s.mode == "fixpipe":
            return [_gemm(nm, chip, "input", I8, rows, s.k, B, "send", s.out_dt, s.n, rename_out="workspace",
                          out_base=send, scale="x2_scale", scale_per_tensor=a.x2_scale.numel == 1, **pieces)]
        cube = _gemm(nm, chip, "input", I8, rows, s.k, B, "partial", I32, s.n, rename_out="workspace",
                     out_base=ws["partial"], **pieces)
        has_x1s = a.get("x1_scale") is not None
        # the token scales of the chunk's pieces: rows r0.. of every rank's slice
        token_locate = batch_locator(rows * 4, lambda i: (i * per_rank + r0) * 4)
        post = _dequant_rows(nm + ".dequant", chip, s.world * rows, s.n, "send", s.out_dt,
                             partial_base=ws["partial"],
                             scale=("x2_scale", a.x2_scale.dtype.itemsize, a.x2_scale.numel),
                             pertoken="x1_scale" if has_x1s else None, pertoken_locate=token_locate,
                             out_locate=shift(send), rename_out="workspace")
        return [cube, post]

    def attrs(self, a: Args) -> dict:
        return {"world_size": a.get("world_size"), "reduce_op": a.get("reduce_op"),
                "comm_mode": a.get("comm_mode") or "ai_cpu"}


OPS = (NpuMmAllReduceBase(), NpuAllGatherBaseMm(), NpuMmReduceScatterBase())
