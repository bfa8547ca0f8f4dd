"""Storage layouts of the Ascend formats: storage shapes, sizes, and the data transforms.

What is modelled
----------------
An NPU tensor has a *logical* shape (what ``t.shape`` says) and a *storage format* that decides how
its elements lie in device memory (HARDWARE.md section 3). This module gives, for every format of
:class:`~ascend_sim.formats.Format`:

* :func:`storage_shape` / :func:`storage_nbytes`: the shape and the bytes of the storage, padding
  included (usable in meta mode, with no data);
* :func:`to_storage` / :func:`from_storage`: the exact element rearrangement between a logical
  numpy array and its storage array (vectorised reshape/transpose, zero padding), bit-exact inverses
  of each other for every dtype, int4 and bool included;
* :func:`fractal_dims`: the blocking of a fractal format (block counts and sizes) from which the
  timing model counts bursts and padded bytes.

Conventions (those of torch_npu)
--------------------------------
The logical shape is always in the base layout: ND for ND and FRACTAL_NZ (rank >= 1, a rank-1
shape (N,) is taken as the row (1, N)); NCHW for NCHW, NHWC, HWCN, NC1HWC0, NC1HWC0_C04 and
FRACTAL_Z; NCDHW for NCDHW, NDHWC, NDC1HWC0 and FRACTAL_Z_3D. ``C0`` is the dtype's elements per
32-byte block (``DType.c0``: 16 for fp16/bf16, 8 fp32, 32 int8, 64 int4), ``ceil`` divisions pad
with zeros. Storage shapes:

==============  =====================================================================
ND/NCHW/NCDHW   the logical shape
NHWC            (N, H, W, C)
HWCN            (H, W, C, N)
NDHWC           (N, D, H, W, C)
NC1HWC0         (N, C1, H, W, C0), C1 = ceil(C / C0)
NC1HWC0_C04     (N, C1, H, W, 4): the same with C0 = 4 (small-channel first conv layer)
NDC1HWC0        (N, D, C1, H, W, C0)
FRACTAL_Z       (C1*H*W, N1, 16, C0) for a weight (Cout, Cin, H, W): N1 = ceil(Cout / 16),
                C1 = ceil(Cin / C0); storage[(c1*H + h)*W + w, n1, n0, c0] =
                weight[n1*16 + n0, c1*C0 + c0, h, w]
FRACTAL_Z_3D    (D*C1*H*W, N1, 16, C0) for (Cout, Cin, D, H, W); first index
                ((d*C1 + c1)*H + h)*W + w
FRACTAL_NZ      (..., N1, M1*16, N0) for (..., M, N): N0 = C0, M1 = ceil(M / 16),
                N1 = ceil(N / N0); the padded matrix is cut into 16 x N0 fractals, stored
                fractal-column by fractal-column (..., N1, M1, 16, N0) and reported with M1
                and 16 merged, as CANN's TransData documents it: ND (8, 100, 30) fp16 ->
                NZ (8, 2, 112, 16)
==============  =====================================================================

Why NZ matters
--------------
The cube unit reads its operands from L0A/L0B as fractals (16 x C0 blocks), and the matrices it
consumes are staged in L1 in fractal form (NZ). A weight kept in ND must be rearranged ND -> NZ on
every load (MTE2's ND2NZ path or an AIV TransData), which moves data in short, often unaligned
bursts when the row length is not a multiple of 256/512 bytes. A weight cast once to FRACTAL_NZ
is copied to L1 as whole 512-byte fractals and contiguous fractal columns, at full bandwidth; the
price is the padding of M and N to whole fractals, which :func:`storage_nbytes` and
:func:`fractal_dims` expose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ascend_sim.dtypes import DType, get_dtype
from ascend_sim.formats.acl_format import FRACTAL_FORMATS, Format, check_shape, get_format

__all__ = [
    "storage_shape", "storage_nbytes", "to_storage", "from_storage", "fractal_dims",
    "FractalDims", "NZDims", "C0Dims", "FractalZDims", "CUBE_M0", "C04",
]

CUBE_M0 = 16   # rows of a cube fractal, and the N0 (Cout block) of FRACTAL_Z: 16 for every dtype
C04 = 4        # the C0 of NC1HWC0_C04, whatever the dtype


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class _Plan:
    """How one (format, logical shape, dtype) lays out: logical -> storage is

    reshape(view) -> zero-pad to ``padded`` -> reshape(split) -> transpose(perm) -> reshape(storage)

    ``view`` differs from the logical shape only for rank-1 NZ (taken as (1, N)); ``split`` cuts
    each padded axis into (outer, inner) blocks where the format blocks it; ``perm`` orders the
    split axes as storage lays them out; ``storage`` merges neighbouring axes of the result where
    the format reports them merged.
    """

    view: tuple[int, ...]
    padded: tuple[int, ...]
    split: tuple[int, ...]
    perm: tuple[int, ...]
    storage: tuple[int, ...]

    @property
    def permuted(self) -> tuple[int, ...]:
        return tuple(self.split[p] for p in self.perm)


def _identity(shape: tuple[int, ...], perm: tuple[int, ...] | None = None) -> _Plan:
    perm = tuple(range(len(shape))) if perm is None else perm
    return _Plan(shape, shape, shape, perm, tuple(shape[p] for p in perm))


def _plan(fmt: Format, shape: tuple[int, ...], dtype: DType) -> _Plan:
    if fmt in (Format.ND, Format.NCHW, Format.NCDHW):
        return _identity(shape)
    if fmt is Format.NHWC:
        return _identity(shape, (0, 2, 3, 1))
    if fmt is Format.HWCN:
        return _identity(shape, (2, 3, 1, 0))
    if fmt is Format.NDHWC:
        return _identity(shape, (0, 2, 3, 4, 1))
    if fmt in (Format.NC1HWC0, Format.NC1HWC0_C04):
        c0 = C04 if fmt is Format.NC1HWC0_C04 else dtype.c0
        n, c, h, w = shape
        c1 = _ceil_div(c, c0)
        # (N, C1, C0, H, W) -> (N, C1, H, W, C0)
        return _Plan(shape, (n, c1 * c0, h, w), (n, c1, c0, h, w), (0, 1, 3, 4, 2),
                     (n, c1, h, w, c0))
    if fmt is Format.NDC1HWC0:
        c0 = dtype.c0
        n, c, d, h, w = shape
        c1 = _ceil_div(c, c0)
        # (N, C1, C0, D, H, W) -> (N, D, C1, H, W, C0)
        return _Plan(shape, (n, c1 * c0, d, h, w), (n, c1, c0, d, h, w), (0, 3, 1, 4, 5, 2),
                     (n, d, c1, h, w, c0))
    if fmt is Format.FRACTAL_Z:
        c0 = dtype.c0
        cout, cin, h, w = shape
        n1, c1 = _ceil_div(cout, CUBE_M0), _ceil_div(cin, c0)
        # (N1, N0, C1, C0, H, W) -> (C1, H, W, N1, N0, C0), first three merged
        return _Plan(shape, (n1 * CUBE_M0, c1 * c0, h, w), (n1, CUBE_M0, c1, c0, h, w),
                     (2, 4, 5, 0, 1, 3), (c1 * h * w, n1, CUBE_M0, c0))
    if fmt is Format.FRACTAL_Z_3D:
        c0 = dtype.c0
        cout, cin, d, h, w = shape
        n1, c1 = _ceil_div(cout, CUBE_M0), _ceil_div(cin, c0)
        # (N1, N0, C1, C0, D, H, W) -> (D, C1, H, W, N1, N0, C0), first four merged
        return _Plan(shape, (n1 * CUBE_M0, c1 * c0, d, h, w), (n1, CUBE_M0, c1, c0, d, h, w),
                     (4, 2, 5, 6, 0, 1, 3), (d * c1 * h * w, n1, CUBE_M0, c0))
    if fmt is Format.FRACTAL_NZ:
        view = (1, shape[0]) if len(shape) == 1 else shape
        *batch, m, n = view
        b = len(batch)
        n0 = dtype.c0
        m1, n1 = _ceil_div(m, CUBE_M0), _ceil_div(n, n0)
        # (..., M1, M0, N1, N0) -> (..., N1, M1, M0, N0), M1 and M0 merged
        perm = tuple(range(b)) + (b + 2, b, b + 1, b + 3)
        return _Plan(view, (*batch, m1 * CUBE_M0, n1 * n0), (*batch, m1, CUBE_M0, n1, n0), perm,
                     (*batch, n1, m1 * CUBE_M0, n0))
    raise AssertionError(f"no layout for {fmt!r}")  # get_format admits only the formats above


def _resolve(fmt: Any, shape: Sequence[int], dtype: Any, what: str):
    fmt = get_format(fmt, what="format")
    dt = get_dtype(dtype, what="dtype")
    shape_t = check_shape(fmt, shape, what=what)
    return fmt, shape_t, dt


def storage_shape(fmt: Any, shape: Sequence[int], dtype: Any, *, what: str = "shape"
                  ) -> tuple[int, ...]:
    """Shape of the storage of a tensor of logical ``shape`` in format ``fmt`` (module table)."""
    fmt, shape_t, dt = _resolve(fmt, shape, dtype, what)
    return _plan(fmt, shape_t, dt).storage


def storage_nbytes(fmt: Any, shape: Sequence[int], dtype: Any, *, what: str = "shape") -> int:
    """Device bytes of the storage, padding included: numel(storage) * bits / 8, rounded up
    (int4 packs two elements per byte)."""
    fmt, shape_t, dt = _resolve(fmt, shape, dtype, what)
    return dt.nbytes(math.prod(_plan(fmt, shape_t, dt).storage))


def _check_array_dtype(arr: np.ndarray, dt: DType, what: str) -> None:
    # No silent cast: a layout change never changes values, so a mismatch is a caller's bug.
    if arr.dtype != dt.np_dtype:
        raise TypeError(f"{what}: array has dtype {arr.dtype} but the tensor's dtype is {dt.name} "
                        f"(host type {dt.np_dtype}); cast it first (ascend_sim.dtypes.cast)")


def to_storage(data: np.ndarray, fmt: Any, dtype: Any, *, what: str = "data") -> np.ndarray:
    """Rearrange a logical array into the storage array of ``fmt`` (shape :func:`storage_shape`).

    Padding elements are zero (all-zero bits). The result is a new C-contiguous array that never
    shares memory with ``data``. ``data.dtype`` must be the host type of ``dtype``.
    """
    data = np.asarray(data)
    fmt, shape_t, dt = _resolve(fmt, data.shape, dtype, what)
    _check_array_dtype(data, dt, what)
    plan = _plan(fmt, shape_t, dt)
    padded = np.zeros(plan.padded, dtype=dt.np_dtype)
    padded[tuple(slice(0, s) for s in plan.view)] = data.reshape(plan.view)
    permuted = np.ascontiguousarray(padded.reshape(plan.split).transpose(plan.perm))
    return permuted.reshape(plan.storage)


def from_storage(storage: np.ndarray, fmt: Any, shape: Sequence[int], dtype: Any, *,
                 what: str = "storage") -> np.ndarray:
    """Recover the logical array of ``shape`` from a storage array of ``fmt``: the exact inverse
    of :func:`to_storage` (padding is dropped). Returns a new C-contiguous array."""
    storage = np.asarray(storage)
    fmt, shape_t, dt = _resolve(fmt, shape, dtype, "shape")
    _check_array_dtype(storage, dt, what)
    plan = _plan(fmt, shape_t, dt)
    if storage.shape != plan.storage:
        raise ValueError(f"{what}: a {fmt.name} tensor of logical shape {shape_t} ({dt.name}) has "
                         f"storage shape {plan.storage}, got an array of shape {storage.shape}")
    inverse = tuple(int(i) for i in np.argsort(plan.perm))
    padded = storage.reshape(plan.permuted).transpose(inverse).reshape(plan.padded)
    return padded[tuple(slice(0, s) for s in plan.view)].reshape(shape_t).copy()


# --------------------------------------------------------------------------------------------
# Fractal blocking, for the timing model


@dataclass(frozen=True)
class FractalDims:
    """Common description of a fractal format's storage.

    Fields: ``format``, ``dtype``, ``logical_shape`` (as given), ``storage_shape``
    (:func:`storage_shape`), ``unit_elems``: elements of the innermost storage axis, the smallest
    run that is always contiguous (N0 for NZ, C0 otherwise; one 32-byte block except for C04).
    """

    format: Format
    dtype: DType
    logical_shape: tuple[int, ...]
    storage_shape: tuple[int, ...]
    unit_elems: int

    @property
    def unit_bytes(self) -> float:
        """Bytes of one innermost unit (32 for every format but NC1HWC0_C04)."""
        return self.unit_elems * self.dtype.bits / 8

    @property
    def logical_numel(self) -> int:
        return math.prod(self.logical_shape)

    @property
    def storage_numel(self) -> int:
        return math.prod(self.storage_shape)

    @property
    def pad_numel(self) -> int:
        """Padding elements the storage carries beyond the logical data."""
        return self.storage_numel - self.logical_numel

    @property
    def storage_nbytes(self) -> int:
        return self.dtype.nbytes(self.storage_numel)


@dataclass(frozen=True)
class NZDims(FractalDims):
    """FRACTAL_NZ: the (M, N) matrix of each of ``batch`` leading indices is padded to
    (m1*m0, n1*n0) and cut into m0 x n0 fractals, stored column of fractals by column.

    ``batch``: product of the leading dims (1 for 1-D and 2-D); ``m``, ``n``: logical rows and
    columns (a 1-D (N,) has m = 1); ``m0`` = 16 fractal rows; ``n0`` = C0 fractal columns (one
    32-byte row); ``m1``, ``n1``: fractals along M and N.
    Contiguity: a fractal is m0*n0 contiguous elements (512 B for 16-bit types); a fractal column
    (fixed batch and n1) is m1*m0*n0 contiguous elements.
    """

    batch: int
    m: int
    n: int
    m0: int
    n0: int
    m1: int
    n1: int

    @property
    def fractal_elems(self) -> int:
        return self.m0 * self.n0

    @property
    def num_fractals(self) -> int:
        return self.batch * self.m1 * self.n1

    @property
    def column_elems(self) -> int:
        """Contiguous elements of one fractal column (all m1 fractals of one n1)."""
        return self.m1 * self.m0 * self.n0


@dataclass(frozen=True)
class C0Dims(FractalDims):
    """NC1HWC0, NC1HWC0_C04 and NDC1HWC0: channels cut into c1 groups of c0, innermost.

    ``n``, ``c``, ``h``, ``w`` and ``d`` (1 for the 4-D formats) are the logical dims; ``c0`` the
    channel block (dtype C0, or 4 for C04); ``c1`` = ceil(c / c0).
    Contiguity: for each (n, d, c1) the storage holds one plane of h*w*c0 contiguous elements;
    ``batch`` = n*d planes per c1.
    """

    n: int
    d: int
    c: int
    h: int
    w: int
    c0: int
    c1: int

    @property
    def batch(self) -> int:
        return self.n * self.d

    @property
    def hw(self) -> int:
        return self.h * self.w

    @property
    def plane_elems(self) -> int:
        """Contiguous elements of one (n, d, c1) plane."""
        return self.h * self.w * self.c0

    @property
    def num_planes(self) -> int:
        return self.n * self.d * self.c1


@dataclass(frozen=True)
class FractalZDims(FractalDims):
    """FRACTAL_Z and FRACTAL_Z_3D (conv weights): a (K, Cout) matrix of n0 x c0 fractals, K
    running over (d, c1, h, w, c0).

    ``cout``, ``cin``, ``d`` (1 for FRACTAL_Z), ``h``, ``w``: logical dims; ``n0`` = 16 output
    channels per fractal, ``n1`` = ceil(cout / 16); ``c0`` = dtype C0 input channels per fractal,
    ``c1`` = ceil(cin / c0); ``k1`` = d*c1*h*w, the first storage dim (fractal rows along K).
    Contiguity: a fractal is n0*c0 contiguous elements; the n1 fractals of one k1 index are
    contiguous (n1*n0*c0 elements).
    """

    cout: int
    cin: int
    d: int
    h: int
    w: int
    n0: int
    n1: int
    c0: int
    c1: int

    @property
    def k1(self) -> int:
        return self.d * self.c1 * self.h * self.w

    @property
    def fractal_elems(self) -> int:
        return self.n0 * self.c0

    @property
    def num_fractals(self) -> int:
        return self.k1 * self.n1


def fractal_dims(fmt: Any, shape: Sequence[int], dtype: Any, *, what: str = "shape"
                 ) -> NZDims | C0Dims | FractalZDims:
    """The blocking of a fractal format for a logical ``shape`` (see the dataclasses' fields).

    ValueError for a format that is not fractal (ND, NCHW, NHWC, HWCN, NCDHW, NDHWC): those are
    plain dense layouts with nothing to describe.
    """
    fmt, shape_t, dt = _resolve(fmt, shape, dtype, what)
    if fmt not in FRACTAL_FORMATS:
        names = ", ".join(f.name for f in sorted(FRACTAL_FORMATS))
        raise ValueError(f"fractal_dims: format {fmt.name} is not a fractal format; fractal "
                         f"formats: {names}")
    storage = _plan(fmt, shape_t, dt).storage
    common = dict(format=fmt, dtype=dt, logical_shape=shape_t, storage_shape=storage,
                  unit_elems=storage[-1])
    if fmt is Format.FRACTAL_NZ:
        *batch, m, n = (1, shape_t[0]) if len(shape_t) == 1 else shape_t
        n0 = dt.c0
        return NZDims(**common, batch=math.prod(batch), m=m, n=n, m0=CUBE_M0, n0=n0,
                      m1=_ceil_div(m, CUBE_M0), n1=_ceil_div(n, n0))
    if fmt in (Format.NC1HWC0, Format.NC1HWC0_C04, Format.NDC1HWC0):
        if fmt is Format.NDC1HWC0:
            n, c, d, h, w = shape_t
        else:
            (n, c, h, w), d = shape_t, 1
        c0 = C04 if fmt is Format.NC1HWC0_C04 else dt.c0
        return C0Dims(**common, n=n, d=d, c=c, h=h, w=w, c0=c0, c1=_ceil_div(c, c0))
    if fmt is Format.FRACTAL_Z_3D:
        cout, cin, d, h, w = shape_t
    else:
        (cout, cin, h, w), d = shape_t, 1
    return FractalZDims(**common, cout=cout, cin=cin, d=d, h=h, w=w, n0=CUBE_M0,
                        n1=_ceil_div(cout, CUBE_M0), c0=dt.c0, c1=_ceil_div(cin, dt.c0))
