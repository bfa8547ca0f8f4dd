"""dtypes: naming, ids, rounding (bit-exact against ml_dtypes), int4 packing."""
import ml_dtypes
import numpy as np
import pytest

from ascend_sim import dtypes as D


@pytest.mark.parametrize("spec, expected", [
    ("float16", D.float16), ("fp16", D.float16), ("half", D.float16), (np.float16, D.float16),
    (np.dtype("float32"), D.float32), ("bfloat16", D.bfloat16), ("bf16", D.bfloat16),
    (ml_dtypes.bfloat16, D.bfloat16), (ml_dtypes.int4, D.int4), ("int4", D.int4),
    ("float8_e4m3fn", D.float8_e4m3fn), (ml_dtypes.float8_e5m2, D.float8_e5m2), ("bool", D.bool_),
    (np.bool_, D.bool_), ("int64", D.int64), ("uint8", D.uint8), ("torch.int32", D.int32),
])
def test_get_dtype_accepts_the_usual_spellings(spec, expected):
    assert D.get_dtype(spec) is expected


@pytest.mark.parametrize("i, expected", [(5, D.float16), (6, D.float32), (15, D.bfloat16), (1, D.int8),
                                         (3, D.int32), (11, D.bool_), (24, D.float8_e4m3fn),
                                         (285, D.int4), (257, D.float16), (292, D.float8_e4m3fn)])
def test_integer_dtype_ids_where_apis_take_them(i, expected):
    assert D.get_dtype(i, allow_int_id=True) is expected


def test_integer_ids_are_refused_where_a_dtype_is_expected():
    with pytest.raises(TypeError, match="takes a dtype, not the integer"):
        D.get_dtype(5)


@pytest.mark.parametrize("bad", ["float13", "complex64", object(), 3.5, True])
def test_bad_dtypes_name_the_valid_ones(bad):
    with pytest.raises((TypeError, ValueError)) as e:
        D.get_dtype(bad, what="op: argument 'dtype'")
    assert "op: argument 'dtype'" in str(e.value) and "bfloat16" in str(e.value)


def test_unknown_int_id_lists_ids():
    with pytest.raises(ValueError, match="15=bfloat16"):
        D.get_dtype(99, allow_int_id=True)


def test_c0_and_widths():
    assert [D.float16.c0, D.bfloat16.c0, D.float32.c0, D.int8.c0, D.int4.c0] == [16, 16, 8, 32, 64]
    assert D.int4.nbytes(7) == 4 and D.float16.nbytes(3) == 6


def test_fp16_rounding_is_nearest_even_worked_by_hand():
    eps = 2.0 ** -10                      # fp16 spacing at 1.0
    x = np.array([1 + eps / 2,            # tie -> even (1.0)
                  1 + 3 * eps / 2,        # tie -> even (1 + 2 eps)
                  1 + eps / 2 + 2 ** -20,  # just above the tie -> up
                  65520.0,                # rounds to inf (half-way past the max 65504)
                  65519.0], np.float64)
    got = D.cast(x, D.float16)
    assert got.tolist() == [1.0, 1 + 2 * eps, 1 + eps, np.inf, 65504.0]


def test_bf16_rounding_is_nearest_even_worked_by_hand():
    eps = 2.0 ** -7
    x = np.array([1 + eps / 2, 1 + 3 * eps / 2, 1 + eps / 2 + 2 ** -12], np.float32)
    got = D.cast(x, D.bfloat16).astype(np.float64)
    assert got.tolist() == [1.0, 1 + 2 * eps, 1 + eps]


@pytest.mark.parametrize("dst", [D.float16, D.bfloat16, D.float8_e4m3fn, D.float8_e5m2])
def test_float_casts_are_bit_exact_against_ml_dtypes(dst):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20000) * rng.choice([1e-6, 1, 100, 3e4], 20000)).astype(np.float32)
    got = D.cast(x, dst)
    ref = x.astype(dst.np_dtype)   # ml_dtypes/numpy: IEEE round-to-nearest-even
    assert got.dtype == dst.np_dtype
    assert np.array_equal(got.view(np.uint8), ref.view(np.uint8))


def test_float_to_int_truncates_toward_zero():
    got = D.cast(np.array([0.0, 0.5, -1.0, -1.7, 2.9], np.float32), D.int32)
    assert got.tolist() == [0, 0, -1, -1, 2]


def test_int4_packing_worked_by_hand():
    words = D.pack_int4(np.array([[1, -2, 3, -4, 5, -6, 7, -8]]))
    # element j in bits 4j..4j+3: nibbles 1, e, 3, c, 5, a, 7, 8 from the low end
    assert words.view(np.uint32)[0, 0] == 0x87A5C3E1
    assert words.dtype == np.int32 and words.shape == (1, 1)


def test_int4_pack_unpack_round_trip():
    v = np.random.default_rng(1).integers(-8, 8, size=(5, 64))
    back = D.unpack_int4(D.pack_int4(v))
    assert back.dtype == ml_dtypes.int4 and np.array_equal(back.astype(np.int64), v)


def test_int4_pack_rejects_out_of_range_and_odd_width():
    with pytest.raises(ValueError, match="int4 range"):
        D.pack_int4(np.array([[8, 0, 0, 0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="multiple of 8"):
        D.pack_int4(np.zeros((2, 7), np.int32))
