"""What the fused matmul + communication ops share: the documented limits, the pipeline's chunking
of M, the kernels of one chunk (a GEMM placed by operand layouts, its dequant epilogue, the x3
add), and the argument checks every fused op makes."""
from __future__ import annotations

import math

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.isa import KernelPlan

from ..base import Args, CommOp
from ..common import as_float32, matrix_format, quant_param_scale
from ..templates.cube import Layout, Operand
from ..templates.elementwise import Operand as EOp, VectorStep, elementwise_plan
from ..templates.gemm import GemmSide, gemm_plans
from ..templates.matmul import MatmulProblem, default_tiling
from ..templates.rows import RowOperand, RowStep, row_plan

F16, BF16, F32, I8, I32, I64 = D.float16, D.bfloat16, D.float32, D.int8, D.int32, D.int64

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
    a = Operand("a", max(rows, 1), k, dtype)
    b = Operand("b", k, n, dtype)
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
# Kernels of one chunk of rows
# ============================================================================================
def rows_at(dtype: D.DType, cols: int, row: int = 0, base: int = 0, *, batch_rows: int = 0) -> Layout:
    """A run of rows of a (rows x ``cols``) row-major tensor starting at ``row`` (plus ``base``
    bytes); with ``batch_rows``, batch i starts ``batch_rows`` rows after batch i-1."""
    row_bytes = dtype.nbytes(cols)
    return Layout(offset=int(base + row * row_bytes), batch_stride=int(batch_rows * row_bytes))


def chunk_gemm(name: str, chip, a: GemmSide, b: GemmSide, out: str, out_dtype: D.DType, out_at: Layout | None = None,
               **epilogue) -> KernelPlan:
    """The one cube kernel of a chunk's rows: ``a`` (placed by its layout) times ``b`` into ``out``
    at ``out_at``; ``epilogue``: bias / dequant scale as gemm_plans takes them."""
    (plan,) = gemm_plans(name, chip, a.batch, a, b, out, out_dtype, out_layout=out_at,
                         single="a chunk's matmul is one cube kernel", **epilogue)
    return plan


def dequant_rows(name: str, chip, rows: int, n: int, out: RowOperand, *, partial_base: int, scale: tuple,
                 pertoken: RowOperand | None) -> KernelPlan:
    """The vector epilogue that turns ``rows`` x ``n`` int32 partials (workspace at
    ``partial_base``) into ``out`` (a row operand placed where the rows go): x scale per column,
    x ``pertoken`` (a "per_row" operand placed where the chunk's token scales are) per row."""
    inputs = [RowOperand("workspace", 4.0, offset=partial_base),
              RowOperand(scale[0], scale[1], "shared", cols=None if scale[2] > 1 else 1)]
    steps = [RowStep("unary", "float32"), RowStep("binary", "float32")]          # widen, x scale
    if pertoken is not None:
        inputs.append(pertoken)
        steps.append(RowStep("binary", "float32"))                               # x token scale
    steps.append(RowStep("unary", "float32"))                                    # round to the output
    return row_plan(name, chip, rows, n, inputs, [out], steps, temps_bytes=4.0)


def add_rows(name: str, chip, rows: int, n: int, dst: str, src: str, dtype: D.DType, row0: int) -> KernelPlan:
    """``dst[row0:row0+rows] += src[row0:row0+rows]`` on the vector cores (x3 after the matmul)."""
    it = dtype.itemsize
    at = int(row0 * n * it)
    return elementwise_plan(name, chip, rows * n, [EOp(dst, it, at), EOp(src, it, at)], [EOp(dst, it, at)],
                            [VectorStep("unary", "float32", 2), VectorStep("binary", "float32"),
                             VectorStep("unary", "float32")], temps_bytes=8.0)


# ============================================================================================
# Shared checks
# ============================================================================================
class FusedMatmulComm(CommOp):
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

    def check_group(self, spec, ranks: tuple) -> None:
        """The group named by hcom must match what the call says about it."""
        if len(ranks) != spec.world:
            raise self.fail("world_size", f"is {spec.world}, but the group {spec.group!r} has {len(ranks)} ranks "
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


    def _epilogue(self, a: Args) -> dict:
        """What the all-gather / reduce-scatter matmuls' epilogues need to know of bias and scales."""
        bias, x2s = a.get("bias"), a.get("x2_scale")
        return dict(bias=None if bias is None else bias.dtype, x2_scale=() if x2s is None else (x2s.dtype, x2s.numel),
                    x1_scale=a.get("x1_scale") is not None)


def scale_values(t) -> np.ndarray:
    """A dequantisation scale's float32 values: int64 words carry FIXPIPE's FP19 scale."""
    return quant_param_scale(t.data) if t.dtype is I64 else as_float32(t)
