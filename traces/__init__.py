"""Exporters and readers of a simulation's Timeline, for the tools users already have.

* Chrome trace event JSON (:func:`write_chrome_trace`): one process per NPU, one lane per stream,
  Communication, core and pipe (named as Ascend's tools name them: "Stream default", "AIC3 CUBE",
  "AIV7 MTE2"), HBM/L2 counters and flow arrows. To look at it:

  - https://ui.perfetto.dev : "Open trace file" in the left bar, pick the ``.json`` or
    ``.json.gz``; the file stays in the browser. Handles millions of events.
  - chrome://tracing in Chrome or Edge: "Load", pick the file (fine up to a few hundred MB of JSON;
    use ``detail="ops"`` or ``"core"`` for long runs).
  - MindStudio Insight opens it too, beside the profiler's own trace_view.json.

  :func:`read_chrome_trace` loads one back (``.json`` or ``.json.gz``) and :func:`trace_summary`
  lists its lanes, event counts and time span.
* Profiler-style CSVs with the torch_npu profiler's column names (:func:`write_kernel_details`,
  :func:`write_op_statistic`, :func:`read_kernel_details`), to put estimates beside real
  kernel_details.csv / op_statistic.csv files in pandas or a spreadsheet.
* matplotlib figures (:func:`plot_timeline`, :func:`plot_roofline`, :func:`plot_utilization`,
  :func:`plot_heatmap`, :func:`save`).

Example::

    with Simulator("Ascend910B2", trace="pipe") as sim:
        ...
        rep = sim.report()
    write_chrome_trace(rep.timeline, "run.json.gz")          # then ui.perfetto.dev -> Open trace file
    write_kernel_details(rep.ops, "kernel_details.csv", chip_name=rep.chip.name)
    plot_roofline(rep.ops, rep.chip.cube_peak_tflops("float16"), rep.chip.memory.hbm_bandwidth_GBps)

This package depends on :mod:`ascend_sim.timeline` only (and numpy/matplotlib), never on the
runtime, engine or ops: chip numbers such as peaks are passed in.
"""
from .chrome import read_chrome_trace, trace_summary, write_chrome_trace
from .csv_export import (KERNEL_DETAILS_COLUMNS, OP_STATISTIC_COLUMNS, read_kernel_details, write_kernel_details,
                         write_op_statistic)
from .plots import plot_heatmap, plot_roofline, plot_timeline, plot_utilization, save, utilization

__all__ = [
    "write_chrome_trace", "read_chrome_trace", "trace_summary",
    "write_kernel_details", "write_op_statistic", "read_kernel_details",
    "KERNEL_DETAILS_COLUMNS", "OP_STATISTIC_COLUMNS",
    "plot_timeline", "plot_roofline", "plot_utilization", "plot_heatmap", "utilization", "save",
]
