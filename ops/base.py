"""The op protocol (v2): an op resolves its call once, then computes and plans from that.

Three functions, kept apart as JAX keeps a primitive's abstract evaluation, implementation and
lowering apart:

* ``infer(a, chip) -> OpSpec`` -- abstract evaluation. Check every argument against the op's
  documented rules *once* and return a frozen, typed :class:`OpSpec`: the outputs' metadata plus
  every parsed option the other two steps need. Runs in meta mode too. Bad input raises
  :class:`OpError` (a ValueError) or TypeError naming the op, the argument and the rule, before
  anything is computed or queued.
* ``compute(spec, a) -> arrays`` -- the numbers, on the host, once per op (numpy/numba, never per
  tile). Skipped in meta mode. One array per output, in the logical layout. ``a`` is still there
  for the input tensors' numbers; every option comes from ``spec``.
* ``plan(spec, chip, tiling) -> KernelPlan | [KernelPlan, ...] | None`` -- lowering: what the
  engine times (isa/). Data, not a callback; it never looks at the numbers (value-dependent work
  arrives in the spec, see below), so meta and full mode take the same time for the same spec.

Beside them:

* ``default_tiling(spec, chip)`` -- the tiling the op picks by itself for its main kernel (a
  frozen dataclass of the template family: MatmulTiling, FlashAttentionTiling, RowTiling,
  ElementwiseTiling, TransDataTiling...), None for ops without one. A user overrides it through
  the simulator (``sim.tiling(op_name, tiling)``) or :func:`ascend_sim.ops.study.plan_for`; the
  op object itself holds nothing mutable, so SPMD ranks (threads) can share it.
* ``resolve_work(spec, a, outputs, assumptions) -> OpSpec`` -- only for ops whose work depends on
  values (how many tokens each expert gets, how many boxes survive). In full mode it reads the
  real values (inputs' and computed outputs' numbers); in meta mode it takes them from the
  op's declared ``assumptions`` (defaults in :attr:`Op.assumptions`, user-set with
  ``sim.assume(op_name, key=value)``) and says so in ``spec.assumed``, which the report shows.

An output is either a new tensor or written into an argument: ``spec.inplace[i]`` names the
argument output *i* is written into (None: a new tensor), so an op can update several tensors
in place (npu_apply_adam writes var, m and v). numpy inputs of an in-place op: the front door
writes the result back into the caller's array too (see ascend_sim.torch_npu), so in-place reads
the same with numpy, torch or NPUTensor arguments.

Ops import dtypes, formats, tensor, hw and isa -- never the runtime or the engine.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

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

    def item(self, ref: str) -> Any:
        """An argument by the name plans and specs use: ``"var"``, or ``"out[1]"`` for the
        second tensor of a tensor-list argument."""
        if ref.endswith("]") and "[" in ref:
            name, idx = ref[:-1].split("[")
            return self[name][int(idx)]
        return self[ref]


@dataclass(frozen=True, kw_only=True)
class OpSpec:
    """A resolved call: what ``infer`` found. Ops subclass it (frozen, keyword-only) with the
    parsed options their compute and plan need; everything in it is hashable, so the front door
    reuses a plan for an identical spec (a model's 80 identical layers plan once).

    outputs     the outputs' metadata, in the op's documented order
    inplace     per output: the argument it is written into (``"var"``; ``"out[1]"`` for an
                element of a tensor-list argument), or None for a new tensor (shorter than
                ``outputs``: the rest are new tensors)
    device_work False when the call only relabels metadata (no kernel, no task)
    attrs       (name, value) pairs worth showing in reports and traces
    assumed     value-dependent ops in meta mode: the assumption the plan was built from
    """

    outputs: tuple[TensorMeta, ...]
    inplace: tuple[str | None, ...] = ()
    device_work: bool = True
    attrs: tuple[tuple[str, Any], ...] = ()
    assumed: str = ""

    def target(self, i: int) -> str | None:
        """The argument output ``i`` is written into (None: a new tensor)."""
        return self.inplace[i] if i < len(self.inplace) else None

    def replace(self, **changes) -> "OpSpec":
        return dataclasses.replace(self, **changes)


class Op(abc.ABC):
    """Base class of every op. See the module docstring for the protocol."""

    name: str = ""
    #: value-dependent ops: the meta-mode assumptions they accept, with their defaults
    assumptions: Mapping[str, Any] = MappingProxyType({})

    @abc.abstractmethod
    def infer(self, a: Args, chip) -> OpSpec:
        """Check the arguments once; return the resolved call."""

    @abc.abstractmethod
    def compute(self, spec: OpSpec, a: Args) -> tuple[np.ndarray, ...]:
        """The outputs' numbers (full mode only)."""

    def default_tiling(self, spec: OpSpec, chip) -> Any:
        """The tiling the op chooses for its main kernel (None: it has none to choose)."""
        return None

    def plan(self, spec: OpSpec, chip, tiling: Any = None):
        """The KernelPlan, or a list of them when the op launches several kernels in order (each
        becomes a task on the stream, under the op's name); None for no device work."""
        return None

    def resolve_work(self, spec: OpSpec, a: Args, outputs: Sequence[np.ndarray] | None,
                     assumptions: Mapping[str, Any]) -> OpSpec:
        """Value-dependent ops: the spec with the work the values (full mode) or the assumptions
        (meta mode, ``outputs`` is None) imply. Other ops return ``spec`` unchanged."""
        return spec

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

    def float_arg(self, a: Args, arg: str) -> float:
        """A float argument (a Python or numpy int or float; not a bool, string or other object)."""
        v = a[arg]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self.name}: argument '{arg}' must be a number, got {type(v).__name__}")
        return float(v)

    def check_assumptions(self, values: Mapping[str, Any]) -> None:
        """A user's ``sim.assume`` for this op names only assumptions the op declares."""
        bad = sorted(set(values) - set(self.assumptions))
        if bad:
            known = ", ".join(sorted(self.assumptions)) or "none (its work does not depend on values)"
            raise ValueError(f"{self.name}: unknown assumption(s) {', '.join(bad)}; it accepts: {known}")


def resolve_tiling(op, spec, chip, override):
    """The tiling a call is planned with: the op's own choice, or the user's override (a tiling
    of the same type, or a function of the op's choice that returns one)."""
    default = op.default_tiling(spec, chip)
    if override is None:
        return default
    if default is None:
        raise TypeError(f"{op.name}: this op has no tiling to override")
    t = override if dataclasses.is_dataclass(override) or not callable(override) else override(default)
    if type(t) is not type(default):
        raise TypeError(f"{op.name}: tiling must be a {type(default).__name__} (the op's tiling type), "
                        f"got {type(t).__name__}")
    return t


class CommOp(Op):
    """An op whose result needs other ranks (the fused matmul + communication ops).

    Protocol, on top of :class:`Op`: ``local(spec, a)`` computes this rank's part (e.g. its
    partial matmul); ``combine(spec, parts, ranks)`` -- run once, by the last rank of the group to
    arrive -- turns every rank's part into every rank's outputs ({rank: tuple of arrays});
    ``plan(spec, chip, tiling, ranks)`` returns a list of KernelPlans, CommSteps and WaitComms
    (``ascend_sim.isa``). ``group_arg`` names the argument holding the HCCL group name;
    ``check_group(spec, ranks)`` may reject a group. The front door runs the rendezvous (ops
    never see the runtime); ``compute`` is not used.
    """

    group_arg = "hcom"

    @abc.abstractmethod
    def local(self, spec: OpSpec, a: Args):
        """This rank's part of the result (full mode only)."""

    @abc.abstractmethod
    def combine(self, spec: OpSpec, parts: dict, ranks: tuple) -> dict:
        """{rank: part} -> {rank: tuple of output arrays}."""

    def check_group(self, spec: OpSpec, ranks: tuple) -> None:
        """Reject a group this op cannot run on (OpError naming the argument)."""

    def compute(self, spec, a):
        raise TypeError(f"{self.name} is a communicating op: the front door calls local/combine")
