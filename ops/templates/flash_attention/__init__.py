"""Flash-attention kernel template: one MIX kernel (AIC : AIV = 1 : 2) shared by the attention ops.

What is modelled -- the structure of Ascend's FlashAttention/PFA/IFA/FIA kernels on split chips,
with every cost coming from the chip's instruction costs:

* kernel: the work is cut into **units**. Prefill: (batch, query head, q-tile of up to ``q_tile``
  rows). Decode (``group_heads``, one query position): (batch, kv head, group of query heads) --
  the G query heads that share a kv head are the rows of one tile, as IFA does for GQA. Units are
  dealt to ``block_dim`` blocks (one per cube core) by longest-work-first, so causal units of
  unequal length still balance. Decode runs in a single pass over the KV sequence per unit (no
  flash-decoding split): combining split results needs a barrier across blocks, which a kernel of
  this engine does not have.
* block: every unit walks its **kv tiles** of ``kv_tile`` keys. Tiles that the sparse mode masks
  completely are skipped -- that is what makes causal attention about half the work. For each
  tile the AIC loads K (MTE2, ``kv_buffers``-deep L1 ring; the Q tile once per unit), moves the
  operands to L0A/L0B (MTE1, ping-pong), computes S = Q K^T (CUBE) and writes S in fp32 to the
  GM **workspace** (FIXPIPE), then signals the AIVs. Each AIV owns half of the tile's rows: it
  loads its S rows into UB, runs the online-softmax steps (scale, pse, mask select, row max,
  exp, row sum, rescale factor, cast of P) and writes P to the workspace. The AIC loads P and the V
  tile, computes the partial O = P V and writes it to the workspace; the AIVs load it and
  rescale-accumulate O in UB. After a unit's last tile the AIVs normalise O, cast (or quantise)
  it and write it out, with the softmax statistics when the op returns them.
  The workspace is a ring of ``workspace_slots`` slots and the AIC runs ``workspace_slots - 1``
  S ahead of P V (S(j+2) is issued before P V(j) with 3 slots, as Ascend's FA "preload" does), so
  the cube computes the next S while the vector units do the softmax of the current ones and the
  P V round trip of a tile hides behind the softmax of the next. Cross-core flags say "ready" (S,
  P, partial O, query pieces); "free" needs no flag of its own: a slot is rewritten only by work
  that program order already puts after the slot's consumer -- e.g. the AIC writes S(j+slots)
  only after its MTE1 has moved P(j) to L0A, and P(j) exists only once the AIVs have read S(j).
* tile: the isa instructions of one load, MMAD, FIXPIPE or vector step.

Modules, by layer: :mod:`.problem` (what an op hands over), :mod:`.sizing` (buffers, checks,
the default tiler), :mod:`.units` (kernel and block: units, dealing, tiles, GM addressing),
:mod:`.aic` and :mod:`.aiv` (the tile-level programs of the cube and vector cores).

Int8/int4 KV caches with fake quantisation (antiquant) run as Ascend's A2 kernels run them (MSD,
multi-step decomposition): the AIVs split each unit's fp16/bf16 query rows into ``msd_steps``
int8 pieces (per-channel key scales folded in) and hand them to the AIC through the workspace; the
cube multiplies the pieces with the int8 K and V straight from GM (so the cache moves at one byte
per element), and the AIVs recombine the pieces of S and of O (per-token scales applied to S and
P, per-channel value scales to O). Full int8 quantisation runs the cube in int8 and dequantises
in FIXPIPE.

The tiling (:class:`FlashAttentionTiling`) is named and typed; :func:`default_tiling` picks the
largest tiles that fit the buffers. A tiling that does not fit L1, L0A, L0B, L0C or UB, or needs
more event / cross-core flag ids than the chip has, raises :class:`~ascend_sim.isa.ISAError`.
"""
from __future__ import annotations

from dataclasses import replace

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import ISAError, KernelPlan, class_programs

from .aic import aic_program
from .aiv import aiv_program
from .problem import NO_LIMIT, Band, ElemRows, FlashAttentionProblem, FlashAttentionTiling, GMRows
from .sizing import Grain, check_tiling, default_tiling, sizes, up, vec_per_cube, ws_query
from .units import BlockContext, Flags, deal, flat_tiles, units

DROPOUT_GROUP_BITS = 128     # DropOutGenMask writes the mask in whole groups of 128 bits


def flash_attention_plan(name: str, chip: ChipSpec, p: FlashAttentionProblem,
                         tiling: FlashAttentionTiling | None = None, *, workspace_prefix: int = 0) -> KernelPlan:
    """The MIX KernelPlan of one attention call under ``tiling`` (None: :func:`default_tiling`).
    The first ``workspace_prefix`` bytes of the workspace hold data the problem reads from it
    (e.g. dropout bits); the blocks' rings follow."""
    for dt in {p.qk_dtype.name, p.p_dtype.name}:
        if dt not in chip.cube.macs_per_cycle:
            raise ISAError(f"{name}: the cube of {chip.name} has no {dt} mode "
                           f"(it has {', '.join(chip.cube.macs_per_cycle)})")
    t = tiling or default_tiling(chip, p)
    check_tiling(name, chip, p, t)
    sz = sizes(chip, p, t)
    work = units(p, t)           # none (an empty query): one block that does nothing
    block_dim = max(1, min(t.block_dim or chip.cores.aic, max(1, len(work))))
    per_block = deal(work, block_dim, t.kv_tile) if work else [[]]
    nv = vec_per_cube(chip)
    flags = Flags(t.workspace_slots, bool(p.msd_steps))
    slot_bytes = sum(sz.ws_slot.values())
    block_ws = slot_bytes * t.workspace_slots + ws_query(p, t, sz.grain)
    prefix = up(workspace_prefix, sz.grain.workspace)
    ctxs = [BlockContext(p, t, sz, flags, tuple(bunits), prefix + bi * block_ws, slot_bytes,
                         tuple(flat_tiles(bunits))) for bi, bunits in enumerate(per_block)]

    def shape(ctx):      # a block's instructions depend on its units' rows and key tiles; the rest is GM offsets
        return tuple((u.rows, tuple((c1 - c0, need) for c0, c1, need in u.tiles)) for u in ctx.units)

    # one block class per shape: its first block built in full, the others record their GM accesses
    aic = class_programs(chip, "AIC", ctxs, shape, lambda b, ctx: aic_program(chip, ctx, b))
    aivs = [class_programs(chip, "AIV", ctxs, shape, lambda b, ctx, a=a: aiv_program(chip, ctx, a, b))
            for a in range(nv)]
    blocks = [list(progs) for progs in zip(aic, *aivs)]
    flops = sum(prog.flops for prog in aic)
    tensors = tuple(dict.fromkeys(
        [x.tensor for x in p.q_parts + p.k_parts + (p.v, p.out) + p.stats + p.k_prefix] +
        ([p.v_prefix.tensor] if p.v_prefix else []) +
        [e.tensor for e in (p.user_mask, p.pse, p.dropout) if e is not None] + ["workspace"]))
    return KernelPlan(name, "MIX", blocks, tensors=tensors, mix_ratio=nv,
                      tiling=replace(t, block_dim=len(blocks)), flops=flops,
                      workspace_bytes=prefix + block_ws * len(blocks))


def dropout_bits_bytes(numels: int) -> int:
    """Bytes of a dropout mask of ``numels`` bits, padded as DropOutGenMask pads it (whole 128-bit groups)."""
    return up(numels, DROPOUT_GROUP_BITS) // 8


__all__ = ["GMRows", "ElemRows", "Band", "FlashAttentionProblem", "FlashAttentionTiling", "Grain", "default_tiling",
           "check_tiling", "flash_attention_plan", "dropout_bits_bytes", "NO_LIMIT"]
