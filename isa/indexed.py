"""Index lists of indexed GM row accesses (gather / scatter) and their plan-time summaries.

An indexed access moves rows ``index[0], index[1], ...`` of a GM table (row ``i`` at byte
``offset + i * row_stride``, ``row_bytes`` each) between GM and UB. Its cost follows the row model
of :func:`isa.program._rows_cost`: each *run* of rows that are adjacent in GM and consecutive in
the list (``i, i+1, ...`` with ``row_stride == row_bytes``) is one transfer, cut into pieces at
burst boundaries; every piece moves whole 32-byte blocks and holds the path for at least one
cycle. So sorted, contiguous indices merge into long runs, and random short rows each pay their
own piece (and the blocks they straddle).

The caller gives the indices in one of two ways, and the plan never needs more:

* full mode: :class:`IndexList` -- the real index values (a read-only int64 array, hashed by
  its contents so an op spec holding it stays hashable);
* meta mode: :class:`IndexPattern` -- a declared pattern ("uniform random over R rows", the
  same sorted, or a contiguous range). It is costed on a representative list drawn with a fixed
  seed, so the same pattern always costs the same.

Either way the access is summarised at plan time (:func:`summarise`, vectorised numpy, no
per-row Python): payload, bus bytes, path cycles, the number of runs, the distinct 512-byte L2
lines and the byte span the rows cover.

**What the L2 model sees: a summary, not the real addresses.** The engine's L2 is told the
access touches exactly the summary's number of distinct lines, spread evenly over the span
(the GMAccess's offset/rows/row_bytes/stride describe that footprint; a contiguous set of lines
is exact). Hits, misses and line fills therefore have the right count and the right region; the
positions inside a sparse span are a stand-in, placed at a phase taken from the index values
(full mode) or the pattern's part number (meta mode), so two different gathers from one table
do not pretend to hit each other's lines. Tensor bases are taken as line aligned (the allocator
aligns to 512 B on every preset).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

KINDS = ("random", "sorted", "contiguous")


@dataclass(frozen=True, eq=False)
class IndexList:
    """Real index values (full mode). Hash and equality by content."""

    values: np.ndarray = field(repr=False)
    digest: bytes = b""

    @classmethod
    def of(cls, values) -> "IndexList":
        v = np.ascontiguousarray(np.asarray(values).reshape(-1), dtype=np.int64)
        v.setflags(write=False)
        return cls(v, hashlib.blake2b(v.tobytes(), digest_size=16).digest())

    @property
    def count(self) -> int:
        return int(self.values.size)

    def slice(self, lo: int, hi: int) -> "IndexList":
        return IndexList.of(self.values[lo:hi])

    def __len__(self) -> int:
        return self.count

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, IndexList) and self.digest == other.digest

    def __repr__(self) -> str:
        return f"IndexList(count={self.count}, digest={self.digest.hex()[:8]})"


@dataclass(frozen=True)
class IndexPattern:
    """A declared index list (meta mode): ``count`` indices into rows ``[start, start + rows)``.

    kind  "random": i.i.d. uniform; "sorted": the same, ascending; "contiguous": start, start+1, ...
          (``rows`` is then ignored: the range is ``count`` rows long)
    part  which slice of a larger list this is (tiles of one gather): changes the representative
          draw and the L2 footprint's phase, never the expected cost
    """

    count: int
    rows: int
    kind: str = "random"
    start: int = 0
    part: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"IndexPattern: kind must be one of {KINDS}, got {self.kind!r}")
        if self.count < 0 or self.rows < 1 or self.start < 0:
            raise ValueError(f"IndexPattern: count >= 0, rows >= 1, start >= 0 required, got {self}")

    def __len__(self) -> int:
        return self.count

    def slice(self, lo: int, hi: int) -> "IndexPattern":
        n = max(0, min(hi, self.count) - lo)
        if self.kind == "contiguous":
            return IndexPattern(n, max(1, n), "contiguous", self.start + lo, self.part)
        if self.kind == "sorted":     # a slice of a sorted draw covers its share of the range
            s = self.start + self.rows * lo // max(1, self.count)
            e = self.start + -(-self.rows * min(hi, self.count) // max(1, self.count))
            return IndexPattern(n, max(1, e - s), "sorted", s, self.part * 1_000_003 + lo)
        return IndexPattern(n, self.rows, "random", self.start, self.part * 1_000_003 + lo)

    def values(self) -> np.ndarray:
        """The representative list this pattern is costed on (deterministic)."""
        if self.kind == "contiguous":
            return np.arange(self.start, self.start + self.count, dtype=np.int64)
        seed = int.from_bytes(hashlib.blake2b(repr((self.count, self.rows, self.kind, self.part)).encode(),
                                              digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).integers(0, self.rows, self.count, dtype=np.int64) + self.start
        return np.sort(v) if self.kind == "sorted" else v


@dataclass(frozen=True)
class IndexSummary:
    """What an indexed GMAccess keeps of its index list (see the module docstring)."""

    count: int          # rows moved (duplicates included)
    row_bytes: int
    row_stride: int
    runs: int           # transfers after merging adjacent consecutive rows
    lines: int          # distinct L2 lines touched
    span: tuple[int, int]   # [lo, hi) bytes of the tensor the rows cover
    pattern: str        # "values" (full mode) or the declared kind
    atomic: str | None = None   # dtype of an atomic-add store


def pieces(phases, nbytes, rate: float, block: int, burst: int):
    """Bus bytes and path cycles per transfer of ``nbytes`` starting at burst phase ``phases``
    (arrays): pieces cut at burst boundaries, whole blocks each, at least one cycle each."""
    first = np.minimum(nbytes, burst - phases)
    rest = nbytes - first
    full, last = rest // burst, rest % burst
    first_bus = -(-(phases % block + first) // block) * block
    last_bus = -(-last // block) * block
    piece = lambda b: np.maximum(1.0, b / rate)   # noqa: E731
    bus = first_bus + full * burst + last_bus
    cyc = piece(first_bus) + full * piece(burst) + np.where(last > 0, piece(last_bus), 0)
    return bus, cyc


def _distinct_lines(first: np.ndarray, last: np.ndarray) -> int:
    """Size of the union of the integer intervals [first_i, last_i]."""
    if first.size == 0:
        return 0
    order = np.argsort(first, kind="stable")
    f, la = first[order], last[order]
    reach = np.maximum.accumulate(la)
    prev = np.concatenate(([f[0] - 1], reach[:-1]))
    return int(np.maximum(0, la - np.maximum(f - 1, prev)).sum())


def summarise(index, offset: int, row_bytes: int, row_stride: int, *, rate: float, block: int, burst: int,
              line: int, table_rows: int | None = None):
    """(IndexSummary, payload, bus bytes, path cycles, footprint hint) of an indexed row access.
    Raises ValueError for an index out of ``[0, table_rows)``."""
    if isinstance(index, IndexPattern):
        idx, pattern, hint = index.values(), index.kind, index.part
    elif isinstance(index, IndexList):
        idx, pattern, hint = index.values, "values", None
    else:
        raise TypeError(f"index must be an IndexList (full mode) or an IndexPattern (meta mode), "
                        f"got {type(index).__name__}")
    n = int(idx.size)
    if n == 0:
        raise ValueError("an indexed access needs at least one index")
    lo_i, hi_i = int(idx.min()), int(idx.max())
    if lo_i < 0 or (table_rows is not None and hi_i >= table_rows):
        raise ValueError(f"index out of range: [{lo_i}, {hi_i}] not in [0, {table_rows})")
    starts = offset + idx * row_stride
    if row_stride == row_bytes and n > 1:      # consecutive rows merge into one run
        first = np.concatenate(([0], np.flatnonzero(np.diff(idx) != 1) + 1))
        run_rows = np.diff(np.concatenate((first, [n])))
        run_starts, run_bytes = starts[first], run_rows * row_bytes
    else:
        run_starts, run_bytes = starts, np.full(n, row_bytes, dtype=np.int64)
    bus, cyc = pieces(run_starts % burst, run_bytes, float(rate), block, burst)
    f_line, l_line = run_starts // line, (run_starts + run_bytes - 1) // line
    lines = _distinct_lines(f_line, l_line)
    span = (int(run_starts.min()), int((run_starts + run_bytes).max()))
    if hint is None:
        hint = int(f_line.sum() % (1 << 31))
    s = IndexSummary(n, row_bytes, row_stride, int(run_starts.size), lines, span, pattern)
    return s, n * row_bytes, int(bus.sum()), float(cyc.sum()), hint


def footprint(span: tuple[int, int], lines: int, hint: int, line: int) -> tuple[int, int, int, int]:
    """(offset, rows, row_bytes, stride) of a strided access that touches ``lines`` distinct lines
    spread evenly over ``span`` -- what the L2 model is shown for an indexed access."""
    lo, hi = span
    first, last = lo // line, (hi - 1) // line
    total = last - first + 1
    if lines >= total:
        return lo, 1, hi - lo, hi - lo
    k = total // lines
    slack = total - (lines - 1) * k
    start = (first + hint % slack) * line
    return start, lines, 1, k * line
