"""The cube matmul template: tiling rules, the bytes it moves, and what formats and tiling change."""
import pytest

from ascend_sim.dtypes import float16, int8
from ascend_sim.hw import get_chip
from ascend_sim.isa import ISAError
from ascend_sim.ops.templates.matmul import MatmulProblem, MatmulTiling, Operand, default_tiling, matmul_plan
from ascend_sim.runtime import Simulator, Task

GiB = 1 << 30


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def problem(m, n, k, dt=float16, **kw):
    b_nz = kw.pop("b_nz", False)
    return MatmulProblem(1, m, n, k, Operand("a", m, k, dt), Operand("b", k, n, dt, nz=b_nz), "c", kw.pop("out", dt),
                         **kw)


def run(chip, plans):
    plans = plans if isinstance(plans, list) else [plans]
    sim = Simulator(chip, trace="ops")
    dev = sim.current_device
    tasks = [sim.submit(Task(p.name, "kernel", dev.default_stream, plan=p,
                             addresses={"a": 0, "b": GiB, "c": 2 * GiB, "bias": 3 * GiB, "scale": 3 * GiB + 65536,
                                        "workspace": 4 * GiB}))
             for p in plans]
    sim.synchronize()
    return [t.record for t in tasks]


@pytest.mark.parametrize("tiling, buffer", [
    (MatmulTiling(base_m=256, base_k=128), "L0A"),
    (MatmulTiling(base_n=512, base_k=64), "L0B"),
    (MatmulTiling(base_m=256, base_n=256, base_k=32), "L0C"),
    (MatmulTiling(base_k=64, step_k=16), "L1"),
])
def test_a_tiling_that_does_not_fit_names_the_buffer(chip, tiling, buffer):
    with pytest.raises(ISAError, match=buffer):
        matmul_plan("mm", chip, problem(1024, 1024, 1024), tiling)


def test_tiling_dims_must_be_fractal_multiples(chip):
    with pytest.raises(ISAError, match="base_k=24 must be a positive multiple of 16"):
        matmul_plan("mm", chip, problem(256, 256, 256), MatmulTiling(base_k=24))
    with pytest.raises(ISAError, match="base_k=48 must be a positive multiple of 32 for int8"):
        matmul_plan("mm", chip, problem(256, 256, 256, int8, out=float16), MatmulTiling(base_k=48))


def test_default_tiling_is_catlass_like_and_fits(chip):
    t = default_tiling(chip, problem(4096, 4096, 4096))
    assert (t.base_m, t.base_n, t.base_k) == (128, 256, 64)
    t8 = default_tiling(chip, problem(4096, 4096, 4096, int8, out=float16))
    assert t8.base_k == 128                                     # 128 bytes of int8


def test_every_tile_is_written_once_and_operands_read_per_tile(chip):
    m, n, k = 300, 520, 700                                     # nothing a multiple of the tile
    (rec,) = run(chip, matmul_plan("mm", chip, problem(m, n, k)))
    assert rec.bytes_written == m * n * 2
    t = default_tiling(chip, problem(m, n, k))
    n_m, n_n = -(-m // t.base_m), -(-n // t.base_n)
    # each output tile reads its full row band of A and column band of B once
    assert rec.bytes_read == n_n * m * k * 2 + n_m * k * n * 2
    assert rec.flops == 2 * m * n * k


def test_split_k_writes_fp32_partials_then_casts(chip):
    p = problem(128, 256, 8192)
    plans = matmul_plan("mm", chip, p, MatmulTiling(split_k=4))
    assert [pl.core_type for pl in plans] == ["AIC", "AIV"] and plans[0].workspace_bytes == 128 * 256 * 4
    rec_k, rec_cast = run(chip, plans)
    assert rec_k.block_dim == 4                                 # one (m, n) tile, four K parts
    assert rec_k.bytes_written == 4 * 128 * 256 * 4             # each part adds its fp32 partial
    assert rec_cast.bytes_written == 128 * 256 * 2
    (single,) = run(chip, matmul_plan("mm", chip, p))
    assert rec_k.duration_us < single.duration_us               # four cores instead of one


def test_bias_and_dequant_scale_travel_through_bt_and_fb(chip):
    p = problem(256, 512, 256, int8, out=float16, bias="bias", scale="scale")
    plan = matmul_plan("qmm", chip, p)
    names = {prog.names[i] for blk in plan.blocks for prog in blk for i in prog.name}
    assert {"MTE1.bias_to_bt", "MTE1.scale_to_fb", "FIXP.l0c_to_gm.quant"} <= names
    (rec,) = run(chip, plan)
    assert rec.bytes_written == 256 * 512 * 2


def test_nz_weight_beats_nd_when_rows_are_not_512_aligned(chip):
    # A decode-shaped GEMM whose weight is warm in L2, so the weight's way onto the core decides
    # the time. ND rows of 8000 bytes are not 512-byte aligned: each row piece straddles two bursts
    # and goes through MTE2's slower ND2NZ path; NZ fractal columns are long aligned runs.
    m, k, n = 16, 4096, 4000
    times = {}
    for nz in (False, True):
        cold, warm = run(chip, [matmul_plan("mm", chip, problem(m, n, k, b_nz=nz)) for _ in range(2)])
        assert warm.l2_hit_rate > 0.99
        times[nz] = (cold.duration_us, warm.duration_us, warm.pipe_busy_us["MTE2"])
    assert times[True][1] < times[False][1]            # warm: NZ faster
    assert times[True][2] < 0.9 * times[False][2]      # because its MTE2 work is lighter
    assert times[True][0] <= times[False][0]           # cold (HBM-bound): NZ no slower


def test_more_cores_less_time(chip):
    p = problem(2048, 2048, 2048)
    (one,) = run(chip, matmul_plan("mm", chip, p, MatmulTiling(block_dim=4)))
    (all_,) = run(chip, matmul_plan("mm", chip, p))
    assert all_.duration_us < one.duration_us / 4


# ----- layers: operand layouts, a swapped tile copy, the grouped scheduler -----
from ascend_sim.isa import GM, Buf  # noqa: E402
from ascend_sim.ops.templates.cube import (Gemm, GroupedScheduler, Layout, MatmulTiling as MT,  # noqa: E402
                                           TileCopy, cube_kernel)


def _reads(plan, tensor):
    return [p.accesses[a] for blk in plan.blocks for p in blk for k, a in zip(p.kind, p.arg)
            if k == GM and p.accesses[a].tensor == tensor and not p.accesses[a].write]


def test_layout_addresses_a_sub_view_directly(chip):
    """A 64 x 64 block at rows 32.., cols 16.. of a (256, 128) fp16 matrix: every load starts at
    (32 * 128 + 16) * 2 bytes plus whole rows of the big matrix, rows 256 bytes apart."""
    sub = Operand("a", 64, 64, float16, layout=Layout(offset=(32 * 128 + 16) * 2, ld=128 * 2))
    p = MatmulProblem(1, 64, 64, 64, sub, Operand("b", 64, 64, float16), "c", float16)
    loads = _reads(matmul_plan("mm", chip, p, MatmulTiling(base_m=64, base_n=64, base_k=64, step_k=1)), "a")
    assert loads and all(acc.stride == 256 and acc.rows == 64 and acc.row_bytes == 128 for acc in loads)
    assert {acc.offset for acc in loads} == {(32 * 128 + 16) * 2}


def test_a_tile_copy_object_swaps_one_copy(chip):
    """A convolution-style load3d L1 -> L0A copy replaces the plain one and nothing else."""
    class Load3d(TileCopy):
        def l1_to_l0a(self, b, dst, src, m, k, dt):
            b.load_l1(Buf.L0A, dst, src, dt.nbytes(m * k), load3d=True)

    p = problem(128, 128, 256)
    plain = matmul_plan("mm", chip, p)
    conv = matmul_plan("mm", chip, p, tile=Load3d())
    names = lambda pl: [pr.names[i] for blk in pl.blocks for pr in blk for i in pr.name]   # noqa: E731
    assert names(conv).count("MTE1.load3d_l0a") == names(plain).count("MTE1.load_l0a") > 0
    assert len(names(conv)) == len(names(plain))


def test_grouped_scheduler_deals_groups_from_the_next_core(chip):
    """Group 1's first tile goes to the core after group 0's last: 3 + 2 tiles on 5 cores."""
    t = MT(base_m=16, base_n=16, base_k=16, step_k=1)
    g = lambda m, name: Gemm(1, m, 16, 16, Operand("a", m, 16, float16), Operand("b", 16, 16, float16),  # noqa: E731
                             Operand(name, m, 16, float16))
    lanes = GroupedScheduler().segments(chip, [g(48, "c0"), g(32, "c1")], t)
    assert [[j for j, _ in lane] for lane in lanes] == [[0], [0], [0], [1], [1]]
    plan = cube_kernel("gmm", chip, [g(48, "c0"), g(32, "c1")], t)
    assert plan.block_dim == 5 and plan.flops == 2 * 16 * 16 * (48 + 32)
