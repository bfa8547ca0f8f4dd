"""Buffer sizes of the flash-attention kernel under a tiling, the checks that a tiling fits the
chip, and the default tiler. Every alignment comes from the chip (:class:`Grain`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ascend_sim.hw import ChipSpec
from ascend_sim.isa import ISAError

from ...common import block_bytes, burst_bytes
from .problem import FlashAttentionProblem, FlashAttentionTiling

F32 = "float32"
F32_BYTES = 4
PREFILL_TILE = 128          # Ascend FA's base block (query rows and keys) for head dims up to 128
DECODE_KV_TILE = 512        # decode: few rows, so longer key steps amortise the handshakes
MIN_SHRUNK_KV_TILE = 64     # the default tiler halves kv_tile first while it is above this
AIV_EVENT_IDS = 4  # ids per pipe pair one AIV uses: S/P buffers 0, 1; partial O / output 2; query split 3
KV_EVENT_BASE = 4  # MTE1<->MTE2 ids below the K/V ring: Q buffers 0, 1 and P buffers 2, 3


def up(x: float, q: int) -> int:
    return int(-(-x // q) * q)


@dataclass(frozen=True)
class Grain:
    """The chip's alignments the kernel lays its buffers out with."""

    block: int           # UB addresses and MTE runs: one 32-byte block
    l1: int              # L1 regions start where MTE1 loads L0A/L0B from: one fractal
    l0c: int             # L0C addresses (the O accumulator follows S)
    workspace: int       # GM workspace slots: whole bursts
    f32_per_block: int   # fp32 values in one block: a per-row scalar takes one block

    @staticmethod
    def of(chip: ChipSpec) -> "Grain":
        blk = block_bytes(chip)
        return Grain(blk, chip.buffers.align["l0a"], chip.buffers.align["l0c"], burst_bytes(chip), blk // F32_BYTES)


def vec_per_cube(chip: ChipSpec) -> int:
    """AIV programs per MIX block: 2 on split chips (1 AIC : 2 AIV); a coupled AI Core has one
    vector unit of its own."""
    if chip.cores.coupled:
        return 1
    return max(1, chip.cores.aiv // chip.cores.aic)


@dataclass(frozen=True)
class Sizes:
    rows: int            # q_tile
    half: int            # rows per AIV
    k_chunk: int         # head-dim slice of one Q K^T MMAD (L0A/L0B)
    kv_chunk: int        # key slice of one P V MMAD
    grain: Grain
    l1: dict = field(default_factory=dict)
    ub: dict = field(default_factory=dict)
    ws_slot: dict = field(default_factory=dict)


def _chunk(total: int, quantum: int, fits) -> int:
    """The largest multiple of ``quantum`` (at most ``total`` rounded up) for which ``fits``."""
    c = up(total, quantum)
    while c > quantum and not fits(c):
        c = up(c // 2, quantum)
    return c


def sizes(chip: ChipSpec, p: FlashAttentionProblem, t: FlashAttentionTiling) -> Sizes:
    b = chip.buffers
    g = Grain.of(chip)
    m0 = chip.cube.m0
    nv = vec_per_cube(chip)
    qk, pv = p.qk_dtype, p.p_dtype
    steps = max(1, p.msd_steps)
    rows_pad = up(t.q_tile * steps, m0)            # cube rows: every query row once per MSD piece
    kv_pad = up(t.kv_tile, m0)
    dv_pad = up(p.d_v, m0)
    k_chunk = _chunk(p.d_qk, qk.c0, lambda c: 2 * qk.nbytes(rows_pad * c) <= b.l0a and
                     2 * qk.nbytes(c * kv_pad) <= b.l0b)
    kv_chunk = _chunk(t.kv_tile, pv.c0, lambda c: 2 * pv.nbytes(rows_pad * c) <= b.l0a and
                      2 * pv.nbytes(c * dv_pad) <= b.l0b)
    half = -(-t.q_tile // nv)
    cube_kv_item = qk.itemsize
    l1 = {
        "Q": 2 * up(qk.nbytes(rows_pad * up(p.d_qk, qk.c0)), g.l1),
        "K/V": t.kv_buffers * up(cube_kv_item * kv_pad * (up(p.d_qk, qk.c0) + up(p.d_v, pv.c0)), g.l1),
        "P": 2 * up(pv.nbytes(rows_pad * up(t.kv_tile, pv.c0)), g.l1),
    }
    blk = g.block
    ub = {
        "S/P": 2 * up(half * steps * t.kv_tile * F32_BYTES, blk),
        "O partial": up(half * steps * p.d_v * F32_BYTES, blk),
        "O accumulator": up(half * p.d_v * F32_BYTES, blk),
        "O out": up(half * p.d_v * max(p.out_itemsize, 1), blk),
        # max, sum and a temporary per row for every unit, and a rescale factor per tile, in flight
        # (a per-row scalar kept as one block)
        "row stats": t.workspace_slots * 4 * up(half * blk, blk),
    }
    if p.user_mask is not None:
        ub["mask"] = 2 * up(half * t.kv_tile * p.user_mask.elem_bits / 8, blk)
    if p.pse is not None:
        ub["pse"] = 2 * up(half * t.kv_tile * p.pse.elem_bits / 8, blk) + up(half * t.kv_tile * F32_BYTES, blk)
    if p.dropout is not None or p.dropout_in_kernel:
        ub["dropout bits"] = 2 * up(half * t.kv_tile / 8 + blk, blk)
    if p.msd_steps:
        ub["query split"] = up(half * p.d_qk * (2 + F32_BYTES + steps), blk) + up(p.d_qk * F32_BYTES, blk)
        ub["antiquant params"] = 2 * len(p.antiquant_token_params) * up(t.kv_tile * F32_BYTES, blk) + \
            up(p.d_v * F32_BYTES, blk)
    ws = {
        "S": up(t.q_tile * steps * t.kv_tile * F32_BYTES, g.workspace),
        "P": up(pv.nbytes(t.q_tile * steps * t.kv_tile), g.workspace),
        "O": up(t.q_tile * steps * p.d_v * F32_BYTES, g.workspace),
    }
    return Sizes(t.q_tile, half, k_chunk, kv_chunk, g, l1, ub, ws)


def q_piece_bytes(p: FlashAttentionProblem, t: FlashAttentionTiling, g: Grain) -> int:
    """Workspace of the query pieces of one unit (MSD)."""
    return up(p.qk_dtype.nbytes(t.q_tile * max(1, p.msd_steps) * p.d_qk), g.workspace)


def ws_query(p: FlashAttentionProblem, t: FlashAttentionTiling, g: Grain) -> int:
    """Workspace of one block for the query pieces of two units (MSD), 0 without MSD."""
    return 2 * q_piece_bytes(p, t, g) if p.msd_steps else 0


def _l0c_need(p: FlashAttentionProblem, t: FlashAttentionTiling, m0: int) -> int:
    rows = up(t.q_tile * max(1, p.msd_steps), m0)
    return rows * up(t.kv_tile, m0) * F32_BYTES + rows * up(p.d_v, m0) * F32_BYTES


def _problems(chip: ChipSpec, p: FlashAttentionProblem, t: FlashAttentionTiling) -> list[str]:
    """Which buffers/ids a tiling overflows (empty: it fits)."""
    bad = []
    s = sizes(chip, p, t)
    b = chip.buffers
    l1 = sum(s.l1.values())
    if l1 > b.l1:
        bad.append("L1 (" + " + ".join(f"{k} {v}" for k, v in s.l1.items()) + f" = {l1} > {b.l1} bytes)")
    qk, pv = p.qk_dtype, p.p_dtype
    m0 = chip.cube.m0
    rows = up(t.q_tile * max(1, p.msd_steps), m0)
    a_need = 2 * max(qk.nbytes(rows * s.k_chunk), pv.nbytes(rows * s.kv_chunk))
    if a_need > b.l0a:
        bad.append(f"L0A (2 x q_tile x head-dim slice = {a_need} > {b.l0a} bytes)")
    b_need = 2 * max(qk.nbytes(s.k_chunk * up(t.kv_tile, m0)), pv.nbytes(s.kv_chunk * up(p.d_v, m0)))
    if b_need > b.l0b:
        bad.append(f"L0B (2 x head-dim slice x kv_tile = {b_need} > {b.l0b} bytes)")
    c_need = _l0c_need(p, t, m0)
    if c_need > b.l0c:
        bad.append(f"L0C (S q_tile x kv_tile + O q_tile x d_v, fp32 = {c_need} > {b.l0c} bytes)")
    ub = sum(s.ub.values())
    if ub > b.ub:
        bad.append("UB (" + " + ".join(f"{k} {v}" for k, v in s.ub.items()) + f" = {ub} > {b.ub} bytes)")
    return bad


def cross_flags_needed(p: FlashAttentionProblem, t: FlashAttentionTiling) -> int:
    return t.workspace_slots * 3 + (2 if p.msd_steps else 0)


def check_tiling(name: str, chip: ChipSpec, p: FlashAttentionProblem, t: FlashAttentionTiling) -> None:
    for f in ("q_tile", "kv_tile", "kv_buffers", "workspace_slots"):
        if getattr(t, f) < 1:
            raise ISAError(f"{name}: tiling {f} must be >= 1, got {getattr(t, f)}")
    if t.block_dim < 0:
        raise ISAError(f"{name}: tiling block_dim must be >= 0, got {t.block_dim}")
    ids = chip.runtime.event_ids
    if t.kv_buffers < t.workspace_slots:
        raise ISAError(f"{name}: tiling kv_buffers={t.kv_buffers} must be >= workspace_slots={t.workspace_slots}: "
                       f"the K/V ring holds every tile whose S is in flight")
    if KV_EVENT_BASE + t.kv_buffers > ids:
        raise ISAError(f"{name}: tiling kv_buffers={t.kv_buffers} needs {KV_EVENT_BASE + t.kv_buffers} MTE1->MTE2 "
                       f"event ids; {chip.name} has {ids}")
    if vec_per_cube(chip) * AIV_EVENT_IDS > ids:
        raise ISAError(f"{name}: the {vec_per_cube(chip)} AIVs of a block need {AIV_EVENT_IDS} event ids each; "
                       f"{chip.name} has {ids}")
    need = cross_flags_needed(p, t)
    if need > chip.runtime.cross_core_flag_ids:
        raise ISAError(f"{name}: tiling workspace_slots={t.workspace_slots} needs {need} cross-core flag ids; "
                       f"{chip.name} has {chip.runtime.cross_core_flag_ids}")
    bad = _problems(chip, p, t)
    if bad:
        raise ISAError(f"{name}: tiling {t} does not fit {chip.name}: " + "; ".join(bad))


def default_tiling(chip: ChipSpec, p: FlashAttentionProblem) -> FlashAttentionTiling:
    """Prefill: 128 query rows x 128 keys (Ascend FA's base block for head dims up to 128), shrunk
    until it fits; decode: all query heads of a kv head as rows and 512 keys per step (few rows,
    so longer key steps amortise the handshakes), shrunk likewise."""
    m0 = chip.cube.m0
    max_q = max(p.q_lens) if p.q_lens else 1
    rows = max_q * (p.q_heads // p.kv_heads) if p.group_heads else max_q
    q_tile = max(1, min(PREFILL_TILE, rows)) if p.group_heads else max(1, min(PREFILL_TILE, up(rows, m0)))
    max_kv = max(p.kv_lens) if p.kv_lens else 1
    kv_tile = min(DECODE_KV_TILE if p.group_heads else PREFILL_TILE, up(max(max_kv, 1), m0))
    t = FlashAttentionTiling(q_tile=q_tile, kv_tile=kv_tile)
    while _problems(chip, p, t):
        if t.kv_tile > MIN_SHRUNK_KV_TILE and (t.kv_tile >= t.q_tile or t.q_tile <= m0):
            t = replace(t, kv_tile=up(t.kv_tile // 2, m0))
        elif t.q_tile > m0:
            t = replace(t, q_tile=up(t.q_tile // 2, m0))
        elif t.kv_tile > m0:
            t = replace(t, kv_tile=up(t.kv_tile // 2, m0))
        else:
            break
    if KV_EVENT_BASE + t.kv_buffers > chip.runtime.event_ids:
        kv = max(1, chip.runtime.event_ids - KV_EVENT_BASE)
        t = replace(t, kv_buffers=kv, workspace_slots=min(t.workspace_slots, kv))
    return t
