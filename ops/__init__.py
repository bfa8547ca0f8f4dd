"""The torch_npu ops: each an infer + compute + plan (see :mod:`ascend_sim.ops.base`).

``get_op(name)`` returns the op registered under a torch_npu name, or None when it is not built
yet. One op family per module; each module lists its ops in ``OPS``.
"""
from __future__ import annotations

from . import memory
from .base import Args, Op, OpError

_FAMILIES = (memory,)

REGISTRY: dict[str, Op] = {op.name: op for fam in _FAMILIES for op in fam.OPS}


def get_op(name: str) -> Op | None:
    return REGISTRY.get(name)


__all__ = ["Op", "OpError", "Args", "REGISTRY", "get_op"]
