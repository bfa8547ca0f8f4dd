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
npu_mm_all_reduce_base, whose arguments do not say the group's size, plans with the size of the
group it is given (see :mod:`.all_reduce`).

The package: :mod:`.shared` (limits, chunking, the kernels of one chunk -- each GEMM placed by
operand layouts -- and the checks every fused op makes), :mod:`.all_reduce`,
:mod:`.gather_scatter`.
"""
from .all_reduce import NpuMmAllReduceBase
from .gather_scatter import NpuAllGatherBaseMm, NpuMmReduceScatterBase
from .shared import row_chunks

OPS = (NpuMmAllReduceBase(), NpuAllGatherBaseMm(), NpuMmReduceScatterBase())

__all__ = ["NpuMmAllReduceBase", "NpuAllGatherBaseMm", "NpuMmReduceScatterBase", "row_chunks", "OPS"]
