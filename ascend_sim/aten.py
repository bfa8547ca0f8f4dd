"""``ascend_sim.aten``: torch's own elementwise ops as they run on the NPU, for the glue between
torch_npu ops in a model (residual adds, gating multiplies). Timed like every op.

>>> out = ascend_sim.aten.add(x, residual)
"""
from __future__ import annotations

from .torch_npu._dispatch import call_internal


def add(self, other, alpha=1):
    """self + alpha * other (same dtype, numpy broadcasting)."""
    return call_internal("aten.add", self=self, other=other, alpha=alpha)


def mul(self, other):
    """self * other (same dtype, numpy broadcasting)."""
    return call_internal("aten.mul", self=self, other=other)


__all__ = ["add", "mul"]
