"""Broadcast tables in a row kernel: cos/sin tables of a rotary embedding, a softmax mask.

A table has x's rank, x's last axis, and each other axis either x's or 1. :func:`table_row_view`
decides how a row kernel (templates/rows.py) sees x and such a table: x as ``rows`` x ``cols``;
the table as a "shared" operand (the same ``table_cols`` elements for every row, loaded once per
block) or a "row" operand of ``table_cols`` elements per row, addressed through a
:class:`~.rows.RowMap` when it repeats along axes inside the rows' range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .rows import RowMap, RowOperand


@dataclass(frozen=True)
class TableView:
    """How a row kernel sees x and a table that broadcasts against it along x's leading axes.

    ``rows`` x ``cols`` is x; the table is ``kind`` "shared" (``table_cols`` elements used by
    every row) or "row" (``table_cols`` elements per row). For "row" tables ``row_dims`` are the
    sizes of x's axes that make up the rows (outer first) and ``table_strides`` how many table
    rows one step along each advances (0 for an axis the table broadcasts over)."""

    rows: int
    cols: int
    kind: str
    table_cols: int
    row_dims: tuple[int, ...] = ()
    table_strides: tuple[int, ...] = ()

    @property
    def table_rows(self) -> int:
        return math.prod(n for n, s in zip(self.row_dims, self.table_strides) if s)

    @property
    def row_map(self) -> RowMap | None:
        """The row map of a "row" table with fewer rows than x (None: one table row per x row)."""
        if self.kind != "row" or self.table_rows == self.rows:
            return None
        return RowMap(self.row_dims, self.table_strides)

    def operand(self, name: str, itemsize: float) -> RowOperand:
        """The table as an operand of the row kernel over x."""
        return RowOperand(name, itemsize, self.kind, self.table_cols, self.row_map)


def table_row_view(x_shape, t_shape, *, shared_min_rows: int | None = None) -> TableView:
    """The row view of ``x_shape`` for a table ``t_shape`` of the same rank whose last axis equals
    x's and whose other axes are x's or 1. With ``shared_min_rows``, a table that is the same for
    every row of a view with at least that many rows is made a "shared" operand (loaded once per
    block instead of once per row); otherwise the rows run up to the table's innermost varying axis,
    so that each row carries its own D-element piece of the table."""
    *lead, d = (int(n) for n in x_shape)
    numel = math.prod(x_shape)
    axes = [(n, int(t) == n) for n, t in zip(lead, t_shape[:-1]) if n != 1]   # size-1 axes index nothing
    if not any(v for _, v in axes):
        return TableView(max(1, numel // d), d, "shared", d)
    if shared_min_rows is not None:
        k = next(i for i, (_, v) in enumerate(axes) if v)           # leading broadcast axes
        outer = math.prod(n for n, _ in axes[:k])
        if k and all(v for _, v in axes[k:]) and outer >= shared_min_rows:
            return TableView(outer, numel // outer, "shared", math.prod(t_shape))
    last = max(i for i, (_, v) in enumerate(axes) if v)
    row_axes = axes[:last + 1]
    strides, step = [], 1
    for n, v in reversed(row_axes):
        strides.append(step if v else 0)
        step *= n if v else 1
    rows = math.prod(n for n, _ in row_axes)
    return TableView(rows, numel // rows, "row", d, tuple(n for n, _ in row_axes), tuple(reversed(strides)))
