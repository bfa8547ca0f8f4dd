"""Element types of the simulated NPU, and how users name them.

What is modelled: the dtypes an Ascend AI Core stores and computes in (HARDWARE.md 2.2: C0 sizes,
cube fractals), each with

* its host representation (numpy, or an ml_dtypes type for bfloat16, float8 and int4), in which the
  simulator keeps a tensor's numbers;
* its device width in bits (int4 is 4 bits on the device although numpy holds one per byte), which
  sets bytes moved and the C0 of fractal formats (C0 = one 32-byte block: 16 fp16, 8 fp32, 32 int8,
  64 int4);
* the ids by which torch and torch_npu name it: the ACL (aclDataType) id the CANN runtime uses, and
  the integer ids torch_npu APIs take for ``int dtype`` arguments -- below 256 a c10 ScalarType id
  (what a torch.dtype turns into), from 256 on a torch_npu custom dtype, 256 + the ACL id
  (torch_npu.int4 = 285, torch_npu.float8_e4m3fn = 292...).

Every ``dtype=`` argument of the package goes through :func:`get_dtype`, which accepts a
:class:`DType`, a numpy dtype or type, an ml_dtypes type, a name ("float16", "bf16", "fp32"...),
a torch dtype (when torch is installed) or, where an API takes one, an integer ScalarType id.

Conversions (:func:`cast`) round to nearest even for float targets, exactly as ml_dtypes/numpy do;
float -> integer truncates toward zero and wraps like torch's cast on the NPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "DType", "get_dtype", "all_dtypes", "cast", "pack_int4", "unpack_int4",
    "float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool_",
    "int4", "float8_e4m3fn", "float8_e5m2",
]


@dataclass(frozen=True)
class DType:
    """One element type. Immutable; compare by identity or name."""

    name: str
    np_dtype: np.dtype   # host representation
    bits: int            # width on the device
    kind: str            # "float", "int", "uint", "bool"
    torch_id: int | None  # c10::ScalarType id (torch_npu's integer dtype arguments)
    acl_id: int           # aclDataType id (CANN)
    torch_name: str | None = None  # attribute name on the torch module, when torch has it

    @property
    def itemsize(self) -> float:
        """Bytes per element on the device (0.5 for int4)."""
        return self.bits / 8

    @property
    def c0(self) -> int:
        """Elements in one 32-byte block: the C0 of NC1HWC0 and the N0 of FRACTAL_NZ."""
        return 256 // self.bits

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "uint")

    def nbytes(self, numel: int) -> int:
        """Device bytes of ``numel`` elements (int4 packs two per byte, rounded up)."""
        return (numel * self.bits + 7) // 8

    def __repr__(self) -> str:
        return f"ascend_sim.{self.name}"

    def __str__(self) -> str:
        return self.name


def _dt(name, np_type, bits, kind, torch_id, acl_id, torch_name=None):
    return DType(name, np.dtype(np_type), bits, kind, torch_id, acl_id, torch_name or name)


# ScalarType ids from c10/core/ScalarType.h; ACL ids from CANN's aclDataType (acl_base.h).
float16 = _dt("float16", np.float16, 16, "float", 5, 1)
bfloat16 = _dt("bfloat16", ml_dtypes.bfloat16, 16, "float", 15, 27)
float32 = _dt("float32", np.float32, 32, "float", 6, 0)
float64 = _dt("float64", np.float64, 64, "float", 7, 11)
int8 = _dt("int8", np.int8, 8, "int", 1, 2)
uint8 = _dt("uint8", np.uint8, 8, "uint", 0, 4)
int16 = _dt("int16", np.int16, 16, "int", 2, 6)
int32 = _dt("int32", np.int32, 32, "int", 3, 3)
int64 = _dt("int64", np.int64, 64, "int", 4, 9)
bool_ = _dt("bool", np.bool_, 8, "bool", 11, 12)
# torch has no int4 dtype: torch_npu passes int4 data packed 8 per int32 and names the logical type
# by its custom dtype id torch_npu.int4 = 256 + ACL_INT4 (29) = 285.
int4 = _dt("int4", ml_dtypes.int4, 4, "int", None, 29, torch_name=None)
float8_e5m2 = _dt("float8_e5m2", ml_dtypes.float8_e5m2, 8, "float", 23, 35)
float8_e4m3fn = _dt("float8_e4m3fn", ml_dtypes.float8_e4m3fn, 8, "float", 24, 36)

_ALL = (float16, bfloat16, float32, float64, int8, uint8, int16, int32, int64, bool_, int4,
        float8_e5m2, float8_e4m3fn)

_BY_NAME: dict[str, DType] = {d.name: d for d in _ALL}
_ALIASES = {
    "half": float16, "fp16": float16, "f16": float16,
    "bf16": bfloat16,
    "float": float32, "fp32": float32, "f32": float32,
    "double": float64, "fp64": float64,
    "char": int8, "byte": uint8, "short": int16, "int": int32, "long": int64,
    "bool_": bool_, "boolean": bool_,
    "quint4x2": int4, "int4b": int4,
    "fp8_e4m3": float8_e4m3fn, "float8_e4m3": float8_e4m3fn,
    "fp8_e5m2": float8_e5m2,
}
_BY_NP: dict[np.dtype, DType] = {d.np_dtype: d for d in _ALL}
_BY_TORCH_ID: dict[int, DType] = {d.torch_id: d for d in _ALL if d.torch_id is not None}
NPU_CUSTOM_DTYPE_BASE = 256   # torch_npu custom dtype id = 256 + aclDataType id
_BY_ACL_ID: dict[int, DType] = {d.acl_id: d for d in _ALL}


def all_dtypes() -> tuple[DType, ...]:
    """Every dtype the simulator knows."""
    return _ALL


def _valid_names() -> str:
    return ", ".join(d.name for d in _ALL)


def get_dtype(x: Any, *, what: str = "dtype", allow_int_id: bool = False) -> DType:
    """Resolve anything a user may pass as a dtype to a :class:`DType`.

    ``what`` names the argument in the error message (e.g. "npu_dtype_cast: dtype").
    ``allow_int_id`` accepts integer ScalarType ids, for the torch_npu APIs whose schema types the
    argument as ``int``.
    """
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        key = x.strip().lower()
        if key.startswith("torch."):
            key = key[len("torch."):]
        d = _BY_NAME.get(key) or _ALIASES.get(key)
        if d is None:
            raise TypeError(f"{what}: unknown dtype name {x!r}; valid names: {_valid_names()}")
        return d
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{what}: a bool is not a dtype; valid dtypes: {_valid_names()}")
    if isinstance(x, (int, np.integer)):
        if not allow_int_id:
            raise TypeError(f"{what}: this argument takes a dtype, not the integer {int(x)}; "
                            f"valid dtypes: {_valid_names()}")
        i = int(x)
        d = _BY_TORCH_ID.get(i) if i < NPU_CUSTOM_DTYPE_BASE else _BY_ACL_ID.get(i - NPU_CUSTOM_DTYPE_BASE)
        if d is None:
            ids = ", ".join(f"{k}={v.name}" for k, v in sorted(_BY_TORCH_ID.items()))
            custom = ", ".join(f"{NPU_CUSTOM_DTYPE_BASE + v.acl_id}={v.name}" for v in _ALL)
            raise ValueError(f"{what}: unknown dtype id {i}; valid ScalarType ids: {ids}; "
                             f"torch_npu custom ids: {custom}")
        return d
    torch_name = _torch_dtype_name(x)
    if torch_name is not None:
        d = _BY_NAME.get(torch_name) or _ALIASES.get(torch_name)
        if d is None:
            raise TypeError(f"{what}: torch dtype {x} has no Ascend equivalent here; "
                            f"valid dtypes: {_valid_names()}")
        return d
    try:
        npd = np.dtype(x)
    except TypeError:
        raise TypeError(f"{what}: expected a dtype, got {type(x).__name__} {x!r}; "
                        f"valid dtypes: {_valid_names()}") from None
    d = _BY_NP.get(npd)
    if d is None:
        raise TypeError(f"{what}: numpy dtype {npd} is not an Ascend dtype; valid dtypes: {_valid_names()}")
    return d


def _torch_dtype_name(x: Any) -> str | None:
    """The name of a torch.dtype without importing torch (torch stays optional)."""
    t = type(x)
    if t.__module__ == "torch" and t.__name__ == "dtype":
        return str(x).split(".", 1)[1]
    return None


def cast(a: np.ndarray, dtype: DType) -> np.ndarray:
    """Convert host data to ``dtype`` as the NPU's Cast does.

    Float targets: round to nearest even (one rounding, straight from the source type, as
    ml_dtypes/numpy do). Float -> integer: truncate toward zero, wrapping to the target width.
    Anything -> bool: nonzero.
    """
    a = np.asarray(a)
    if a.dtype == dtype.np_dtype:
        return a.copy()
    with np.errstate(over="ignore", invalid="ignore"):   # overflow shows in the float status flag
        return _cast(a, dtype)


def _cast(a: np.ndarray, dtype: DType) -> np.ndarray:
    if dtype is bool_:
        return a != 0
    src_float = a.dtype.kind == "f" or a.dtype in (bfloat16.np_dtype, float8_e4m3fn.np_dtype,
                                                   float8_e5m2.np_dtype)
    if dtype.is_integer and src_float:
        t = np.trunc(a.astype(np.float64))
        t = np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        return t.astype(np.int64).astype(dtype.np_dtype)
    if dtype.is_integer and a.dtype == np.bool_:
        return a.astype(dtype.np_dtype)
    if dtype.is_integer:
        return a.astype(np.int64).astype(dtype.np_dtype)
    return a.astype(dtype.np_dtype)


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack int4 values (any integer array in [-8, 7], last dim a multiple of 8) into int32,
    eight per word, element j of each group in bits 4j..4j+3 (torch_npu's packing)."""
    v = np.asarray(values)
    if v.shape[-1] % 8:
        raise ValueError(f"pack_int4: the last dimension ({v.shape[-1]}) must be a multiple of 8")
    iv = v.astype(np.int64)
    if iv.size and (iv.min() < -8 or iv.max() > 7):
        raise ValueError("pack_int4: values must lie in the int4 range [-8, 7]")
    nib = (iv & 0xF).astype(np.uint32).reshape(*v.shape[:-1], v.shape[-1] // 8, 8)
    shifts = (np.arange(8, dtype=np.uint32) * 4)
    words = np.bitwise_or.reduce(nib << shifts, axis=-1)
    return words.view(np.int32)


def unpack_int4(words: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_int4`: int32 words -> ml_dtypes.int4 values, 8 per word."""
    w = np.asarray(words)
    if w.dtype != np.int32:
        raise TypeError(f"unpack_int4: expected int32 words, got {w.dtype}")
    u = w.view(np.uint32)[..., None] >> (np.arange(8, dtype=np.uint32) * 4)
    nib = (u & 0xF).astype(np.int8)
    nib = np.where(nib >= 8, nib - 16, nib).astype(np.int8)
    return nib.reshape(*w.shape[:-1], w.shape[-1] * 8).astype(ml_dtypes.int4)
