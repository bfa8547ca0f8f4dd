"""The front door's one code path: bind, check the chip, convert, run the op, queue its task.

Every public function of ``ascend_sim.torch_npu`` is made from its :class:`ApiEntry` by
:func:`make_api_function`: it has the documented signature (``help()`` and ``inspect`` show it),
accepts the documented and the schema's keyword names, and calls :func:`call`.

``call`` runs, in order: bind the arguments; check the op's products against the chip; turn
numpy/torch inputs into NPUTensors on the current device; ``infer`` (all checks, before any work);
``compute`` (full mode only); allocate outputs (HBM accounting) or write in place; ``plan`` and
queue a Task on the current stream; update the overflow flag; hand back NPUTensors or, if any
input was a torch tensor, torch tensors.

Empty tensors (a 0 in the shape) are legal, as in torch_npu. A call whose outputs are *all*
empty returns them (new empty tensors, or its in-place targets, relabelled when their metadata
changes) and queues **no task**: aclnn's GetWorkspaceSize sees the empty output and the op
returns before anything is launched, so there is no kernel to time and nothing on the stream.
Its ``compute`` and ``plan`` are not run. A call with an empty *input* but a non-empty output is
a normal call (a K=0 matmul writes zeros of (M, N): its plan has the fill).

Bad input never crashes or hangs. Errors from a call name the op and, where one is to blame,
the argument: ``infer`` checks raise ValueError (OpError) / TypeError; the conversion of an
argument that is not a tensor the simulator can hold (a complex array, an unknown object in a
tensor list) is a TypeError naming the op and the argument; a bad ``hcom`` group on a
communicating op names the op and the argument; an output larger than the device's free HBM
is an NPUOutOfMemoryError naming the op, raised before anything is computed. Plans are per tile
and their size does not grow with the element count, so a huge meta-mode shape costs no more
host time than a small one.
"""
from __future__ import annotations

import threading

from typing import Any, Callable

import numpy as np

from .. import dtypes as D
from .. import ops as _ops
from ..runtime import Task, collective, current_simulator
from ..runtime.memory import NPUOutOfMemoryError
from ..tensor import NPUTensor, TensorMeta, contiguous
from . import _interop
from ._api_table import API_TABLE, ApiEntry

FAMILY_PRODUCT = {"A2": "A2", "A3": "A3", "910": "910", "310P": "310P", "950": "950"}

# Host-side functions (need the runtime, so they live in the front door, not in ops/).
HOST_FUNCTIONS: dict[str, Callable] = {}


def host_function(name: str):
    def deco(fn):
        HOST_FUNCTIONS[name] = fn
        return fn
    return deco


def not_implemented() -> list[str]:
    """Names of the API functions that are not built yet (this list can only shrink)."""
    return sorted(e.name for e in API_TABLE
                  if e.name not in HOST_FUNCTIONS and _ops.get_op(e.name) is None)


def make_api_function(entry: ApiEntry) -> Callable:
    sig = entry.signature

    def api(*args, **kwargs):
        return call(entry, entry.bind(*args, **kwargs))

    api.__name__ = entry.name
    api.__qualname__ = entry.name
    api.__signature__ = sig
    api.__doc__ = (f"torch_npu.{entry.qualname}{sig} -> {entry.returns}\n\n{entry.summary}\n\n"
                   f"Products: {', '.join(entry.products)}. Category: {entry.category}.")
    api.__module__ = "ascend_sim.torch_npu"
    return api


# Every API function, by name (the package exports those without a namespace; ``npu`` the rest).
API_FUNCTIONS: dict[str, Callable] = {e.name: make_api_function(e) for e in API_TABLE}


def check_product(entry: ApiEntry, chip) -> None:
    if FAMILY_PRODUCT.get(chip.family) not in entry.products:
        raise ValueError(f"{entry.name} is not supported on {chip.name} (product family {chip.family}); "
                         f"its documentation lists: {', '.join(entry.products)}")


def call(entry: ApiEntry, arguments: dict[str, Any]) -> Any:
    try:
        return _call(entry, arguments)
    except NPUOutOfMemoryError as e:
        if str(e).startswith(f"{entry.name}:"):
            raise
        raise NPUOutOfMemoryError(f"{entry.name}: {e}") from None


def _call(entry: ApiEntry, arguments: dict[str, Any]) -> Any:
    sim = current_simulator()
    check_product(entry, sim.chip)
    host = HOST_FUNCTIONS.get(entry.name)
    op = None if host is not None else _ops.get_op(entry.name)
    if host is None and op is None:
        raise NotImplementedError(f"torch_npu.{entry.qualname} is not built yet in ascend-sim")
    dev = sim.current_device
    as_torch = any(_interop.is_torch_tensor(v) or
                   (isinstance(v, (list, tuple)) and any(_interop.is_torch_tensor(x) for x in v))
                   for v in arguments.values())
    if host is not None:
        for k, v in arguments.items():
            _check_host_arg(entry.name, k, v)
        try:
            return host(sim, dev, _ops.Args(arguments), as_torch)
        except (ValueError, TypeError) as e:
            if str(e).startswith(f"{entry.name}") or type(e) not in (ValueError, TypeError):
                raise
            raise type(e)(f"{entry.name}: {e}") from None      # a runtime helper's error, named
    a = _ops.Args({k: _convert_arg(entry.name, k, v, dev, sim.is_meta) for k, v in arguments.items()})
    if isinstance(op, _ops.CommOp):
        outputs = run_comm_op(sim, dev, op, a)
    else:
        outputs = run_op(sim, dev, op, a)
        _write_back(arguments, a, outputs)
    return _package(entry, outputs, as_torch)


def _write_back(originals: dict, a: _ops.Args, outputs) -> None:
    """In-place on a host array: an argument given as a numpy array (or torch tensor) that the op
    wrote in place gets the new numbers too, so ``torch_npu.one_(x)`` changes ``x`` whichever
    kind of tensor ``x`` is. When the op changed its shape or dtype (a format relabel), the host
    array cannot hold it: the returned tensor is the result."""
    for k, orig in originals.items():
        items = zip(orig, a.get(k)) if isinstance(orig, (list, tuple)) and isinstance(a.get(k), (list, tuple)) \
            else ((orig, a.get(k)),)
        for host, t in items:
            if isinstance(t, NPUTensor) and t is not host and t.data is not None and any(t is o for o in outputs):
                _copy_to_host(host, t)


def _copy_to_host(host, t: NPUTensor) -> None:
    if isinstance(host, np.ndarray):
        if host.flags.writeable and host.shape == t.data.shape and host.dtype == t.data.dtype:
            host[...] = t.data
    elif _interop.is_torch_tensor(host) and tuple(host.shape) == t.data.shape:
        src = _interop.numpy_to_torch(t.data, t.dtype)
        if src.dtype == host.dtype:
            host.copy_(src)


def call_internal(name: str, **arguments) -> Any:
    """Run an op of ops/ that is not a torch_npu API (e.g. aten.add) through the same path."""
    sim = current_simulator()
    op = _ops.get_op(name)
    if op is None:
        raise KeyError(f"{name} is not an op of ascend-sim; internal ops: "
                       f"{', '.join(n for n in _ops.REGISTRY if '.' in n)}")
    dev = sim.current_device
    as_torch = any(_interop.is_torch_tensor(v) for v in arguments.values())
    a = _ops.Args({k: _convert(v, dev, sim.is_meta) for k, v in arguments.items()})
    outputs = run_op(sim, dev, op, a)
    return _interop.from_npu(outputs[0], as_torch) if len(outputs) == 1 else \
        tuple(_interop.from_npu(t, as_torch) for t in outputs)


def _tensor_like(x: Any) -> bool:
    return isinstance(x, (np.ndarray, NPUTensor)) or _interop.is_torch_tensor(x)


def _convert(v: Any, dev, meta: bool) -> Any:
    """numpy arrays and torch tensors -> NPUTensors; a list/tuple holding any of them has those
    elements converted (None and other items stay, for the op's checks to name)."""
    if isinstance(v, NPUTensor):
        return v
    if isinstance(v, np.ndarray) or _interop.is_torch_tensor(v):
        return _interop.to_npu(v, dev, meta)
    if isinstance(v, (list, tuple)) and v and any(_tensor_like(x) for x in v):
        return type(v)(_interop.to_npu(x, dev, meta) if _tensor_like(x) else x for x in v)
    return v


def _convert_arg(op_name: str, arg: str, v: Any, dev, meta: bool) -> Any:
    """:func:`_convert`, with a conversion error (a complex or object array, a dtype no Ascend
    tensor has) naming the op and the argument."""
    try:
        return _convert(v, dev, meta)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{op_name}: argument '{arg}': {e}") from None


def _check_host_arg(op_name: str, arg: str, v: Any) -> None:
    """A host function's numpy/torch argument (or list element) has a dtype an Ascend tensor can
    hold; else a TypeError naming the op and the argument (host functions convert by themselves)."""
    items = v if isinstance(v, (list, tuple)) else (v,)
    for x in items:
        if isinstance(x, np.ndarray):
            try:
                D.get_dtype(x.dtype, what="tensor dtype")
            except (TypeError, ValueError) as e:
                raise TypeError(f"{op_name}: argument '{arg}': {e}") from None


def _all_empty(metas) -> bool:
    return bool(metas) and all(m.numel == 0 for m in metas)


def _check_fits(dev, op_name: str, spec) -> None:
    """New outputs that cannot fit the device's HBM even with every cached block released fail
    now, before any host work (a huge full-mode output would otherwise be computed first)."""
    alloc = getattr(dev, "allocator", None)
    if alloc is None:
        return
    need = sum(alloc.round_size(m.nbytes) for i, m in enumerate(spec.outputs) if spec.target(i) is None)
    free = alloc.capacity - alloc.allocated_bytes
    if need > free:
        raise NPUOutOfMemoryError(
            f"{op_name}: NPU out of memory on {alloc.name}: its outputs need {need} B "
            f"({need / 2**30:.2f} GiB); capacity {alloc.capacity} B, {alloc.allocated_bytes} B allocated by tensors, "
            f"{free} B at most free")


def run_op(sim, dev, op, a: _ops.Args) -> tuple[NPUTensor, ...]:
    """infer -> compute -> resolve value-dependent work -> allocate/write -> plan -> queue.
    Returns the output tensors."""
    spec = op.infer(a, sim.chip)
    metas = spec.outputs
    _check_fits(dev, op.name, spec)
    if _all_empty(metas):
        # aclnn returns early for empty outputs: no compute, no kernel, no task (module docstring)
        datas = None if sim.is_meta else tuple(np.zeros(m.shape, m.dtype.np_dtype) for m in metas)
        return _outputs(dev, spec, a, datas)
    relabel_only = not spec.device_work and all(spec.target(i) for i in range(len(metas)))
    datas = None if sim.is_meta or relabel_only else tuple(op.compute(spec, a))
    if spec.device_work:
        spec = op.resolve_work(spec, a, datas, sim.assumptions(op.name) if sim.is_meta else {})
    outputs = _outputs(dev, spec, a, datas)
    if spec.device_work:
        plans = plans_for(sim, op, spec)
        if plans is None or not isinstance(plans, (list, tuple)):
            plans = [plans]
        _submit_kernels(sim, dev, op.name, a, spec.outputs, outputs, plans, _spec_attrs(spec))
    if datas is not None and not dev.float_status:
        dev.float_status = overflowed([v for v in a.values() if isinstance(v, NPUTensor)], datas)
    return outputs


def _spec_attrs(spec) -> dict:
    attrs = dict(spec.attrs)
    if spec.assumed:
        attrs["assumed"] = spec.assumed
    return attrs


def _outputs(dev, spec, a: _ops.Args, datas) -> tuple[NPUTensor, ...]:
    """Each output: a new tensor, or the argument it is written into (relabelled or reallocated
    when its metadata changes)."""
    outs = []
    for i, m in enumerate(spec.outputs):
        d = None if datas is None else datas[i]
        arg = spec.target(i)
        if arg is None:
            outs.append(dev.new_tensor(m, None if d is None else contiguous(d)))
            continue
        outs.append(_write_into(dev, a.item(arg), m, d))
    return tuple(outs)


def _write_into(dev, target: NPUTensor, meta: TensorMeta, data) -> NPUTensor:
    if meta != target.meta:
        if meta.nbytes == target.meta.nbytes:
            target._set_meta(meta)       # same storage size: relabel in place
        else:
            dev.reallocate(target, meta)
    if data is not None:
        target._data = contiguous(data) if target.data is None or \
            target.data.shape != data.shape else _write(target.data, data)
    return target


# Plans are data that depend on the op's spec (its resolved call, including the values of small
# integer tensors that steer the plan, such as group lists), the chip and the tiling override:
# identical specs get the same KernelPlan object, so a model's 80 identical layers build each plan
# once and the engine can recognise a kernel it has simulated before.
_PLAN_CACHE: dict = {}
_PLAN_CACHE_MAX = 4096
# SPMD ranks run in threads and meet the same specs together: the first builds the plan, the
# others wait for it instead of building it again
_PLAN_BUILDING: dict = {}
_PLAN_LOCK = threading.Lock()


def plans_for(sim, op, spec, extra=(), plan_args=()):
    """The op's plans for ``spec`` on the simulator's chip under its tiling override; identical
    specs (a model's identical layers) share one plan, so the engine can recognise a kernel it has
    simulated before."""
    override = sim.tiling_override(op.name)
    try:
        key = (op.name, id(sim.chip), spec, override, extra)
        hash(key)
    except TypeError:
        key = None
    def build():
        return op.plan(spec, sim.chip, _ops.resolve_tiling(op, spec, sim.chip, override), *plan_args)

    if key is None:
        return build()
    hit = _PLAN_CACHE.get(key)
    if hit is not None:
        return hit[0]
    while True:
        with _PLAN_LOCK:
            hit = _PLAN_CACHE.get(key)
            if hit is not None:
                return hit[0]
            building = _PLAN_BUILDING.get(key)
            if building is None:        # this rank builds it
                building = _PLAN_BUILDING[key] = threading.Event()
                break
        building.wait()                 # another rank is building it (if that fails, this one tries)
    try:
        plans = build()
        with _PLAN_LOCK:
            if len(_PLAN_CACHE) >= _PLAN_CACHE_MAX:
                _PLAN_CACHE.pop(next(iter(_PLAN_CACHE)))
            _PLAN_CACHE[key] = (plans, sim.chip)
        return plans
    finally:
        with _PLAN_LOCK:
            del _PLAN_BUILDING[key]
        building.set()


def _workspace(dev, plans):
    """One GM scratch area per call, shared by its kernels (one hands data to the next through
    it); the tasks hold it until they have run."""
    ws_bytes = max([p.workspace_bytes for p in plans if p is not None and hasattr(p, "workspace_bytes")] or [0])
    return dev.new_tensor(TensorMeta((int(ws_bytes),), D.uint8)) if ws_bytes else None


def _submit_kernels(sim, dev, op_name: str, a: _ops.Args, metas, outputs, plans, attrs: dict, ws="new",
                    host_launch: bool = True) -> list:
    """Queue an op's kernels on the current stream; returns their tasks. ``host_launch=False``: a
    later part of a fused op, launched with its first."""
    inputs = tuple(v.meta for v in a.values() if isinstance(v, NPUTensor))
    addrs = addresses(a, outputs)
    if ws == "new":
        ws = _workspace(dev, plans)
    tasks = []
    for k, plan in enumerate(plans):
        task_addrs, task_attrs = dict(addrs), dict(attrs)
        if ws is not None:
            task_addrs["workspace"] = ws.address
        if len(plans) > 1:
            task_attrs["kernel"] = plan.name if plan is not None else f"part{k}"
        tasks.append(sim.submit(Task(op_name, "kernel" if plan is not None else "host", dev.current_stream,
                                     plan=plan, inputs=inputs, outputs=metas, attrs=task_attrs, addresses=task_addrs,
                                     workspace=ws, host_launch=host_launch)))
    return tasks


def run_comm_op(sim, dev, op: "_ops.CommOp", a: _ops.Args) -> tuple[NPUTensor, ...]:
    """A communicating op: infer, this rank's part, the rendezvous that combines every rank's
    parts, then its kernels on the current stream and its collectives on the comm stream, joined
    by events so chunks of compute and communication pipeline (the runtime's collective service,
    as ``ascend_sim.distributed`` uses it)."""
    from ..isa import CommStep

    spec = op.infer(a, sim.chip)
    metas = spec.outputs
    try:
        group = sim.world.group(a.get(op.group_arg))
    except (TypeError, ValueError) as e:
        raise type(e)(f"{op.name}: argument '{op.group_arg}': {e}") from None
    if dev.index not in group.ranks:
        raise ValueError(f"{op.name}: rank {dev.index} is not in the group {group.name!r} ({list(group.ranks)})")
    op.check_group(spec, group.ranks)
    items = list(plans_for(sim, op, spec, extra=(group.name, group.ranks), plan_args=(group.ranks,)) or [])
    attrs = _spec_attrs(spec)

    def combine(parts):
        return op.combine(spec, parts, group.ranks)

    steps = [it for it in items if isinstance(it, CommStep)]
    tensors = tuple((k, v.shape, v.dtype.name) for k, v in a.items() if isinstance(v, NPUTensor))
    part = None if sim.is_meta else op.local(spec, a)
    mine, calls = collective.meet(sim, group, op.name, (tensors,), part, combine, steps)
    outputs = tuple(dev.new_tensor(m, None if mine is None else contiguous(mine[i]))
                    for i, m in enumerate(metas))
    ws = _workspace(dev, items)

    def kernel(plan, host_launch: bool) -> list:
        return _submit_kernels(sim, dev, op.name, a, metas, outputs, [plan], attrs, ws=ws, host_launch=host_launch)

    collective.queue(sim, items, calls, kernel=kernel, inputs=metas, attrs={"op": op.name})
    return outputs


def addresses(a: _ops.Args, outputs) -> dict[str, int]:
    """HBM addresses of a call's tensors by the names plans use: argument names, ``name[i]`` for
    tensor lists, ``out0``, ``out1``... for outputs."""
    out: dict[str, int] = {}
    for k, v in a.items():
        if isinstance(v, NPUTensor):
            out[k] = v.address
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                if isinstance(x, NPUTensor):
                    out[f"{k}[{i}]"] = x.address
    for i, t in enumerate(outputs):
        out[f"out{i}"] = t.address
    return out


def _write(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    dst[...] = src
    return dst


def overflowed(inputs: list[NPUTensor], outputs) -> bool:
    """The hardware flag: an op turned finite float inputs into inf/NaN."""
    if not any(_nonfinite(o) for o in outputs):
        return False
    return not any(t.data is not None and _nonfinite(t.data) for t in inputs)


_LOW_FLOATS = {D.bfloat16.np_dtype, D.float8_e4m3fn.np_dtype, D.float8_e5m2.np_dtype}


def _nonfinite(a: np.ndarray) -> bool:
    if not isinstance(a, np.ndarray) or a.size == 0:
        return False
    if a.dtype.kind == "f":
        return not np.isfinite(a).all()
    if a.dtype in _LOW_FLOATS:
        return not np.isfinite(a.astype(np.float32)).all()
    return False


def _package(entry: ApiEntry, outputs: tuple[NPUTensor, ...], as_torch: bool) -> Any:
    kinds = [k.strip() for k in entry.returns[len("tuple["):-1].split(",")] if entry.returns.startswith("tuple[") \
        else [entry.returns]
    # outputs the API documents as Python ints (e.g. npu_fusion_attention's seed, offset, numels)
    outs = tuple(int(t.data.reshape(-1)[0]) if i < len(kinds) and kinds[i] == "int" and t.data is not None
                 else _interop.from_npu(t, as_torch) for i, t in enumerate(outputs))
    if entry.returns == "None":
        return None
    if entry.returns.startswith("list"):
        return list(outs)
    if entry.returns.startswith("tuple"):
        return outs
    return outs[0]
