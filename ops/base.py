"""The op protocol: an op is three functions, kept apart (the JAX-primitive pattern).

* ``infer(a, chip)``   -- abstract evaluation: check every argument against the op's documented
  rules and return the outputs' :class:`~ascend_sim.tensor.TensorMeta`. Runs in meta mode too.
  Bad input raises :class:`OpError` (a ValueError) or TypeError naming the op, the argument and
  the rule, before anything is computed or queued.
* ``compute(a, outs)`` -- the numbers, on the host, once per op (numpy/numba, never per tile).
  Skipped in meta mode. Returns one array per output, in the logical layout.
* ``plan(a, outs, chip)`` -- lowering: the KernelPlan the engine times (isa/). Data, not a
  callback; it never looks at the numbers, so meta and full mode take the same time.

Subclasses override ``infer`` and ``compute``, and ``plan`` once their kernel exists. ``a`` is an
:class:`Args`: the call's arguments by name, tensors as NPUTensor. An in-place op names the
argument it writes in ``inplace`` (or per call, in ``inplace_target``); the front door writes the
computed numbers into that tensor and returns it. ``device_work(a)`` is False for calls that only
relabel metadata: they queue no task.

Ops import dtypes, formats, tensor, hw and isa -- never the runtime or the engine.
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np

from ascend_sim.dtypes import DType, get_dtype
from ascend_sim.tensor import NPUTensor, TensorMeta


class OpError(ValueError):
    """An argument broke one of the op's documented rules."""


class Args(dict):
    """Bound arguments of one call; attribute access for readability (``a.self``, ``a.dtype``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Op(abc.ABC):
    """Base class of every op. See the module docstring for the protocol."""

    name: str = ""
    inplace: str | None = None       # argument written in place and returned

    @abc.abstractmethod
    def infer(self, a: Args, chip) -> tuple[TensorMeta, ...]:
        """Check the arguments; return the outputs' metadata."""

    @abc.abstractmethod
    def compute(self, a: Args, outs: Sequence[TensorMeta]) -> tuple[np.ndarray, ...]:
        """The outputs' numbers (full mode only)."""

    def plan(self, a: Args, outs: Sequence[TensorMeta], chip):
        """The KernelPlan, or a list of them when the op launches several kernels in order (each
        becomes a task on the stream, under the op's name); None for no device work."""
        return None

    def inplace_target(self, a: Args) -> str | None:
        """The argument this call writes and returns (None: new output tensors)."""
        return self.inplace

    def device_work(self, a: Args) -> bool:
        """False when the call only changes metadata (no kernel runs, no task is queued)."""
        return True

    def attrs(self, a: Args) -> dict:
        """Scalar attributes worth showing in reports and traces."""
        return {}

    # ----- helpers for subclasses: checks that name the op, the argument and the rule -----
    def fail(self, arg: str, rule: str) -> OpError:
        return OpError(f"{self.name}: argument '{arg}': {rule}")

    def tensor(self, a: Args, arg: str, *, optional: bool = False) -> NPUTensor | None:
        t = a.get(arg)
        if t is None and optional:
            return None
        if not isinstance(t, NPUTensor):
            raise TypeError(f"{self.name}: argument '{arg}' must be a tensor, got {type(t).__name__}")
        return t

    def check_dtype(self, arg: str, t: NPUTensor | TensorMeta, allowed: Sequence[DType]) -> None:
        if t.dtype not in allowed:
            raise TypeError(f"{self.name}: argument '{arg}' has dtype {t.dtype.name}; "
                            f"allowed: {', '.join(d.name for d in allowed)}")

    def dtype_arg(self, a: Args, arg: str, *, int_ids: bool = True) -> DType:
        return get_dtype(a[arg], what=f"{self.name}: argument '{arg}'", allow_int_id=int_ids)

    def int_arg(self, a: Args, arg: str, *, lo: int | None = None, hi: int | None = None) -> int:
        v = a[arg]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{self.name}: argument '{arg}' must be an int, got {type(v).__name__}")
        v = int(v)
        if lo is not None and v < lo:
            raise self.fail(arg, f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.fail(arg, f"must be <= {hi}, got {v}")
        return v


class CommOp(Op):
    """An op whose result needs other ranks (the fused matmul + communication ops).

    Protocol, on top of :class:`Op`: ``local(a)`` computes this rank's part (e.g. its partial
    matmul); ``combine(parts, a, ranks)`` -- run once, by the last rank of the group to arrive --
    turns every rank's part into every rank's outputs ({rank: tuple of arrays}); ``plan`` returns
    a list of KernelPlans, CommSteps and WaitComms (``ascend_sim.isa``). ``group_arg`` names the
    argument holding the HCCL group name. The front door runs the rendezvous (ops never see the
    runtime); ``compute`` is not used.
    """

    group_arg = "hcom"

    @abc.abstractmethod
    def local(self, a: Args):
        """This rank's part of the result (full mode only)."""

    @abc.abstractmethod
    def combine(self, parts: dict, a: Args, ranks: tuple) -> dict:
        """{rank: part} -> {rank: tuple of output arrays}."""

    def compute(self, a: Args, outs):
        raise TypeError(f"{self.name} is a communicating op: the front door calls local/combine")
