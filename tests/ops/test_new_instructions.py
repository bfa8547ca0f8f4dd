"""Tiny v2 ops on each new instruction, run through the front door and timed by the engine:
an indexed gather (rows by an index tensor), a row sort (region sort + merge sort), and an AI CPU
task (a unique count). Their costs follow the preset's parameters."""
from dataclasses import dataclass

import numpy as np
import pytest

from ascend_sim import dtypes as D
from ascend_sim.hw import get_chip
from ascend_sim.isa import AICpuWork, IndexList, IndexPattern, aicpu_plan
from ascend_sim.ops.base import Args, Op, OpSpec
from ascend_sim.ops.templates.gather import gather_plan
from ascend_sim.ops.templates.sort import merge_rounds, sort_plan
from ascend_sim.runtime import Simulator
from ascend_sim.tensor import TensorMeta
from ascend_sim.torch_npu._dispatch import run_op


# ----- the ops -----
@dataclass(frozen=True, kw_only=True)
class GatherSpec(OpSpec):
    rows: int
    row_bytes: int
    index_itemsize: int
    index: object = None          # IndexList (full mode) or IndexPattern (meta mode), set by resolve_work


class GatherRows(Op):
    """out[j] = self[index[j]] (an embedding lookup)."""

    name = "test.gather_rows"
    assumptions = {"index": "random"}

    def infer(self, a: Args, chip) -> GatherSpec:
        x, i = self.tensor(a, "self"), self.tensor(a, "index")
        self.check_dtype("index", i, (D.int32, D.int64))
        n = i.shape[0]
        return GatherSpec(outputs=(TensorMeta((n,) + x.shape[1:], x.dtype),), rows=x.shape[0],
                          row_bytes=int(np.prod(x.shape[1:])) * x.dtype.itemsize, index_itemsize=i.dtype.itemsize)

    def compute(self, spec, a):
        return (a.self.data[a.index.data],)

    def resolve_work(self, spec, a, outputs, assumptions):
        n = spec.outputs[0].shape[0]
        if outputs is not None:
            return spec.replace(index=IndexList.of(a.index.data))
        kind = assumptions.get("index", "random")
        return spec.replace(index=IndexPattern(n, spec.rows, kind), assumed=f"index={kind}")

    def plan(self, spec, chip, tiling=None):
        return gather_plan(self.name, chip, table="self", out="out0", index=spec.index, row_bytes=spec.row_bytes,
                           table_rows=spec.rows, index_tensor="index", index_itemsize=spec.index_itemsize)


@dataclass(frozen=True, kw_only=True)
class SortSpec(OpSpec):
    rows: int
    n: int
    dtype: str


class SortRows(Op):
    """Each row sorted descending: (values, int32 indices)."""

    name = "test.sort_rows"

    def infer(self, a, chip):
        x = self.tensor(a, "self")
        self.check_dtype("self", x, (D.float16, D.float32))
        return SortSpec(outputs=(TensorMeta(x.shape, x.dtype), TensorMeta(x.shape, D.int32)),
                        rows=int(np.prod(x.shape[:-1])), n=x.shape[-1], dtype=x.dtype.name)

    def compute(self, spec, a):
        order = np.argsort(-a.self.data.astype(np.float32), axis=-1, kind="stable")
        return np.take_along_axis(a.self.data, order, -1), order.astype(np.int32)

    def plan(self, spec, chip, tiling=None):
        return sort_plan(self.name, chip, src="self", values_out="out0", index_out="out1", rows=spec.rows,
                         n=spec.n, dtype=spec.dtype)


@dataclass(frozen=True, kw_only=True)
class CountSpec(OpSpec):
    n: int
    itemsize: int


class UniqueCount(Op):
    """How many distinct values (an AI CPU op: int64, hash-based)."""

    name = "test.unique_count"

    def infer(self, a, chip):
        x = self.tensor(a, "self")
        return CountSpec(outputs=(TensorMeta((1,), D.int64),), n=x.numel if hasattr(x, "numel") else int(np.prod(x.shape)),
                         itemsize=x.dtype.itemsize)

    def compute(self, spec, a):
        return (np.array([np.unique(a.self.data).size], np.int64),)

    def plan(self, spec, chip, tiling=None):
        return aicpu_plan(self.name, chip, [AICpuWork("hash", spec.n, spec.itemsize), AICpuWork("copy", 1, 8)],
                          tensors=("self", "out0"))


# ----- running them -----
def _run(chip, op, mode="full", **arrays):
    sim = Simulator(chip, mode=mode, trace="ops")
    dev = sim.current_device
    args = Args({k: dev.new_tensor(TensorMeta(v.shape, D.get_dtype(v.dtype.name)), None if mode == "meta" else v)
                 for k, v in arrays.items()})
    outs = run_op(sim, dev, op, args)
    rep = sim.report()
    return outs, rep.ops[-1]


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def test_gather_numbers_and_bus_bytes_random_vs_sorted(chip):
    rows, width = 1 << 14, 10          # fp32 rows of 40 B: short, not block aligned
    table = np.arange(rows * width, dtype=np.float32).reshape(rows, width)
    rng = np.random.default_rng(0)
    rand = rng.integers(0, rows, 4096).astype(np.int64)
    srt = np.arange(4096, dtype=np.int64) + 100
    (out,), r_rec = _run(chip, GatherRows(), self=table, index=rand)
    np.testing.assert_array_equal(out.data, table[rand])
    _, s_rec = _run(chip, GatherRows(), self=table, index=srt)
    assert r_rec.bytes_read == s_rec.bytes_read == 4096 * (40 + 8)      # rows + the index tensor
    # a random 40-B row starts at an 8-byte phase of a 32-B block and always moves two blocks (64 B);
    # sorted rows merge into runs that move their 40 B per row (plus a block of rounding per tile)
    assert r_rec.l2_bytes - s_rec.l2_bytes == pytest.approx(4096 * (64 - 40), rel=0.05)
    assert r_rec.pipe_busy_us["MTE2"] > s_rec.pipe_busy_us["MTE2"]
    assert r_rec.core_type == "AIV"


def test_gather_meta_mode_plans_from_the_declared_pattern(chip):
    rows, width = 1 << 14, 10
    table = np.zeros((rows, width), np.float32)
    idx = np.zeros(4096, np.int64)
    _, meta = _run(chip, GatherRows(), mode="meta", self=table, index=idx)
    assert meta.attrs.get("assumed") == "index=random"
    _, full = _run(chip, GatherRows(), self=table,
                   index=np.random.default_rng(3).integers(0, rows, 4096).astype(np.int64))
    assert meta.l2_bytes == pytest.approx(full.l2_bytes, rel=0.03)      # same pattern, another draw


def _vector_us(rec):
    return rec.pipe_busy_us["VECTOR"]


def test_sort_numbers_and_vector_time_follow_the_sort_instruction_cost(chip):
    rows, n = 4, 1024
    x = np.random.default_rng(1).standard_normal((rows, n)).astype(np.float32)
    (vals, idx), base = _run(chip, SortRows(), self=x)
    np.testing.assert_array_equal(vals.data, -np.sort(-x, axis=-1))
    np.testing.assert_array_equal(np.take_along_axis(x, idx.data.astype(np.int64), -1), vals.data)
    # hand count: 1024 / 32 = 32 regions per row for the region sort; merges of 4 lists: 32 -> 8 -> 2 -> 1,
    # each round outputs 1024 elements = 32 regions
    assert [len(r) for r in merge_rounds(chip, n)] == [8, 2, 1]
    c = chip.vector.instrs
    for key, repeats in (("sort32", 32), ("mrgsort4", 3 * 32)):
        slow = chip.derive(**{f"vector.instrs.{key}.b32": 2 * c[key]["b32"]})
        _, rec = _run(slow, SortRows(), self=x)
        extra_us = rows * repeats * c[key]["b32"] / chip.cores.aiv_mhz     # VECTOR busy summed over the rows
        assert _vector_us(rec) - _vector_us(base) == pytest.approx(extra_us, rel=1e-6)


def test_aicpu_task_time_follows_its_work_class(chip):
    x = np.random.default_rng(2).integers(0, 50, 20_000).astype(np.int64)
    (out,), rec = _run(chip, UniqueCount(), self=x)
    assert int(out.data[0]) == np.unique(x).size
    m = chip.aicpu
    work = m.cycles_per_elem["hash"] * 20_000 + max(m.cycles_per_elem["copy"], 8 / m.bytes_per_cycle)
    assert rec.core_type == "AI_CPU"
    assert rec.duration_us == pytest.approx(chip.runtime.aicpu_task_us + work / chip.cores.aicpu_mhz, rel=1e-9)
    slow = chip.derive(**{"aicpu.cycles_per_elem.hash": 3 * m.cycles_per_elem["hash"]})
    _, rec2 = _run(slow, UniqueCount(), self=x)
    assert rec2.duration_us - rec.duration_us == pytest.approx(
        2 * m.cycles_per_elem["hash"] * 20_000 / chip.cores.aicpu_mhz, rel=1e-9)
