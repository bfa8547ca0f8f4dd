"""Report: what a simulation measured, per op, ready for a table, pandas or a trace.

``report.ops`` is a list of :class:`~ascend_sim.timeline.OpRecord`; ``report.total_us`` is the span
from the first op's start to the last op's end over all devices.
"""
from __future__ import annotations

import csv
import dataclasses
from typing import Iterable

from ..hw import ChipSpec
from ..timeline import OpRecord, Timeline

COLUMNS = ("name", "device", "stream", "start_us", "duration_us", "launch_us", "wait_us", "core_type",
           "block_dim", "bytes_read", "bytes_written", "l2_bytes", "hbm_bytes", "l2_hit_rate", "bound")


class Report:
    def __init__(self, ops: list[OpRecord], chip: ChipSpec, timeline: Timeline | None = None):
        self.ops = ops
        self.chip = chip
        self.timeline = timeline if timeline is not None else Timeline(ops=ops, chip=chip.name)

    @property
    def total_us(self) -> float:
        if not self.ops:
            return 0.0
        start = min(r.start_us for r in self.ops)
        end = max(r.end_us for r in self.ops)
        return end - start

    def rows(self, columns: Iterable[str] = COLUMNS) -> list[dict]:
        cols = tuple(columns)
        return [{c: getattr(r, c) for c in cols} for r in self.ops]

    def to_csv(self, path: str, columns: Iterable[str] = COLUMNS) -> None:
        """A CSV that pandas.read_csv and the csv module read as is."""
        cols = tuple(columns)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for row in self.rows(cols):
                w.writerow(row)

    # ----- exports (ascend_sim.traces) -----
    def to_chrome_trace(self, path: str, detail: str = "pipe") -> str:
        """Chrome trace event JSON (``.json`` or ``.json.gz``): open it in ui.perfetto.dev
        ("Open trace file") or chrome://tracing. ``detail``: "ops", "core" or "pipe"."""
        from ..traces import write_chrome_trace
        return write_chrome_trace(self.timeline, path, detail=detail, chip_name=self.chip.name)

    def to_kernel_details(self, path: str) -> str:
        """kernel_details.csv with the torch_npu profiler's column names."""
        from ..traces import write_kernel_details
        return write_kernel_details(self.ops, path, chip_name=self.chip.name)

    def to_op_statistic(self, path: str) -> str:
        """op_statistic.csv: count, total/min/avg/max time and ratio per op type."""
        from ..traces import write_op_statistic
        return write_op_statistic(self.ops, path)

    def plot_timeline(self, **kw):
        """One broken_barh per lane (pipes, streams, communication); see traces.plot_timeline."""
        from ..traces import plot_timeline
        return plot_timeline(self.timeline, **kw)

    def plot_roofline(self, dtype: str = "float16", **kw):
        """Each op as a point against the chip's cube peak and HBM bandwidth."""
        from ..traces import plot_roofline
        return plot_roofline(self.ops, self.chip.cube_peak_tflops(dtype), self.chip.memory.hbm_bandwidth_GBps,
                             l2_GBps=self.chip.memory.l2_bandwidth_GBps, **kw)

    def plot_utilization(self, **kw):
        from ..traces import plot_utilization
        c = self.chip.cores
        return plot_utilization(self.ops, n_aic=c.aic, n_aiv=c.aiv, coupled=c.coupled, **kw)

    def by_name(self) -> dict[str, dict[str, float]]:
        """Count, total and mean device time per op name."""
        out: dict[str, dict[str, float]] = {}
        for r in self.ops:
            s = out.setdefault(r.name, {"count": 0, "total_us": 0.0})
            s["count"] += 1
            s["total_us"] += r.duration_us
        for s in out.values():
            s["mean_us"] = s["total_us"] / s["count"]
        return out

    def table(self, limit: int | None = None) -> str:
        """A fixed-width text table of the ops (the first ``limit``)."""
        head = f"{'op':<32} {'dev':>3} {'stream':<10} {'start us':>10} {'dur us':>10} {'launch us':>9} " \
               f"{'core':<6} {'blk':>4} {'read MB':>9} {'write MB':>9} {'L2 hit':>6} {'bound':<8}"
        lines = [head, "-" * len(head)]
        for r in self.ops[:limit]:
            hit = "" if r.l2_hit_rate is None else f"{r.l2_hit_rate:6.2f}"
            label = f"{r.attrs['scope']}/{r.name}" if r.attrs.get("scope") else r.name
            lines.append(f"{label[-32:]:<32} {r.device:>3} {r.stream[:10]:<10} {r.start_us:>10.2f} "
                         f"{r.duration_us:>10.2f} {r.launch_us:>9.2f} {r.core_type:<6} {r.block_dim:>4} "
                         f"{r.bytes_read / 1e6:>9.3f} {r.bytes_written / 1e6:>9.3f} {hit:>6} {r.bound:<8}")
        lines.append(f"total {self.total_us:.2f} us on {self.chip.name}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Report({len(self.ops)} ops, total_us={self.total_us:.2f}, chip={self.chip.name})"

    def _repr_html_(self) -> str:
        cols = COLUMNS
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_cell(getattr(r, c))}</td>" for c in cols) + "</tr>"
                       for r in self.ops[:200])
        return f"<table><tr>{head}</tr>{body}</table><p>total {self.total_us:.2f} us on {self.chip.name}</p>"


def _cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def record_dict(r: OpRecord) -> dict:
    return dataclasses.asdict(r)
