"""NPUTensor: a tensor on a simulated device.

What is modelled: a tensor as torch_npu shows it -- a logical shape and dtype, plus the storage
format (ND, FRACTAL_NZ, NC1HWC0...) that decides its storage shape, its size in HBM and how the
cores move it. The numbers are kept on the host in the logical layout (what every op computes
on); :meth:`NPUTensor.storage` gives them in the storage layout. In meta mode a tensor has no
numbers at all: shapes, dtypes, formats, addresses and time are still exact.

Invariants: ``data`` is None (meta) or a C-contiguous array of ``dtype.np_dtype`` with ``shape``;
``storage_shape`` and ``nbytes`` always follow from (shape, dtype, format).

This module sits at the bottom of the import ladder: it knows dtypes and formats, not the
runtime. The runtime hands a tensor its device and its memory block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import formats as _formats
from .dtypes import DType, get_dtype


def contiguous(a) -> np.ndarray:
    """A C-contiguous array of the same shape (np.ascontiguousarray turns a 0-d array into 1-d)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else np.array(a, order="C")


@dataclass(frozen=True)
class TensorMeta:
    """What an op's infer step says about an output: shape, dtype, storage format."""

    shape: tuple[int, ...]
    dtype: DType
    format: _formats.Format = _formats.Format.ND

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def storage_shape(self) -> tuple[int, ...]:
        return _formats.storage_shape(self.format, self.shape, self.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor occupies in HBM (storage layout, padding included)."""
        return self.dtype.nbytes(math.prod(self.storage_shape))


class NPUTensor:
    """A tensor on a simulated NPU. Ops take and return these (or torch tensors, see the front door)."""

    __slots__ = ("_meta", "_data", "device", "block", "offset", "_base", "__weakref__")

    def __init__(self, shape, dtype, format=_formats.Format.ND, *, data: np.ndarray | None = None,
                 device: Any = None, block: Any = None):
        dt = get_dtype(dtype)
        fmt = _formats.get_format(format, what="format")
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"NPUTensor: shape {shape} has a negative dimension")
        _formats.check_shape(fmt, shape, what="NPUTensor")
        if data is not None:
            data = contiguous(data)
            if data.shape != shape:
                raise ValueError(f"NPUTensor: data shape {data.shape} does not match shape {shape}")
            if data.dtype != dt.np_dtype:
                raise TypeError(f"NPUTensor: data dtype {data.dtype} does not match {dt.name}")
        self._meta = TensorMeta(shape, dt, fmt)
        self._data = data
        self.device = device
        self.block = block
        self.offset = 0   # bytes from the block's start (aligned allocations)
        self._base = None  # the tensor a view shares storage with (kept alive by the view)

    # ----- metadata -----
    @property
    def meta(self) -> TensorMeta:
        return self._meta

    @property
    def shape(self) -> tuple[int, ...]:
        return self._meta.shape

    @property
    def dtype(self) -> DType:
        return self._meta.dtype

    @property
    def format(self) -> _formats.Format:
        return self._meta.format

    @property
    def npu_format(self) -> int:
        """The ACL format id, as torch_npu.get_npu_format returns it."""
        return int(self._meta.format)

    @property
    def storage_shape(self) -> tuple[int, ...]:
        return self._meta.storage_shape

    @property
    def nbytes(self) -> int:
        return self._meta.nbytes

    @property
    def ndim(self) -> int:
        return len(self._meta.shape)

    @property
    def numel(self) -> int:
        return self._meta.numel

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    @property
    def address(self) -> int | None:
        """Start address in the simulated HBM (None if the tensor is not on a device)."""
        return None if self.block is None else self.block.address + self.offset

    def record_stream(self, stream) -> None:
        """Mark the tensor as used by ``stream`` (torch's Tensor.record_stream): its memory is not
        reused after it is freed until the work queued on ``stream`` by then has run."""
        if self.device is None:
            raise RuntimeError("record_stream: the tensor is not on a device")
        self.device.record_stream(self, stream)

    @property
    def is_meta(self) -> bool:
        return self._data is None

    # ----- numbers -----
    @property
    def data(self) -> np.ndarray | None:
        """The logical-layout numbers (None in meta mode). Writing through it changes the tensor."""
        return self._data

    def numpy(self) -> np.ndarray:
        if self._data is None:
            raise RuntimeError(f"this tensor {self.shape} {self.dtype} has no data: it was made in meta "
                               "mode (Simulator(mode='meta')), which tracks shapes and time only")
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None:
            a = a.astype(dtype)
        return a.copy() if copy else a

    def storage(self) -> np.ndarray:
        """The numbers in the storage layout (e.g. FRACTAL_NZ blocks with zero padding)."""
        return _formats.to_storage(self.numpy(), self.format, self.dtype)

    def view(self, *shape) -> "NPUTensor":
        """The same storage under another shape (torch's Tensor.view): no data moves, no kernel runs.
        Only for row-major (base format) tensors; one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if self.format not in (_formats.Format.ND, _formats.Format.NCHW, _formats.Format.NCDHW):
            raise ValueError(f"view: a {self.format.name} tensor is stored in fractals; cast it to ND first")
        shape = tuple(int(s) for s in shape)
        if shape.count(-1) > 1:
            raise ValueError(f"view: only one dimension can be -1, got {shape}")
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or self.numel % known:
                raise ValueError(f"view: shape {shape} does not fit {self.numel} elements")
            shape = tuple(self.numel // known if s == -1 else s for s in shape)
        if math.prod(shape) != self.numel:
            raise ValueError(f"view: shape {shape} has {math.prod(shape)} elements, the tensor has {self.numel}")
        fmt = {4: _formats.Format.NCHW, 5: _formats.Format.NCDHW}.get(len(shape), _formats.Format.ND) \
            if self.format != _formats.Format.ND or len(self.shape) in (4, 5) else _formats.Format.ND
        data = None if self._data is None else self._data.reshape(shape)
        v = NPUTensor(shape, self.dtype, fmt, data=data, device=self.device, block=self.block)
        v.offset = self.offset
        v._base = self if self._base is None else self._base
        return v

    reshape = view

    def _set_meta(self, meta: TensorMeta) -> None:
        """Used by in-place format changes (npu_format_cast_)."""
        self._meta = meta

    def __repr__(self) -> str:
        where = "" if self.device is None else f", device={self.device}"
        fmt = "" if self.format == _formats.Format.ND else f", format={self.format.name}"
        if self._data is None:
            return f"NPUTensor(shape={self.shape}, dtype={self.dtype.name}{fmt}{where}, meta)"
        body = np.array2string(np.asarray(self._data, dtype=np.float64 if self.dtype.is_float else None),
                               threshold=20, edgeitems=2, precision=4)
        return f"NPUTensor({body}, dtype={self.dtype.name}{fmt}{where})"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]
