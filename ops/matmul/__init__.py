"""Matmul ops: npu_bmmV2, npu_linear, npu_transpose_batchmatmul, npu_grouped_matmul.

Semantics follow the op-plugin pages (26.1.0) ``(beta)torch_npu-npu_bmmV2``,
``(beta)torch_npu-npu_linear``, ``torch_npu-npu_transpose_batchmatmul`` and
``torch_npu-npu_grouped_matmul``:

* npu_bmmV2(self, mat2, output_sizes): a batched matmul with broadcast batch dims. A non-empty
  ``output_sizes`` (what the op's backward passes) may put 1 on batch axes where the broadcast
  result is larger: those axes are summed, inside the accumulation (torch_npu folds them into K).
  fp16 and fp32 accumulate in fp32; int32 has no cube mode and wraps modulo 2^32.
* npu_linear(input, weight, bias): ``input @ weight.T + bias``; the result has input's dtype
  (int8 results wrap like torch's integer matmul).
* npu_transpose_batchmatmul: ``Y = permute(permute(input, perm_x1) @ permute(weight, perm_x2),
  perm_y)``; with ``scale`` (packed int64 from npu_trans_quant_param) the fp16 product is
  requantised to int8 in shape (M, 1, B*N); ``batch_split_factor`` s > 1 gives (s, M, B*N/s),
  batch b = i*(B/s)+j landing in slab i at columns j*N.. (the TransposeBatchMatMul kernel's layout).
* npu_grouped_matmul: ``y_i = x_i @ w_i`` per group, m-axis (group_type 0), k-axis (2) or no
  grouping (-1), every split_item / group_list / group_list_type form the page documents, with the
  per-group quantisation (per-channel int64 scale via FIXPIPE, per-channel float scale, per-token
  scale, int4 x int4 with per-k-group scales) and fake-quantisation (weight antiquant) variants,
  bias and act_type (ReLU, GELU-tanh, FastGELU, SiLU; per-token scenarios only).

The package is split by concern: :mod:`.checks` and :mod:`.grouped_checks` (each op's rules,
composing into its frozen spec), :mod:`.numerics` (the host numbers), :mod:`.planning` (the
kernels). Shared GEMM pieces live in :mod:`..templates.gemm` and :mod:`..common`.

Timing: the cube template (:mod:`..templates.cube`) builds the GEMM kernels; operands carry
layouts, so sub-views (rows a leading dimension apart, broadcast batches, a group inside a larger
tensor) are addressed directly. A grouped matmul runs all its groups in one cube kernel under the
grouped block scheduler; dtypes the chip's cube cannot multiply (int32 anywhere, fp32 on
310P/910) run on the vector units; vector pre-passes and epilogues (a grouped matmul's weight
antiquant, per-token / bf16 dequant) are AIV kernels before or after the cube kernel, handing data
through the GM workspace -- one workspace per call, shared by its kernels (the front door's
``_workspace``), so the second kernel reads what the first wrote, in L2 when it fits. The output
of npu_bmmV2 is ND, also for fp16 (torch_npu allocates an fp16 result in FRACTAL_NZ when internal
formats are on; ND is what users see with them off, the A2 default since 2.8).

Value-dependent work: a grouped matmul whose group sizes are a device tensor (``group_list``, the
expert counts of a MoE layer) is planned from its sizes, resolved into the spec by the op's
``resolve_work`` (:func:`.grouped_checks.resolve_groups`) before planning:

* full mode reads the real sizes from the tensor's numbers, by ``group_list_type`` (0 cumulative
  ends, 1 counts, 2 [expert, count] pairs), along M (group_type 0) or K (group_type 2). **Full-mode
  times therefore follow the real expert counts** -- an intended change: before, every device
  group_list was planned as an even split, so a skewed routing took the time of a uniform one;
* meta mode (no numbers) plans from an assumption: ``routing="uniform"`` (the default: the rows
  spread evenly, the first ``rows % groups`` groups one row larger -- the old plan) or
  ``group_sizes=(...)``, one int per group, checked against the group count and the grouped
  axis' length like real sizes (set with ``sim.assume("npu_grouped_matmul",
  group_sizes=(...))``; it wins over routing). The report row shows it in
  ``attrs["assumed"]`` (e.g. ``"routing=uniform"``); a meta call with ``group_sizes`` takes the
  time of a full call whose group_list holds those sizes.

A ``List[int]`` group_list is host data: kept in the spec and planned as given in both modes, with
no assumption. The resolved sizes are in the spec (``sizes``, ``slots``), so plans are cached per
distinct routing.

Tiling: ``default_tiling`` is the cube kernel's MatmulTiling (None when the GEMM runs on the
vector units); override it with ``sim.tiling(op_name, ...)`` or
:func:`ascend_sim.ops.study.plan_for`.
"""
from __future__ import annotations

from ..base import Args, Op
from . import numerics, planning
from .checks import bmm_spec, linear_spec, transpose_bmm_spec
from .grouped_checks import ASSUMPTIONS, gmm_spec, resolve_groups


class _MatmulOp(Op):
    """An op of the family, wired to its pieces: ``checks(op, a, chip) -> spec``,
    ``numbers(spec, a, op)``, ``tiling(spec, chip)``, ``kernels(name, spec, chip, tiling)``."""

    checks = numbers = tiling = kernels = None

    def infer(self, a: Args, chip):
        return type(self).checks(self, a, chip)

    def compute(self, spec, a: Args):
        return type(self).numbers(spec, a, self)

    def default_tiling(self, spec, chip):
        return type(self).tiling(spec, chip)

    def plan(self, spec, chip, tiling=None):
        return type(self).kernels(self.name, spec, chip, tiling)


class NpuBmmV2(_MatmulOp):
    name = "npu_bmmV2"
    checks, numbers = staticmethod(bmm_spec), staticmethod(numerics.bmm)
    tiling, kernels = staticmethod(planning.bmm_tiling), staticmethod(planning.bmm_plans)


class NpuLinear(_MatmulOp):
    name = "npu_linear"
    checks, numbers = staticmethod(linear_spec), staticmethod(numerics.linear)
    tiling, kernels = staticmethod(planning.linear_tiling), staticmethod(planning.linear_plans)


class NpuTransposeBatchmatmul(_MatmulOp):
    name = "npu_transpose_batchmatmul"
    checks, numbers = staticmethod(transpose_bmm_spec), staticmethod(numerics.transpose_bmm)
    tiling, kernels = staticmethod(planning.tbmm_tiling), staticmethod(planning.tbmm_plans)


class NpuGroupedMatmul(_MatmulOp):
    name = "npu_grouped_matmul"
    checks, numbers = staticmethod(gmm_spec), staticmethod(numerics.grouped)
    tiling, kernels = staticmethod(planning.grouped_tiling), staticmethod(planning.grouped_plans)
    assumptions = ASSUMPTIONS

    def resolve_work(self, spec, a: Args, outputs, assumptions):
        return resolve_groups(self, spec, a, outputs, assumptions)


OPS = (NpuBmmV2(), NpuLinear(), NpuTransposeBatchmatmul(), NpuGroupedMatmul())
