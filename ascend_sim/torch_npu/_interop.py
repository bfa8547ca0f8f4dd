"""Moving tensors across the front door: numpy arrays, torch tensors and NPUTensors.

* numpy in: the array becomes an NPUTensor on the current device (its HBM is accounted while the
  tensor lives; the host-to-device copy is not timed).
* torch in (when torch is installed): the CPU tensor's memory is shared, bf16 and fp8 included
  (viewed through same-width integers); results come back as torch tensors. A torch tensor that
  came out of the simulator keeps its NPUTensor (format, address) through a weak map, so
  ``get_npu_format(torch_npu.npu_format_cast(t, 29))`` is 29.
* int4 crosses into torch packed 8 per int32 (torch has no int4), as torch_npu passes it.
"""
from __future__ import annotations

import sys
import weakref
from typing import Any

import numpy as np

from .. import dtypes as D
from ..tensor import NPUTensor

class _IdentityWeakMap:
    """torch tensor -> NPUTensor by identity (torch's == is elementwise, so WeakKeyDictionary
    cannot hold tensors); entries go when the torch tensor is collected."""

    def __init__(self):
        self._d: dict[int, tuple[weakref.ref, NPUTensor]] = {}

    def get(self, key: Any) -> NPUTensor | None:
        hit = self._d.get(id(key))
        if hit is None or hit[0]() is not key:
            return None
        return hit[1]

    def __setitem__(self, key: Any, value: NPUTensor) -> None:
        k = id(key)
        self._d[k] = (weakref.ref(key, lambda _r, k=k, d=self._d: d.pop(k, None)), value)


_torch_to_npu = _IdentityWeakMap()

# dtypes that cross as a same-width integer view, because torch.from_numpy cannot take ml_dtypes
_VIEW_AS = {"bfloat16": (np.int16, "int16"), "float8_e4m3fn": (np.uint8, "uint8"),
            "float8_e5m2": (np.uint8, "uint8")}


def torch_module():
    """torch if it is already imported or importable, else None (torch stays optional)."""
    mod = sys.modules.get("torch")
    if mod is not None:
        return mod
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return sys.modules["torch"]


def is_torch_tensor(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "dtype") and \
        "torch" in sys.modules and isinstance(x, sys.modules["torch"].Tensor)


def torch_to_numpy(t: Any) -> np.ndarray:
    torch = sys.modules["torch"]
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    name = str(t.dtype).split(".", 1)[1]
    if name in _VIEW_AS:
        np_int, torch_int = _VIEW_AS[name]
        return t.view(getattr(torch, torch_int)).numpy().view(D.get_dtype(name).np_dtype)
    return t.numpy()


def numpy_to_torch(a: np.ndarray, dtype: D.DType) -> Any:
    torch = sys.modules["torch"]
    if dtype is D.int4:
        return torch.from_numpy(D.pack_int4(a) if a.ndim else D.pack_int4(a.reshape(1, 1)))
    if dtype.name in _VIEW_AS:
        np_int, _ = _VIEW_AS[dtype.name]
        return torch.from_numpy(np.ascontiguousarray(a).view(np_int)).view(getattr(torch, dtype.name))
    return torch.from_numpy(np.ascontiguousarray(a))


def to_npu(x: Any, device: Any, meta: bool) -> NPUTensor:
    """Anything tensor-like -> NPUTensor on ``device`` (an NPUTensor passes through)."""
    if isinstance(x, NPUTensor):
        return x
    if is_torch_tensor(x):
        known = _torch_to_npu.get(x)
        if known is not None:
            return known
        arr = torch_to_numpy(x)
        t = _new(arr, device, meta)
        _torch_to_npu[x] = t
        return t
    if isinstance(x, np.ndarray):
        return _new(x, device, meta)
    raise TypeError(f"expected a tensor (NPUTensor, numpy array or torch tensor), got {type(x).__name__}")


def _new(arr: np.ndarray, device: Any, meta: bool) -> NPUTensor:
    dt = D.get_dtype(arr.dtype, what="tensor dtype")
    from ..tensor import TensorMeta
    m = TensorMeta(tuple(arr.shape), dt)
    if len(m.shape) == 4:
        from ..formats import Format
        m = TensorMeta(m.shape, dt, Format.NCHW)   # torch_npu's base format of a 4-D tensor
    elif len(m.shape) == 5:
        from ..formats import Format
        m = TensorMeta(m.shape, dt, Format.NCDHW)
    from ..tensor import contiguous
    return device.new_tensor(m, None if meta else contiguous(arr))


def from_npu(t: NPUTensor, as_torch: bool) -> Any:
    """An op's output for the caller: the NPUTensor, or a torch tensor sharing its numbers."""
    if not as_torch:
        return t
    if t.data is None:
        raise RuntimeError("a torch tensor cannot be made from a meta-mode tensor (it has no data); "
                           "pass NPUTensors or numpy arrays in meta mode")
    tt = numpy_to_torch(t.data, t.dtype)
    _torch_to_npu[tt] = t
    return tt
