"""Communication time on the simulated cluster (asserted on simulated time, never wall time)."""
import pytest

import ascend_sim.distributed as dist
from ascend_sim import Simulator, torch_npu

MiB = 1 << 20


def all_reduce_row(world_size, nbytes, algorithm=None, chip="Ascend910B2"):
    with Simulator(chip, world_size=world_size, trace="ops", mode="meta") as sim:
        sim.spmd(lambda r: dist.all_reduce(torch_npu.empty_with_format((nbytes // 2,), "float16"),
                                           algorithm=algorithm))
        rows = [o for o in sim.report().ops if o.name == "all_reduce"]
    assert len(rows) == world_size
    return rows[0], sim


def bus_GBps(row, n):
    algbw = row.attrs["message_bytes"] / (row.duration_us * 1e3)
    return algbw * 2 * (n - 1) / n


def test_large_all_reduce_on_8_ranks_reaches_80_percent_of_the_bus_bandwidth():
    row, sim = all_reduce_row(8, 256 * MiB)
    hccs = sim.chip.links["hccs"]
    allowed = hccs.bandwidth_GBps * 7          # every peer over its own HCCS link
    assert bus_GBps(row, 8) >= 0.8 * allowed
    assert row.bound == "link" and row.attrs["algorithm"] == "mesh"


def test_small_messages_are_latency_bound():
    row, sim = all_reduce_row(8, 4096)
    steps = 2                                   # mesh: reduce-scatter + all-gather
    lat = sim.chip.links["hccs"].latency_us
    assert row.duration_us == pytest.approx(steps * lat, rel=0.05)
    assert bus_GBps(row, 8) < 0.05 * sim.chip.links["hccs"].bandwidth_GBps * 7


def test_16_ranks_over_two_servers_are_slower_per_byte_than_8_in_one():
    one, _ = all_reduce_row(8, 256 * MiB)
    two, _ = all_reduce_row(16, 256 * MiB)
    assert two.attrs["algorithm"] == "hierarchical"
    assert two.duration_us > one.duration_us


@pytest.mark.parametrize("alg", ["ring", "halving_doubling"])
def test_other_algorithms_are_slower_than_mesh_on_a_full_mesh(alg):
    mesh, _ = all_reduce_row(8, 64 * MiB, "mesh")
    other, _ = all_reduce_row(8, 64 * MiB, alg)
    assert other.duration_us > mesh.duration_us


def test_collective_reads_and_writes_hbm():
    row, _ = all_reduce_row(8, 64 * MiB)
    # each rank sends and receives 2 (N-1)/N of the message; received reduce pieces are read again
    assert row.bytes_read == row.bytes_written == 2 * 7 * 8 * MiB
    assert row.hbm_bytes == row.bytes_read + row.bytes_written + 7 * 8 * MiB


def matmul_beside_all_reduce(world_size, n, grad_elems):
    """Every rank all-reduces grad_elems fp16 asynchronously and meanwhile runs an n^3 fp16 matmul;
    returns device 0's (all_reduce row, matmul row)."""
    with Simulator("Ascend910B2", world_size=world_size, trace="ops", mode="meta") as sim:
        def fn(rank):
            grad = torch_npu.empty_with_format((grad_elems,), "float16")
            a = torch_npu.empty_with_format((n, n), "float16")
            b = torch_npu.empty_with_format((n, n), "float16")
            work = dist.all_reduce(grad, async_op=True)       # on the comm stream
            torch_npu.npu_linear(a, b)                        # the matmul meanwhile
            work.wait()
        sim.spmd(fn)
        ops = [o for o in sim.report().ops if o.device == 0]
    return next(o for o in ops if o.name == "all_reduce"), next(o for o in ops if o.name == "npu_linear")


def overlap_us(ar, mm):
    return min(mm.end_us, ar.end_us) - max(mm.start_us, ar.start_us)


def check_matmul_overlaps_all_reduce(ar, mm):
    assert ar.stream == "hccl" and mm.stream == "default"
    assert mm.start_us < ar.end_us and ar.start_us < mm.end_us          # they run at the same time
    assert overlap_us(ar, mm) > 0.5 * min(mm.duration_us, ar.duration_us)


def test_a_matmul_overlaps_an_all_reduce_on_the_comm_stream():
    # 8 ranks, a 16 MiB all_reduce (~80 us) beside a 2048^3 matmul (~60 us): comparable times, so a
    # matmul that waited for the collective (or a collective that blocked the default stream) would
    # overlap by nothing and fail. The 8 x 4096^3 + 128 MiB case is in benchmarks/big_cases.py.
    check_matmul_overlaps_all_reduce(*matmul_beside_all_reduce(8, 2048, 8 * MiB))


def test_blocking_all_reduce_orders_the_current_stream():
    with Simulator("Ascend910B2", world_size=2, trace="ops", mode="meta") as sim:
        def fn(rank):
            g = torch_npu.empty_with_format((16 * MiB,), "float16")
            dist.all_reduce(g)
            torch_npu.one_(g)
        sim.spmd(fn)
        ops = [o for o in sim.report().ops if o.device == 0]
    ar = next(o for o in ops if o.name == "all_reduce")
    one = next(o for o in ops if o.name == "one_")
    assert one.start_us >= ar.end_us


def _all_to_all_rows(splits, row_elems=1024):
    n = len(splits)
    with Simulator("Ascend910B2", world_size=n, trace="ops", mode="meta") as sim:
        def fn(r):
            x = torch_npu.empty_with_format((sum(splits[r]), row_elems), "float16")
            recv = [splits[j][r] for j in range(n)]
            dist.all_to_all_single(torch_npu.empty_with_format((sum(recv), row_elems), "float16"), x, recv,
                                   splits[r])
        sim.spmd(fn)
        rows = {o.device: o for o in sim.report().ops if o.name == "all_to_all_single"}
    assert sorted(rows) == list(range(n))
    return rows, sim


def test_all_to_all_v_moves_each_ranks_own_split_sizes():
    """Unequal splits: each rank sends its row of the byte matrix and receives its column (the
    diagonal stays home); on the HCCS mesh every pair has its own link, so the heaviest pair sets
    the time: one link latency plus its bytes at the link's bandwidth."""
    n, row_bytes = 8, 1024 * 2
    splits = [[64] * n for _ in range(n)]
    splits[2][5] = 512
    splits[6] = [0] * n                          # a rank that sends nothing
    rows, sim = _all_to_all_rows(splits)
    sent = lambda i: sum(splits[i][j] for j in range(n) if j != i) * row_bytes      # noqa: E731
    got = lambda j: sum(splits[i][j] for i in range(n) if i != j) * row_bytes       # noqa: E731
    for r, o in rows.items():
        assert (o.bytes_read, o.bytes_written) == (sent(r), got(r))
        assert o.attrs["message_bytes"] == sum(map(sum, splits)) * row_bytes
    hccs = sim.chip.links["hccs"]
    heavy = 512 * row_bytes
    assert rows[0].duration_us == pytest.approx(hccs.latency_us + heavy / (hccs.bandwidth_GBps * 1e3), rel=1e-3)
    uniform, _ = _all_to_all_rows([[64] * n for _ in range(n)])
    assert uniform[0].duration_us < 0.5 * rows[0].duration_us
