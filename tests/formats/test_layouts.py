"""Storage formats: ids and names, shape rules, storage shapes, and the logical <-> storage data
transforms, checked against hand-worked cases and a naive element-by-element loop reference
written here from the format definitions (HARDWARE.md section 3), independent of the module."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from ascend_sim import dtypes as D
from ascend_sim.formats import (
    C0Dims, Format, FractalZDims, NZDims, base_format, check_shape, fractal_dims, from_storage,
    get_format, is_fractal, logical_rank_rule, storage_nbytes, storage_shape, to_storage,
)

# Elements per 32-byte block, written out by hand rather than taken from DType.c0.
C0_BY_DTYPE = {"float16": 16, "bfloat16": 16, "float32": 8, "int8": 32, "int32": 8, "int4": 64,
               "bool": 32}
DTYPE_NAMES = list(C0_BY_DTYPE)
VALID_IDS = {"NCHW": 0, "NHWC": 1, "ND": 2, "NC1HWC0": 3, "FRACTAL_Z": 4, "NC1HWC0_C04": 12,
             "HWCN": 16, "NDHWC": 27, "FRACTAL_NZ": 29, "NCDHW": 30, "NDC1HWC0": 32,
             "FRACTAL_Z_3D": 33}
FOUR_D = ["NCHW", "NHWC", "HWCN", "NC1HWC0", "NC1HWC0_C04", "FRACTAL_Z"]
FIVE_D = ["NCDHW", "NDHWC", "NDC1HWC0", "FRACTAL_Z_3D"]
ND_LIKE = ["ND", "FRACTAL_NZ"]


def cdiv(a, b):
    return (a + b - 1) // b


# ------------------------------------------------------------------ naive loop reference

def ref_c0(fmt: str, dtype_name: str) -> int:
    return 4 if fmt == "NC1HWC0_C04" else C0_BY_DTYPE[dtype_name]


def ref_storage_shape(fmt: str, shape: tuple, c0: int) -> tuple:
    if fmt in ("ND", "NCHW", "NCDHW"):
        return tuple(shape)
    if fmt == "NHWC":
        n, c, h, w = shape
        return (n, h, w, c)
    if fmt == "HWCN":
        n, c, h, w = shape
        return (h, w, c, n)
    if fmt == "NDHWC":
        n, c, d, h, w = shape
        return (n, d, h, w, c)
    if fmt in ("NC1HWC0", "NC1HWC0_C04"):
        n, c, h, w = shape
        return (n, cdiv(c, c0), h, w, c0)
    if fmt == "NDC1HWC0":
        n, c, d, h, w = shape
        return (n, d, cdiv(c, c0), h, w, c0)
    if fmt == "FRACTAL_Z":
        co, ci, h, w = shape
        return (cdiv(ci, c0) * h * w, cdiv(co, 16), 16, c0)
    if fmt == "FRACTAL_Z_3D":
        co, ci, d, h, w = shape
        return (d * cdiv(ci, c0) * h * w, cdiv(co, 16), 16, c0)
    if fmt == "FRACTAL_NZ":
        if len(shape) == 1:
            shape = (1, shape[0])
        *b, m, n = shape
        return (*b, cdiv(n, c0), cdiv(m, 16) * 16, c0)
    raise AssertionError(fmt)


def ref_source_index(fmt: str, s: tuple, shape: tuple, c0: int):
    """Logical index that storage index ``s`` holds, or None for a padding element."""
    if fmt in ("ND", "NCHW", "NCDHW"):
        return s
    if fmt == "NHWC":
        n, h, w, c = s
        return (n, c, h, w)
    if fmt == "HWCN":
        h, w, c, n = s
        return (n, c, h, w)
    if fmt == "NDHWC":
        n, d, h, w, c = s
        return (n, c, d, h, w)
    if fmt in ("NC1HWC0", "NC1HWC0_C04"):
        n, c1, h, w, k = s
        c = c1 * c0 + k
        return (n, c, h, w) if c < shape[1] else None
    if fmt == "NDC1HWC0":
        n, d, c1, h, w, k = s
        c = c1 * c0 + k
        return (n, c, d, h, w) if c < shape[1] else None
    if fmt == "FRACTAL_Z":
        co_n, ci_n, H, W = shape
        i, n1, n0, k = s
        c1, rest = divmod(i, H * W)
        h, w = divmod(rest, W)
        co, ci = n1 * 16 + n0, c1 * c0 + k
        return (co, ci, h, w) if co < co_n and ci < ci_n else None
    if fmt == "FRACTAL_Z_3D":
        co_n, ci_n, Dd, H, W = shape
        C1 = cdiv(ci_n, c0)
        i, n1, n0, k = s
        w = i % W
        h = (i // W) % H
        c1 = (i // (W * H)) % C1
        d = i // (W * H * C1)
        co, ci = n1 * 16 + n0, c1 * c0 + k
        return (co, ci, d, h, w) if co < co_n and ci < ci_n else None
    if fmt == "FRACTAL_NZ":
        *b, n1, r, k = s
        M, N = (1, shape[0]) if len(shape) == 1 else shape[-2:]
        col = n1 * c0 + k
        if r >= M or col >= N:
            return None
        return (col,) if len(shape) == 1 else (*b, r, col)
    raise AssertionError(fmt)


def loop_reference(x: np.ndarray, fmt: str, dtype_name: str):
    """Storage array built one element at a time, and a mask of which elements are data."""
    c0 = ref_c0(fmt, dtype_name)
    shape = ref_storage_shape(fmt, x.shape, c0)
    out = np.zeros(shape, dtype=x.dtype)
    is_data = np.zeros(shape, dtype=bool)
    for s in np.ndindex(*shape):
        src = ref_source_index(fmt, s, x.shape, c0)
        if src is not None:
            out[s] = x[src]
            is_data[s] = True
    return out, is_data


# ------------------------------------------------------------------ data helpers

def random_data(shape, dtype_name, seed=0):
    """Arbitrary bit patterns (NaNs with payloads, -0.0, denormals) so that only a bit-exact
    transform passes."""
    rng = np.random.default_rng(seed)
    dt = D.get_dtype(dtype_name)
    n = math.prod(shape)
    if dtype_name == "int4":
        return rng.integers(-8, 8, size=shape).astype(ml_dtypes.int4)
    if dtype_name == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    raw = rng.integers(0, 256, size=n * dt.np_dtype.itemsize, dtype=np.uint8)
    return raw.view(dt.np_dtype).reshape(shape)


def nonzero_data(shape, dtype_name):
    """Every element nonzero, so zero bytes in storage can only be padding."""
    if dtype_name == "bool":
        return np.ones(shape, dtype=bool)
    if dtype_name == "int4":
        return ((np.arange(math.prod(shape)) % 7) + 1).reshape(shape).astype(ml_dtypes.int4)
    dt = D.get_dtype(dtype_name)
    return ((np.arange(math.prod(shape)) % 100) + 1).reshape(shape).astype(dt.np_dtype)


def raw_bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(raw_bytes(a), raw_bytes(b))


# ------------------------------------------------------------------ ids and names

def test_enum_ids_are_the_acl_ones():
    assert {f.name: int(f) for f in Format if f is not Format.UNDEFINED} == VALID_IDS
    assert int(Format.UNDEFINED) == -1


@pytest.mark.parametrize("given, expected", [
    (Format.FRACTAL_NZ, Format.FRACTAL_NZ), (29, Format.FRACTAL_NZ), (np.int64(3), Format.NC1HWC0),
    ("FRACTAL_NZ", Format.FRACTAL_NZ), ("fractal_nz", Format.FRACTAL_NZ), ("nz", Format.FRACTAL_NZ),
    ("NZ", Format.FRACTAL_NZ), ("ACL_FORMAT_FRACTAL_NZ", Format.FRACTAL_NZ),
    ("fractal_z_3d", Format.FRACTAL_Z_3D), ("nc1hwc0_c04", Format.NC1HWC0_C04),
    (" nd ", Format.ND), ("5HD", Format.NC1HWC0), (0, Format.NCHW), (33, Format.FRACTAL_Z_3D),
])
def test_get_format_accepts_enum_ids_and_names(given, expected):
    assert get_format(given) is expected


def _assert_lists_valid(msg: str):
    for name, fid in VALID_IDS.items():
        assert f"{name}={fid}" in msg, (name, msg)


@pytest.mark.parametrize("bad", [5, 99, -1, 35, "FOO", "undefined", Format.UNDEFINED, ""])
def test_get_format_unknown_is_value_error_listing_valid(bad):
    with pytest.raises(ValueError) as info:
        get_format(bad, what="npu_format_cast: acl_format")
    assert "npu_format_cast: acl_format" in str(info.value)
    _assert_lists_valid(str(info.value))


@pytest.mark.parametrize("bad", [2.0, None, [29], True, np.float32(29)])
def test_get_format_wrong_type_is_type_error_listing_valid(bad):
    with pytest.raises(TypeError) as info:
        get_format(bad, what="acl_format")
    assert "acl_format" in str(info.value)
    _assert_lists_valid(str(info.value))


def test_is_fractal_and_base_format():
    fractal = {"NC1HWC0", "NC1HWC0_C04", "FRACTAL_Z", "FRACTAL_NZ", "NDC1HWC0", "FRACTAL_Z_3D"}
    for name in VALID_IDS:
        assert is_fractal(name) == (name in fractal), name
    assert base_format("FRACTAL_NZ") is Format.ND
    assert base_format(Format.HWCN) is Format.NCHW
    assert base_format(33) is Format.NCDHW


# ------------------------------------------------------------------ shape rules

@pytest.mark.parametrize("fmt, shape", [
    ("NC1HWC0", (2, 3, 4)), ("NCHW", (1, 2, 3, 4, 5)), ("NHWC", (4,)), ("HWCN", ()),
    ("NC1HWC0_C04", (1, 2, 3)), ("FRACTAL_Z", (16, 16, 3)), ("NCDHW", (1, 2, 3, 4)),
    ("NDHWC", (1, 2, 3, 4, 5, 6)), ("NDC1HWC0", (1, 16, 2, 2)), ("FRACTAL_Z_3D", (16, 16, 3, 3)),
    ("FRACTAL_NZ", ()),
])
def test_wrong_rank_is_value_error_naming_what_format_and_rule(fmt, shape):
    with pytest.raises(ValueError) as info:
        storage_shape(fmt, shape, "float16", what="my_op: weight")
    msg = str(info.value)
    assert "my_op: weight" in msg and fmt in msg and logical_rank_rule(fmt) in msg
    with pytest.raises(ValueError, match="check: x"):
        check_shape(fmt, shape, what="check: x")
    with pytest.raises(ValueError, match=fmt):
        to_storage(np.zeros(shape, np.float16), fmt, "float16")


def test_rank_rules_say_the_rank():
    assert "4-D" in logical_rank_rule("NC1HWC0") and "NCHW" in logical_rank_rule("NC1HWC0")
    assert "5-D" in logical_rank_rule("FRACTAL_Z_3D")
    assert "(1, N)" in logical_rank_rule("FRACTAL_NZ")


def test_check_shape_rejects_bad_dims():
    assert check_shape("ND", [np.int64(2), 3]) == (2, 3)
    assert check_shape("ND", ()) == ()
    with pytest.raises(ValueError, match="negative"):
        check_shape("NCHW", (1, -2, 3, 4))
    with pytest.raises(TypeError):
        check_shape("ND", (2.0, 3))
    with pytest.raises(TypeError):
        check_shape("ND", 5)


# ------------------------------------------------------------------ storage shapes

def test_documented_nz_example():
    assert storage_shape("FRACTAL_NZ", (8, 100, 30), "float16") == (8, 2, 112, 16)
    assert to_storage(np.ones((8, 100, 30), np.float16), 29, "float16").shape == (8, 2, 112, 16)


@pytest.mark.parametrize("fmt, shape, dtype, expected", [
    ("ND", (3, 5), "float16", (3, 5)),
    ("NCHW", (3, 5, 7, 9), "float32", (3, 5, 7, 9)),
    ("NHWC", (3, 5, 7, 9), "float16", (3, 7, 9, 5)),
    ("HWCN", (3, 5, 7, 9), "float16", (7, 9, 5, 3)),
    ("NCDHW", (2, 3, 4, 5, 6), "int8", (2, 3, 4, 5, 6)),
    ("NDHWC", (2, 3, 4, 5, 6), "int8", (2, 4, 5, 6, 3)),
    ("NC1HWC0", (3, 5, 7, 9), "float16", (3, 1, 7, 9, 16)),
    ("NC1HWC0", (3, 17, 7, 9), "float16", (3, 2, 7, 9, 16)),
    ("NC1HWC0", (3, 17, 7, 9), "float32", (3, 3, 7, 9, 8)),
    ("NC1HWC0", (3, 33, 7, 9), "int8", (3, 2, 7, 9, 32)),
    ("NC1HWC0", (3, 65, 7, 9), "int4", (3, 2, 7, 9, 64)),
    ("NC1HWC0_C04", (3, 5, 7, 9), "float16", (3, 2, 7, 9, 4)),
    ("NC1HWC0_C04", (3, 3, 7, 9), "int8", (3, 1, 7, 9, 4)),
    ("NDC1HWC0", (2, 17, 3, 4, 5), "bfloat16", (2, 3, 2, 4, 5, 16)),
    ("FRACTAL_Z", (33, 5, 3, 3), "float16", (9, 3, 16, 16)),
    ("FRACTAL_Z", (16, 17, 1, 1), "float32", (3, 1, 16, 8)),
    ("FRACTAL_Z", (64, 64, 3, 3), "int8", (18, 4, 16, 32)),
    ("FRACTAL_Z_3D", (33, 17, 2, 3, 3), "float16", (36, 3, 16, 16)),
    ("FRACTAL_NZ", (2, 17, 33), "float16", (2, 3, 32, 16)),
    ("FRACTAL_NZ", (2, 17, 33), "float32", (2, 5, 32, 8)),
    ("FRACTAL_NZ", (2, 17, 33), "int8", (2, 2, 32, 32)),
    ("FRACTAL_NZ", (2, 17, 33), "int4", (2, 1, 32, 64)),
    ("FRACTAL_NZ", (5,), "float16", (1, 16, 16)),
    ("FRACTAL_NZ", (4, 3, 16, 16), "float16", (4, 3, 1, 16, 16)),
    ("FRACTAL_NZ", (0, 7), "float16", (1, 0, 16)),
])
def test_storage_shape_hand_worked(fmt, shape, dtype, expected):
    assert storage_shape(fmt, shape, dtype) == expected
    assert storage_shape(fmt, shape, dtype) == ref_storage_shape(fmt, shape, ref_c0(fmt, dtype))


def test_storage_nbytes():
    assert storage_nbytes("FRACTAL_NZ", (8, 100, 30), "float16") == 8 * 2 * 112 * 16 * 2
    assert storage_nbytes("NC1HWC0", (1, 3, 2, 2), "float32") == 1 * 1 * 2 * 2 * 8 * 4
    assert storage_nbytes("FRACTAL_NZ", (3, 5), "int4") == 16 * 64 // 2
    assert storage_nbytes("ND", (3,), "int4") == 2          # 12 bits round up to 2 bytes
    assert storage_nbytes("ND", (), "float32") == 4
    assert storage_nbytes("NCHW", (1, 1, 1, 0), "float16") == 0


# ------------------------------------------------------------------ hand-worked transforms

def test_nc1hwc0_hand_worked():
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 3, 1, 2)   # C=3 -> one block of C0=8
    expected = np.zeros((1, 1, 1, 2, 8), np.float32)
    expected[0, 0, 0, 0, :3] = [1, 3, 5]   # w = 0: channels 0, 1, 2
    expected[0, 0, 0, 1, :3] = [2, 4, 6]   # w = 1
    assert bit_equal(to_storage(x, "NC1HWC0", "float32"), expected)
    assert bit_equal(from_storage(expected, "NC1HWC0", (1, 3, 1, 2), "float32"), x)


def test_nz_hand_worked():
    x = np.arange(30, dtype=np.float32).reshape(3, 10)          # N0 = 8: N1 = 2, M1 = 1
    expected = np.zeros((2, 16, 8), np.float32)
    expected[0, :3, :] = x[:, 0:8]
    expected[1, :3, :2] = x[:, 8:10]
    s = to_storage(x, "FRACTAL_NZ", "float32")
    assert bit_equal(s, expected)
    assert s[1, 2, 1] == 29 and s[1, 2, 2] == 0 and s[0, 3, 0] == 0


def test_nz_rank1_is_a_row():
    x = np.arange(1, 21, dtype=np.float16)                     # (20,) -> (1, 20): N1 = 2
    s = to_storage(x, "nz", "float16")
    assert s.shape == (2, 16, 16)
    assert list(s[0, 0]) == list(range(1, 17)) and list(s[1, 0, :4]) == [17, 18, 19, 20]
    assert not s[:, 1:].any() and not s[1, 0, 4:].any()
    assert bit_equal(from_storage(s, "nz", (20,), "float16"), x)


def test_fractal_z_hand_worked():
    # weight (Cout=2, Cin=3, H=1, W=2), fp32: storage (C1*H*W = 2, N1 = 1, 16, C0 = 8)
    wgt = np.arange(1, 13, dtype=np.float32).reshape(2, 3, 1, 2)
    expected = np.zeros((2, 1, 16, 8), np.float32)
    for w in range(2):
        expected[w, 0, :2, :3] = wgt[:, :, 0, w]
    assert bit_equal(to_storage(wgt, "FRACTAL_Z", "float32"), expected)
    assert expected[1, 0, 1, 2] == wgt[1, 2, 0, 1] == 12


def test_nhwc_and_hwcn_are_transposes():
    x = random_data((2, 3, 4, 5), "float16")
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    hwcn = np.ascontiguousarray(x.transpose(2, 3, 1, 0))
    assert bit_equal(to_storage(x, "NHWC", "float16"), nhwc)
    assert bit_equal(to_storage(x, "HWCN", "float16"), hwcn)


# ------------------------------------------------------------------ against the loop reference

# C = 65 and Cout = 17 give at least two channel blocks for every dtype (int4 C0 = 64), so a
# transform that ordered C1 wrongly against D, H or W cannot pass by accident.
LOOP_CASES = (
    [(f, s) for f in FOUR_D for s in [(3, 5, 7, 9), (17, 65, 2, 3), (1, 1, 1, 1)]]
    + [(f, s) for f in FIVE_D for s in [(2, 5, 3, 2, 3), (17, 65, 2, 2, 3), (1, 1, 1, 1, 1)]]
    + [(f, s) for f in ND_LIKE for s in [(2, 17, 33), (5,), (1, 1), (2, 2, 16, 9)]]
)


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("fmt, shape", LOOP_CASES)
def test_to_storage_equals_loop_reference(fmt, shape, dtype_name):
    x = random_data(shape, dtype_name, seed=len(shape))
    ref, is_data = loop_reference(x, fmt, dtype_name)
    got = to_storage(x, fmt, dtype_name)
    assert bit_equal(got, ref)
    # padding: every storage element the reference marks as padding is all-zero bits
    pad_bytes = raw_bytes(got[~is_data])
    assert not pad_bytes.any()
    assert int(is_data.sum()) == x.size


# ------------------------------------------------------------------ round trips

ROUND_TRIP_SHAPES = {
    4: [(3, 5, 7, 9), (1, 1, 1, 1), (2, 17, 3, 2), (20, 40, 1, 3), (0, 3, 2, 2)],
    5: [(2, 5, 3, 4, 3), (1, 1, 1, 1, 1), (17, 33, 1, 2, 3), (1, 0, 2, 2, 2)],
    "nd": [(2, 17, 33), (5,), (1, 1), (1, 1, 1, 1), (3, 2, 20, 70), (0, 9), (4, 0)],
}
ROUND_TRIP_CASES = (
    [(f, s) for f in FOUR_D for s in ROUND_TRIP_SHAPES[4]]
    + [(f, s) for f in FIVE_D for s in ROUND_TRIP_SHAPES[5]]
    + [(f, s) for f in ND_LIKE for s in ROUND_TRIP_SHAPES["nd"]]
    + [("ND", ())]
)


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("fmt, shape", ROUND_TRIP_CASES)
def test_round_trip_is_bit_exact(fmt, shape, dtype_name):
    x = random_data(shape, dtype_name, seed=7)
    s = to_storage(x, fmt, dtype_name)
    assert s.shape == storage_shape(fmt, shape, dtype_name)
    assert s.dtype == x.dtype and s.flags.c_contiguous
    assert not np.shares_memory(s, x)
    back = from_storage(s, fmt, shape, dtype_name)
    assert bit_equal(back, x)
    assert not np.shares_memory(back, s)
    # padding: with every element nonzero, exactly the padding positions are zero
    ones = nonzero_data(shape, dtype_name)
    s1 = to_storage(ones, fmt, dtype_name)
    assert int(np.count_nonzero(s1)) == ones.size
    assert storage_nbytes(fmt, shape, dtype_name) == math.ceil(
        s.size * {"int4": 4}.get(dtype_name, 8 * s.dtype.itemsize) / 8)


def test_accepts_dtype_objects_and_numpy_types():
    x = random_data((2, 17, 33), "bfloat16")
    a = to_storage(x, "FRACTAL_NZ", D.bfloat16)
    b = to_storage(x, Format.FRACTAL_NZ, ml_dtypes.bfloat16)
    assert bit_equal(a, b)


def test_dtype_mismatch_and_bad_storage_shape_are_errors():
    x = np.zeros((2, 17, 33), np.float32)
    with pytest.raises(TypeError, match="float16"):
        to_storage(x, "FRACTAL_NZ", "float16")
    s = to_storage(x, "FRACTAL_NZ", "float32")
    with pytest.raises(ValueError, match="storage shape"):
        from_storage(s, "FRACTAL_NZ", (2, 17, 41), "float32")
    with pytest.raises(ValueError, match="storage shape"):
        from_storage(s.reshape(2, 5, 2, 16, 8), "FRACTAL_NZ", (2, 17, 33), "float32")


# ------------------------------------------------------------------ fractal blocking

def test_fractal_dims_nz():
    fd = fractal_dims("FRACTAL_NZ", (8, 100, 30), "float16")
    assert isinstance(fd, NZDims)
    assert (fd.batch, fd.m, fd.n, fd.m0, fd.n0, fd.m1, fd.n1) == (8, 100, 30, 16, 16, 7, 2)
    assert fd.storage_shape == (8, 2, 112, 16)
    assert fd.num_fractals == 8 * 7 * 2 and fd.fractal_elems == 256
    assert fd.column_elems == 112 * 16 and fd.unit_elems == 16 and fd.unit_bytes == 32
    assert fd.pad_numel == 8 * 112 * 32 - 8 * 100 * 30
    assert fd.storage_nbytes == storage_nbytes("FRACTAL_NZ", (8, 100, 30), "float16")
    row = fractal_dims("nz", (5,), "int8")
    assert (row.batch, row.m, row.n, row.n0, row.m1, row.n1) == (1, 1, 5, 32, 1, 1)


def test_fractal_dims_c0_formats():
    fd = fractal_dims("NDC1HWC0", (2, 17, 3, 4, 5), "float16")
    assert isinstance(fd, C0Dims)
    assert (fd.n, fd.d, fd.c, fd.h, fd.w, fd.c0, fd.c1) == (2, 3, 17, 4, 5, 16, 2)
    assert fd.batch == 6 and fd.plane_elems == 4 * 5 * 16 and fd.num_planes == 12
    c04 = fractal_dims("NC1HWC0_C04", (1, 3, 8, 8), "float16")
    assert (c04.c0, c04.c1, c04.d, c04.unit_elems, c04.unit_bytes) == (4, 1, 1, 4, 8)


def test_fractal_dims_fractal_z():
    fd = fractal_dims("FRACTAL_Z", (33, 5, 3, 3), "int8")
    assert isinstance(fd, FractalZDims)
    assert (fd.cout, fd.cin, fd.d, fd.n0, fd.n1, fd.c0, fd.c1, fd.k1) == (33, 5, 1, 16, 3, 32, 1, 9)
    assert fd.storage_shape == (9, 3, 16, 32) and fd.num_fractals == 27
    fd3 = fractal_dims("FRACTAL_Z_3D", (33, 17, 2, 3, 3), "float16")
    assert (fd3.d, fd3.c1, fd3.k1) == (2, 2, 36)


@pytest.mark.parametrize("fmt", ["ND", "NCHW", "NHWC", "HWCN", "NCDHW", "NDHWC"])
def test_fractal_dims_refuses_plain_formats(fmt):
    shape = {"ND": (3, 4)}.get(fmt, (1, 2, 3, 4) if base_format(fmt) is Format.NCHW
                               else (1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="not a fractal format"):
        fractal_dims(fmt, shape, "float16")
