"""Studies without a simulator: the kernels an op would run, under a tiling of your choice.

One interface for every template family (matmul, flash attention, rows, elementwise,
TransData...): :func:`tiling_for` returns the tiling an op picks by itself for given arguments,
:func:`plan_for` the KernelPlans it would run with a user tiling (or a function of the op's own
choice). Nothing is computed, nothing is queued::

    from ascend_sim.ops.study import plan_for, tiling_for
    args = dict(input=((4096, 4096), "float16"), weight=((4096, 4096), "float16"))
    t = tiling_for("npu_linear", "Ascend910B2", **args)          # MatmulTiling(...)
    plans = plan_for("npu_linear", "Ascend910B2", tiling=dataclasses.replace(t, base_n=128), **args)

Inside a simulator, ``sim.tiling(op_name, tiling)`` does the same for real calls. Tensor arguments
may be NPUTensors, TensorMetas, numpy arrays or ``(shape, dtype[, format])`` tuples.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ascend_sim import dtypes as D
from ascend_sim import formats as F
from ascend_sim.tensor import NPUTensor, TensorMeta

from .base import Args, Op, OpSpec, resolve_tiling


def as_tensor(v: Any) -> Any:
    """A study argument as the op sees it: tensors (and lists of them) become NPUTensors."""
    if isinstance(v, NPUTensor):
        return v
    if isinstance(v, TensorMeta):
        return NPUTensor(v.shape, v.dtype, v.format)
    if isinstance(v, np.ndarray):
        return NPUTensor(v.shape, D.get_dtype(v.dtype), data=v)
    if isinstance(v, tuple) and len(v) in (2, 3) and isinstance(v[0], (tuple, list)) and \
            not isinstance(v[1], (tuple, list, NPUTensor)):
        return NPUTensor(tuple(v[0]), v[1], v[2] if len(v) == 3 else F.Format.ND)
    if isinstance(v, list) and v and all(isinstance(x, (NPUTensor, TensorMeta, np.ndarray, tuple)) for x in v):
        return [as_tensor(x) for x in v]
    return v


def _resolve(op_name: str, chip, args: dict) -> tuple[Op, Any, OpSpec]:
    from ascend_sim.hw import get_chip

    from . import get_op
    chip = get_chip(chip) if isinstance(chip, str) else chip
    op = get_op(op_name)
    if op is None:
        raise KeyError(f"{op_name!r} is not an op of ascend-sim")
    a = Args({k: as_tensor(v) for k, v in _bind(op_name, args).items()})
    spec = op.infer(a, chip)
    # value-dependent work with no values: the op's declared assumptions, as in meta mode
    spec = op.resolve_work(spec, a, None, dict(op.assumptions))
    return op, chip, spec


def _bind(op_name: str, args: dict) -> dict:
    """The arguments as the front door binds them: the documented signature's defaults filled in
    and alias keywords mapped (ops of ops/ that are not torch_npu APIs take ``args`` as they are).
    The API table is plain data; it is read here, at call time, only for the signature."""
    from ascend_sim.torch_npu._api_table import API_TABLE
    entry = next((e for e in API_TABLE if e.name == op_name), None)
    return dict(args) if entry is None else entry.bind(**args)


def tiling_for(op_name: str, chip, **args) -> Any:
    """The tiling ``op_name`` picks by itself for these arguments on ``chip`` (None: none)."""
    op, chip, spec = _resolve(op_name, chip, args)
    return op.default_tiling(spec, chip)


def plan_for(op_name: str, chip, tiling: Any = None, *, ranks: tuple | None = None, **args) -> list:
    """The kernels ``op_name`` runs for these arguments on ``chip`` with ``tiling`` (a tiling of
    the op's type, a function of its own choice, or None for the op's own choice). Communicating
    ops take the group's ``ranks``."""
    op, chip, spec = _resolve(op_name, chip, args)
    t = resolve_tiling(op, spec, chip, tiling)
    extra = () if ranks is None else (tuple(ranks),)
    plans = op.plan(spec, chip, t, *extra)
    return [] if plans is None else (list(plans) if isinstance(plans, (list, tuple)) else [plans])
