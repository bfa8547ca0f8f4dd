"""Chip presets: peaks against HARDWARE.md table 1.2, validation, TOML, what-if chips."""
import dataclasses

import pytest

from ascend_sim.hw import PRESETS, get_chip, list_chips, load_chip, save_chip
from ascend_sim.hw.spec import _leaves

# HARDWARE.md table 1.2 (TFLOPS / TOPS), per die.
TABLE_1_2 = {
    "Ascend910B1": {"float16": 363.7, "int8": 727.4, "float32": 90.9},
    "Ascend910B2": {"float16": 353.9, "int8": 707.8, "float32": 88.5},
    "Ascend910B3": {"float16": 294.9, "int8": 589.8, "float32": 73.7},
    "Ascend910B4": {"float16": 245.8, "int8": 491.5, "float32": 61.4},
    "Ascend910_9391": {"float16": 727 / 2, "int8": 1455 / 2},   # the table gives the 2-die 910C package
    "Ascend910A": {"float16": 262, "int8": 524},
    "Ascend310P3": {"float16": 69.5, "int8": 139},
    "Ascend910_95": {"float16": 432, "int8": 865, "float32": 27},
}


def test_the_eight_presets_exist():
    assert list_chips() == ["Ascend910B1", "Ascend910B2", "Ascend910B3", "Ascend910B4", "Ascend910_9391",
                            "Ascend910A", "Ascend310P3", "Ascend910_95"]


@pytest.mark.parametrize("chip", list(TABLE_1_2))
def test_cube_peak_matches_hardware_table(chip):
    spec = get_chip(chip)
    for dtype, expected in TABLE_1_2[chip].items():
        got = spec.cube_peak_tflops(dtype)
        assert abs(got - expected) / expected < 0.005, (chip, dtype, got, expected)


def test_bf16_peak_equals_fp16_on_a2():
    c = get_chip("Ascend910B2")
    assert c.cube_peak_tflops("bfloat16") == c.cube_peak_tflops("float16")


def test_910a_cube_has_no_fp32_mode():
    with pytest.raises(ValueError, match="no float32 mode"):
        get_chip("Ascend910A").cube_peak_tflops("float32")


@pytest.mark.parametrize("chip", list_chips())
def test_every_number_has_a_source(chip):
    spec = get_chip(chip)
    for path, value in _leaves(spec):
        if path in ("name", "family", "soc_version", "description"):
            continue
        parts = path.split(".")
        assert any(".".join(parts[:i]) in spec.sources for i in range(len(parts), 0, -1)), path


@pytest.mark.parametrize("chip", list_chips())
def test_facts_from_hardware_md(chip):
    c = get_chip(chip)
    facts = {  # HARDWARE.md 1.1 and 2.1
        "Ascend910B1": (24, 48, 1850, 192, 64, 512, 192),
        "Ascend910B2": (24, 48, 1800, 192, 64, 512, 192),
        "Ascend910B3": (20, 40, 1800, 192, 64, 512, 192),
        "Ascend910B4": (20, 40, 1500, 96, 32, 512, 192),
        "Ascend910_9391": (24, 48, 1850, 192, 64, 512, 192),
        "Ascend910A": (32, 0, 1000, 32, 32, 1024, 256),
        "Ascend310P3": (8, 7, 1060, 16, None, 1024, 256),
        "Ascend910_95": (32, 64, 1650, 128, 128, 512, 248),
    }[chip]
    aic, aiv, mhz, l2_mib, hbm_gib, l1_kib, ub_kib = facts
    assert (c.cores.aic, c.cores.aiv, c.cores.aic_mhz) == (aic, aiv, mhz)
    assert c.memory.l2_bytes == l2_mib << 20
    if hbm_gib:
        assert c.memory.hbm_bytes == hbm_gib << 30
    assert c.buffers.l1 == l1_kib << 10 and c.buffers.ub == ub_kib << 10
    assert c.memory.l2_line_bytes == 512


def test_families():
    fam = {n: get_chip(n).family for n in list_chips()}
    assert fam == {"Ascend910B1": "A2", "Ascend910B2": "A2", "Ascend910B3": "A2", "Ascend910B4": "A2",
                   "Ascend910_9391": "A3", "Ascend910A": "910", "Ascend310P3": "310P", "Ascend910_95": "950"}


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as e:
        get_chip("Ascend910Z")
    for name in PRESETS:
        assert name in str(e.value)


def test_preset_name_is_case_insensitive():
    assert get_chip("ascend910b2") is PRESETS["Ascend910B2"]


def test_zero_core_count_is_rejected():
    with pytest.raises(ValueError, match="cores.aic must be a positive integer"):
        get_chip("Ascend910B2").derive("bad", cores__aic=0)


def test_zero_vector_cores_rejected_on_a_split_chip():
    with pytest.raises(ValueError, match="cores.aiv"):
        get_chip("Ascend910B2").derive("bad", cores__aiv=0)


def test_negative_bandwidth_is_rejected():
    with pytest.raises(ValueError, match="memory.hbm_bandwidth_GBps must be positive"):
        get_chip("Ascend910B2").derive("bad", memory__hbm_bandwidth_GBps=-1.0)


def test_negative_path_bandwidth_is_rejected():
    with pytest.raises(ValueError, match="paths.gm_to_ub.bytes_per_cycle"):
        get_chip("Ascend910B2").derive("bad", **{"paths.gm_to_ub.bytes_per_cycle": -5})


def test_derive_replaces_one_field_and_records_its_source():
    base = get_chip("Ascend910B2")
    fast = base.derive("fast", memory__hbm_bandwidth_GBps=3200)
    assert fast.memory.hbm_bandwidth_GBps == 3200 and fast.name == "fast"
    assert fast.memory.l2_bytes == base.memory.l2_bytes
    assert "what-if" in fast.sources["memory.hbm_bandwidth_GBps"]
    assert base.memory.hbm_bandwidth_GBps == 1600   # the preset is untouched


def test_derive_unknown_field_is_an_error():
    with pytest.raises(ValueError, match="no field"):
        get_chip("Ascend910B2").derive("x", memory__hbm_speed=1)


@pytest.mark.parametrize("chip", list_chips())
def test_toml_round_trip(tmp_path, chip):
    spec = get_chip(chip)
    p = tmp_path / f"{chip}.toml"
    save_chip(spec, p)
    back = load_chip(p)
    assert back == spec
    assert back.sources == spec.sources
    assert get_chip(str(p)) == spec


def test_toml_with_unknown_field_is_rejected(tmp_path):
    p = tmp_path / "c.toml"
    save_chip(get_chip("Ascend910B2"), p)
    text = p.read_text().replace("[cores]\n", "[cores]\nwarp_size = 32\n")
    p.write_text(text)
    with pytest.raises(ValueError, match="warp_size"):
        load_chip(p)


def test_specs_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_chip("Ascend910B2").name = "x"


def test_cube_fractal_per_dtype():
    c = get_chip("Ascend910B2")   # HARDWARE.md 2.2: fp16 16x16x16, int8 16x32x16, int4 16x64x16, fp32 16x8x16
    assert c.cube_fractal("float16") == (16, 16, 16)
    assert c.cube_fractal("int8") == (16, 32, 16)
    assert c.cube_fractal("int4") == (16, 64, 16)
    assert c.cube_fractal("float32") == (16, 8, 16)
    assert c.cube_k_per_cycle("float32") == 4 and c.cube_k_per_cycle("int8") == 32
