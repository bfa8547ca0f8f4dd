"""The vendor's names for what a Timeline records, shared by every exporter in this package.

Ascend's tools (the torch_npu profiler's kernel_details.csv and op_statistic.csv, trace_view.json,
MindStudio Insight) name things their own way: CANN op types (``MatMul``, ``RmsNorm``) rather than
torch_npu function names, ACL data type names (``FLOAT16``, ``BF16``, ``FLOAT`` for float32), shapes
as ``"8,100,30;16"`` (comma between dims, semicolon between tensors), task types ``AI_CORE`` /
``AI_VECTOR_CORE`` / ``MIX_AIC``, and per-core pipe lanes such as ``AIV7 MTE2``. Keeping these
spellings in one place lets a user put a simulated trace or CSV beside a real profile and compare
them column by column.

Also here: how a lane name of the engine (``"AIC3.MTE2"``, ``"AICore3.vec1.VECTOR"``, ``"AIV7"``,
``"stream:default"``, ``"Communication"``) splits into core and pipe, the order lanes are shown in,
and how an op's pipe busy time (summed over its cores) becomes per-core time for the ``aic_*`` /
``aiv_*`` columns.
"""
from __future__ import annotations

import re
from typing import Iterable

from ascend_sim.timeline import OpRecord

# The pipes of an AI Core, in the order the vendor's pipe-utilisation views list them.
PIPE_NAMES = ("SCALAR", "CUBE", "VECTOR", "MTE1", "MTE2", "MTE3", "FIXP")

# ---------------------------------------------------------------------------------------------
# op types
# ---------------------------------------------------------------------------------------------
# torch_npu function -> the CANN op type the profiler's "Type" / "OP Type" columns show. Ops missing
# here keep their own name, which is what the profiler shows for an op it cannot type either.
KERNEL_TYPES: dict[str, str] = {
    "npu_linear": "MatMul",
    "npu_transpose_batchmatmul": "TransposeBatchMatMul",
    "npu_grouped_matmul": "GroupedMatmul",
    "npu_quant_matmul": "QuantBatchMatmulV3",
    "npu_weight_quant_batchmatmul": "WeightQuantBatchMatmulV2",
    "npu_fusion_attention": "FlashAttentionScore",
    "npu_prompt_flash_attention": "PromptFlashAttention",
    "npu_incre_flash_attention": "IncreFlashAttention",
    "npu_fused_infer_attention_score": "FusedInferAttentionScore",
    "npu_format_cast": "TransData",
    "npu_format_cast_": "TransData",
    "npu_dtype_cast": "Cast",
    "npu_rms_norm": "RmsNorm",
    "npu_layer_norm_eval": "LayerNorm",
    "npu_group_norm_silu": "GroupNormSilu",
    "npu_group_norm_swish": "GroupNormSwish",
    "npu_silu": "Swish",
    "npu_gelu": "GeluV2",
    "npu_fast_gelu": "FastGelu",
    "npu_mish": "Mish",
    "npu_swiglu": "SwiGlu",
    "npu_rotary_mul": "RotaryMul",
    "npu_interleave_rope": "InterleaveRope",
    "npu_scaled_masked_softmax": "ScaledMaskedSoftmax",
    "npu_dropout_with_add_softmax": "DropoutWithAddSoftmax",
    "_npu_dropout": "DropOutDoMask",
    "npu_anti_quant": "AscendAntiQuantV2",
    "npu_quantize": "AscendQuantV2",
    "npu_dynamic_quant": "DynamicQuant",
    "npu_trans_quant_param": "TransQuantParamV2",
    "npu_convert_weight_to_int4pack": "ConvertWeightToINT4Pack",
    "npu_prefetch": "Cmo",
    # collectives: the HCCL task names the profiler shows (hcom_<op>_)
    "all_reduce": "hcom_allReduce_",
    "all_gather": "hcom_allGather_",
    "all_gather_into_tensor": "hcom_allGather_",
    "reduce_scatter": "hcom_reduceScatter_",
    "reduce_scatter_tensor": "hcom_reduceScatter_",
    "broadcast": "hcom_broadcast_",
    "all_to_all": "hcom_alltoall_",
    "all_to_all_single": "hcom_alltoall_",
    "send": "hcom_send_",
    "recv": "hcom_receive_",
}


def kernel_type(op_name: str) -> str:
    """The CANN op type of a torch_npu op name (the name itself when none is known)."""
    return KERNEL_TYPES.get(op_name, op_name)


# The engine's core_type -> the profiler's "Accelerator Core" / op_statistic "Core Type".
ACCELERATOR_CORES: dict[str, str] = {
    "AIC": "AI_CORE",
    "AIV": "AI_VECTOR_CORE",
    "MIX": "MIX_AIC",
    "AI_CPU": "AI_CPU",
    "HCCL": "HCCL",
    "CMO": "CMO",
}


def accelerator_core(core_type: str) -> str:
    return ACCELERATOR_CORES.get(core_type, core_type or "N/A")


def is_device_op(rec: OpRecord) -> bool:
    """Host-only records (views, bookkeeping: core_type "") ran nothing on the device; the vendor's
    device tables do not list them."""
    return bool(rec.core_type)


# ---------------------------------------------------------------------------------------------
# tensors: dtypes, shapes, formats
# ---------------------------------------------------------------------------------------------
# numpy / ml_dtypes names -> ACL data type names as the profiler prints them.
ACL_DTYPE_NAMES: dict[str, str] = {
    "float16": "FLOAT16", "bfloat16": "BF16", "float32": "FLOAT", "float64": "DOUBLE",
    "int8": "INT8", "uint8": "UINT8", "int16": "INT16", "uint16": "UINT16", "int32": "INT32",
    "uint32": "UINT32", "int64": "INT64", "uint64": "UINT64", "bool": "BOOL", "int4": "INT4",
    "float8_e4m3fn": "FLOAT8_E4M3FN", "float8_e5m2": "FLOAT8_E5M2", "hifloat8": "HIFLOAT8",
    "complex64": "COMPLEX64", "complex128": "COMPLEX128",
}


def acl_dtype_name(dtype) -> str:
    name = str(getattr(dtype, "name", dtype))
    return ACL_DTYPE_NAMES.get(name, name.upper())


def format_shapes(shapes: Iterable) -> str:
    """``[[8, 100, 30], [16]]`` -> ``"8,100,30;16"``; a scalar (shape ``[]``) is an empty field."""
    return ";".join(",".join(str(int(d)) for d in s) for s in shapes)


def format_dtypes(dtypes: Iterable) -> str:
    return ";".join(acl_dtype_name(d) for d in dtypes)


def format_formats(formats: Iterable) -> str:
    # the engine already records ACL format names (ND, FRACTAL_NZ, NC1HWC0...)
    return ";".join(str(getattr(f, "name", f)) for f in formats)


# ---------------------------------------------------------------------------------------------
# lanes
# ---------------------------------------------------------------------------------------------
_CORE_LABEL = re.compile(r"^(AICore|AICPU|AIC|AIV)(\d+)(?:\.vec(\d+))?$")
_CORE_RANK = {"AIC": 0, "AICore": 0, "AIV": 1, "AICPU": 2}
_PIPE_RANK = {p: i + 1 for i, p in enumerate(PIPE_NAMES)}


def split_lane(lane: str) -> tuple[str, str, str]:
    """(kind, core, pipe) of an engine lane name. kind is "stream", "comm", "core" (a core's block
    spans, trace="core"), "pipe" (one pipe of one core, trace="pipe") or "other"."""
    if lane.startswith("stream:"):
        return "stream", "", ""
    if lane == "Communication":
        return "comm", "", ""
    core, dot, pipe = lane.rpartition(".")
    if dot and pipe in _PIPE_RANK:
        return "pipe", core, pipe
    if _CORE_LABEL.match(lane):
        return "core", lane, ""
    return "other", "", ""


def op_lane(rec: OpRecord) -> str:
    """The lane an op's span belongs on: its stream's, or Communication for a collective (whose
    stream is the communicator's own and would only repeat it)."""
    return "Communication" if rec.core_type == "HCCL" else "stream:" + rec.stream


def op_span_name(rec: OpRecord) -> str:
    algorithm = rec.attrs.get("algorithm") if rec.core_type == "HCCL" else None
    return f"{rec.name} ({algorithm})" if algorithm else rec.name


def lane_display_name(lane: str) -> str:
    """The lane's name as the vendor's tools show it: "Stream default", "AIV7 MTE2", "AIC3"."""
    kind, core, pipe = split_lane(lane)
    if kind == "stream":
        return "Stream " + lane[len("stream:"):]
    if kind == "pipe":
        return f"{core} {pipe}"
    return lane


def lane_sort_index(lane: str) -> int:
    """Where a lane goes among its device's lanes: streams (default first), Communication, then the
    cores (AIC before AIV before AI CPU, by number), each core's block lane before its pipes."""
    kind, core, pipe = split_lane(lane)
    if kind == "stream":
        return 0 if lane == "stream:default" else 1
    if kind == "comm":
        return 10
    if kind in ("core", "pipe"):
        m = _CORE_LABEL.match(core)
        if m is None:
            return 10_000_000 + _PIPE_RANK.get(pipe, 0)
        vec = int(m.group(3) or 0)
        return (1000 + _CORE_RANK[m.group(1)] * 1_000_000 + int(m.group(2)) * 100 + vec * 10
                + _PIPE_RANK.get(pipe, 0))
    return 100_000_000


def lane_sort_key(lane: str) -> tuple[int, str]:
    return lane_sort_index(lane), lane


# ---------------------------------------------------------------------------------------------
# pipe busy time per core
# ---------------------------------------------------------------------------------------------
# pipe -> (column prefix, profiler metric). MTE2 and SCALAR exist on both core kinds and go to the
# kernel's own kind; in a MIX kernel the record sums them over both kinds (see per_core_pipe_us).
_AIC_ONLY = {"CUBE": "mac", "MTE1": "mte1", "FIXP": "fixpipe"}
_AIV_ONLY = {"VECTOR": "vec", "MTE3": "mte3"}
_SHARED = {"MTE2": "mte2", "SCALAR": "scalar"}

# The per-pipe metric columns of kernel_details.csv (PipeUtilization), in the profiler's order.
PIPE_METRICS = (
    ("aic", "mac"), ("aic", "scalar"), ("aic", "mte1"), ("aic", "mte2"), ("aic", "fixpipe"),
    ("aiv", "vec"), ("aiv", "scalar"), ("aiv", "mte2"), ("aiv", "mte3"),
)
# metric -> the engine's pipe lane, for labels ("AIC CUBE")
METRIC_PIPES = {"mac": "CUBE", "scalar": "SCALAR", "mte1": "MTE1", "mte2": "MTE2", "fixpipe": "FIXP",
                "vec": "VECTOR", "mte3": "MTE3"}

# Chips whose AI Cores hold cube and vector units together (Ascend 910 and 310P): a MIX block
# there is one core, not 1 AIC + 2 AIV.
_COUPLED_CHIP = re.compile(r"^Ascend(910A|910Pro|310)")


def is_coupled_chip(chip_name: str | None) -> bool:
    return bool(chip_name) and _COUPLED_CHIP.match(chip_name) is not None


def core_counts(rec: OpRecord, coupled: bool = False) -> tuple[float, float]:
    """(AIC cores, AIV cores) the op ran on. The record keeps the number of distinct cores
    (attrs["cores_used"]); a MIX kernel's split follows its 1 : mix_ratio blocks (2 on split chips
    unless attrs["mix_ratio"] says otherwise; on coupled chips each core serves both sides)."""
    used = float(rec.attrs.get("cores_used") or rec.block_dim or 1)
    if rec.core_type == "MIX":
        if coupled:
            return used, used
        ratio = float(rec.attrs.get("mix_ratio") or 2)
        aic = used / (1.0 + ratio)
        return aic, used - aic
    return used, used


def per_core_pipe_us(rec: OpRecord, coupled: bool = False) -> dict[tuple[str, str], float]:
    """{("aic", "mac"): µs, ("aiv", "mte2"): µs, ...}: the op's busy time of each pipe per core of
    the kind that has the pipe (the record sums it over all the op's cores). A pipe the op did not
    use is absent.

    MTE2 and SCALAR of a MIX kernel are summed over its AIC and AIV cores together; unless the
    record splits them (keys "AIC.MTE2" / "AIV.MTE2"), both columns get the mean over all its
    cores."""
    busy = rec.pipe_busy_us
    n_aic, n_aiv = core_counts(rec, coupled)
    n = {"aic": n_aic, "aiv": n_aiv}
    side = "aiv" if rec.core_type == "AIV" else "aic"
    out: dict[tuple[str, str], float] = {}
    for pipe, us in busy.items():
        kind, dot, bare = pipe.rpartition(".")
        if dot:                                  # already split by core kind: "AIC.MTE2"
            k = kind.lower()
            metric = _AIC_ONLY.get(bare) or _AIV_ONLY.get(bare) or _SHARED.get(bare)
            if k in n and metric:
                out[k, metric] = us / n[k]
        elif pipe in _AIC_ONLY:
            out["aic", _AIC_ONLY[pipe]] = us / n_aic
        elif pipe in _AIV_ONLY:
            out["aiv", _AIV_ONLY[pipe]] = us / n_aiv
        elif pipe in _SHARED:
            metric = _SHARED[pipe]
            if rec.core_type != "MIX":
                out[side, metric] = us / n[side]
            elif f"AIC.{pipe}" not in busy and f"AIV.{pipe}" not in busy:
                out["aic", metric] = out["aiv", metric] = us / (n_aic + n_aiv)
    return out
