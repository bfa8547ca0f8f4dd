"""Indexed GM row accesses (gather/scatter): costs worked by hand from the chip's numbers."""
import numpy as np
import pytest

from ascend_sim.engine.memory import L2Cache
from ascend_sim.hw import get_chip
from ascend_sim.isa import Buf, IndexList, IndexPattern, ISAError, ProgramBuilder


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")    # gm_to_ub 128 B/cycle, ub_to_gm 64 B/cycle, 32-B blocks, 512-B bursts/lines


def _gather(chip, idx, row_bytes, **kw):
    b = ProgramBuilder(chip, "AIV")
    b.load_gm_rows(0, "t", 0, row_bytes, idx if not isinstance(idx, list) else IndexList.of(idx), **kw)
    return b.prog.accesses[-1]


def test_consecutive_rows_merge_into_one_run(chip):
    a = _gather(chip, [0, 1, 2], 64)          # one 192-B run: 6 blocks, 192/128 = 1.5 cycles
    assert (a.payload, a.bus_bytes, a.path_cycles, a.index.runs) == (192, 192, 1.5, 1)
    a = _gather(chip, [0, 2, 4], 64)          # three 64-B rows: one cycle each (at least one per piece)
    assert (a.payload, a.bus_bytes, a.path_cycles, a.index.runs) == (192, 192, 3.0, 3)


def test_short_rows_out_of_order_each_pay_their_blocks(chip):
    a = _gather(chip, [0, 1, 2, 3], 40)       # bytes 0..160 in one run: 5 blocks, 1.25 cycles
    assert (a.bus_bytes, a.path_cycles) == (160, 1.25)
    # reversed: rows at 120, 80, 40, 0 -- each 40-B row straddles two 32-B blocks (120: 24+40 = 64 ...)
    a = _gather(chip, [3, 2, 1, 0], 40)
    assert (a.payload, a.bus_bytes, a.path_cycles, a.index.runs) == (160, 4 * 64, 4.0, 4)


def test_a_row_across_a_burst_boundary_is_two_pieces(chip):
    # row 7 of 72-B rows: bytes 504..576 cross the 512-B boundary: blocks 480..512 and 512..576
    a = _gather(chip, [7], 72)
    assert (a.bus_bytes, a.path_cycles) == (32 + 64, 2.0)


def test_strided_rows_never_merge(chip):
    a = _gather(chip, [0, 1, 2], 64, row_stride=128)
    assert (a.index.runs, a.bus_bytes, a.path_cycles) == (3, 192, 3.0)


def test_random_short_rows_cost_more_bus_bytes_than_sorted(chip):
    rng = np.random.default_rng(1)
    idx = rng.permutation(4096)
    rand = _gather(chip, IndexList.of(idx[:512]), 40)
    srt = _gather(chip, IndexList.of(np.sort(idx[:512])), 40)
    cont = _gather(chip, IndexList.of(np.arange(512)), 40)
    assert rand.payload == srt.payload == cont.payload == 512 * 40
    assert cont.bus_bytes == 512 * 40 and cont.index.runs == 1
    assert rand.bus_bytes > srt.bus_bytes >= cont.bus_bytes
    assert rand.path_cycles > cont.path_cycles


def test_distinct_lines_and_span(chip):
    a = _gather(chip, [0, 0, 1000], 64)       # a duplicate row reads its line once
    assert a.index.count == 3 and a.index.lines == 2 and a.index.span == (0, 1000 * 64 + 64)
    a = _gather(chip, list(range(0, 64, 8)), 64)    # rows 8 apart: one row per 512-B line
    assert a.index.lines == 8


def test_l2_footprint_touches_the_distinct_lines_inside_the_span(chip):
    for idx in ([0, 1000], [5, 9, 700, 701, 5000], list(range(100))):
        a = _gather(chip, idx, 64)
        lines = L2Cache(1 << 20, 512).lines(0, a.offset, a.rows, a.row_bytes, a.stride)
        assert len(lines) == a.index.lines
        lo, hi = a.index.span
        assert lines[0] >= lo // 512 and lines[-1] <= (hi - 1) // 512


def test_meta_pattern_costs_like_a_real_random_list(chip):
    pat = IndexPattern(2048, 1 << 16, "random")
    meta = _gather(chip, pat, 40)
    again = _gather(chip, IndexPattern(2048, 1 << 16, "random"), 40)
    real = _gather(chip, IndexList.of(np.random.default_rng(7).integers(0, 1 << 16, 2048)), 40)
    assert (meta.bus_bytes, meta.path_cycles) == (again.bus_bytes, again.path_cycles)     # deterministic
    assert meta.bus_bytes == pytest.approx(real.bus_bytes, rel=0.03)
    assert meta.index.pattern == "random" and real.index.pattern == "values"
    cont = _gather(chip, IndexPattern(2048, 1, "contiguous"), 40)
    assert cont.bus_bytes == 2048 * 40 and cont.index.runs == 1


def test_pattern_slices(chip):
    p = IndexPattern(1000, 10_000, "sorted")
    s = p.slice(500, 750)
    assert s.count == 250 and s.start == 5000 and s.rows == 2500 and s.kind == "sorted"
    v = s.values()
    assert (np.diff(v) >= 0).all() and v.min() >= 5000 and v.max() < 7500
    c = IndexPattern(10, 1, "contiguous", start=3).slice(2, 5)
    assert list(c.values()) == [5, 6, 7]
    assert IndexPattern(8, 100).slice(0, 4).part != IndexPattern(8, 100).slice(4, 8).part


def test_index_list_is_hashable_by_content():
    a, b = IndexList.of([1, 2, 3]), IndexList.of(np.array([1, 2, 3], np.int32))
    assert a == b and hash(a) == hash(b) and a != IndexList.of([1, 2, 4])
    assert not a.values.flags.writeable


def test_scatter_add_pays_the_read_modify_write(chip):
    b = ProgramBuilder(chip, "AIV")
    b.store_gm_rows(0, "t", 0, 64, IndexList.of([5, 9]))
    b.store_gm_rows(0, "t", 0, 64, IndexList.of([5, 9]), atomic_add="float32")
    plain, atomic = b.prog.accesses
    assert plain.write and atomic.write and plain.path == "ub_to_gm"
    assert atomic.bus_bytes == plain.bus_bytes * chip.memory.atomic_rmw_factor
    assert atomic.index.atomic == "float32" and b.prog.name[1] != b.prog.name[0]
    assert plain.path_cycles == 2.0           # two 64-B rows at 64 B/cycle


def test_operand_and_index_checks(chip):
    b = ProgramBuilder(chip, "AIV")
    with pytest.raises(ISAError, match="out of range"):
        b.load_gm_rows(0, "t", 0, 64, IndexList.of([0, 10]), table_rows=10)
    with pytest.raises(ISAError, match="out of range"):
        b.load_gm_rows(0, "t", 0, 64, IndexList.of([-1]))
    with pytest.raises(ISAError, match=r"operand UB\[0, "):
        b.load_gm_rows(0, "t", 0, 4096, IndexPattern(100, 1000))      # 400 KiB > 192 KiB UB
    with pytest.raises(ISAError, match="overlap"):
        b.load_gm_rows(0, "t", 0, 64, IndexList.of([1]), row_stride=32)
    with pytest.raises(ISAError, match="IndexList"):
        b.load_gm_rows(0, "t", 0, 64, [1, 2])
    with pytest.raises(ISAError, match="has no L0A"):
        b.load_gm_rows(0, "t", 0, 64, IndexList.of([1]), dst=Buf.L0A)


def test_ub_rows_are_packed_at_an_aligned_pitch(chip):
    b = ProgramBuilder(chip, "AIV")
    n = chip.buffers.ub // 64                   # 40-B rows take 64 B of UB each
    b.load_gm_rows(0, "t", 0, 40, IndexPattern(n, 1 << 20))
    with pytest.raises(ISAError, match="out of range"):
        b.load_gm_rows(0, "t", 0, 40, IndexPattern(n + 1, 1 << 20))


def test_many_rows_summarise_without_per_row_work(chip):
    b = ProgramBuilder(chip, "AIV")     # more rows than UB holds: the access alone, without its UB operand
    acc = b.indexed_access("MTE2.gather", "gm_to_ub", "t", 0, 32, IndexPattern(200_000, 1 << 24), None, False)
    assert acc.index.count == 200_000 and acc.payload == 200_000 * 32
    assert acc.bus_bytes == 200_000 * 32          # 32-B rows at 32-B aligned starts: one block each
    assert acc.path_cycles == 200_000             # one cycle per piece
    assert acc.index.lines <= 200_000
