"""Collectives: results equal numpy's on every rank, for every algorithm; mismatches raise."""
import numpy as np
import pytest

import ascend_sim.distributed as dist
from ascend_sim import Simulator, torch_npu
from ascend_sim.runtime import CollectiveMismatchError

ALGS = ["ring", "mesh", "halving_doubling", "hierarchical"]


def inputs(rank, shape=(5, 33), dtype=np.float32):
    rng = np.random.default_rng(100 + rank)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 10).astype(dtype)
    return rng.integers(-50, 50, shape).astype(dtype)


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("op, ref", [("sum", np.sum), ("max", np.max), ("min", np.min), ("prod", np.prod)])
def test_all_reduce_every_op_and_algorithm(alg, op, ref):
    n = 4
    with Simulator(world_size=n, trace="ops") as sim:
        def fn(rank):
            x = inputs(rank, dtype=np.int32 if op == "prod" else np.float32)
            if op == "prod":
                x = np.clip(x, -3, 3)
            dist.all_reduce(x, op=getattr(dist.ReduceOp, op.upper()), algorithm=alg)
            return x
        got = sim.spmd(fn)
    xs = [inputs(r, dtype=np.int32 if op == "prod" else np.float32) for r in range(n)]
    if op == "prod":
        xs = [np.clip(x, -3, 3) for x in xs]
    want = ref(np.stack([x.astype(np.float64) for x in xs]), axis=0)
    for g in got:
        if op == "prod":
            assert np.array_equal(g, want.astype(np.int32))          # exact for integers
        else:
            np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-5)


def test_integer_sum_is_exact_and_fp16_within_its_tolerance():
    n = 8
    with Simulator(world_size=n, trace="ops") as sim:
        ints = sim.spmd(lambda r: (lambda x: (dist.all_reduce(x), x)[1])(inputs(r, dtype=np.int64)))
        halfs = sim.spmd(lambda r: (lambda x: (dist.all_reduce(x), x)[1])(inputs(r, dtype=np.float16)))
    want_i = np.sum([inputs(r, dtype=np.int64) for r in range(n)], axis=0)
    want_h = np.sum([inputs(r, dtype=np.float16).astype(np.float64) for r in range(n)], axis=0)
    for g in ints:
        assert np.array_equal(g, want_i)
    for g in halfs:
        np.testing.assert_allclose(g.astype(np.float64), want_h, rtol=2e-3, atol=2e-3 * np.abs(want_h).max())


@pytest.mark.parametrize("alg", ALGS)
def test_all_gather_and_reduce_scatter(alg):
    n = 4
    with Simulator(world_size=n, trace="ops") as sim:
        def fn(rank):
            x = inputs(rank, (3, 7))
            out = np.zeros((3 * n, 7), np.float32)
            dist.all_gather_into_tensor(out, x, algorithm=alg)
            big = inputs(rank, (4 * n, 5))
            part = np.zeros((4, 5), np.float32)
            dist.reduce_scatter_tensor(part, big, algorithm=alg)
            return out, part
        got = sim.spmd(fn)
    gathered = np.concatenate([inputs(r, (3, 7)) for r in range(n)])
    total = np.sum([inputs(r, (4 * n, 5)).astype(np.float64) for r in range(n)], axis=0)
    for rank, (out, part) in enumerate(got):
        assert np.array_equal(out, gathered)
        np.testing.assert_allclose(part, total[4 * rank:4 * rank + 4], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("alg", ["mesh", "ring"])
@pytest.mark.parametrize("splits", [[[1, 2, 0], [2, 1, 1], [0, 3, 2]],      # rows rank i sends to rank j
                                    [[1, 2, 0], [0, 0, 0], [0, 3, 2]]])     # rank 1 sends nothing
def test_all_to_all_single_with_split_sizes(alg, splits):
    n = 3
    with Simulator(world_size=n, trace="ops") as sim:
        def fn(rank):
            rows_in = sum(splits[rank])
            x = np.arange(rows_in * 4, dtype=np.int32).reshape(rows_in, 4) + 1000 * rank
            recv = [splits[j][rank] for j in range(n)]
            out = np.zeros((sum(recv), 4), np.int32)
            dist.all_to_all_single(out, x, recv, splits[rank], algorithm=alg)
            return out
        got = sim.spmd(fn)
    for rank in range(n):
        parts = []
        for j in range(n):
            start = sum(splits[j][:rank])
            x = np.arange(sum(splits[j]) * 4, dtype=np.int32).reshape(-1, 4) + 1000 * j
            parts.append(x[start:start + splits[j][rank]])
        assert np.array_equal(got[rank], np.concatenate(parts))


@pytest.mark.parametrize("alg", ["mesh", "ring", "halving_doubling"])
def test_broadcast_send_recv_barrier(alg):
    n = 4
    with Simulator(world_size=n, trace="ops") as sim:
        def fn(rank):
            x = inputs(rank, (6,))
            dist.broadcast(x, src=2, algorithm=alg)
            y = np.zeros(6, np.float32)
            if rank == 0:
                dist.send(inputs(0, (6,)), dst=3)
            if rank == 3:
                dist.recv(y, src=0)
            dist.barrier()
            return x, y
        got = sim.spmd(fn)
    for rank, (x, y) in enumerate(got):
        assert np.array_equal(x, inputs(2, (6,)))
    assert np.array_equal(got[3][1], inputs(0, (6,)))


def test_groups():
    with Simulator(world_size=4, trace="ops") as sim:
        def fn(rank):
            g = dist.new_group([0, 2]) if rank in (0, 2) else dist.new_group([1, 3])
            x = np.array([float(rank)], np.float32)
            dist.all_reduce(x, group=g)
            return x[0], dist.get_rank(g), dist.get_world_size(g)
        got = sim.spmd(fn)
    assert got == [(2.0, 0, 2), (4.0, 0, 2), (2.0, 1, 2), (4.0, 1, 2)]


def test_different_collectives_on_ranks_raise_naming_them():
    with Simulator(world_size=2, trace="ops") as sim:
        def fn(rank):
            x = np.zeros(4, np.float32)
            if rank == 0:
                dist.all_reduce(x)
            else:
                dist.broadcast(x, src=0)
        with pytest.raises(CollectiveMismatchError) as e:
            sim.spmd(fn)
    assert "rank 0: all_reduce" in str(e.value) and "rank 1: broadcast" in str(e.value)


def test_shape_mismatch_raises():
    with Simulator(world_size=2, trace="ops") as sim:
        with pytest.raises(CollectiveMismatchError, match="ranks disagree"):
            sim.spmd(lambda r: dist.all_reduce(np.zeros(4 + r, np.float32)))


def test_a_rank_that_never_comes_is_named():
    with Simulator(world_size=3, trace="ops") as sim:
        def fn(rank):
            if rank != 1:
                dist.all_reduce(np.zeros(4, np.float32))
        with pytest.raises(CollectiveMismatchError, match=r"rank\(s\) \[1\] returned without joining"):
            sim.spmd(fn)


def test_crossed_groups_deadlock_is_reported():
    with Simulator(world_size=3, trace="ops") as sim:
        def fn(rank):
            a = dist.new_group([0, 1])
            b = dist.new_group([1, 2])
            c = dist.new_group([0, 2])
            x = np.zeros(2, np.float32)
            order = {0: (a, c), 1: (b, a), 2: (c, b)}[rank]   # a cycle of waits
            for g in order:
                dist.all_reduce(x, group=g)
        with pytest.raises(CollectiveMismatchError, match="deadlock"):
            sim.spmd(fn)


def test_meta_mode_collectives_keep_shapes_and_time():
    with Simulator(world_size=2, trace="ops", mode="meta") as sim:
        sim.spmd(lambda r: dist.all_reduce(torch_npu.empty_with_format((1 << 20,), "float16")))
        rows = [r for r in sim.report().ops if r.name == "all_reduce"]
    assert len(rows) == 2 and all(r.duration_us > 0 for r in rows)


def test_spmd_outside_with_still_runs_on_its_own_simulator():
    sim = Simulator(world_size=4, trace="ops")

    def fn(rank):
        x = np.array([float(rank)], np.float32)
        dist.all_reduce(x)
        return x[0]
    assert sim.spmd(fn) == [6.0] * 4
