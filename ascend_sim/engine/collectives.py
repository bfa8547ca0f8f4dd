"""Collective algorithms as schedules: the transfers each step of a collective makes.

A schedule is a list of steps; every transfer of a step runs at once, and a step starts when the
previous one has finished on every rank (the algorithms here are symmetric, so this is the
order their data dependencies impose). A transfer moves ``nbytes`` from ``src`` to ``dst``; with
``reduce`` the receiver also reads its own copy to combine them (one more HBM read).

Algorithms (HCCL's families):

* ``ring`` -- N-1 steps of reduce-scatter then N-1 of all-gather, 1/N of the message per step to
  the next rank: bandwidth-optimal on any topology, 2(N-1) latencies;
* ``mesh`` -- full-mesh direct: every rank sends each peer its piece at once (one step for
  reduce-scatter, one for all-gather): what an HCCS full mesh is built for;
* ``halving_doubling`` -- recursive halving then doubling: log2(N) steps each way (N a power of
  two), latency-optimal for small messages;
* ``hierarchical`` -- mesh inside each server, ring across servers between ranks of the same
  local index, mesh again inside: keeps the slow inter-server links to 1/(ranks per server) of
  the data.

All-to-all (uniform, or ``all_to_all_v`` with a [src][dst] byte matrix) is a direct exchange:
``mesh`` sends every peer its bytes at once, the others pair ranks off step by step (in step k
each rank sends to the rank k after it). Each transfer carries exactly the matrix entry, so the
bytes on the links are the matrix's. ``send`` (point to point) is one ``direct`` transfer.

:func:`choose_algorithm` is the default rule, like HCCL's: mesh inside one server; across
servers hierarchical, with halving-doubling across for small messages; ring (or
halving-doubling for small messages) on topologies without a mesh.
"""
from __future__ import annotations

from dataclasses import dataclass

ALGORITHMS = ("ring", "mesh", "halving_doubling", "hierarchical")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "all_to_all_v", "broadcast", "send",
               "barrier")
SMALL_MESSAGE = 1 << 20   # below this, latency dominates: pick the algorithm with the fewest steps


@dataclass(frozen=True)
class CollectiveCall:
    """One collective as every rank's task shares it: what, how, who, how big, and its steps."""

    kind: str
    algorithm: str
    ranks: tuple[int, ...]
    nbytes: int
    steps: list
    name: str = ""


@dataclass(frozen=True)
class Transfer:
    src: int
    dst: int
    nbytes: int
    reduce: bool = False


def _split(nbytes: int, parts: int) -> list[int]:
    base, extra = divmod(nbytes, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _ring_rs(ranks: list[int], nbytes: int) -> list[list[Transfer]]:
    n = len(ranks)
    chunk = -(-nbytes // n)
    return [[Transfer(ranks[i], ranks[(i + 1) % n], chunk, True) for i in range(n)] for _ in range(n - 1)]


def _ring_ag(ranks: list[int], nbytes_out: int) -> list[list[Transfer]]:
    n = len(ranks)
    chunk = -(-nbytes_out // n)
    return [[Transfer(ranks[i], ranks[(i + 1) % n], chunk) for i in range(n)] for _ in range(n - 1)]


def _mesh_rs(ranks: list[int], nbytes: int) -> list[list[Transfer]]:
    chunk = -(-nbytes // len(ranks))
    return [[Transfer(s, d, chunk, True) for s in ranks for d in ranks if s != d]]


def _mesh_ag(ranks: list[int], nbytes_out: int) -> list[list[Transfer]]:
    chunk = -(-nbytes_out // len(ranks))
    return [[Transfer(s, d, chunk) for s in ranks for d in ranks if s != d]]


def _hd_rs(ranks: list[int], nbytes: int) -> list[list[Transfer]]:
    n = len(ranks)
    steps, size, dist = [], nbytes, n // 2
    while dist >= 1:
        size = -(-size // 2)
        steps.append([Transfer(ranks[i], ranks[i ^ dist], size, True) for i in range(n)])
        dist //= 2
    return steps


def _hd_ag(ranks: list[int], nbytes_out: int) -> list[list[Transfer]]:
    n = len(ranks)
    steps, size, dist = [], -(-nbytes_out // n), 1
    while dist < n:
        steps.append([Transfer(ranks[i], ranks[i ^ dist], size) for i in range(n)])
        size *= 2
        dist *= 2
    return steps


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _flat(algorithm: str, kind: str, ranks: list[int], nbytes: int) -> list[list[Transfer]]:
    if algorithm == "halving_doubling" and not _is_pow2(len(ranks)):
        raise ValueError(f"halving_doubling needs a power-of-two number of ranks, got {len(ranks)}")
    rs = {"ring": _ring_rs, "mesh": _mesh_rs, "halving_doubling": _hd_rs}[algorithm]
    ag = {"ring": _ring_ag, "mesh": _mesh_ag, "halving_doubling": _hd_ag}[algorithm]
    if kind == "all_reduce":
        return rs(ranks, nbytes) + ag(ranks, nbytes)
    if kind == "reduce_scatter":
        return rs(ranks, nbytes)
    if kind == "all_gather":
        return ag(ranks, nbytes)
    raise ValueError(kind)


def _hierarchical(kind: str, groups: list[list[int]], nbytes: int, small: bool) -> list[list[Transfer]]:
    """Intra-server mesh, inter-server ring (or halving-doubling), intra-server mesh."""
    local = len(groups[0])
    if any(len(g) != local for g in groups):
        raise ValueError("hierarchical collectives need the same number of ranks in every server")
    columns = [[g[i] for g in groups] for i in range(local)]
    inter_alg = "halving_doubling" if small and _is_pow2(len(groups)) else "ring"

    def merge(per_group):   # run the same step of every group together
        depth = max(len(s) for s in per_group)
        return [[t for s in per_group if k < len(s) for t in s[k]] for k in range(depth)]

    piece = -(-nbytes // local)
    if kind == "all_reduce":
        return (merge([_mesh_rs(g, nbytes) for g in groups]) +
                merge([_flat(inter_alg, "all_reduce", c, piece) for c in columns]) +
                merge([_mesh_ag(g, nbytes) for g in groups]))
    if kind == "reduce_scatter":
        return (merge([_mesh_rs(g, nbytes) for g in groups]) +
                merge([_flat(inter_alg, "reduce_scatter", c, piece) for c in columns]))
    if kind == "all_gather":
        return (merge([_flat(inter_alg, "all_gather", c, piece) for c in columns]) +
                merge([_mesh_ag(g, nbytes) for g in groups]))
    raise ValueError(kind)


def exchange_matrix(kind: str, n: int, nbytes: int, send_bytes=None) -> tuple[tuple[int, ...], ...]:
    """The [src][dst] bytes of an all-to-all over ``n`` ranks: ``send_bytes`` for all_to_all_v; for
    the uniform all_to_all every rank sends each rank (itself too) 1/n of its ``nbytes``."""
    if kind == "all_to_all_v":
        if send_bytes is None or len(send_bytes) != n or any(len(row) != n for row in send_bytes):
            raise ValueError(f"all_to_all_v over {n} ranks needs an {n} x {n} send_bytes matrix, got {send_bytes!r}")
        return tuple(tuple(int(b) for b in row) for row in send_bytes)
    chunk = -(-nbytes // n)
    return tuple(tuple(chunk for _ in range(n)) for _ in range(n))


def schedule(kind: str, algorithm: str, ranks: list[int], nbytes: int, *, servers: list[list[int]] | None = None,
             root: int | None = None, send_bytes=None) -> list[list[Transfer]]:
    """The steps of collective ``kind`` over ``ranks`` (global device ids) with ``algorithm``.

    nbytes: all_reduce/reduce_scatter/all_to_all -- the full input per rank; all_gather -- the full
    output; broadcast/send -- the message. all_to_all_v takes ``send_bytes[i][j]`` = bytes
    ``ranks[i]`` sends ``ranks[j]`` (the diagonal stays on its rank). broadcast's ``root`` is its
    source; send's is the sender, and the other of its two ranks receives."""
    if kind not in COLLECTIVES:
        raise ValueError(f"unknown collective {kind!r}; collectives: {', '.join(COLLECTIVES)}")
    n = len(ranks)
    if kind == "send":
        if algorithm != "direct" or n != 2 or root not in ranks:
            raise ValueError(f"send is one 'direct' transfer from root to the other of two ranks, got algorithm "
                             f"{algorithm!r}, ranks {list(ranks)}, root {root!r}")
        return [[Transfer(root, next(r for r in ranks if r != root), nbytes)]]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; algorithms: {', '.join(ALGORITHMS)}")
    if n == 1:
        return []
    if kind == "barrier":
        return _flat("halving_doubling" if _is_pow2(n) else "ring", "all_reduce", ranks, 0) if algorithm != "mesh" \
            else _mesh_rs(ranks, 0)
    if kind in ("all_to_all", "all_to_all_v"):
        m = exchange_matrix(kind, n, nbytes, send_bytes)
        if algorithm == "mesh":
            return [[Transfer(ranks[i], ranks[j], m[i][j]) for i in range(n) for j in range(n)
                     if i != j and m[i][j]]]
        # pairwise exchange: in step k every rank sends to the rank k after it
        return [[Transfer(ranks[i], ranks[(i + k) % n], m[i][(i + k) % n]) for i in range(n)
                 if m[i][(i + k) % n]] for k in range(1, n)]
    if kind == "broadcast":
        r = ranks.index(root)
        order = ranks[r:] + ranks[:r]
        if algorithm == "mesh":
            return [[Transfer(root, d, nbytes) for d in ranks if d != root]]
        if algorithm == "ring":   # pipelined chain: N-1 pieces flowing down the chain
            piece = -(-nbytes // n)
            return [[Transfer(order[i], order[i + 1], piece) for i in range(min(k + 1, n - 1))]
                    for k in range(2 * (n - 1) - 1)] if n > 1 else []
        steps, have = [], [order[0]]      # binomial tree
        while len(have) < n:
            new = order[len(have):2 * len(have)]
            steps.append([Transfer(s, d, nbytes) for s, d in zip(have, new)])
            have = have + new
        return steps
    if algorithm == "hierarchical":
        groups = [[r for r in g if r in ranks] for g in (servers or [ranks])]
        groups = [g for g in groups if g]
        if len(groups) == 1:
            return _flat("mesh", kind, ranks, nbytes)
        return _hierarchical(kind, groups, nbytes, nbytes < SMALL_MESSAGE)
    return _flat(algorithm, kind, ranks, nbytes)


def plan_collective(kind: str, ranks, nbytes: int, topology, *, algorithm: str | None = None,
                    root: int | None = None, send_bytes=None, name: str = "") -> CollectiveCall:
    """One collective over ``ranks`` on ``topology``: the algorithm (``algorithm``, or the default
    rule for this topology) and its schedule. all_to_all_v's message is the sum of its matrix."""
    ranks = list(ranks)
    if kind == "all_to_all_v":
        nbytes = sum(map(sum, send_bytes))
    servers = topology.servers()
    alg = algorithm or choose_algorithm(kind, ranks, nbytes, servers, topology.mesh)
    steps = schedule(kind, alg, ranks, nbytes, servers=servers, root=root, send_bytes=send_bytes)
    return CollectiveCall(kind, alg, tuple(ranks), nbytes, steps, name)


def choose_algorithm(kind: str, ranks: list[int], nbytes: int, servers: list[list[int]], mesh: bool) -> str:
    """HCCL-like default: mesh inside one server; hierarchical across servers; ring or
    halving-doubling on topologies without a mesh (by message size)."""
    groups = [g for g in ([r for r in s if r in ranks] for s in servers) if g]
    if kind == "send":
        return "direct"
    if kind == "barrier" or len(ranks) <= 1:
        return "mesh" if mesh else "ring"
    if mesh and len(groups) == 1:
        return "mesh"
    if mesh and len(groups) > 1 and len({len(g) for g in groups}) == 1 and kind in ("all_reduce", "all_gather",
                                                                                    "reduce_scatter"):
        return "hierarchical"
    if nbytes < SMALL_MESSAGE and _is_pow2(len(ranks)) and kind in ("all_reduce", "all_gather", "reduce_scatter",
                                                                     "broadcast"):
        return "halving_doubling"
    return "ring"
