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

from dataclasses import dataclass, field, replace

from ascend_sim.dtypes import DType
from ascend_sim.hw import ChipSpec
from ascend_sim.isa import Buf, ISAError, KernelPlan, Pipe, ProgramBuilder

MTE1, MTE2, MTE3, M, FIX, V = Pipe.MTE1, Pipe.MTE2, Pipe.MTE3, Pipe.CUBE, Pipe.FIXPIPE, Pipe.VECTOR
F32 = "float32"
F32_BYTES = 4
NO_LIMIT = 1 << 62          # a band edge that never masks


# --------------------------------------------------------------------------------------------
# the problem, as the template sees it (built by ops/attention.py)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GMRows:
    """Where the rows of one (batch, head) matrix sit in a GM tensor: row ``s`` of head ``n`` of
    batch ``b`` starts at byte ``batch_base[b] + n * head_stride + s * row_stride`` and holds
    ``row_bytes`` bytes. Paged tensors (``block_size`` > 0) hold logical row ``s`` in physical block
    ``block_ids[b][s // block_size]`` at ``block * block_stride + n * head_stride +
    (s % block_size) * row_stride``."""

    tensor: str
    batch_base: tuple[int, ...]
    head_stride: int
    row_stride: int
    row_bytes: int
    block_size: int = 0
    block_stride: int = 0
    block_ids: tuple[tuple[int, ...], ...] = ()

    def segments(self, b: int, head: int, r0: int, n: int) -> list[tuple[int, int, int]]:
        """(offset, rows, stride) runs covering rows r0..r0+n of (b, head)."""
        if n <= 0:
            return []
        if not self.block_size:
            return [(self.batch_base[b] + head * self.head_stride + r0 * self.row_stride, n, self.row_stride)]
        out = []
        s = r0
        ids = self.block_ids[b]
        while s < r0 + n:
            blk, r = divmod(s, self.block_size)
            k = min(self.block_size - r, r0 + n - s)
            phys = ids[blk % len(ids)] if ids else blk
            out.append((phys * self.block_stride + head * self.head_stride + r * self.row_stride, k, self.row_stride))
            s += k
        return out


@dataclass(frozen=True)
class ElemRows:
    """A per-(row, key) operand the vector units read tile by tile (attention mask, pse, dropout
    bits): element (b, head, row, col) at element index ``batch_base[b] + head * head_stride +
    row * row_stride + col``, ``elem_bits`` bits each. Strides of 0 broadcast. ``compressed`` masks
    (the optimised 2048 x 2048 causal masks) are read at the same small region for every tile.
    ``rows`` > 0 is the tensor's row count: later query rows read its last rows (the
    ALiBi-compressed pse holds only the last 1024)."""

    tensor: str
    batch_base: tuple[int, ...]
    head_stride: int
    row_stride: int
    elem_bits: int
    compressed: bool = False
    rows: int = 0


@dataclass(frozen=True)
class Band:
    """Keys a query row may see, per batch: key j is visible from row i when
    ``i + offset - pre <= j <= i + offset + nxt`` or ``j < prefix`` (the sparse modes' rules)."""

    offset: int = 0
    pre: int = NO_LIMIT
    nxt: int = NO_LIMIT
    prefix: int = 0

    def lo(self, i: int) -> int:
        return i + self.offset - self.pre

    def hi(self, i: int) -> int:
        return i + self.offset + self.nxt


@dataclass(frozen=True)
class FlashAttentionProblem:
    """Shapes, GM placement and features of one attention call (see the module docstring)."""

    batch: int
    q_heads: int
    kv_heads: int
    d_qk: int                              # head dim of Q K^T (rope dims included)
    d_v: int
    q_lens: tuple[int, ...]                # query rows computed per batch
    kv_lens: tuple[int, ...]               # keys per batch (shared prefix included)
    q_parts: tuple[GMRows, ...]            # Q (and query_rope): columns concatenated
    k_parts: tuple[GMRows, ...]            # K (and key_rope)
    v: GMRows
    out: GMRows
    qk_dtype: DType                        # cube input dtype of Q K^T
    p_dtype: DType                         # cube input dtype of P V
    out_itemsize: float
    kv_itemsize: float                     # bytes per K/V element in GM (int8 1, int4 0.5)
    bands: tuple[Band, ...]                # per batch
    group_heads: bool = False              # decode: rows are the query heads of one kv head
    k_prefix: tuple[GMRows, ...] = ()      # shared-prefix K parts (batch 0), keys 0..prefix_len
    v_prefix: GMRows | None = None
    prefix_len: int = 0
    user_mask: ElemRows | None = None      # read on every computed tile when ``mask_every_tile``
    mask_every_tile: bool = False
    pse: ElemRows | None = None
    dropout: ElemRows | None = None
    stats: tuple[GMRows, ...] = ()         # per-row outputs written with O (softmax max/sum, lse)
    msd_steps: int = 0                     # fake-quantised KV: int8 pieces of the query (0: none)
    antiquant_token_params: tuple[ElemRows, ...] = ()   # per-key scales/offsets, loaded with each tile
    antiquant_channel: bool = False        # per-channel/per-tensor value scales, applied to O
    qk_dequant: bool = False               # int8 cube: FIXPIPE dequantises S
    pv_dequant: bool = False
    quantize_p: bool = False               # AIVs quantise P to int8
    quantize_out: bool = False             # AIVs quantise O to int8 (scale, offset)
    sink: bool = False                     # one extra logit per head in the softmax sum
    dropout_in_kernel: bool = False        # the AIVs generate dropout bits themselves


@dataclass(frozen=True)
class FlashAttentionTiling:
    """Named, typed tiling of the flash-attention kernel; print it, change it, sweep it."""

    q_tile: int = 128          # query rows per unit (split between the AIVs)
    kv_tile: int = 128         # keys per inner step
    block_dim: int = 0         # 0: every cube core
    kv_buffers: int = 3        # L1 ring of K/V tiles: the tiles in flight (>= workspace_slots)
    workspace_slots: int = 3   # GM ring between AIC and AIV (S, P, partial O); S runs slots - 1 ahead

    def __str__(self) -> str:
        return (f"q_tile={self.q_tile} kv_tile={self.kv_tile} block_dim={self.block_dim} "
                f"kv_buffers={self.kv_buffers} workspace_slots={self.workspace_slots}")


# --------------------------------------------------------------------------------------------
# sizes and checks
# --------------------------------------------------------------------------------------------
def _up(x: float, q: int) -> int:
    return int(-(-x // q) * q)


def _vec_per_cube(chip: ChipSpec) -> int:
    """AIV programs per MIX block: 2 on split chips (1 AIC : 2 AIV); a coupled AI Core has one
    vector unit of its own."""
    if chip.cores.coupled:
        return 1
    return max(1, chip.cores.aiv // chip.cores.aic)


@dataclass(frozen=True)
class _Sizes:
    rows: int            # q_tile
    half: int            # rows per AIV
    k_chunk: int         # head-dim slice of one Q K^T MMAD (L0A/L0B)
    kv_chunk: int        # key slice of one P V MMAD
    l1: dict = field(default_factory=dict)
    ub: dict = field(default_factory=dict)
    ws_slot: dict = field(default_factory=dict)


def _chunk(total: int, quantum: int, fits) -> int:
    """The largest multiple of ``quantum`` (at most ``total`` rounded up) for which ``fits``."""
    c = _up(total, quantum)
    while c > quantum and not fits(c):
        c = _up(c // 2, quantum)
    return c


def _sizes(chip: ChipSpec, p: FlashAttentionProblem, t: FlashAttentionTiling) -> _Sizes:
    b = chip.buffers
    m0 = chip.cube.m0
    nv = _vec_per_cube(chip)
    qk, pv = p.qk_dtype, p.p_dtype
    steps = max(1, p.msd_steps)
    rows_pad = _up(t.q_tile * steps, m0)            # cube rows: every query row once per MSD piece
    kv_pad = _up(t.kv_tile, m0)
    dv_pad = _up(p.d_v, m0)
    k_chunk = _chunk(p.d_qk, qk.c0, lambda c: 2 * qk.nbytes(rows_pad * c) <= b.l0a and
                     2 * qk.nbytes(c * kv_pad) <= b.l0b)
    kv_chunk = _chunk(t.kv_tile, pv.c0, lambda c: 2 * pv.nbytes(rows_pad * c) <= b.l0a and
                      2 * pv.nbytes(c * dv_pad) <= b.l0b)
    half = -(-t.q_tile // nv)
    cube_kv_item = qk.itemsize
    l1 = {
        "Q": 2 * _up(qk.nbytes(rows_pad * _up(p.d_qk, qk.c0)), 512),
        "K/V": t.kv_buffers * _up(cube_kv_item * kv_pad * (_up(p.d_qk, qk.c0) + _up(p.d_v, pv.c0)), 512),
        "P": 2 * _up(pv.nbytes(rows_pad * _up(t.kv_tile, pv.c0)), 512),
    }
    stat = 32                                        # a per-row scalar kept as one 32-byte block
    ub = {
        "S/P": 2 * _up(half * steps * t.kv_tile * F32_BYTES, 32),
        "O partial": _up(half * steps * p.d_v * F32_BYTES, 32),
        "O accumulator": _up(half * p.d_v * F32_BYTES, 32),
        "O out": _up(half * p.d_v * max(p.out_itemsize, 1), 32),
        # max, sum and a temporary per row for every unit, and a rescale factor per tile, in flight
        "row stats": t.workspace_slots * 4 * _up(half * stat, 32),
    }
    if p.user_mask is not None:
        ub["mask"] = 2 * _up(half * t.kv_tile * p.user_mask.elem_bits / 8, 32)
    if p.pse is not None:
        ub["pse"] = 2 * _up(half * t.kv_tile * p.pse.elem_bits / 8, 32) + _up(half * t.kv_tile * F32_BYTES, 32)
    if p.dropout is not None or p.dropout_in_kernel:
        ub["dropout bits"] = 2 * _up(half * t.kv_tile / 8 + 32, 32)
    if p.msd_steps:
        ub["query split"] = _up(half * p.d_qk * (2 + F32_BYTES + steps), 32) + _up(p.d_qk * F32_BYTES, 32)
        ub["antiquant params"] = 2 * len(p.antiquant_token_params) * _up(t.kv_tile * F32_BYTES, 32) + \
            _up(p.d_v * F32_BYTES, 32)
    ws = {
        "S": _up(t.q_tile * steps * t.kv_tile * F32_BYTES, 512),
        "P": _up(pv.nbytes(t.q_tile * steps * t.kv_tile), 512),
        "O": _up(t.q_tile * steps * p.d_v * F32_BYTES, 512),
    }
    return _Sizes(t.q_tile, half, k_chunk, kv_chunk, l1, ub, ws)


def _ws_query(p: FlashAttentionProblem, t: FlashAttentionTiling) -> int:
    """Workspace of one block for the query pieces of two units (MSD), 0 without MSD."""
    return 2 * _up(p.qk_dtype.nbytes(t.q_tile * p.msd_steps * p.d_qk), 512) if p.msd_steps else 0


def _l0c_need(p: FlashAttentionProblem, t: FlashAttentionTiling, m0: int) -> int:
    rows = _up(t.q_tile * max(1, p.msd_steps), m0)
    return rows * _up(t.kv_tile, m0) * F32_BYTES + rows * _up(p.d_v, m0) * F32_BYTES


def _problems(chip: ChipSpec, p: FlashAttentionProblem, t: FlashAttentionTiling) -> list[str]:
    """Which buffers/ids a tiling overflows (empty: it fits)."""
    bad = []
    s = _sizes(chip, p, t)
    b = chip.buffers
    l1 = sum(s.l1.values())
    if l1 > b.l1:
        bad.append("L1 (" + " + ".join(f"{k} {v}" for k, v in s.l1.items()) + f" = {l1} > {b.l1} bytes)")
    qk, pv = p.qk_dtype, p.p_dtype
    m0 = chip.cube.m0
    rows = _up(t.q_tile * max(1, p.msd_steps), m0)
    a_need = 2 * max(qk.nbytes(rows * s.k_chunk), pv.nbytes(rows * s.kv_chunk))
    if a_need > b.l0a:
        bad.append(f"L0A (2 x q_tile x head-dim slice = {a_need} > {b.l0a} bytes)")
    b_need = 2 * max(qk.nbytes(s.k_chunk * _up(t.kv_tile, m0)), pv.nbytes(s.kv_chunk * _up(p.d_v, m0)))
    if b_need > b.l0b:
        bad.append(f"L0B (2 x head-dim slice x kv_tile = {b_need} > {b.l0b} bytes)")
    c_need = _l0c_need(p, t, m0)
    if c_need > b.l0c:
        bad.append(f"L0C (S q_tile x kv_tile + O q_tile x d_v, fp32 = {c_need} > {b.l0c} bytes)")
    ub = sum(s.ub.values())
    if ub > b.ub:
        bad.append("UB (" + " + ".join(f"{k} {v}" for k, v in s.ub.items()) + f" = {ub} > {b.ub} bytes)")
    return bad


def _cross_flags_needed(p: FlashAttentionProblem, t: FlashAttentionTiling) -> int:
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
    if 2 + t.kv_buffers + 2 > ids:
        raise ISAError(f"{name}: tiling kv_buffers={t.kv_buffers} needs {4 + t.kv_buffers} MTE1->MTE2 event ids; "
                       f"{chip.name} has {ids}")
    if _vec_per_cube(chip) * AIV_EVENT_IDS > ids:
        raise ISAError(f"{name}: the {_vec_per_cube(chip)} AIVs of a block need {AIV_EVENT_IDS} event ids each; "
                       f"{chip.name} has {ids}")
    need = _cross_flags_needed(p, t)
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
    q_tile = max(1, min(128, rows)) if p.group_heads else max(1, min(128, _up(rows, m0)))
    max_kv = max(p.kv_lens) if p.kv_lens else 1
    kv_tile = min(512 if p.group_heads else 128, _up(max(max_kv, 1), m0))
    t = FlashAttentionTiling(q_tile=q_tile, kv_tile=kv_tile)
    while _problems(chip, p, t):
        if t.kv_tile > 64 and (t.kv_tile >= t.q_tile or t.q_tile <= m0):
            t = replace(t, kv_tile=_up(t.kv_tile // 2, m0))
        elif t.q_tile > m0:
            t = replace(t, q_tile=_up(t.q_tile // 2, m0))
        elif t.kv_tile > m0:
            t = replace(t, kv_tile=_up(t.kv_tile // 2, m0))
        else:
            break
    if 2 + t.kv_buffers + 2 > chip.runtime.event_ids:
        kv = max(1, chip.runtime.event_ids - 4)
        t = replace(t, kv_buffers=kv, workspace_slots=min(t.workspace_slots, kv))
    return t


# --------------------------------------------------------------------------------------------
# work units and their key tiles
# --------------------------------------------------------------------------------------------
@dataclass
class _Unit:
    b: int
    head: int            # query head (prefill) or kv head (decode)
    r0: int              # first row: query position (prefill) or first query head of the group (decode)
    rows: int
    tiles: list          # [(c0, c1, needs_mask)]


def _tiles(p: FlashAttentionProblem, b: int, r0: int, rows: int, kv_tile: int, positions: bool) -> list:
    """Key tiles of rows r0..r0+rows (query positions when ``positions``) that have a visible key."""
    skv = p.kv_lens[b]
    if skv <= 0 or rows <= 0:
        return []
    band = p.bands[b]
    if positions:
        first, last = r0, r0 + rows - 1
    else:
        first = last = 0          # decode: every row is query position 0
    lo = max(0, band.lo(first)) if band.pre < NO_LIMIT else 0
    hi = min(skv - 1, band.hi(last)) if band.nxt < NO_LIMIT else skv - 1
    out = []
    for c0 in range(0, skv, kv_tile):
        c1 = min(skv, c0 + kv_tile)
        in_band = c0 <= hi and c1 - 1 >= lo and lo <= hi
        in_prefix = c0 < band.prefix
        if not (in_band or in_prefix):
            continue
        # every row sees the whole tile: the prefix covers it, or the band of the first row
        # reaches its right edge and the band of the last row its left edge
        full = c1 <= band.prefix or (
            (band.nxt >= NO_LIMIT or band.hi(first) >= c1 - 1) and (band.pre >= NO_LIMIT or band.lo(last) <= c0))
        out.append((c0, c1, not full))
    return out


def _units(p: FlashAttentionProblem, t: FlashAttentionTiling) -> list[_Unit]:
    units = []
    g = p.q_heads // p.kv_heads
    for b in range(p.batch):
        if p.group_heads:
            for n2 in range(p.kv_heads):
                for h0 in range(0, g, t.q_tile):
                    rows = min(t.q_tile, g - h0)
                    if p.q_lens[b] > 0:
                        units.append(_Unit(b, n2, h0, rows, _tiles(p, b, 0, rows, t.kv_tile, False)))
        else:
            for n in range(p.q_heads):
                for r0 in range(0, p.q_lens[b], t.q_tile):
                    rows = min(t.q_tile, p.q_lens[b] - r0)
                    units.append(_Unit(b, n, r0, rows, _tiles(p, b, r0, rows, t.kv_tile, True)))
    return units


def _deal(units: list[_Unit], blocks: int, kv_tile: int) -> list[list[_Unit]]:
    """Longest work first onto the least loaded block; each block keeps its units in problem order
    (neighbouring units share K/V in L2)."""
    order = sorted(range(len(units)), key=lambda i: -(len(units[i].tiles) * units[i].rows + 1))
    load = [0] * blocks
    assign: list[list[int]] = [[] for _ in range(blocks)]
    for i in order:
        k = min(range(blocks), key=lambda j: (load[j], j))
        load[k] += len(units[i].tiles) * units[i].rows * kv_tile + units[i].rows
        assign[k].append(i)
    return [[units[i] for i in sorted(a)] for a in assign if a]


# --------------------------------------------------------------------------------------------
# the programs
# --------------------------------------------------------------------------------------------
class _Flags:
    """Cross-core flag ids: per workspace slot, S, P and partial O ready; with MSD, per unit parity,
    query pieces ready (see the module docstring for why no "free" flags are needed)."""

    def __init__(self, slots: int, msd: bool):
        names = ["S_READY", "P_READY", "O_READY"]
        for i, n in enumerate(names):
            setattr(self, n, tuple(i * slots + s for s in range(slots)))
        base = len(names) * slots
        self.Q_READY = (base, base + 1) if msd else ()


# event ids (pipe pair -> ids); a pair's ids are separate from every other pair's
EV_Q = 0          # MTE1->MTE2 / MTE2->MTE1: Q buffers 0, 1
EV_P = 2          # P buffers 2, 3
EV_KV = 4         # K/V ring 4..4+kv_buffers-1
AIV_EVENT_IDS = 4  # ids per pipe pair one AIV uses: S/P buffers 0, 1; partial O / output 2; query split 3


def _q_rows(p: FlashAttentionProblem, u: _Unit, part: GMRows, r0: int, n: int) -> list[tuple[int, int, int]]:
    """GM runs of rows r0..r0+n of unit ``u`` in a Q-shaped tensor (query, query_rope, output)."""
    if p.group_heads:
        g = p.q_heads // p.kv_heads
        head = u.head * g + u.r0 + r0
        base = part.batch_base[u.b] + head * part.head_stride
        return [(base, n, part.head_stride if n > 1 else part.row_bytes)]
    return part.segments(u.b, u.head, u.r0 + r0, n)


def _kv_segments(p: FlashAttentionProblem, parts: tuple[GMRows, ...], prefix_parts: tuple, u: _Unit,
                 c0: int, c1: int) -> list[tuple[str, int, int, int, int]]:
    """(tensor, offset, rows, stride, row_bytes) runs of keys c0..c1 of the unit's kv head."""
    kvh = u.head if p.group_heads else u.head // (p.q_heads // p.kv_heads)
    out = []
    for i, part in enumerate(parts):
        a, e = c0, c1
        if p.prefix_len and prefix_parts:
            pre = prefix_parts[i]
            if a < p.prefix_len:
                k = min(e, p.prefix_len)
                out += [(pre.tensor, o, r, s, pre.row_bytes) for o, r, s in pre.segments(0, kvh, a, k - a)]
                a = k
            a, e = a - p.prefix_len, e - p.prefix_len
        if e > a:
            out += [(part.tensor, o, r, s, part.row_bytes) for o, r, s in part.segments(u.b, kvh, a, e - a)]
    return out


def _elem_access(src: ElemRows, u: _Unit, p: FlashAttentionProblem, r0: int, n: int, c0: int, c1: int
                 ) -> tuple[int, int, int, int]:
    """(offset, rows, row_bytes, stride) of a mask/pse/bits tile."""
    bits = src.elem_bits
    row_bytes = max(1, -(-((c1 - c0) * bits) // 8))
    if src.compressed:
        return 0, n, row_bytes, max(row_bytes, src.row_stride * bits // 8)
    if p.group_heads:
        g = p.q_heads // p.kv_heads
        head = u.head * g + u.r0 + r0
        row, stride = 0, src.head_stride
    else:
        head, row, stride = u.head, u.r0 + r0, src.row_stride
        if src.rows:
            row = min(row, max(0, src.rows - n))
    e = src.batch_base[u.b] + head * src.head_stride + row * src.row_stride + c0
    stride_bytes = stride * bits // 8
    if n > 1 and stride_bytes < row_bytes:      # broadcast rows: one GM row serves them all
        n = 1
    return e * bits // 8, n, row_bytes, max(stride_bytes, row_bytes)


def flash_attention_plan(name: str, chip: ChipSpec, p: FlashAttentionProblem,
                         tiling: FlashAttentionTiling | None = None, *, workspace_prefix: int = 0) -> KernelPlan:
    """The MIX KernelPlan of one attention call. The first ``workspace_prefix`` bytes of the
    workspace hold data the problem reads from it (e.g. dropout bits); the blocks' rings follow."""
    for dt in {p.qk_dtype.name, p.p_dtype.name}:
        if dt not in chip.cube.macs_per_cycle:
            raise ISAError(f"{name}: the cube of {chip.name} has no {dt} mode "
                           f"(it has {', '.join(chip.cube.macs_per_cycle)})")
    t = tiling or default_tiling(chip, p)
    check_tiling(name, chip, p, t)
    sz = _sizes(chip, p, t)
    units = _units(p, t)
    if not units:        # nothing to compute (an empty query): one block that does nothing
        units = []
    block_dim = max(1, min(t.block_dim or chip.cores.aic, max(1, len(units))))
    per_block = _deal(units, block_dim, t.kv_tile) if units else [[]]
    nv = _vec_per_cube(chip)
    flags = _Flags(t.workspace_slots, bool(p.msd_steps))
    slot_bytes = sum(sz.ws_slot.values())
    block_ws = slot_bytes * t.workspace_slots + _ws_query(p, t)
    blocks = []
    flops = 0.0
    for bi, bunits in enumerate(per_block):
        ws0 = _up(workspace_prefix, 512) + bi * block_ws
        aic = _aic_program(chip, p, t, sz, flags, bunits, ws0, slot_bytes)
        flops += aic.flops
        vecs = [_aiv_program(chip, p, t, sz, flags, bunits, ws0, slot_bytes, a, nv) for a in range(nv)]
        blocks.append([aic] + vecs)
    tensors = tuple(dict.fromkeys(
        [x.tensor for x in p.q_parts + p.k_parts + (p.v, p.out) + p.stats + p.k_prefix] +
        ([p.v_prefix.tensor] if p.v_prefix else []) +
        [e.tensor for e in (p.user_mask, p.pse, p.dropout) if e is not None] + ["workspace"]))
    return KernelPlan(name, "MIX", blocks, tensors=tensors, mix_ratio=nv,
                      tiling=replace(t, block_dim=len(blocks)), flops=flops,
                      workspace_bytes=_up(workspace_prefix, 512) + block_ws * len(blocks))


def _flat_tiles(units: list[_Unit]) -> list[tuple[int, int, int, bool, bool, bool]]:
    """(unit index, c0, c1, needs_mask, first_of_unit, last_of_unit) in processing order."""
    out = []
    for ui, u in enumerate(units):
        for k, (c0, c1, need) in enumerate(u.tiles):
            out.append((ui, c0, c1, need, k == 0, k == len(u.tiles) - 1))
    return out


def _aic_program(chip, p: FlashAttentionProblem, t: FlashAttentionTiling, sz: _Sizes, fl: _Flags,
                 units: list[_Unit], ws0: int, slot_bytes: int):
    b = ProgramBuilder(chip, "AIC")
    tiles = _flat_tiles(units)
    m0 = chip.cube.m0
    qk, pv = p.qk_dtype, p.p_dtype
    slots = t.workspace_slots
    steps = max(1, p.msd_steps)
    d_qk_pad = _up(p.d_qk, qk.c0)
    kv_pad = _up(t.kv_tile, m0)
    rows_pad = _up(t.q_tile * steps, m0)
    q_buf = sz.l1["Q"] // 2
    kv_buf = sz.l1["K/V"] // t.kv_buffers
    k_part = _up(qk.itemsize * kv_pad * d_qk_pad, 512)
    p_buf = sz.l1["P"] // 2
    l1_q, l1_kv, l1_p = 0, sz.l1["Q"], sz.l1["Q"] + sz.l1["K/V"]
    l0a_half = chip.buffers.l0a // 2
    l0b_half = chip.buffers.l0b // 2
    c_s, c_o = 0, _up(rows_pad * kv_pad * F32_BYTES, 64)
    ws = sz.ws_slot
    ws_s, ws_p, ws_o = 0, ws["S"], ws["S"] + ws["P"]
    ws_q = slots * slot_bytes                         # MSD query pieces, two units
    q_piece_bytes = _up(qk.nbytes(t.q_tile * steps * p.d_qk), 512)
    state = {"l0": 0, "unit_q": -1, "q_count": 0}

    def l0_slot():
        i = state["l0"]
        state["l0"] += 1
        buf = i % 2
        if i >= 2:
            b.wait_flag(M, MTE1, buf)
        return buf

    def load_kv(which: str, u: _Unit, c0: int, c1: int, addr: int):
        parts = p.k_parts if which == "K" else (p.v,)
        prefix = p.k_prefix if which == "K" else ((p.v_prefix,) if p.v_prefix else ())
        a = addr
        for tensor, off, rows, stride, row_bytes in _kv_segments(p, parts, prefix, u, c0, c1):
            b.load_gm(Buf.L1, a, tensor, int(off), rows, int(row_bytes), int(stride), nd2nz=True,
                      name=f"MTE2.{which}_tile")
            a += _up(rows * row_bytes, 32)

    def load_q(u: _Unit, qb: int, k: int):
        a = l1_q + qb * q_buf
        if p.msd_steps:                              # the AIVs' int8 pieces of the query
            b.cross_wait(MTE2, fl.Q_READY[k % 2], "AIV")
            b.load_gm(Buf.L1, a, "workspace", int(ws0 + ws_q + (k % 2) * q_piece_bytes), u.rows * steps,
                      int(qk.nbytes(p.d_qk)), nd2nz=True, name="MTE2.Q_pieces")
            return
        for part in p.q_parts:
            for off, rows, stride in _q_rows(p, u, part, 0, u.rows):
                b.load_gm(Buf.L1, a, part.tensor, int(off), rows, int(part.row_bytes), int(stride), nd2nz=True,
                          name="MTE2.Q_tile")
                a += _up(rows * part.row_bytes, 32)

    def emit_s(j: int):
        ui, c0, c1, need, first, last = tiles[j]
        u = units[ui]
        m = u.rows * steps
        slot = j % slots
        kvb = j % t.kv_buffers
        b.scalar(2)
        if first:
            qb = state["q_count"] % 2
            if state["q_count"] >= 2:
                b.wait_flag(MTE1, MTE2, EV_Q + qb)
            load_q(u, qb, state["q_count"])
            b.set_flag(MTE2, MTE1, EV_Q + qb)
            b.wait_flag(MTE2, MTE1, EV_Q + qb)
            state["unit_q"] = qb
            state["q_count"] += 1
        qb = state["unit_q"]
        if j >= t.kv_buffers:
            b.wait_flag(MTE1, MTE2, EV_KV + kvb)
        load_kv("K", u, c0, c1, l1_kv + kvb * kv_buf)
        b.set_flag(MTE2, MTE1, EV_KV + kvb)
        b.wait_flag(MTE2, MTE1, EV_KV + kvb)
        n = c1 - c0
        for ci, k0 in enumerate(range(0, p.d_qk, sz.k_chunk)):
            kk = min(sz.k_chunk, p.d_qk - k0)
            buf = l0_slot()
            b.load_l1(Buf.L0A, buf * l0a_half, l1_q + qb * q_buf, qk.nbytes(_up(m, m0) * _up(kk, qk.c0)))
            b.load_l1(Buf.L0B, buf * l0b_half, l1_kv + kvb * kv_buf, qk.nbytes(_up(kk, qk.c0) * _up(n, m0)))
            b.set_flag(MTE1, M, buf)
            b.wait_flag(MTE1, M, buf)
            if ci == 0 and j >= 1:
                b.wait_flag(FIX, M, 0)               # L0C S written out
            b.mmad(m, n, kk, qk.name, a_addr=buf * l0a_half, b_addr=buf * l0b_half, c_addr=c_s)
            b.set_flag(M, MTE1, buf)
        if last:
            b.set_flag(MTE1, MTE2, EV_Q + qb)        # the unit's Q buffer may be refilled
        b.set_flag(M, FIX, 0)
        b.wait_flag(M, FIX, 0)
        b.fixpipe_to_gm(m, n, F32_BYTES, "workspace", int(ws0 + slot * slot_bytes + ws_s), int(n * F32_BYTES),
                        c_addr=c_s, quant=p.qk_dequant, name="FIXP.S_to_workspace")
        b.set_flag(FIX, M, 0)
        b.cross_set(FIX, fl.S_READY[slot])

    def emit_pv(j: int):
        ui, c0, c1, need, first, last = tiles[j]
        u = units[ui]
        m = u.rows * steps
        slot = j % slots
        kvb = j % t.kv_buffers
        pb = j % 2
        n = c1 - c0
        b.scalar(2)
        b.cross_wait(MTE2, fl.P_READY[slot], "AIV")
        if j >= 2:
            b.wait_flag(MTE1, MTE2, EV_P + pb)
        b.load_gm(Buf.L1, l1_p + pb * p_buf, "workspace", int(ws0 + slot * slot_bytes + ws_p), m,
                  int(pv.nbytes(n)), int(pv.nbytes(n)), nd2nz=True, name="MTE2.P_tile")
        v_addr = l1_kv + kvb * kv_buf + k_part
        load_kv("V", u, c0, c1, v_addr)
        b.set_flag(MTE2, MTE1, EV_P + pb)
        b.wait_flag(MTE2, MTE1, EV_P + pb)
        for ci, k0 in enumerate(range(0, n, sz.kv_chunk)):
            kk = min(sz.kv_chunk, n - k0)
            buf = l0_slot()
            b.load_l1(Buf.L0A, buf * l0a_half, l1_p + pb * p_buf, pv.nbytes(_up(m, m0) * _up(kk, pv.c0)))
            b.load_l1(Buf.L0B, buf * l0b_half, v_addr, pv.nbytes(_up(kk, pv.c0) * _up(p.d_v, m0)))
            b.set_flag(MTE1, M, buf)
            b.wait_flag(MTE1, M, buf)
            if ci == 0 and j >= 1:
                b.wait_flag(FIX, M, 1)               # L0C O written out
            b.mmad(m, p.d_v, kk, pv.name, a_addr=buf * l0a_half, b_addr=buf * l0b_half, c_addr=c_o)
            b.set_flag(M, MTE1, buf)
        b.set_flag(MTE1, MTE2, EV_P + pb)
        b.set_flag(MTE1, MTE2, EV_KV + kvb)
        b.set_flag(M, FIX, 1)
        b.wait_flag(M, FIX, 1)
        b.fixpipe_to_gm(m, p.d_v, F32_BYTES, "workspace", int(ws0 + slot * slot_bytes + ws_o),
                        int(p.d_v * F32_BYTES), c_addr=c_o, quant=p.pv_dequant, name="FIXP.O_to_workspace")
        b.set_flag(FIX, M, 1)
        b.cross_set(FIX, fl.O_READY[slot])

    ahead = slots - 1                                # S issued this many tiles before their P V
    if tiles:
        for j in range(min(ahead, len(tiles))):
            emit_s(j)
        for j in range(len(tiles)):
            if j + ahead < len(tiles):
                emit_s(j + ahead)
            emit_pv(j)
    else:
        b.scalar(1)
    return b.build()


def _aiv_program(chip, p: FlashAttentionProblem, t: FlashAttentionTiling, sz: _Sizes, fl: _Flags,
                 units: list[_Unit], ws0: int, slot_bytes: int, a: int, nv: int):
    b = ProgramBuilder(chip, "AIV")
    tiles = _flat_tiles(units)
    slots = t.workspace_slots
    # Each AIV takes its own event ids: the engine keeps one set of flags per block, so two AIVs
    # waiting on the same (pipe, pipe, id) would answer each other's sets.
    ev = a * AIV_EVENT_IDS
    qk, pv = p.qk_dtype, p.p_dtype
    steps = max(1, p.msd_steps)
    ws = sz.ws_slot
    ws_s, ws_p, ws_o = 0, ws["S"], ws["S"] + ws["P"]
    ws_q = slots * slot_bytes
    q_piece_bytes = _up(qk.nbytes(t.q_tile * steps * p.d_qk), 512)
    addr = {}
    pos = 0
    for k, v in sz.ub.items():                       # UB layout: the regions one after another
        addr[k] = pos
        pos += v
    s_buf = sz.ub["S/P"] // 2
    half = sz.half
    live = [ui for ui, u in enumerate(units) if u.tiles]     # units the cube works on, in order

    def my_rows(u: _Unit) -> tuple[int, int]:
        r0 = min(u.rows, a * half)
        return r0, max(0, min(u.rows, r0 + half) - r0)

    # ----- MSD: split a unit's query rows into int8 pieces for the cube -----
    qs = {"n": 0}

    def emit_qsplit(k: int):
        u = units[live[k]]
        r0, r = my_rows(u)
        if r:
            if qs["n"] >= 1:
                b.wait_flag(MTE3, MTE2, ev + 2)
            qs["n"] += 1
            base = addr["query split"]
            for part in p.q_parts:
                for off, rows, stride in _q_rows(p, u, part, r0, r):
                    b.load_gm(Buf.UB, base, part.tensor, int(off), rows, int(part.row_bytes), int(stride),
                              name="MTE2.Q_rows")
            b.set_flag(MTE2, V, ev + 3)
            b.wait_flag(MTE2, V, ev + 3)
            e = r * p.d_qk
            b.vector("unary", F32, e, addrs=(base,), name="VECTOR.cast_q")
            b.vector("binary", F32, e, addrs=(base,), name="VECTOR.fold_key_scale")
            for _ in range(p.msd_steps):             # piece: max, scale to int8, round, subtract
                b.vector("binary", F32, e, addrs=(base,), name="VECTOR.msd_max_fold")
                b.vector("reduce_max", F32, r * 8, addrs=(base,), name="VECTOR.msd_row_max")
                b.vector("unary", F32, e, addrs=(base,), name="VECTOR.msd_scale")
                b.vector("unary", F32, e, addrs=(base,), name="VECTOR.msd_cast_int8")
                b.vector("binary", F32, e, addrs=(base,), name="VECTOR.msd_residual")
            b.set_flag(V, MTE3, ev + 3)
            b.wait_flag(V, MTE3, ev + 3)
            b.store_gm(base, "workspace", int(ws0 + ws_q + (k % 2) * q_piece_bytes + qk.nbytes(r0 * steps * p.d_qk)),
                       r * steps, int(qk.nbytes(p.d_qk)), name="MTE3.Q_pieces")
            b.set_flag(MTE3, MTE2, ev + 2)
        b.cross_set(MTE3, fl.Q_READY[k % 2])

    # ----- softmax of one S tile -----
    sm = {"n": 0}

    def emit_sm(j: int):
        ui, c0, c1, need, first, last = tiles[j]
        u = units[ui]
        slot = j % slots
        n = c1 - c0
        r0, r = my_rows(u)
        sb = sm["n"] % 2                             # S/P buffer of this AIV's next tile with rows
        s_addr = addr["S/P"] + sb * s_buf
        b.scalar(2)
        b.cross_wait(MTE2, fl.S_READY[slot], "AIC")
        use_mask = p.user_mask is not None and (p.mask_every_tile or need)
        if r:
            if sm["n"] >= 2:
                b.wait_flag(MTE3, MTE2, ev + sb)     # this S/P buffer's P has been stored
            sm["n"] += 1
            b.load_gm(Buf.UB, s_addr, "workspace", int(ws0 + slot * slot_bytes + ws_s + r0 * steps * n * F32_BYTES),
                      r * steps, int(n * F32_BYTES), name="MTE2.S_rows")
            if use_mask:
                off, rows, rb, stride = _elem_access(p.user_mask, u, p, r0, r, c0, c1)
                b.load_gm(Buf.UB, addr["mask"] + sb * (sz.ub["mask"] // 2), p.user_mask.tensor, int(off), rows,
                          int(rb), int(stride), name="MTE2.mask_tile")
            if p.pse is not None:
                off, rows, rb, stride = _elem_access(p.pse, u, p, r0, r, c0, c1)
                b.load_gm(Buf.UB, addr["pse"], p.pse.tensor, int(off), rows, int(rb), int(stride),
                          name="MTE2.pse_tile")
            if p.dropout is not None:
                off, rows, rb, stride = _elem_access(p.dropout, u, p, r0, r, c0, c1)
                b.load_gm(Buf.UB, addr["dropout bits"], p.dropout.tensor, int(off), rows, int(rb), int(stride),
                          name="MTE2.dropout_bits")
            kvh = u.head if p.group_heads else u.head // (p.q_heads // p.kv_heads)
            for prm in p.antiquant_token_params:
                e0 = prm.batch_base[u.b] + kvh * prm.head_stride + c0
                b.load_gm(Buf.UB, addr["antiquant params"], prm.tensor, int(e0 * prm.elem_bits // 8), 1,
                          max(1, n * prm.elem_bits // 8), name="MTE2.antiquant_params")
            b.set_flag(MTE2, V, ev + sb)
        if r:
            e = r * n
            rows8 = r * 8                            # per-row scalars, one 32-byte block each
            b.wait_flag(MTE2, V, ev + sb)
            if p.msd_steps:
                b.vector("fma", F32, (steps - 1) * e, addrs=(s_addr,), name="VECTOR.msd_combine_s")
            for _ in p.antiquant_token_params:
                b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.antiquant_per_token")
            b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.muls_scale")
            if p.pse is not None:
                if p.pse.elem_bits < 32:
                    b.vector("unary", F32, e, addrs=(addr["pse"],), name="VECTOR.cast_pse")
                b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.add_pse")
            if use_mask:
                b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.select_mask")
            # row max: fold the row pairwise down to one 32-byte block, then reduce it
            if n > 8:
                b.vector("binary", F32, r * (n - 8), addrs=(s_addr,), name="VECTOR.max_fold")
            b.vector("reduce_max", F32, rows8, addrs=(s_addr,), name="VECTOR.row_max")
            b.vector("binary", F32, rows8, addrs=(addr["row stats"],), name="VECTOR.max_running")
            if not first:                            # rescale factor exp(m_old - m_new)
                b.vector("binary", F32, rows8, addrs=(addr["row stats"],), name="VECTOR.sub_max")
                b.vector("exp", F32, rows8, addrs=(addr["row stats"],), name="VECTOR.exp_rescale")
            b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.sub_row_max")
            b.vector("exp", F32, e, addrs=(s_addr,), name="VECTOR.exp")
            if n > 8:
                b.vector("binary", F32, r * (n - 8), addrs=(s_addr,), name="VECTOR.sum_fold")
            b.vector("reduce_sum", F32, rows8, addrs=(s_addr,), name="VECTOR.row_sum")
            b.vector("fma" if not first else "unary", F32, rows8, addrs=(addr["row stats"],),
                     name="VECTOR.sum_running")
            if p.dropout_in_kernel:
                b.vector("binary", "int32", e, addrs=(s_addr,), name="VECTOR.dropout_random")
            if p.dropout is not None or p.dropout_in_kernel:
                b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.dropout_select")
            if p.quantize_p:
                b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.quant_p")
            if p.msd_steps:                          # P split into int8 pieces like the query
                for _ in range(p.msd_steps):
                    b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.msd_scale_p")
                    b.vector("unary", F32, e, addrs=(s_addr,), name="VECTOR.msd_cast_p")
                    b.vector("binary", F32, e, addrs=(s_addr,), name="VECTOR.msd_residual_p")
            else:
                b.vector("unary", F32, e, addrs=(s_addr,), name=f"VECTOR.cast_p_{pv.name}")
            b.set_flag(V, MTE3, ev + sb)
            b.wait_flag(V, MTE3, ev + sb)
            b.store_gm(s_addr, "workspace", int(ws0 + slot * slot_bytes + ws_p + r0 * steps * pv.nbytes(n)),
                       r * steps, int(pv.nbytes(n)), name="MTE3.P_rows")
            b.set_flag(MTE3, MTE2, ev + sb)
        b.cross_set(MTE3, fl.P_READY[slot])
        if p.msd_steps and first:                    # prepare the next unit's query pieces one unit ahead
            k = live.index(ui) + 1
            if k < len(live):
                emit_qsplit(k)

    # ----- rescale-accumulate the partial O, and finish a unit -----
    ou = {"n": 0, "fin": 0}

    def emit_finish(u: _Unit):
        r0, r = my_rows(u)
        if not r:
            return
        e = r * p.d_v
        if u.tiles:
            if p.sink:
                b.vector("exp", F32, r * 8, addrs=(addr["row stats"],), name="VECTOR.sink")
            b.vector("div", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.div_row_sum")
        else:
            b.vector("unary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.dup_zero")
        if p.quantize_out:
            b.vector("unary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.quant_scale")
            b.vector("unary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.quant_offset")
        if ou["fin"] >= 1:
            b.wait_flag(MTE3, V, ev + 2)
        ou["fin"] += 1
        b.vector("unary", F32, e, addrs=(addr["O out"],), name="VECTOR.cast_out")
        if p.stats:
            b.vector("unary", F32, r * 8 * len(p.stats), addrs=(addr["row stats"],), name="VECTOR.stats")
        b.set_flag(V, MTE3, ev + 2)
        b.wait_flag(V, MTE3, ev + 2)
        out_row_bytes = max(1, int(p.d_v * p.out_itemsize))
        for off, rows, stride in _q_rows(p, u, p.out, r0, r):
            b.store_gm(addr["O out"], p.out.tensor, int(off), rows, out_row_bytes, int(stride), name="MTE3.O_rows")
        for st in p.stats:
            for off, rows, stride in _q_rows(p, u, st, r0, r):
                b.store_gm(addr["row stats"], st.tensor, int(off), rows, int(st.row_bytes), int(stride),
                           name="MTE3.softmax_stats")
        b.set_flag(MTE3, V, ev + 2)

    def emit_ou(j: int):
        ui, c0, c1, need, first, last = tiles[j]
        u = units[ui]
        slot = j % slots
        r0, r = my_rows(u)
        b.cross_wait(MTE2, fl.O_READY[slot], "AIC")
        if r:
            if ou["n"] >= 1:
                b.wait_flag(V, MTE2, ev + 0)
            ou["n"] += 1
            b.load_gm(Buf.UB, addr["O partial"], "workspace",
                      int(ws0 + slot * slot_bytes + ws_o + r0 * steps * p.d_v * F32_BYTES), r * steps,
                      int(p.d_v * F32_BYTES), name="MTE2.O_partial")
            b.set_flag(MTE2, V, ev + 2)
        if r:
            e = r * p.d_v
            b.wait_flag(MTE2, V, ev + 2)
            if p.msd_steps:
                b.vector("fma", F32, (steps - 1) * e, addrs=(addr["O partial"],), name="VECTOR.msd_combine_o")
                if p.antiquant_channel:
                    b.vector("binary", F32, e, addrs=(addr["O partial"],), name="VECTOR.antiquant_value_scale")
            if first:
                b.ub_copy(addr["O accumulator"], addr["O partial"], _up(e * F32_BYTES, 32), name="VECTOR.o_init")
            else:
                b.vector("binary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.o_rescale")
                b.vector("binary", F32, e, addrs=(addr["O accumulator"],), name="VECTOR.o_add")
            b.set_flag(V, MTE2, ev + 0)
        if last:
            emit_finish(u)
            finished.add(ui)
            for k in range(ui + 1, len(units)):     # units with nothing visible: zeros
                if units[k].tiles:
                    break
                emit_finish(units[k])
                finished.add(k)

    finished: set[int] = set()
    for k, u in enumerate(units):                   # leading units with no visible key
        if u.tiles:
            break
        emit_finish(u)
        finished.add(k)
    ahead = slots - 1                                # the softmax runs as far ahead as the AIC's S
    if tiles:
        if p.msd_steps:
            emit_qsplit(0)
        for j in range(min(ahead, len(tiles))):
            emit_sm(j)
        for j in range(len(tiles)):
            if j + ahead < len(tiles):
                emit_sm(j + ahead)
            emit_ou(j)
    for k, u in enumerate(units):
        if k not in finished:
            emit_finish(u)
    if not len(b.prog):
        b.scalar(1)
    return b.build()


def dropout_bits_bytes(numels: int) -> int:
    """Bytes of a dropout mask of ``numels`` bits, padded as DropOutGenMask pads it (whole 128-bit groups)."""
    return _up(numels, 128) // 8


__all__ = ["GMRows", "ElemRows", "Band", "FlashAttentionProblem", "FlashAttentionTiling", "default_tiling",
           "check_tiling", "flash_attention_plan", "dropout_bits_bytes", "NO_LIMIT"]
