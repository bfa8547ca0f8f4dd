"""Instruction costs and operand checks, worked by hand from the chip's numbers."""
import pytest

from ascend_sim.hw import get_chip
from ascend_sim.isa import COMPUTE, GM, Buf, ISAError, KernelPlan, Pipe, ProgramBuilder


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def test_mmad_cycles_per_dtype(chip):
    b = ProgramBuilder(chip, "AIC")
    b.mmad(128, 256, 64, "float16")      # 8 * 16 * 4
    b.mmad(128, 128, 128, "int8")        # 8 * 8 * 4 (32 per cycle): 256 cycles, 0.142 us at 1.8 GHz
    b.mmad(16, 16, 8, "float32")         # 1 * 1 * 2 (4 per cycle)
    b.mmad(17, 16, 16, "bfloat16")       # a partial fractal costs a whole one: 2 * 1 * 1
    assert b.prog.cycles == [512, 256, 2, 2]
    assert b.prog.flops == 2 * (128 * 256 * 64 + 128 * 128 * 128 + 16 * 16 * 8 + 17 * 16 * 16)


def test_mmad_operands_must_fit_l0(chip):
    b = ProgramBuilder(chip, "AIC")
    with pytest.raises(ISAError, match=r"CUBE.mmad_float16 \(instruction #0 on AIC\): operand L0A"):
        b.mmad(256, 16, 256, "float16")      # 256*256*2 = 128 KiB > 64 KiB L0A
    with pytest.raises(ISAError, match="operand L0C"):
        b.mmad(256, 256, 16, "float16")      # 256*256*4 = 256 KiB > 128 KiB L0C
    with pytest.raises(ISAError, match="not 512-byte aligned"):
        b.mmad(16, 16, 16, "float16", a_addr=100)


def test_mmad_needs_a_cube_mode_the_chip_has():
    b = ProgramBuilder(get_chip("Ascend910A"), "AIC")
    with pytest.raises(ISAError, match="no bfloat16 mode"):
        b.mmad(16, 16, 16, "bfloat16")


def test_vector_cost_and_repeat_split(chip):
    b = ProgramBuilder(chip, "AIV")
    b.vector("binary", "float16", 128 * 10)       # 10 repeats of 128 fp16 at 64/cycle: 20 cycles
    assert b.prog.cycles == [20]
    b2 = ProgramBuilder(chip, "AIV")
    b2.vector("unary", "float32", 64 * 300)       # 300 repeats > 255: two instructions
    assert len(b2.prog) == 2 and b2.prog.cycles == [255, 45]   # 64 fp32 per repeat at 64/cycle
    b3 = ProgramBuilder(chip, "AIV")
    b3.vector("binary", "float16", 1)             # one element still costs a whole repeat
    assert b3.prog.cycles == [2]


def test_vector_needs_ub_and_a_known_class(chip):
    with pytest.raises(ISAError, match="has no UB"):
        ProgramBuilder(chip, "AIC").vector("binary", "float16", 16)
    with pytest.raises(ISAError, match="unknown vector op class 'fft'"):
        ProgramBuilder(chip, "AIV").vector("fft", "float16", 16)
    with pytest.raises(ISAError, match=r"UB\[0, 262144\) is out of range"):
        ProgramBuilder(chip, "AIV").vector("binary", "float32", 65536)


def test_gm_access_bus_bytes_and_path_cycles(chip):
    b = ProgramBuilder(chip, "AIV")
    # 128 rows of 60 bytes, 8192 apart: each row is two 32-byte blocks and one path cycle
    b.load_gm(Buf.UB, 0, "x", 0, 128, 60, 8192)
    acc = b.prog.accesses[0]
    assert (acc.payload, acc.bus_bytes, acc.path_cycles) == (128 * 60, 128 * 64, 128)
    # a contiguous 64 KiB: 512 cycles at 128 B/cycle
    b.load_gm(Buf.UB, 0, "x", 0, 1, 65536)
    assert b.prog.accesses[1].path_cycles == 512
    # rows of 512 bytes that start 2 bytes off: 17 blocks, 5 cycles each at 128 B/cycle instead of 4
    b.load_gm(Buf.UB, 0, "x", 2, 4, 512, 4096)
    assert b.prog.accesses[2].bus_bytes == 4 * 544 and b.prog.accesses[2].path_cycles == 4 * 5


def test_nd2nz_uses_its_own_slower_path(chip):
    b = ProgramBuilder(chip, "AIC")
    b.load_gm(Buf.L1, 0, "w", 0, 1, 256 * 1024)
    b.load_gm(Buf.L1, 0, "w", 0, 1, 256 * 1024, nd2nz=True)
    plain, nd2nz = (a.path_cycles for a in b.prog.accesses)
    assert plain == 1024 and nd2nz == pytest.approx(256 * 1024 / chip.paths["gm_to_l1_nd2nz"].bytes_per_cycle, abs=1)
    with pytest.raises(ISAError, match="ND2NZ exists on GM -> L1 only"):
        ProgramBuilder(chip, "AIV").load_gm(Buf.UB, 0, "w", 0, 1, 64, nd2nz=True)


def test_mte1_load_cost(chip):
    b = ProgramBuilder(chip, "AIC")
    b.load_l1(Buf.L0A, 0, 0, 16384)     # 256 B/cycle, latency 28 (ASC-PERF)
    b.load_l1(Buf.L0B, 0, 0, 16384)     # 128 B/cycle
    assert b.prog.cycles == [64, 128] and b.prog.latency == [28, 28]


def test_flag_ids_are_checked(chip):
    b = ProgramBuilder(chip, "AIV")
    with pytest.raises(ISAError, match="event id 8 out of range; Ascend910B2 has ids 0-7"):
        b.set_flag(Pipe.MTE2, Pipe.VECTOR, 8)
    b910 = ProgramBuilder(get_chip("Ascend910A"), "AIC")
    with pytest.raises(ISAError, match="ids 0-3"):
        b910.wait_flag(Pipe.MTE2, Pipe.CUBE, 4)


def test_kinds_and_counts(chip):
    b = ProgramBuilder(chip, "AIV")
    b.load_gm(Buf.UB, 0, "x", 0, 1, 1024)
    b.set_flag(Pipe.MTE2, Pipe.VECTOR, 0)
    b.wait_flag(Pipe.MTE2, Pipe.VECTOR, 0)
    b.vector("exp", "float16", 512)
    p = b.build()
    assert p.kind[0] == GM and p.kind[3] == COMPUTE
    assert p.gm_bytes() == (1024, 0)
    plan = KernelPlan("k", "AIV", [[p], [p]])
    assert plan.block_dim == 2 and plan.instruction_count() == 8


def test_plan_checks_its_shape(chip):
    p = ProgramBuilder(chip, "AIC").build()
    with pytest.raises(ISAError, match="MIX needs 3"):
        KernelPlan("k", "MIX", [[p]])
    with pytest.raises(ISAError, match="core_type must be one of"):
        KernelPlan("k", "GPU", [[p]])
