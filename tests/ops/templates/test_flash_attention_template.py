"""The flash-attention template on its own: which key tiles a band visits, how units are dealt to
blocks, that a tiling which does not fit names the buffer, and that its alignments are the chip's.
References are counted from the definitions (a band's visible keys, the tile grid), not from the
template's code."""
import dataclasses

import pytest

from ascend_sim.dtypes import float16
from ascend_sim.hw import get_chip
from ascend_sim.isa import ISAError
from ascend_sim.ops.templates.flash_attention import (NO_LIMIT, Band, FlashAttentionProblem, FlashAttentionTiling,
                                                      GMRows, default_tiling, flash_attention_plan)

CHIP = get_chip("Ascend910B2")
D = 128


def problem(sq=512, skv=512, heads=1, kv_heads=1, band=Band(), batch=1, decode=False):
    row = D * 2
    rows = GMRows("q", tuple(b * heads * sq * row for b in range(batch)), sq * row, row, row)
    kv = GMRows("k", tuple(b * kv_heads * skv * row for b in range(batch)), skv * row, row, row)
    return FlashAttentionProblem(batch, heads, kv_heads, D, D, (sq,) * batch, (skv,) * batch, (rows,), (kv,), kv,
                                 rows, float16, float16, 2, 2, (band,) * batch, group_heads=decode)


def count(plan, name, core=0):
    """Instructions called ``name`` in the programs of ``core`` (0: the AIC) over all blocks."""
    return sum(sum(1 for i in b[core].name if b[core].names[i] == name) for b in plan.blocks)


def visible_tiles(sq, skv, q_tile, kv_tile, band):
    """Key tiles with at least one key visible from a row of the query tile (from Band's rule)."""
    n = 0
    for r0 in range(0, sq, q_tile):
        for c0 in range(0, skv, kv_tile):
            if any(max(0, i + band.offset - band.pre) <= j <= i + band.offset + band.nxt or j < band.prefix
                   for i in range(r0, min(sq, r0 + q_tile)) for j in range(c0, min(skv, c0 + kv_tile))):
                n += 1
    return n


T = FlashAttentionTiling(q_tile=128, kv_tile=128)


@pytest.mark.parametrize("band", [Band(), Band(0, NO_LIMIT, 0), Band(0, 100, 0), Band(256, NO_LIMIT, 0, prefix=64)],
                         ids=["full", "causal", "band", "prefix"])
def test_each_visible_tile_is_computed_once_and_masked_tiles_are_skipped(band):
    plan = flash_attention_plan("fa", CHIP, problem(512, 768, band=band), T)
    want = visible_tiles(512, 768, 128, 128, band)
    assert count(plan, "FIXP.S_to_workspace") == want          # one S per visited tile
    assert count(plan, "FIXP.O_to_workspace") == want          # and one P V
    assert count(plan, "MTE3.P_rows", core=1) == count(plan, "MTE3.P_rows", core=2) == want  # each AIV its half


def test_causal_attention_is_about_half_the_tiles():
    full = count(flash_attention_plan("fa", CHIP, problem(1024, 1024), T), "FIXP.S_to_workspace")
    causal = count(flash_attention_plan("fa", CHIP, problem(1024, 1024, band=Band(0, NO_LIMIT, 0)), T),
                   "FIXP.S_to_workspace")
    assert (full, causal) == (8 * 8, 8 * 9 // 2)


def test_units_are_dealt_to_at_most_every_cube_core():
    # 4 heads x 512 rows in q tiles of 128: 16 units
    plan = flash_attention_plan("fa", CHIP, problem(512, 512, heads=4, kv_heads=4), T)
    assert plan.block_dim == min(16, CHIP.cores.aic) and plan.core_type == "MIX"
    one = flash_attention_plan("fa", CHIP, problem(512, 512, heads=4, kv_heads=4), dataclasses.replace(T, block_dim=1))
    assert one.block_dim == 1 and count(one, "FIXP.S_to_workspace") == count(plan, "FIXP.S_to_workspace") == 64


def test_decode_groups_the_query_heads_of_a_kv_head_into_one_unit():
    p = problem(1, 4096, heads=32, kv_heads=8, batch=2, decode=True)
    t = default_tiling(CHIP, p)
    assert t.q_tile == 32 // 8                                 # the 4 query heads sharing a kv head
    plan = flash_attention_plan("fa", CHIP, p, t)
    # one unit per (batch, kv head), each one pass over the 4096 keys
    assert count(plan, "FIXP.S_to_workspace") == 2 * 8 * (4096 // t.kv_tile)


def test_a_tiling_that_does_not_fit_names_the_buffer():
    p = problem(512, 512)
    with pytest.raises(ISAError, match="L0C"):
        flash_attention_plan("fa", CHIP, p, FlashAttentionTiling(q_tile=256, kv_tile=256))
    with pytest.raises(ISAError, match="UB"):
        flash_attention_plan("fa", CHIP, p, FlashAttentionTiling(q_tile=128, kv_tile=1024))
    with pytest.raises(ISAError, match="kv_buffers"):
        flash_attention_plan("fa", CHIP, p, FlashAttentionTiling(kv_buffers=2, workspace_slots=3))


def test_the_workspace_ring_is_laid_out_in_the_chips_bursts():
    p = problem(512, 512, heads=2, kv_heads=2)
    plan = flash_attention_plan("fa", CHIP, p, T, workspace_prefix=100)
    assert plan.workspace_bytes % CHIP.memory.burst_bytes == 0
    wide = dataclasses.replace(CHIP, memory=dataclasses.replace(CHIP.memory, burst_bytes=4 * CHIP.memory.burst_bytes))
    bigger = flash_attention_plan("fa", wide, p, T, workspace_prefix=100)
    assert bigger.workspace_bytes % wide.memory.burst_bytes == 0
    # the prefix rounds up to a whole burst of the chip that runs it
    assert bigger.workspace_bytes - plan.workspace_bytes >= wide.memory.burst_bytes - CHIP.memory.burst_bytes
