"""npu_trans_quant_param, npu_anti_quant, npu_convert_weight_to_int4pack: bit layouts worked by hand
from the op-plugin pages, numbers against float64/int64 references, and every documented rule."""
import struct

import ml_dtypes
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.dtypes import pack_int4, unpack_int4
from ascend_sim.ops import OpError

FLAG = 1 << 46


@pytest.fixture
def sim():
    with Simulator("Ascend910B2", trace="ops") as s:
        yield s


def f32_bits(v: float) -> int:
    return struct.unpack("<I", struct.pack("<f", v))[0]


def u64(words) -> list[int]:
    return [int(w) & (2 ** 64 - 1) for w in np.asarray(words).ravel()]


# ----- npu_trans_quant_param -----
def test_scale_bits_truncated_to_fp19_with_bit_46(sim):
    scale = np.array([1.0, 0.1, -3.3], np.float32)
    out = torch_npu.npu_trans_quant_param(scale).numpy()
    assert out.dtype == np.int64 and out.shape == (3,)
    assert u64(out)[0] == 0x3F800000 | FLAG                       # 1.0 has no low mantissa bits
    for w, v in zip(u64(out), scale):
        assert w == (f32_bits(float(v)) & 0xFFFFE000) | FLAG      # the page's formula, by hand
        assert w & 0x1FFF == 0 and (w >> 32) == 1 << 14           # nothing above bit 31 but bit 46


def test_round_mode_1_rounds_the_mantissa_to_nearest_even():
    one = f32_bits(1.0)
    cases = {
        one | 0x1000: one,                    # exactly half an FP19 ulp, kept mantissa even: down
        one | 0x3000: one + 0x4000,           # half an ulp above an odd kept mantissa: up to even
        one | 0x1001: one + 0x2000,           # just above half: up
        one | 0x0FFF: one,                    # just below half: down
        0x3FFFF000: 0x40000000,               # mantissa all ones + half: carries into the exponent
        0x7F7FF000: 0x7F800000,               # largest finite rounds to infinity
        0x00001000: 0x00000000,               # zero exponent flushes to zero
    }
    bits = np.array(list(cases), np.uint32)
    with Simulator("Ascend910B2"):
        out = torch_npu.npu_trans_quant_param(bits.view(np.float32), round_mode=1).numpy()
        trunc = torch_npu.npu_trans_quant_param(bits.view(np.float32), round_mode=0).numpy()
    assert [w & 0xFFFFFFFF for w in u64(out)] == list(cases.values())
    assert [w & 0xFFFFFFFF for w in u64(trunc)] == [b & 0xFFFFE000 for b in cases]


def test_offset_rounded_half_even_clamped_in_bits_37_to_45(sim):
    scale = np.array([2.0], np.float32)
    offset = np.array([-2.0, 2.5, 3.5, 300.0, -300.0, 0.4], np.float32)
    out = u64(torch_npu.npu_trans_quant_param(scale, offset).numpy())   # scale (1,) broadcasts to (6,)
    want_off = [-2, 2, 4, 255, -256, 0]
    for w, o in zip(out, want_off):
        assert w & 0xFFFFFFFF == f32_bits(2.0) and (w >> 46) & 1 == 1
        assert (w >> 37) & 0x1FF == o & 0x1FF
    assert out[0] == f32_bits(2.0) | FLAG | (0x1FE << 37)                # -2 in 9-bit two's complement


def test_documented_example_words_decode_to_plausible_scales(sim):
    # the page's printed words: scale bits low, offset in 37..45, bit 46 set; re-packing gives them back
    words = np.array([70507248869376, 70509369614336, 140463653937152, 70369813069824], np.int64)
    from ascend_sim.ops.common import quant_param_offset, quant_param_scale
    s, o = quant_param_scale(words), quant_param_offset(words)
    assert o.tolist() == [1.0, 1.0, -2.0, 0.0] and all(abs(v) < 4 for v in s)
    again = torch_npu.npu_trans_quant_param(s, o, round_mode=1).numpy()
    assert again.tolist() == words.tolist()


def test_2d_scale_keeps_its_shape(sim):
    s = np.full((1, 5), 0.5, np.float32)
    out = torch_npu.npu_trans_quant_param(s, np.ones((1, 5), np.float32))
    assert out.shape == (1, 5) and out.dtype.name == "int64"


@pytest.mark.parametrize("kwargs, arg, rule", [
    (dict(scale=np.ones((2, 4), np.float32)), "scale", "1-D"),
    (dict(scale=np.ones(4, np.float16)), "scale", "float16"),
    (dict(scale=np.ones(4, np.float32), offset=np.ones(3, np.float32)), "offset", "length 3"),
    (dict(scale=np.ones((1, 4), np.float32), offset=np.ones((1, 3), np.float32)), "offset", "must equal"),
    (dict(scale=np.ones(4, np.float32), round_mode=2), "round_mode", "<= 1"),
    (dict(scale=np.ones(0, np.float32)), "scale", "empty"),
])
def test_trans_quant_param_rules(sim, kwargs, arg, rule):
    with pytest.raises((OpError, TypeError), match=f"npu_trans_quant_param: argument '{arg}'.*{rule}"):
        torch_npu.npu_trans_quant_param(**kwargs)


def test_trans_quant_param_is_one_vector_core(sim):
    torch_npu.npu_trans_quant_param(np.ones(4096, np.float32), np.ones(4096, np.float32))
    (r,) = sim.report().ops
    assert r.core_type == "AIV" and r.block_dim == 1 and r.bytes_written == 4096 * 8


# ----- npu_anti_quant -----
def test_anti_quant_documented_example(sim):
    out = torch_npu.npu_anti_quant(np.array([1, 2, 3, 4], np.int8), np.array([2.0], np.float32),
                                   offset=np.array([2.0], np.float32), dst_dtype=5)
    assert out.dtype.name == "float16" and out.numpy().tolist() == [6.0, 8.0, 10.0, 12.0]


def test_anti_quant_per_channel_int8_to_bf16(sim):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (3, 7, 33)).astype(np.int8)
    scale = rng.standard_normal(33).astype(np.float32)
    offset = rng.standard_normal(33).astype(np.float32)
    out = torch_npu.npu_anti_quant(x, scale, offset=offset, dst_dtype=15).numpy()
    ref = (x.astype(np.float64) + offset) * scale
    assert out.dtype == ml_dtypes.bfloat16 and out.shape == x.shape
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=2 ** -8, atol=1e-6)


def test_anti_quant_int4_words_and_bf16_scale(sim):
    rng = np.random.default_rng(2)
    vals = rng.integers(-8, 8, (5, 16))
    scale = rng.standard_normal(16).astype(ml_dtypes.bfloat16)
    out = torch_npu.npu_anti_quant(pack_int4(vals), scale, src_dtype=16).numpy()      # torch.quint4x2
    assert out.shape == (5, 16)
    np.testing.assert_allclose(out.astype(np.float64), vals * scale.astype(np.float64), rtol=2 ** -10)
    per_tensor = torch_npu.npu_anti_quant(pack_int4(vals), np.array([0.5], np.float32)).numpy()
    assert per_tensor.tolist() == (vals * 0.5).tolist()


@pytest.mark.parametrize("call, arg, rule", [
    (lambda: torch_npu.npu_anti_quant(np.ones(8, np.int8), np.ones(3, np.float32)), "scale", "length 3"),
    (lambda: torch_npu.npu_anti_quant(np.ones((2, 2), np.int32), np.ones(4, np.float32)), "scale", "16"),
    (lambda: torch_npu.npu_anti_quant(np.ones(8, np.int8), np.ones((1, 8), np.float32)), "scale", "1-D"),
    (lambda: torch_npu.npu_anti_quant(np.ones(8, np.int8), np.ones(8, np.float32), offset=np.ones(8, np.float16)),
     "offset", "match"),
    (lambda: torch_npu.npu_anti_quant(np.ones(8, np.int8), np.ones(8, np.float32), dst_dtype=1), "dst_dtype", "int8"),
    (lambda: torch_npu.npu_anti_quant(np.ones(8, np.int8), np.ones(8, np.float32), src_dtype=16), "src_dtype", "int4"),
    (lambda: torch_npu.npu_anti_quant(np.ones(8, np.float16), np.ones(8, np.float32)), "x", "float16"),
    (lambda: torch_npu.npu_anti_quant(np.ones((1,) * 9, np.int8), np.ones(1, np.float32)), "x", "9 dimensions"),
])
def test_anti_quant_rules(sim, call, arg, rule):
    with pytest.raises((OpError, TypeError), match=f"npu_anti_quant: argument '{arg}'.*{rule}"):
        call()


def test_anti_quant_310p_takes_int8_only():
    with Simulator("Ascend310P3"):
        with pytest.raises(TypeError, match="npu_anti_quant: argument 'x' has dtype int32"):
            torch_npu.npu_anti_quant(np.ones((2, 2), np.int32), np.ones(1, np.float32))
        with pytest.raises(TypeError, match="dst_dtype"):
            torch_npu.npu_anti_quant(np.ones(8, np.int8), np.ones(8, np.float32), dst_dtype=15)


# ----- npu_convert_weight_to_int4pack -----
def test_int4pack_hand_worked_word(sim):
    w = np.array([[1, -2, 3, -4, 5, -6, 7, -8]], np.int32)
    out = torch_npu.npu_convert_weight_to_int4pack(w).numpy()
    # nibble j holds element j: 8 7 A 5 C 3 E 1, read from bit 31 down
    assert out.shape == (1, 1) and out.dtype == np.int32 and (int(out[0, 0]) & 0xFFFFFFFF) == 0x87A5C3E1


def test_int4pack_round_trips_and_feeds_the_matmuls(sim):
    rng = np.random.default_rng(3)
    w = rng.integers(-8, 8, (24, 40)).astype(np.int32)
    packed = torch_npu.npu_convert_weight_to_int4pack(w, inner_k_tiles=0).numpy()
    assert packed.shape == (24, 5)
    assert np.array_equal(unpack_int4(packed).astype(np.int32), w)
    assert np.array_equal(packed, pack_int4(w))


def test_int4pack_keeps_fractal_nz(sim):
    w = torch_npu.npu_format_cast(np.zeros((32, 64), np.int32), 29)
    out = torch_npu.npu_convert_weight_to_int4pack(w)
    assert out.shape == (32, 8) and out.npu_format == 29
    assert out.storage_shape == (1, 32, 8)     # one column block of 8 words x 32 rows: NZ of the packed words


@pytest.mark.parametrize("w, arg, rule", [
    (np.zeros((4, 12), np.int32), "weight", "multiple of 8"),
    (np.full((2, 8), 8, np.int32), "weight", r"\[-8, 7\]"),
    (np.zeros((2, 2, 8), np.int32), "weight", "2-D"),
    (np.zeros((2, 8), np.int8), "weight", "int8"),
])
def test_int4pack_rules(sim, w, arg, rule):
    with pytest.raises((OpError, TypeError), match=f"npu_convert_weight_to_int4pack: argument '{arg}'.*{rule}"):
        torch_npu.npu_convert_weight_to_int4pack(w)


def test_quant_ops_time_the_same_in_meta_mode():
    def run(mode):
        with Simulator("Ascend910B2", mode=mode, trace="ops") as s:
            x = torch_npu.empty_with_format((64, 256), "int8")
            sc = torch_npu.empty_with_format((256,), "float32")
            w = torch_npu.empty_with_format((128, 64), "int32")
            torch_npu.npu_anti_quant(x, sc)
            torch_npu.npu_trans_quant_param(sc, round_mode=1)
            torch_npu.npu_convert_weight_to_int4pack(w)
            return [(r.name, r.duration_us, r.bytes_read, r.bytes_written) for r in s.report().ops]
    full, meta = run("full"), run("meta")
    assert full == meta and len(full) == 3 and all(r[1] > 0 for r in full)
