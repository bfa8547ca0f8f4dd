"""Vector sort / merge / gather / compare / select instructions: cycles from vector.instrs."""
import pytest

from ascend_sim.hw import get_chip
from ascend_sim.isa import AICpuWork, ISAError, KernelPlan, ProgramBuilder, aicpu_plan


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def _cost(chip, key):
    return chip.vector.instrs[key]


def test_sort32_costs_one_repeat_per_32_element_region(chip):
    b = ProgramBuilder(chip, "AIV")
    b.vsort32("float32", 32 * 10, src_addr=0, idx_addr=4096, dst_addr=8192)
    b.vsort32("float16", 33, src_addr=0, idx_addr=4096, dst_addr=8192)     # a partial region costs a whole one
    c = _cost(chip, "sort32")
    assert b.prog.cycles == [pytest.approx(10 * c["b32"]), pytest.approx(2 * c["b16"])]
    assert b.prog.latency[0] == c["head_latency"] + c["tail_latency"]


def test_sort32_splits_at_max_repeat(chip):
    b = ProgramBuilder(chip, "AIV")
    n = 32 * 300
    b.vsort32("float32", n, src_addr=0, idx_addr=n * 4, dst_addr=n * 8)
    c = _cost(chip, "sort32")["b32"]
    assert b.prog.cycles == [pytest.approx(255 * c), pytest.approx(45 * c)]


def test_mrgsort4_costs_per_region_of_output(chip):
    b = ProgramBuilder(chip, "AIV")
    b.vmrgsort4("float32", (32, 32, 32, 32), src_addrs=(0, 256, 512, 768), dst_addr=4096)
    b.vmrgsort4("float32", (100, 28), src_addrs=(0, 800), dst_addr=4096)
    c = _cost(chip, "mrgsort4")["b32"]
    assert b.prog.cycles == [pytest.approx(4 * c), pytest.approx(4 * c)]
    with pytest.raises(ISAError, match="merges 2 to 4"):
        b.vmrgsort4("float32", (8,) * 5, src_addrs=(0,) * 5, dst_addr=4096)
    with pytest.raises(ISAError, match="merges 2 to 4"):
        b.vmrgsort4("float32", (8,), src_addrs=(0,), dst_addr=4096)


def test_sorts_take_16_or_32_bit_floats(chip):
    with pytest.raises(ISAError, match="16- or 32-bit floats"):
        ProgramBuilder(chip, "AIV").vsort32("int32", 32, src_addr=0, idx_addr=128, dst_addr=256)


def test_sort_operands_must_fit_ub(chip):
    n = chip.buffers.ub // 8     # the (value, index) output alone is 8 B per element
    with pytest.raises(ISAError, match="out of range"):
        ProgramBuilder(chip, "AIV").vsort32("float32", n, src_addr=0, idx_addr=0, dst_addr=64)


def test_gather_compare_select_per_256_byte_repeat(chip):
    b = ProgramBuilder(chip, "AIV")
    b.vgather("float16", 128 * 3, dst_addr=0, offsets_addr=1024, src_addr=4096, src_bytes=8192)
    b.vcmp("float32", 64 * 5, a_addr=0, b_addr=2048, mask_addr=4096)
    b.vsel("float32", 64 * 5, mask_addr=4096, a_addr=0, b_addr=2048, dst_addr=8192)
    assert b.prog.cycles == [pytest.approx(3 * _cost(chip, "vgather")["b16"]), 5 * 2, 5 * 2]
    assert b.prog.latency[2] == 13 + 14           # HARDWARE.md 8.1 vsel head 13, tail 14


def test_doubling_cycles_per_repeat_in_a_derived_chip_doubles_the_cost(chip):
    c2 = chip.derive(**{"vector.instrs.sort32.b32": 2 * chip.vector.instrs["sort32"]["b32"]})
    b1, b2 = ProgramBuilder(chip, "AIV"), ProgramBuilder(c2, "AIV")
    for b in (b1, b2):
        b.vsort32("float32", 640, src_addr=0, idx_addr=4096, dst_addr=8192)
    assert b2.prog.cycles[0] == pytest.approx(2 * b1.prog.cycles[0])
    assert "what-if" in c2.sources["vector.instrs.sort32.b32"]


def test_a_chip_without_the_instruction_says_so(chip):
    instrs = {k: v for k, v in chip.vector.instrs.items() if k != "sort32"}
    c2 = chip.derive(**{"vector.instrs": instrs})
    with pytest.raises(ISAError, match="has no sort32"):
        ProgramBuilder(c2, "AIV").vsort32("float32", 32, src_addr=0, idx_addr=128, dst_addr=256)


def test_preset_rejects_an_incomplete_instruction_cost(chip):
    with pytest.raises(ValueError, match="head_latency, b16, b32 and tail_latency"):
        chip.derive(**{"vector.instrs.vsel": {"b16": 2, "b32": 2}})


def test_aicpu_plans_carry_typed_work_not_durations(chip):
    p = aicpu_plan("unique", chip, [AICpuWork("hash", 1000, 8)])
    assert p.core_type == "AI_CPU" and p.blocks == [] and p.aicpu_work[0].bytes == 8000
    with pytest.raises(ISAError, match="unknown work class 'fft'"):
        aicpu_plan("x", chip, [AICpuWork("fft", 10)])
    with pytest.raises(ISAError, match="AICpuWork"):
        aicpu_plan("x", chip, [("hash", 10)])
    with pytest.raises(ISAError, match="aicpu_work belongs to AI_CPU"):
        KernelPlan("x", "AIV", [[ProgramBuilder(chip, "AIV").build()]], aicpu_work=(AICpuWork("copy", 1),))
    assert not hasattr(p, "aicpu_cycles")
