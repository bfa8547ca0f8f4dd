"""Kernel and block layers of the flash-attention template: the work units, how they are dealt to
blocks, the key tiles each unit walks, where a tile's operands sit in GM, and what the AIC and
the AIVs of one block share (:class:`BlockContext`)."""
from __future__ import annotations

from dataclasses import dataclass
from math import lcm

from .problem import NO_LIMIT, ElemRows, FlashAttentionProblem, FlashAttentionTiling, GMRows
from .sizing import Sizes, q_piece_bytes


@dataclass
class Unit:
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


def units(p: FlashAttentionProblem, t: FlashAttentionTiling) -> list[Unit]:
    out = []
    g = p.q_heads // p.kv_heads
    for b in range(p.batch):
        if p.group_heads:
            for n2 in range(p.kv_heads):
                for h0 in range(0, g, t.q_tile):
                    rows = min(t.q_tile, g - h0)
                    if p.q_lens[b] > 0:
                        out.append(Unit(b, n2, h0, rows, _tiles(p, b, 0, rows, t.kv_tile, False)))
        else:
            for n in range(p.q_heads):
                for r0 in range(0, p.q_lens[b], t.q_tile):
                    rows = min(t.q_tile, p.q_lens[b] - r0)
                    out.append(Unit(b, n, r0, rows, _tiles(p, b, r0, rows, t.kv_tile, True)))
    return out


def deal(units: list[Unit], blocks: int, kv_tile: int) -> list[list[Unit]]:
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


def q_rows(p: FlashAttentionProblem, u: Unit, part: GMRows, r0: int, n: int) -> list[tuple[int, int, int]]:
    """GM runs of rows r0..r0+n of unit ``u`` in a Q-shaped tensor (query, query_rope, output)."""
    if p.group_heads:
        g = p.q_heads // p.kv_heads
        head = u.head * g + u.r0 + r0
        base = part.batch_base[u.b] + head * part.head_stride
        return [(base, n, part.head_stride if n > 1 else part.row_bytes)]
    return part.segments(u.b, u.head, u.r0 + r0, n)


def kv_segments(p: FlashAttentionProblem, parts: tuple[GMRows, ...], prefix_parts: tuple, u: Unit,
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


def elem_access(src: ElemRows, u: Unit, p: FlashAttentionProblem, r0: int, n: int, c0: int, c1: int
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


def flat_tiles(units: list[Unit]) -> list[tuple[int, int, int, bool, bool, bool]]:
    """(unit index, c0, c1, needs_mask, first_of_unit, last_of_unit) in processing order."""
    out = []
    for ui, u in enumerate(units):
        for k, (c0, c1, need) in enumerate(u.tiles):
            out.append((ui, c0, c1, need, k == 0, k == len(u.tiles) - 1))
    return out


class Flags:
    """Cross-core flag ids: per workspace slot, S, P and partial O ready; with MSD, per unit parity,
    query pieces ready (see the module docstring for why no "free" flags are needed)."""

    def __init__(self, slots: int, msd: bool):
        names = ["S_READY", "P_READY", "O_READY"]
        for i, n in enumerate(names):
            setattr(self, n, tuple(i * slots + s for s in range(slots)))
        base = len(names) * slots
        self.Q_READY = (base, base + 1) if msd else ()


@dataclass(frozen=True)
class Step:
    """Tile ``j`` of a block, in processing order."""

    ui: int               # its unit's index in the block
    u: Unit
    c0: int               # keys c0..c1
    c1: int
    need_mask: bool       # some row of the unit does not see every key of the tile
    first: bool           # the unit's first / last tile
    last: bool
    slot: int             # workspace ring slot
    kv_buf: int           # L1 K/V ring buffer

    @property
    def n(self) -> int:
        return self.c1 - self.c0


@dataclass(frozen=True)
class BlockContext:
    """What the AIC and the AIV programs of one block share: its units and their tiles in
    processing order, the buffers, the cross-core flags and where its workspace ring starts."""

    p: FlashAttentionProblem
    t: FlashAttentionTiling
    sz: Sizes
    flags: Flags
    units: tuple
    ws0: int              # the block's first workspace byte
    slot_bytes: int       # one ring slot: S, P and partial O
    tiles: tuple = ()     # flat_tiles(units)

    def step(self, j: int) -> "Step":
        ui, c0, c1, need, first, last = self.tiles[j]
        return Step(ui, self.units[ui], c0, c1, need, first, last, j % self.t.workspace_slots, j % self.t.kv_buffers)

    def preload(self, lead, follow, b=None) -> None:
        """``lead(j)`` (S on the AIC, its softmax on the AIVs) runs ``workspace_slots - 1`` tiles
        ahead of ``follow(j)`` (P V, the O update): Ascend FA's "preload" order. ``b``: the
        builder, marking each step as an iteration of the block's tile loop (the same loop on the
        AIC and the AIVs; it repeats with the workspace ring, the K/V ring and the ping-pong
        buffers)."""
        n, ahead = len(self.tiles), self.t.workspace_slots - 1
        loop = b.begin_loop(lcm(self.t.workspace_slots, self.t.kv_buffers, 2)) if b is not None else None
        for j in range(min(ahead, n)):
            lead(j)
        for j in range(n):
            if loop is not None:
                b.iteration(loop)
            if j + ahead < n:
                lead(j + ahead)
            follow(j)

    @property
    def steps(self) -> int:
        return max(1, self.p.msd_steps)

    def slot(self, j: int, part: str) -> int:
        """Workspace byte of ring slot ``j % slots``'s S, P or O."""
        ws = self.sz.ws_slot
        off = {"S": 0, "P": ws["S"], "O": ws["S"] + ws["P"]}[part]
        return self.ws0 + (j % self.t.workspace_slots) * self.slot_bytes + off

    def query_pieces(self, k: int) -> int:
        """Workspace byte of unit ``k``'s MSD query pieces (two units in flight)."""
        return self.ws0 + self.t.workspace_slots * self.slot_bytes + (k % 2) * q_piece_bytes(self.p, self.t,
                                                                                              self.sz.grain)

    def kv_head(self, u: "Unit") -> int:
        return u.head if self.p.group_heads else u.head // (self.p.q_heads // self.p.kv_heads)


