"""Collective schedules: conservation of bytes, step counts, the default rule."""
import collections

import numpy as np
import pytest

from ascend_sim.engine.collectives import Transfer, choose_algorithm, plan_collective, schedule
from ascend_sim.hw import get_chip
from ascend_sim.hw.topology import default_topology
from ascend_sim.isa import CommStep, ISAError

MiB = 1 << 20


def sent_by(steps, rank):
    return sum(t.nbytes for s in steps for t in s if t.src == rank)


@pytest.mark.parametrize("alg, steps", [("ring", 14), ("mesh", 2), ("halving_doubling", 6)])
def test_all_reduce_sends_2_n_minus_1_over_n_of_the_message(alg, steps):
    ranks, n = list(range(8)), 8
    s = schedule("all_reduce", alg, ranks, 8 * MiB)
    assert len(s) == steps
    for r in ranks:
        assert sent_by(s, r) == 2 * (n - 1) * MiB          # 2 (N-1)/N x 8 MiB


def test_every_step_of_a_ring_uses_each_link_once():
    s = schedule("all_reduce", "ring", list(range(4)), 4 * MiB)
    for step in s:
        assert sorted((t.src, t.dst) for t in step) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert all(t.reduce for t in s[0]) and not any(t.reduce for t in s[-1])


def test_hierarchical_keeps_most_data_inside_servers():
    servers = [list(range(8)), list(range(8, 16))]
    s = schedule("all_reduce", "hierarchical", list(range(16)), 16 * MiB, servers=servers)
    inter = sum(t.nbytes for st in s for t in st if (t.src < 8) != (t.dst < 8))
    intra = sum(t.nbytes for st in s for t in st if (t.src < 8) == (t.dst < 8))
    # each rank's 1/8 piece is all-reduced across the 2 servers: 2 x (2-1)/2 x 2 MiB per rank
    assert inter == 16 * 2 * MiB
    assert intra > 3 * inter


def test_all_gather_and_reduce_scatter_move_n_minus_1_pieces():
    for alg in ("ring", "mesh", "halving_doubling"):
        ag = schedule("all_gather", alg, list(range(4)), 4 * MiB)
        rs = schedule("reduce_scatter", alg, list(range(4)), 4 * MiB)
        assert sent_by(ag, 0) == 3 * MiB and sent_by(rs, 0) == 3 * MiB


def test_all_to_all_v_sends_the_matrix():
    m = [[0, 1, 2], [3, 0, 4], [5, 6, 0]]
    for alg in ("mesh", "ring"):
        s = schedule("all_to_all_v", alg, [0, 1, 2], 0, send_bytes=m)
        got = {(t.src, t.dst): t.nbytes for st in s for t in st}
        assert got == {(0, 1): 1, (0, 2): 2, (1, 0): 3, (1, 2): 4, (2, 0): 5, (2, 1): 6}
        assert all(t.src != t.dst and t.nbytes > 0 for st in s for t in st)   # the diagonal stays home


@pytest.mark.parametrize("n_dev", [8, 16])
def test_all_to_all_v_conserves_bytes_on_every_link(n_dev):
    """Every byte of the matrix crosses exactly the links of its route, once: summed per link,
    the schedule's transfers carry what the matrix routes over that link (the reference sums the
    matrix itself, pair by pair)."""
    topo = default_topology(get_chip("Ascend910B2"), n_dev)
    ranks = list(range(n_dev))
    rng = np.random.default_rng(7)
    m = rng.integers(0, 5000, (n_dev, n_dev))
    m[1, :] = 0                                     # a rank that sends nothing
    m[2, 5] = 3 << 20                               # and one heavy pair
    call = plan_collective("all_to_all_v", ranks, 0, topo, send_bytes=m.tolist())
    assert call.nbytes == int(m.sum()) and call.algorithm == ("mesh" if n_dev == 8 else "ring")
    want, got = collections.Counter(), collections.Counter()
    for i in ranks:
        for j in ranks:
            if i != j:
                for link in topo.route(i, j)[0]:
                    want[link] += int(m[i, j])
    for step in call.steps:
        for t in step:
            for link in topo.route(t.src, t.dst)[0]:
                got[link] += t.nbytes
    assert +got == +want
    sent = collections.Counter()
    for step in call.steps:
        for t in step:
            sent[t.src, t.dst] += t.nbytes
    assert all(sent[i, j] == m[i, j] for i in ranks for j in ranks if i != j)


def test_uniform_all_to_all_sends_each_peer_its_share():
    s = schedule("all_to_all", "mesh", list(range(4)), 4 * MiB)
    assert sent_by(s, 0) == 3 * MiB and len(s) == 1 and len(s[0]) == 12


def test_send_is_one_direct_transfer_from_the_root():
    assert schedule("send", "direct", [1, 3], 100, root=3) == [[Transfer(3, 1, 100)]]
    assert choose_algorithm("send", [1, 3], 100, [list(range(8))], mesh=True) == "direct"
    with pytest.raises(ValueError, match="direct"):
        schedule("send", "mesh", [1, 3], 100, root=3)


def test_comm_step_send_bytes_only_for_all_to_all_v_and_square():
    assert CommStep("all_to_all_v", 0, send_bytes=[[0, 1], [2, 0]]).send_bytes == ((0, 1), (2, 0))
    assert CommStep("all_reduce", 64, "x.all_reduce", 0) == CommStep("all_reduce", 64, "x.all_reduce", after=0)
    for bad in ([[0, 1]], [[0, -1], [2, 0]]):
        with pytest.raises(ISAError, match="square matrix"):
            CommStep("all_to_all_v", 0, send_bytes=bad)
    with pytest.raises(ISAError, match="only"):
        CommStep("all_to_all", 64, send_bytes=[[0, 1], [2, 0]])
    with pytest.raises(ISAError, match="only"):
        CommStep("all_to_all_v", 64)
    with pytest.raises(ValueError, match="2 x 2"):
        schedule("all_to_all_v", "mesh", [0, 1], 0, send_bytes=[[0, 1, 2]] * 3)


def test_broadcast_reaches_every_rank():
    for alg in ("mesh", "ring", "halving_doubling"):
        s = schedule("broadcast", alg, list(range(5)), MiB, root=2)
        assert {t.dst for st in s for t in st} == {0, 1, 3, 4}


def test_rules_and_errors():
    one, two = [list(range(8))], [list(range(8)), list(range(8, 16))]
    assert choose_algorithm("all_reduce", list(range(8)), 64 * MiB, one, mesh=True) == "mesh"
    assert choose_algorithm("all_reduce", list(range(16)), 64 * MiB, two, mesh=True) == "hierarchical"
    assert choose_algorithm("all_reduce", list(range(4)), 1024, one, mesh=False) == "halving_doubling"
    assert choose_algorithm("all_reduce", list(range(4)), 64 * MiB, one, mesh=False) == "ring"
    with pytest.raises(ValueError, match="power-of-two"):
        schedule("all_reduce", "halving_doubling", list(range(6)), MiB)
    with pytest.raises(ValueError, match="unknown algorithm"):
        schedule("all_reduce", "tree", list(range(4)), MiB)
