"""Detection-family ops: npu_random_choice_with_mask -- an AI CPU task whose work depends on values.

Semantics (op-plugin 26.1.0 page ``(beta)torch_npu-npu_random_choice_with_mask``, schema
``npu_random_choice_with_mask(Tensor x, int count=256, int seed=0, int seed2=0) -> (Tensor,
Tensor)``, the RandomChoiceWithMask kernel it calls): the coordinates of the true elements of a
bool tensor, shuffled; the first ``count`` of them come back as ``y`` (int32, ``(count, x.dim())``)
with ``mask`` (bool, ``(count,)``) saying which rows hold a coordinate. Fewer true elements than
``count``: the rest of ``y`` is zero and ``mask`` False. ``count=0``: every true element is
returned (``y`` is ``(nnz, x.dim())``), so the output shape itself depends on the values.

Choices:

* x has 1 to 5 dimensions (the kernel's limit; the page shows 1-D) and must be bool, as the page
  says; count >= 0.
* The shuffle comes from a numpy generator seeded by ``(seed, seed2)``: deterministic and
  consistent with its outputs, not bit-identical to the device's Philox stream (as for dropout).

Timing: the kernel runs on the AI CPU (it is an AICPU operator in CANN), as typed work items of
the chip's AI CPU model: a compare scan over x, collecting the nnz coordinates, one random draw
and swap per candidate (the "hash" class: a hash-based draw and a random-access swap), and
writing the outputs. How much of that there is depends on nnz, the number of true elements:

* full mode plans from the real nnz;
* meta mode plans from the assumption ``nonzero_ratio`` (the fraction of x that is true; default
  1.0, the upper bound, so an estimate is never optimistic by assumption). Set it with
  ``sim.assume("npu_random_choice_with_mask", nonzero_ratio=0.05)``; report rows show it in
  ``attrs["assumed"]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim.isa import AICpuWork, aicpu_plan
from ascend_sim.tensor import TensorMeta

from .base import Args, Op, OpSpec

MAX_DIMS = 5


@dataclass(frozen=True, kw_only=True)
class RandomChoiceSpec(OpSpec):
    numel: int
    rank: int
    count: int                 # 0: every true element
    seed: int
    seed2: int
    nonzero: int | None = None  # true elements: known after resolve_work


class NpuRandomChoiceWithMask(Op):
    name = "npu_random_choice_with_mask"
    assumptions = MappingProxyType({"nonzero_ratio": 1.0})

    def infer(self, a: Args, chip) -> RandomChoiceSpec:
        x = self.tensor(a, "x")
        self.check_dtype("x", x, (D.bool_,))
        if not 1 <= len(x.shape) <= MAX_DIMS:
            raise self.fail("x", f"must have 1 to {MAX_DIMS} dimensions, got {len(x.shape)}")
        count = self.int_arg(a, "count", lo=0)
        seed, seed2 = self.int_arg(a, "seed"), self.int_arg(a, "seed2")
        numel = math.prod(x.shape)
        rows = count if count else numel          # count=0: at most every element (fixed by resolve_work)
        return RandomChoiceSpec(outputs=self._outputs(rows, len(x.shape)), numel=numel, rank=len(x.shape),
                                count=count, seed=seed, seed2=seed2, attrs=(("count", count),))

    @staticmethod
    def _outputs(rows: int, rank: int) -> tuple[TensorMeta, TensorMeta]:
        return TensorMeta((rows, rank), D.int32), TensorMeta((rows,), D.bool_)

    def compute(self, s: RandomChoiceSpec, a: Args):
        coords = np.argwhere(a.x.data).astype(np.int32)            # (nnz, rank), row-major order
        rng = np.random.default_rng((s.seed & 0xFFFFFFFF, s.seed2 & 0xFFFFFFFF))
        coords = coords[rng.permutation(len(coords))]
        if s.count == 0:
            return coords, np.ones(len(coords), np.bool_)
        y = np.zeros((s.count, s.rank), np.int32)
        keep = min(s.count, len(coords))
        y[:keep] = coords[:keep]
        return y, np.arange(s.count) < keep

    def resolve_work(self, s: RandomChoiceSpec, a: Args, outputs, assumptions) -> RandomChoiceSpec:
        if outputs is not None:
            nnz, assumed = int(np.count_nonzero(a.x.data)), ""
        else:
            ratio = assumptions["nonzero_ratio"]
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
                raise ValueError(f"{self.name}: assumption nonzero_ratio must be a number in [0, 1], got {ratio!r}")
            nnz, assumed = round(ratio * s.numel), f"nonzero_ratio={ratio}"
        outs = s.outputs if s.count else self._outputs(nnz, s.rank)
        return s.replace(nonzero=nnz, outputs=outs, assumed=assumed)

    def plan(self, s: RandomChoiceSpec, chip, tiling=None):
        rows = s.outputs[0].shape[0]
        work = [AICpuWork("compare", s.numel, D.bool_.itemsize),                     # scan x
                AICpuWork("copy", s.nonzero * s.rank, D.int32.itemsize),             # collect coordinates
                AICpuWork("hash", s.nonzero, D.int32.itemsize),                      # draw and swap
                AICpuWork("copy", rows * s.rank, D.int32.itemsize,
                          nbytes=rows * s.rank * D.int32.itemsize + rows * D.bool_.itemsize)]   # write y, mask
        return aicpu_plan(self.name, chip, work, tensors=("x", "out0", "out1"))


OPS = (NpuRandomChoiceWithMask(),)
