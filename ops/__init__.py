"""The torch_npu ops: each an infer + compute + plan (see :mod:`ascend_sim.ops.base`).

One op family per module; each module lists its ops in ``OPS``. The registry finds every family
module of this package by itself, so adding a family is adding a module. ``get_op(name)`` returns
the op registered under a torch_npu name, or None when it is not built yet.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Args, CommOp, Op, OpError, OpSpec, resolve_tiling

REGISTRY: dict[str, Op] = {}

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name in ("base", "study") or _m.ispkg and _m.name == "templates":
        continue
    _mod = importlib.import_module(f"{__name__}.{_m.name}")
    for _op in getattr(_mod, "OPS", ()):
        if _op.name in REGISTRY:
            raise RuntimeError(f"op {_op.name} is defined twice ({_mod.__name__} and another family)")
        REGISTRY[_op.name] = _op


def get_op(name: str) -> Op | None:
    return REGISTRY.get(name)


__all__ = ["Op", "CommOp", "OpSpec", "OpError", "Args", "REGISTRY", "get_op", "resolve_tiling"]
