"""The vector-pipeline block layer: its flags, per buffer, and stages a template swaps in."""
import pytest

from ascend_sim.hw import get_chip
from ascend_sim.isa import Buf, ISAError, Pipe, ProgramBuilder
from ascend_sim.isa.program import GM, SET, WAIT
from ascend_sim.ops.templates.vector import (VectorPart, VectorPipeline, deal_parts, grouped_vector_kernel,
                                          split_range, vector_kernel)
from ascend_sim.runtime import Simulator, Task

V, MTE2, MTE3 = Pipe.VECTOR, Pipe.MTE2, Pipe.MTE3
TILE = 1024


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def gather_rows(rows):
    """A load stage that reads listed rows of a table (an indexed-row gather), one access each."""
    def load(b, tile, s):
        for k, r in enumerate(rows[tile]):
            b.load_gm(Buf.UB, s.base + k * TILE, "table", r * TILE, 1, TILE)
    return load


def compute(b, tile, s):
    b.vector("binary", "float16", TILE // 2, addrs=(s.base,))


def store(b, tile, s):
    b.store_gm(s.base, "out0", tile * TILE, 1, TILE)


def flags(prog):
    out = []
    for k, a in zip(prog.kind, prog.arg):
        if k in (SET, WAIT):
            out.append(("set" if k == SET else "wait", Pipe(a[0]), Pipe(a[1]), a[2]))
    return out


def test_double_buffered_flags_one_event_id_per_buffer(chip):
    pipe = VectorPipeline(gather_rows({j: [7 - j, j] for j in range(4)}), compute, store, buffer_num=2,
                          slot_bytes=4 * TILE)
    b = ProgramBuilder(chip, "AIV")
    assert pipe.run(b, range(4)) == 4
    f = flags(b.build())
    per_tile = [("set", MTE2, V), ("wait", MTE2, V), ("set", V, MTE2), ("set", V, MTE3), ("wait", V, MTE3),
                ("set", MTE3, V)]
    reuse = [("wait", V, MTE2), ("set", MTE2, V), ("wait", MTE2, V), ("wait", MTE3, V), ("set", V, MTE2),
             ("set", V, MTE3), ("wait", V, MTE3), ("set", MTE3, V)]
    want = [(k, s, d, j % 2) for j in range(4) for k, s, d in (per_tile if j < 2 else reuse)]
    assert f == want
    # the gather stage's loads land in the tile's own buffer slot
    prog = b.prog
    assert [a.offset // TILE for a in prog.accesses if a.tensor == "table"] == [7, 0, 6, 1, 5, 2, 4, 3]


def test_a_copy_hands_buffers_from_mte2_to_mte3_and_the_engine_runs_it(chip):
    load = lambda b, t, s: b.load_gm(Buf.UB, s.base, "input", t * TILE, 1, TILE)  # noqa: E731
    pipe = VectorPipeline(load, None, store, buffer_num=2, slot_bytes=TILE, scalar_per_tile=0)
    plan = vector_kernel("copy", chip, [range(lo, hi) for lo, hi in split_range(10, 4)], pipe,
                         tensors=("input", "out0"))
    assert plan.block_dim == 4                                   # 3 + 3 + 3 + 1 tiles
    f = flags(plan.blocks[0][0])
    assert ("wait", MTE3, MTE2, 0) in f and not any(V in (s, d) for _, s, d, _ in f)
    sim = Simulator(chip, mode="meta", trace="ops")
    t = sim.submit(Task("copy", "kernel", sim.current_device.default_stream, plan=plan,
                        addresses={"input": 0, "out0": 1 << 30}))
    sim.synchronize()
    assert t.record.bytes_read == t.record.bytes_written == 10 * TILE


def test_split_range_and_the_rules():
    assert split_range(10, 4) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert split_range(1000, 3, quantum=256) == [(0, 512), (512, 1000)]
    with pytest.raises(ISAError, match="compute stage"):
        VectorPipeline(None, None, store)


def test_elementwise_operand_offsets(chip):
    from ascend_sim.ops.templates.elementwise import ElementwiseTiling, Operand, VectorStep, elementwise_plan
    plan = elementwise_plan("add", chip, 4096, [Operand("a", 2, offset=640), Operand("b", 2)],
                            [Operand("a", 2, offset=640)], [VectorStep("binary", "float16")],
                            tiling=ElementwiseTiling(1024, 2))
    acc = [(a.tensor, a.offset, a.write) for blk in plan.blocks for a in blk[0].accesses]
    want = [(t, off + start * 2, w) for lo in (0, 2048) for start in (lo, lo + 1024)
            for t, off, w in (("a", 640, False), ("b", 0, False), ("a", 640, True))]
    assert acc == want and plan.tensors == ("a", "b")


def test_deal_parts_round_robin_part_after_part():
    # part 0's 3 blocks on cores 0-2; part 1 from core 3 (wrapping to 0); part 2 from core 1
    assert deal_parts(4, [3, 2, 4]) == [[(0, 0), (1, 1), (2, 3)], [(0, 1), (2, 0)], [(0, 2), (2, 1)],
                                        [(1, 0), (2, 2)]]
    assert deal_parts(8, [2, 1]) == [[(0, 0)], [(0, 1)], [(1, 0)]]          # idle cores get no block


def test_grouped_vector_kernel_deals_parts_and_drains_flags_between_them(chip):
    cores = chip.vector_cores
    counts = [cores - 2, cores // 2, 3]                                   # part 1 wraps round

    def part(p, n):
        load = lambda b, t, s: b.load_gm(Buf.UB, s.base, f"in{p}", t * TILE, 1, TILE)  # noqa: E731
        pipe = VectorPipeline(load, compute, store, buffer_num=2, slot_bytes=TILE)
        return VectorPart([[j] for j in range(n)] + [[]], pipe, tensors=(f"in{p}", "out0"), tiling=f"t{p}",
                          flops=10.0 * n)

    plan = grouped_vector_kernel("grouped", chip, [part(p, n) for p, n in enumerate(counts)])
    lanes = deal_parts(cores, counts)
    assert plan.block_dim == len(lanes) == cores and plan.core_type == "AIV"
    assert plan.tensors == ("in0", "out0", "in1", "in2") and plan.tiling == "t0" and plan.flops == 10.0 * sum(counts)
    for lane, (prog,) in zip(lanes, plan.blocks):
        # each core runs its dealt (part, block) pairs in order: the loads say which
        loads = [(a.tensor, a.offset // TILE) for a in prog.accesses if not a.write]
        assert loads == [(f"in{p}", j) for p, j in lane]
        # every flag a part set is waited for before the next part's first load
        pending, seen = {}, 0
        for k, a in zip(prog.kind, prog.arg):
            if k in (SET, WAIT):
                pending[a] = pending.get(a, 0) + (1 if k == SET else -1)
            elif k == GM and not prog.accesses[a].write:
                if seen:
                    assert set(pending.values()) <= {0}, "part started on flags still set"
                seen += 1
    # one part is that part's own kernel
    one = grouped_vector_kernel("one", chip, [part(0, 5)])
    assert one.block_dim == 5 and one.name == "one"
