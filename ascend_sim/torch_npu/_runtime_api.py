"""The runtime functions of the front door: tensor creation, float status, deterministic mode,
stream bookkeeping and get_npu_format. They act on runtime state (devices, memory, the overflow
flag), which ops/ may not touch, so they live here.

Semantics follow torch_npu (TensorFactories, FloatStatusKernelNpu, deterministic.py,
NPUCachingAllocator::eraseStream):

* empty_with_format: dtype defaults to float32; ``pin_memory=True`` is an error (only CPU tensors
  can be pinned); a 4-D ND request is stored as NCHW and a 5-D one as NCDHW (torch_npu's base
  formats); FRACTAL_NZ of rank < 2 falls back to ND with a warning, as torch_npu does. The numbers
  of a new tensor are zeros (the device's are whatever was there; zeros keep runs reproducible).
  ``base_addr_aligned_kb`` (0-16) aligns the start address to that many KiB.
* The float status buffer has 8 elements; element 0 is non-zero when an op since the last clear
  turned finite inputs into inf/NaN. npu_get_float_status returns a new int32 tensor on A2/A3/950
  and writes into (and returns) the float32 buffer on 910/310P; ``mode`` must be 0 or 1.
* erase_stream(tensor, stream) takes ``stream`` off the tensor's record_stream list, so its memory
  is reused as soon as it is freed; it does nothing when the tensor was allocated on a stream other
  than the current one.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import dtypes as D
from .. import formats as F
from ..ops.templates.elementwise import Operand, VectorStep, elementwise_plan
from ..runtime import Event, Stream, Task
from ..runtime.memory import NPUOutOfMemoryError
from ..tensor import NPUTensor, TensorMeta
from . import _interop
from ._dispatch import host_function

STATUS_ELEMENTS = 8   # FLOAT_STATUS_OP_DIMS_SIZE
_STATUS_INTO_BUFFER = ("910", "310P")   # chips before 910B write the status into the given buffer


def _size(name: str, size) -> tuple[int, ...]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size,)
    try:
        dims = tuple(size)
    except TypeError:
        raise TypeError(f"{name}: argument 'size' must be a sequence of ints, got {type(size).__name__}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{name}: argument 'size' must hold ints, got {type(d).__name__} {d!r}")
        if d < 0:
            raise ValueError(f"{name}: argument 'size': dimensions must be >= 0, got {dims}")
    return tuple(int(d) for d in dims)


def _device(name: str, sim, device):
    """torch-style device argument -> Device (None = current)."""
    if device is None:
        return sim.current_device
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        return sim.get_device(int(device))
    text = str(device)
    if text in ("npu", "npu:"):
        return sim.current_device
    if text.startswith("npu:") and text[4:].isdigit():
        return sim.get_device(int(text[4:]))
    raise ValueError(f"{name}: argument 'device' must be None, an int, 'npu' or 'npu:<rank>', got {device!r}")


def _queue(sim, dev, name: str, inputs=(), outputs=(), out: NPUTensor | None = None) -> None:
    """Queue the small AIV kernel that reads or writes the 8-element status tensor ``out``."""
    plan = elementwise_plan(name, sim.chip, STATUS_ELEMENTS, [], [Operand("out0", out.dtype.itemsize)],
                            [VectorStep("unary", out.dtype.name)])
    sim.submit(Task(name, "kernel", dev.current_stream, plan=plan, inputs=tuple(inputs), outputs=tuple(outputs),
                    addresses={"out0": out.address}))


@host_function("empty_with_format")
def empty_with_format(sim, dev, a, as_torch):
    name = "empty_with_format"
    shape = _size(name, a.size)
    dtype = D.float32 if a.dtype is None else D.get_dtype(a.dtype, what=f"{name}: argument 'dtype'")
    if a.layout is not None and str(a.layout) not in ("torch.strided", "strided"):
        raise ValueError(f"{name}: argument 'layout' must be None or torch.strided, got {a.layout!r}")
    if a.pin_memory:
        raise ValueError(f"{name}: argument 'pin_memory': only dense CPU tensors can be pinned")
    fmt = F.get_format(a.acl_format, what=f"{name}: argument 'acl_format'")
    if fmt == F.Format.FRACTAL_NZ and len(shape) < 2:
        warnings.warn(f"{name}: FRACTAL_NZ needs rank >= 2; shape {shape} is stored as ND (as torch_npu does)")
        fmt = F.Format.ND
    if fmt == F.Format.ND and len(shape) == 4:
        fmt = F.Format.NCHW
    elif fmt == F.Format.ND and len(shape) == 5:
        fmt = F.Format.NCDHW
    F.check_shape(fmt, shape, what=f"{name}: argument 'size' for acl_format {fmt.name}")
    dev = _device(name, sim, a.device)
    meta = TensorMeta(shape, dtype, fmt)
    kb = a.base_addr_aligned_kb
    if kb is not None:
        if isinstance(kb, bool) or not isinstance(kb, (int, np.integer)) or not 0 <= kb <= 16:
            raise ValueError(f"{name}: argument 'base_addr_aligned_kb' must be an int in [0, 16], got {kb!r}")
    data = None if sim.is_meta else _host_zeros(shape, dtype)
    t = dev.new_tensor(meta, data, align_kb=int(kb) if kb else 0)
    return _interop.from_npu(t, as_torch)


def _host_zeros(shape: tuple, dtype: D.DType) -> np.ndarray:
    """A full-mode tensor's numbers; more than the host can hold is an out-of-memory error (the
    front door names the op), not numpy's MemoryError -- host-swapped memory has no HBM bound."""
    try:
        return np.zeros(shape, dtype=dtype.np_dtype)
    except MemoryError:
        nbytes = TensorMeta(shape, dtype).nbytes
        raise NPUOutOfMemoryError(f"the numbers of shape {shape} ({nbytes} bytes) do not fit the host's memory "
                                  "(full mode keeps them on the host; meta mode has none)") from None


@host_function("empty_with_swapped_memory")
def empty_with_swapped_memory(sim, dev, a, as_torch):
    name = "empty_with_swapped_memory"
    shape = _size(name, a.size)
    dtype = D.float32 if a.dtype is None else D.get_dtype(a.dtype, what=f"{name}: argument 'dtype'")
    dev = _device(name, sim, a.device)
    fmt = {4: F.Format.NCHW, 5: F.Format.NCDHW}.get(len(shape), F.Format.ND)
    data = None if sim.is_meta else _host_zeros(shape, dtype)
    t = dev.new_tensor(TensorMeta(shape, dtype, fmt), data, swapped=True)
    return _interop.from_npu(t, as_torch)


def _tensor_arg(name: str, arg: str, v, dev, sim) -> NPUTensor:
    if isinstance(v, NPUTensor):
        return v
    if isinstance(v, np.ndarray) or _interop.is_torch_tensor(v):
        return _interop.to_npu(v, dev, sim.is_meta)
    raise TypeError(f"{name}: argument '{arg}' must be a tensor, got {type(v).__name__}")


@host_function("get_npu_format")
def get_npu_format(sim, dev, a, as_torch):
    t = _tensor_arg("get_npu_format", "self", a.self, dev, sim)
    return t.format


def _status_tensor(sim, dev, dtype, value: float):
    data = None
    if not sim.is_meta:
        data = np.zeros(STATUS_ELEMENTS, dtype=dtype.np_dtype)
        data[0] = value
    return dev.new_tensor(TensorMeta((STATUS_ELEMENTS,), dtype), data)


def _mode(name: str, mode) -> int:
    if mode not in (0, 1) or isinstance(mode, bool):
        raise ValueError(f"{name}: argument 'mode' must be 0 (ORIGINAL) or 1 (DEBUG), got {mode!r}")
    return int(mode)


@host_function("npu_alloc_float_status")
def npu_alloc_float_status(sim, dev, a, as_torch):
    x = _tensor_arg("npu_alloc_float_status", "input", a.input, dev, sim)
    out = _status_tensor(sim, dev, D.float32, 0.0)
    _queue(sim, dev, "npu_alloc_float_status", [x.meta], [out.meta], out)
    return _interop.from_npu(out, as_torch)


@host_function("npu_get_float_status")
def npu_get_float_status(sim, dev, a, as_torch):
    name = "npu_get_float_status"
    buf = _tensor_arg(name, "self", a.self, dev, sim)
    mode = _mode(name, a.mode)
    flag = 1.0 if dev.float_status else 0.0
    if mode == 0 and sim.chip.family in _STATUS_INTO_BUFFER:
        if buf.shape != (STATUS_ELEMENTS,) or buf.dtype is not D.float32:
            raise ValueError(f"{name}: argument 'self' must be the float32 [8] buffer from "
                             f"npu_alloc_float_status, got {buf.dtype.name} {buf.shape}")
        if buf.data is not None:
            buf.data[0] = flag
        out = buf
    else:
        out = _status_tensor(sim, dev, D.int32, flag)
    _queue(sim, dev, name, [buf.meta], [out.meta], out)
    return _interop.from_npu(out, as_torch)


@host_function("npu_clear_float_status")
def npu_clear_float_status(sim, dev, a, as_torch):
    name = "npu_clear_float_status"
    buf = _tensor_arg(name, "self", a.self, dev, sim)
    _mode(name, a.mode)
    dev.float_status = False
    out = _status_tensor(sim, dev, buf.dtype, 0.0)
    _queue(sim, dev, name, [buf.meta], [out.meta], out)
    return _interop.from_npu(out, as_torch)


def _deterministic(name: str, value: bool):
    def fn(sim, dev, a, as_torch):
        t = a.tensor
        if not (isinstance(t, (NPUTensor, np.ndarray)) or _interop.is_torch_tensor(t)):
            raise TypeError(f"{name}: argument 'tensor' must be a tensor, got {type(t).__name__}")
        sim.deterministic = value
        return t
    return fn


host_function("enable_deterministic_with_backward")(_deterministic("enable_deterministic_with_backward", True))
host_function("disable_deterministic_with_backward")(_deterministic("disable_deterministic_with_backward", False))


@host_function("erase_stream")
def erase_stream(sim, dev, a, as_torch):
    name = "erase_stream"
    t = a.tensor
    if _interop.is_torch_tensor(t):
        t = _interop._torch_to_npu.get(t)
        if t is None:
            raise ValueError(f"{name}: argument 'tensor' was not allocated by the simulator")
    if not isinstance(t, NPUTensor):
        raise TypeError(f"{name}: argument 'tensor' must be a tensor, got {type(a.tensor).__name__}")
    if not isinstance(a.stream, Stream):
        raise TypeError(f"{name}: argument 'stream' must be a Stream, got {type(a.stream).__name__}")
    if t.block is None or t.device is None:
        return None
    if t.block.stream is not t.device.current_stream:
        return None   # torch_npu: only acts when the tensor's stream is the current one
    t.device.erase_stream(t, a.stream)
    return None


@host_function("npu_prefetch")
def npu_prefetch(sim, dev, a, as_torch):
    """Bring [offset, offset + max_size) of ``input`` into L2 on the device's prefetch stream, so
    that it runs while earlier ops run and the op that reads the weight next hits in L2. With a
    ``dependency`` it starts only after the work queued so far on the current stream (graph mode's
    ordering); without, as soon as the host has launched it."""
    name = "npu_prefetch"
    t = _tensor_arg(name, "input", a.input, dev, sim)
    for arg in ("max_size", "offset"):
        v = a[arg]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: argument '{arg}' must be an int, got {type(v).__name__}")
    size = t.nbytes
    if a.max_size <= 0:
        raise ValueError(f"{name}: argument 'max_size' must be greater than zero, got {a.max_size}")
    if a.offset < 0:
        raise ValueError(f"{name}: argument 'offset' must not be smaller than zero, got {a.offset}")
    if a.offset >= size:
        raise ValueError(f"{name}: argument 'offset' ({a.offset}) is out of range of the tensor's {size} bytes")
    if a.dependency is not None:
        _tensor_arg(name, "dependency", a.dependency, dev, sim)
    nbytes = min(int(a.max_size), size - int(a.offset))     # torch_npu clamps to what the tensor holds
    stream = dev.prefetch_stream
    if a.dependency is not None:
        ev = Event()
        ev.record(dev.current_stream)
        ev.wait(stream)
    sim.submit(Task(name, "prefetch", stream, inputs=(t.meta,), byte_range=(t.address + int(a.offset), nbytes),
                    attrs={"bytes": nbytes}))
    return None
