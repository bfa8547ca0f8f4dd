"""matplotlib figures of a simulation: timeline, roofline, pipe utilisation, sweep heat maps.

For notebooks, reports and papers, where opening a trace viewer is one step too many. Every
function draws on the ``ax`` it is given, or on a new figure when none is (through pyplot, so
notebooks show it inline; nothing here picks a backend, so headless runs use Agg), and returns
the Axes. ``save`` writes a figure (or an Axes' figure) to a file.

Chip peaks (TFLOPS, GB/s, core counts) are arguments: this package reads a Timeline and nothing
else of the simulator. Take them from the chip spec, e.g. ``report.chip``.
"""
from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

import numpy as np

from ascend_sim.timeline import Interval, OpRecord, Timeline

from .profiler_names import (METRIC_PIPES, PIPE_METRICS, PIPE_NAMES, core_counts, is_device_op,
                             lane_display_name, lane_sort_key, op_lane, op_span_name, per_core_pipe_us, split_lane)

# Pipe colours stay fixed from plot to plot, so a reader learns them once.
PIPE_COLOURS = {
    "SCALAR": "#8c8c8c", "CUBE": "#d62728", "VECTOR": "#1f77b4", "MTE1": "#ff7f0e",
    "MTE2": "#2ca02c", "MTE3": "#9467bd", "FIXP": "#e377c2",
}
_NAME_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac", "#17becf", "#bcbd22")
_MAX_LEGEND = 16


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=figsize)
    return ax


def save(fig, path, *, dpi: int = 150) -> str:
    """Write a Figure (or the Figure of an Axes) to ``path`` (format from the extension: .png, .svg,
    .pdf) and return the path."""
    figure = getattr(fig, "figure", None) if not hasattr(fig, "savefig") else fig
    if figure is None or not hasattr(figure, "savefig"):
        raise TypeError(f"save: expected a matplotlib Figure or Axes, got {type(fig).__name__}")
    path = os.fspath(path)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------------
# timeline
# ---------------------------------------------------------------------------------------------
def _device_intervals(timeline: Timeline, device: int) -> list[Interval]:
    intervals = [iv for iv in timeline.intervals if iv.device == device]
    if not any(split_lane(iv.lane)[0] in ("stream", "comm") for iv in intervals):
        # a Timeline made from records alone (no engine intervals): draw the op spans from them
        intervals += [Interval(op_lane(r), r.device, r.start_us, r.end_us, op_span_name(r))
                      for r in timeline.ops if r.device == device and is_device_op(r)]
    return intervals


def _colour_key(lane: str, name: str) -> str:
    kind, _, pipe = split_lane(lane)
    return pipe if kind == "pipe" else name


def plot_timeline(timeline: Timeline, *, device: int = 0, lanes: Sequence[str] | None = None,
                  start_us: float | None = None, end_us: float | None = None, max_lanes: int = 40, ax=None):
    """One row per lane of one device: op spans per stream, Communication, core blocks, pipes, each a
    ``broken_barh`` (one collection per lane). Pipe instructions are coloured by pipe, op spans by
    op name; a legend names the colours.

    ``lanes`` picks lanes by their engine name ("stream:default", "AIV3.MTE2"); by default all, in
    display order, the first ``max_lanes`` of them. ``start_us`` / ``end_us`` crop the time axis.
    """
    intervals = _device_intervals(timeline, device)
    by_lane: dict[str, list[Interval]] = {}
    for iv in intervals:
        by_lane.setdefault(iv.lane, []).append(iv)
    if not by_lane:
        raise ValueError(f"plot_timeline: device {device} has nothing on this timeline")
    if lanes is None:
        chosen = sorted(by_lane, key=lane_sort_key)
    else:
        chosen = list(lanes)
        missing = [lane for lane in chosen if lane not in by_lane]
        if missing:
            known = ", ".join(sorted(by_lane, key=lane_sort_key)[:12])
            raise ValueError(f"plot_timeline: device {device} has no lane {missing[0]!r} "
                             f"(it has {len(by_lane)} lanes: {known}{', ...' if len(by_lane) > 12 else ''})")
    if max_lanes is not None and max_lanes < 1:
        raise ValueError(f"plot_timeline: max_lanes must be >= 1, got {max_lanes}")
    total_lanes = len(chosen)
    if max_lanes is not None:
        chosen = chosen[:max_lanes]

    lo = -math.inf if start_us is None else float(start_us)
    hi = math.inf if end_us is None else float(end_us)
    if hi < lo:
        raise ValueError(f"plot_timeline: end_us ({end_us}) is before start_us ({start_us})")

    colours: dict[str, str] = {}

    def colour(key: str) -> str:
        c = colours.get(key)
        if c is None:
            c = colours[key] = PIPE_COLOURS.get(key) or _NAME_COLOURS[(len(colours)) % len(_NAME_COLOURS)]
        return c

    ax = _new_axes(ax, (12, max(2.5, 0.28 * len(chosen) + 1.2)))
    t_min, t_max = math.inf, -math.inf
    for row, lane in enumerate(chosen):
        spans, faces = [], []
        for iv in by_lane.get(lane, ()):
            s, e = max(iv.start_us, lo), min(iv.end_us, hi)
            if e < s:
                continue
            spans.append((s, e - s))
            faces.append(colour(_colour_key(lane, iv.name)))
            t_min, t_max = min(t_min, s), max(t_max, e)
        ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=faces or "none", linewidth=0)
    ax.set_yticks(range(len(chosen)))
    ax.set_yticklabels([lane_display_name(lane) for lane in chosen], fontsize=7)
    ax.set_ylim(len(chosen) - 0.5, -0.5)               # first lane on top, as trace viewers show
    if t_min <= t_max:
        pad = 0.01 * (t_max - t_min) or 0.5
        ax.set_xlim(t_min - pad if start_us is None else lo, t_max + pad if end_us is None else hi)
    ax.set_xlabel("time (µs)")
    title = f"device {device}" + (f" ({timeline.chip})" if timeline.chip else "")
    if total_lanes > len(chosen):
        title += f": first {len(chosen)} of {total_lanes} lanes"
    ax.set_title(title)
    if colours:
        from matplotlib.patches import Patch
        handles = [Patch(facecolor=c, label=k) for k, c in list(colours.items())[:_MAX_LEGEND]]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return ax


# ---------------------------------------------------------------------------------------------
# roofline
# ---------------------------------------------------------------------------------------------
def _op_bytes(rec: OpRecord) -> float:
    # HBM traffic when the engine measured it (what the memory roof limits), else payload bytes
    return float(rec.hbm_bytes or (rec.bytes_read + rec.bytes_written))


def plot_roofline(ops: Iterable[OpRecord], chip_peak_tflops, hbm_GBps: float, *, l2_GBps: float | None = None,
                  ax=None):
    """Each op with flops as a point at (operational intensity = flops / HBM bytes, achieved TFLOPS),
    under the roofs min(peak, intensity x bandwidth). ``chip_peak_tflops`` is one number or a dict of
    named peaks ({"fp16": 320, "int8": 640}), each drawn as its own roof; ``l2_GBps`` adds an L2
    roof. Ops without flops, bytes or duration are skipped. One scatter per op name."""
    peaks = dict(chip_peak_tflops) if isinstance(chip_peak_tflops, dict) else {"peak": float(chip_peak_tflops)}
    if not peaks or any(v <= 0 for v in peaks.values()) or hbm_GBps <= 0:
        raise ValueError("plot_roofline: peaks and bandwidths must be positive")
    points: dict[str, list[tuple[float, float]]] = {}
    for rec in ops:
        nbytes = _op_bytes(rec)
        if rec.flops <= 0 or nbytes <= 0 or rec.duration_us <= 0:
            continue
        tflops = rec.flops / rec.duration_us / 1e6        # flop/µs -> TFLOPS
        points.setdefault(rec.name, []).append((rec.flops / nbytes, tflops))

    ax = _new_axes(ax, (7, 5))
    top = max(peaks.values())
    xs = [x for pts in points.values() for x, _ in pts]
    ridge = top * 1e3 / hbm_GBps                          # flop/byte where the HBM roof meets the peak
    x_lo = min(xs + [ridge]) / 10
    x_hi = max(xs + [ridge]) * 10
    grid = np.logspace(math.log10(x_lo), math.log10(x_hi), 256)
    bandwidths = {"HBM": hbm_GBps} | ({"L2": l2_GBps} if l2_GBps else {})
    for bw_name, bw in bandwidths.items():
        for peak_name, peak in peaks.items():
            label = f"{bw_name} {bw:g} GB/s, {peak_name} {peak:g} TFLOPS"
            ax.plot(grid, np.minimum(peak, grid * bw / 1e3), linestyle="-" if bw_name == "HBM" else "--",
                    color="black" if bw_name == "HBM" else "grey", linewidth=1.2, label=label)
    for i, (name, pts) in enumerate(sorted(points.items())):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, label=name,
                   color=_NAME_COLOURS[i % len(_NAME_COLOURS)], zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ys = [y for pts in points.values() for _, y in pts]
    ax.set_ylim(min(ys + [top]) / 10, top * 2)
    ax.set_xlabel("operational intensity (flop / byte)")
    ax.set_ylabel("achieved TFLOPS")
    ax.set_title("roofline")
    ax.legend(fontsize=7, frameon=False)
    return ax


# ---------------------------------------------------------------------------------------------
# utilisation
# ---------------------------------------------------------------------------------------------
def utilization(ops: Iterable[OpRecord], *, n_aic: int | None = None, n_aiv: int | None = None,
                coupled: bool = False) -> dict[str, float]:
    """{"AIC CUBE": ratio, "AIV MTE2": ratio, ...}: each unit's busy time over the run, as a share of
    (cores of its kind x devices x the run's span). Core counts default to the most cores any op of
    that kind used; pass the chip's (``chip.cores.aic`` / ``.aiv``) for exact shares."""
    device_ops = [r for r in ops if is_device_op(r)]
    if not device_ops:
        return {}
    span = max(r.end_us for r in device_ops) - min(r.start_us for r in device_ops)
    devices = len({r.device for r in device_ops})
    busy: dict[tuple[str, str], float] = {}
    seen = {"aic": 0.0, "aiv": 0.0}
    for rec in device_ops:
        if rec.core_type not in ("AIC", "AIV", "MIX"):
            continue
        c_aic, c_aiv = core_counts(rec, coupled)
        if rec.core_type in ("AIC", "MIX"):
            seen["aic"] = max(seen["aic"], c_aic)
        if rec.core_type in ("AIV", "MIX"):
            seen["aiv"] = max(seen["aiv"], c_aiv)
        cores = {"aic": c_aic, "aiv": c_aiv}
        for (side, metric), per_core in per_core_pipe_us(rec, coupled).items():
            busy[side, metric] = busy.get((side, metric), 0.0) + per_core * cores[side]
    counts = {"aic": n_aic or seen["aic"] or 1, "aiv": n_aiv or seen["aiv"] or 1}
    out: dict[str, float] = {}
    for side, metric in PIPE_METRICS:
        if (side, metric) in busy and span > 0:
            out[f"{side.upper()} {METRIC_PIPES[metric]}"] = busy[side, metric] / (counts[side] * devices * span)
    return out


def plot_utilization(ops: Iterable[OpRecord], *, n_aic: int | None = None, n_aiv: int | None = None,
                     coupled: bool = False, ax=None):
    """A bar per unit (AIC CUBE, AIC MTE2, AIV VECTOR, ...): its busy share of the run (see
    :func:`utilization`). Units no op used get no bar."""
    shares = utilization(ops, n_aic=n_aic, n_aiv=n_aiv, coupled=coupled)
    ax = _new_axes(ax, (8, 4))
    labels = list(shares)
    values = [100.0 * shares[k] for k in labels]
    colours = [PIPE_COLOURS.get(k.split()[-1], "#4e79a7") for k in labels]
    bars = ax.bar(range(len(labels)), values, color=colours)
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("busy (% of run)")
    ax.set_ylim(0, max(values + [1.0]) * 1.15)
    ax.set_title("pipe utilisation")
    return ax


# ---------------------------------------------------------------------------------------------
# heat map
# ---------------------------------------------------------------------------------------------
def plot_heatmap(values_2d, row_labels: Sequence, col_labels: Sequence, *, title: str, ax=None,
                 fmt: str = "{:.1f}", cmap: str = "viridis"):
    """A sweep as a grid: ``values_2d[i][j]`` at row ``row_labels[i]``, column ``col_labels[j]``,
    each cell annotated with ``fmt``. NaN cells (points the sweep could not run) stay blank."""
    values = np.asarray(values_2d, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"plot_heatmap: values_2d must be 2-D, got shape {values.shape}")
    if values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"plot_heatmap: values_2d has shape {values.shape} but there are {len(row_labels)} row "
                         f"labels and {len(col_labels)} column labels")
    ax = _new_axes(ax, (1.0 + 0.9 * values.shape[1], 1.0 + 0.6 * values.shape[0]))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                        color="white" if v < middle else "black")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels([str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels([str(r) for r in row_labels])
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax)
    return ax


__all__ = ["plot_timeline", "plot_roofline", "plot_utilization", "plot_heatmap", "utilization", "save",
           "PIPE_COLOURS", "PIPE_NAMES"]
