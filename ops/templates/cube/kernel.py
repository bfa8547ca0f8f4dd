"""The kernel layer: which core runs which tiles, in what order.

A block scheduler deals the work of one or more GEMMs to the cube cores. A work item is one
output tile of one batch (and one K part with split_k): ``(batch, m tile, n tile, k part)``.

* :class:`SwizzleScheduler` -- one GEMM: tiles walked in ``iterate_order`` over bands of
  ``swizzle`` tiles (CATLASS GemmIdentityBlockSwizzle), dealt round-robin to ``block_dim`` cores;
* :class:`GroupedScheduler` -- several GEMMs in one kernel (a grouped / MoE matmul): group after
  group on every core, each group's tiles dealt round-robin from the core after the previous
  group's last one, so the groups together keep every core busy.

A scheduler returns, per core, its *segments*: (GEMM index, work items). The kernel runs each
segment through the block layer on fresh buffers, waiting between segments until the previous
one's buffers are free.
"""
from __future__ import annotations

import dataclasses

from ascend_sim.isa import KernelPlan, class_programs

from .block import BlockMmad, Gemm, drain
from .tile import TileCopy
from .tiling import MatmulTiling


def swizzled(n_m: int, n_n: int, order: str, s: int) -> list[tuple[int, int]]:
    """Tile coordinates (mi, ni) in walking order. "M": the M index moves fastest, over bands of
    ``s`` N-columns (a column of B tiles is reused by every M tile while it is in L2); "N": the
    mirror image. Consecutive tiles run on different cores at the same time, so the walk decides
    what L2 holds in common."""
    if order == "N":
        return [(mi, ni) for ni, mi in swizzled(n_n, n_m, "M", s)]
    out = []
    for g in range(0, n_n, s):
        cols = min(s, n_n - g)
        for mi in range(n_m):
            for c in range(cols):
                out.append((mi, g + c))
    return out


def tile_order(g: Gemm, t: MatmulTiling) -> list[tuple[int, int, int, int]]:
    """Every work item of one GEMM, in the tiling's walking order."""
    n_m, n_n = -(-g.m // t.base_m), -(-g.n // t.base_n)
    k_l1 = t.base_k * t.step_k
    k_span = -(-(-(-g.k // t.split_k)) // k_l1) * k_l1
    return [(bi, mi, ni, kp) for bi in range(g.batch) for mi, ni in swizzled(n_m, n_n, t.iterate_order, t.swizzle)
            for kp in range(t.split_k) if kp * k_span < g.k]


class SwizzleScheduler:
    """One GEMM's tiles, walked in the tiling's order, dealt round-robin to ``block_dim`` cores."""

    def segments(self, chip, gemms: list[Gemm], t: MatmulTiling) -> list[list[tuple[int, list]]]:
        (g,) = gemms
        order = tile_order(g, t)
        block_dim = min(t.block_dim or chip.cores.aic, len(order))
        return [[(0, order[blk::block_dim])] for blk in range(block_dim)]


class GroupedScheduler:
    """Several GEMMs in one kernel: group after group on every cube core; group j's tiles are
    dealt round-robin (over ``block_dim`` or fewer cores, as its own kernel would be) starting at
    the core after group j-1's last one."""

    def segments(self, chip, gemms: list[Gemm], t: MatmulTiling) -> list[list[tuple[int, list]]]:
        cores = chip.cores.aic
        lanes: list[list] = [[] for _ in range(cores)]
        start = 0
        for j, g in enumerate(gemms):
            order = tile_order(g, t)
            block_dim = min(t.block_dim or cores, len(order))
            for blk in range(block_dim):
                lanes[(start + blk) % cores].append((j, order[blk::block_dim]))
            start = (start + block_dim) % cores
        return [lane for lane in lanes if lane]


def cube_kernel(name: str, chip, gemms: list[Gemm], t: MatmulTiling, *, scheduler=None,
                tile: TileCopy | None = None) -> KernelPlan:
    """The AIC kernel computing ``gemms`` under tiling ``t``: the scheduler's segments per core
    (kernel layer), each run by the block layer with the tile layer's copies."""
    scheduler = scheduler or (SwizzleScheduler() if len(gemms) == 1 else GroupedScheduler())
    tile = tile or TileCopy()
    blocks_of = [BlockMmad(chip, g, t, tile) for g in gemms]

    def emit(b, lane):
        for s, (j, work) in enumerate(lane):
            if s:
                drain(b, since)
            since = len(b.prog.kind)
            blocks_of[j].run(b, work)

    def shape(lane):       # cores whose tiles have the same sizes run one program at other offsets
        return tuple((j, blocks_of[j].shape(work)) for j, work in lane)

    blocks = [[p] for p in class_programs(chip, "AIC", scheduler.segments(chip, gemms, t),
                                          shape if tile.position_independent else None, emit)]
    tensors = tuple(dict.fromkeys(x for g in gemms for x in g.tensors))
    flops = sum(2.0 * g.batch * g.m * g.n * g.k for g in gemms)
    return KernelPlan(name, "AIC", blocks, tensors=tensors, tiling=dataclasses.replace(t, block_dim=len(blocks)),
                      flops=flops)
