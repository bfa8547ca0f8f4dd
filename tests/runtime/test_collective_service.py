"""The runtime's one collective service (ascend_sim.runtime.collective): meet, then queue kernels
and collectives joined by events -- as ascend_sim.distributed and the fused ops use it."""
import pytest

import ascend_sim.distributed as dist
from ascend_sim import Simulator, torch_npu
from ascend_sim.isa import CommStep, KernelPlan, ProgramBuilder, WaitComm
from ascend_sim.runtime import CollectiveMismatchError, Task, collective

MiB = 1 << 20


def mmad_plan(chip):
    b = ProgramBuilder(chip, "AIC")
    for _ in range(64):
        b.mmad(128, 256, 64, "float16")
    return KernelPlan("mmad", "AIC", [[b.build()]])


def kernel_submitter(sim):
    def kernel(plan, host_launch):
        return [sim.submit(Task(plan.name, "kernel", sim.current_stream, plan=plan, host_launch=host_launch))]
    return kernel


def run(world, items_of, *, blocking=True, then=None):
    """Every rank meets with its items' CommSteps and queues the items; returns ({rank: rows}, calls)."""
    calls_seen = {}
    with Simulator("Ascend910B2", world_size=world, trace="ops", mode="meta") as sim:
        def fn(rank):
            items = items_of(rank, sim.chip)
            steps = [i for i in items if isinstance(i, CommStep)]
            _, calls = collective.meet(sim, sim.world.group(None), "fused", (), None, None, steps)
            calls_seen[rank] = calls
            collective.queue(sim, items, calls, kernel=kernel_submitter(sim), attrs={"op": "fused"},
                             blocking=blocking)
            if then is not None:
                then(sim)
        sim.spmd(fn)
        rows = {}
        for o in sim.report().ops:
            rows.setdefault(o.device, []).append(o)
    return rows, calls_seen


def test_kernels_and_steps_are_ordered_by_after_and_waitcomm_and_launched_once():
    items = lambda r, chip: [mmad_plan(chip), CommStep("all_reduce", 8 * MiB, "fused.all_reduce"),   # noqa: E731
                             WaitComm(0), mmad_plan(chip)]
    rows, calls = run(2, items)
    k1, comm, k2 = sorted(rows[0], key=lambda o: o.start_us)
    assert (k1.stream, comm.stream, k2.stream) == ("default", "hccl", "default")
    assert comm.start_us >= k1.end_us - 1e-9 and k2.start_us >= comm.end_us - 1e-9
    assert comm.attrs["op"] == "fused" and comm.name == "fused.all_reduce"
    assert k1.launch_us > 0 and comm.launch_us == 0 and k2.launch_us == 0      # one launch per call
    assert calls[0] is calls[1] or calls[0] == calls[1]                          # one schedule, shared


def test_a_step_after_an_earlier_kernel_overlaps_the_later_one():
    items = lambda r, chip: [mmad_plan(chip), mmad_plan(chip),                               # noqa: E731
                             CommStep("all_gather", 64 * MiB, "fused.all_gather", after=0)]
    rows, _ = run(2, items)
    k1, k2 = [o for o in rows[0] if o.stream == "default"]
    (comm,) = [o for o in rows[0] if o.stream == "hccl"]
    assert comm.start_us >= k1.end_us - 1e-9 and comm.start_us < k2.end_us


def test_non_blocking_leaves_the_current_stream_free():
    def later(sim):
        sim.submit(Task("after", "kernel", sim.current_stream, plan=mmad_plan(sim.chip)))
    items = lambda r, chip: [CommStep("all_reduce", 64 * MiB, "ar")]                           # noqa: E731
    blocked, _ = run(2, items, then=later)
    free, _ = run(2, items, blocking=False, then=later)
    for rows, overlaps in ((blocked, False), (free, True)):
        ar = next(o for o in rows[0] if o.name == "ar")
        k = next(o for o in rows[0] if o.name == "after")
        assert (k.start_us < ar.end_us) is overlaps


def test_all_to_all_v_matrix_is_assembled_from_each_ranks_own_row():
    n = 4
    want = [[0, 10, 20, 30], [5, 0, 0, 7], [1, 2, 0, 3], [0, 0, 9, 0]]

    def items(r, chip):     # each rank knows only what it sends
        mine = [[0] * n for _ in range(n)]
        mine[r] = want[r]
        return [CommStep("all_to_all_v", sum(want[r]), "a2av", send_bytes=mine)]
    rows, calls = run(n, items)
    call = calls[0][0]
    assert call.kind == "all_to_all_v" and call.nbytes == sum(map(sum, want))
    got = {(t.src, t.dst): t.nbytes for st in call.steps for t in st}
    assert got == {(i, j): want[i][j] for i in range(n) for j in range(n) if i != j and want[i][j]}
    for r in range(n):
        (row,) = rows[r]
        assert row.bytes_read == sum(want[r]) - want[r][r]
        assert row.bytes_written == sum(want[i][r] for i in range(n) if i != r)


def test_ranks_that_disagree_about_a_step_raise():
    items = lambda r, chip: [CommStep("all_reduce" if r == 0 else "all_gather", MiB, "x")]    # noqa: E731
    with pytest.raises(CollectiveMismatchError, match="ranks disagree"):
        run(2, items)


def test_a_group_of_one_queues_no_collective_but_keeps_the_order():
    items = lambda r, chip: [CommStep("all_reduce", MiB, "ar"), WaitComm(0), mmad_plan(chip)]  # noqa: E731
    rows, calls = run(1, items)
    assert [o.name for o in rows[0]] == ["mmad"] and calls[0][0].steps == []
    assert rows[0][0].launch_us > 0            # the call's launch moves to its first real task


def test_distributed_and_a_fused_step_take_the_same_time_for_the_same_collective():
    fused, _ = run(8, lambda r, chip: [CommStep("all_reduce", 16 * MiB, "ar")])
    with Simulator("Ascend910B2", world_size=8, trace="ops", mode="meta") as sim:
        sim.spmd(lambda r: dist.all_reduce(torch_npu.empty_with_format((8 * MiB,), "float16")))
        d = next(o for o in sim.report().ops if o.name == "all_reduce")
    f = fused[0][0]
    assert f.attrs["algorithm"] == d.attrs["algorithm"] == "mesh"
    assert f.duration_us == pytest.approx(d.duration_us, rel=1e-12)
    assert (f.bytes_read, f.bytes_written, f.hbm_bytes) == (d.bytes_read, d.bytes_written, d.hbm_bytes)
