"""Chrome trace event JSON: a simulation's Timeline as a file ui.perfetto.dev and chrome://tracing open.

The format (the "Trace Event Format" of Chrome's trace viewer, also read by Perfetto and by
MindStudio Insight) is one JSON object ``{"traceEvents": [...], "displayTimeUnit": "ns",
"otherData": {...}}``; each event carries a phase ``ph``, a time ``ts`` in microseconds, a process
``pid`` and a thread ``tid``. What this writer puts in it:

* one process per device, named ``"NPU <i> (<chip>)"`` (``process_name`` metadata); its pid is the
  device index + 1 (pid 0 is the idle process in the Linux model Perfetto follows);
* one thread per lane, named as the vendor's tools name them (``thread_name`` metadata): the op
  spans of each stream (``"Stream default"``), ``"Communication"``, each core's block spans
  (``"AIC3"``, detail "core"), each core's pipes (``"AIC3 CUBE"``, ``"AIV7 MTE2"``, detail "pipe").
  ``thread_sort_index`` puts the op lanes first. Thread ids are unique over the whole file (Perfetto
  keys threads by tid alone);
* complete events (``ph "X"``, ``dur`` >= 0) for op spans (with the op's profiler-style fields as
  ``args``), collectives (on Communication), core blocks and pipe instructions. When the Timeline
  has op records they draw the stream and Communication lanes; otherwise its intervals do;
* counters (``ph "C"``) per device: HBM GB/s, L2 GB/s, L2 hit rate, each series in time order;
* flow arrows (``ph "s"`` / ``"f"``, matched by ``cat``, ``name`` and ``id``) for cross-stream events
  and cross-core flags (an arrow to or from a communicator's stream goes to Communication, where
  its collectives are drawn). The start binds to the slice it sits in (``bp "e"``) and is placed 1 ns
  before the signal, inside the work that raised it; the end binds, as the format's default, to the
  next slice of its lane: the work the signal released. A cross-core flag records its setter only
  by kind ("AIC->AIV3"), so its arrow starts on the waiting lane, at the time the flag was set.

Times are rounded to the nanosecond (3 decimals of a microsecond), keys are the format's short
ones, and the writer streams: it goes over the Timeline once (its ``intervals`` may be a
generator), keeps only the lane table and a small buffer, and writes through a buffered file
(gzip when the path ends with ``.gz``). A million pipe instructions take well under 100 MB
(about 80 bytes an event) and a few seconds.

``read_chrome_trace`` loads such a file (or any Chrome trace, including the bare event array of
the Ascend profiler's trace_view.json); ``trace_summary`` condenses one into lanes, event counts
and time span.
"""
from __future__ import annotations

import gzip
import json
import math
import os
from typing import Any, Iterable

from ascend_sim.timeline import OpRecord, Timeline

from .profiler_names import (accelerator_core, format_dtypes, format_formats, format_shapes, is_device_op,
                             kernel_type, lane_display_name, lane_sort_index, op_lane, op_span_name, split_lane)

DETAILS = ("ops", "core", "pipe")
# which lane kinds (profiler_names.split_lane) each detail level shows
_KINDS_SHOWN = {
    "ops": frozenset({"stream", "comm"}),
    "core": frozenset({"stream", "comm", "core", "other"}),
    "pipe": frozenset({"stream", "comm", "core", "pipe", "other"}),
}
_FIRST_LANE_TID = 1000      # below it: one tid per process for its counters (tid = pid)
_FLUSH_EVENTS = 8192        # events joined into one write
_NAME_CACHE_LIMIT = 200_000
_FLOW_LEAD_US = 0.001       # a flow starts 1 ns before its signal, inside the work that raised it


def _json_default(value: Any):
    # numpy scalars and arrays in args: plain numbers and lists
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)                      # JSON has no NaN/Infinity; viewers reject them
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=_json_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(json.loads(json.dumps(value, default=_json_default))), separators=(",", ":"))


def _open_text(path: str):
    if path.endswith(".gz"):
        # level 5: a third the time of gzip's default 9 for a few percent more bytes
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=5)
    return open(path, "w", encoding="utf-8", buffering=1 << 20)


def _open_binary(path: str):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


class _TraceWriter:
    """The lane table and the output buffer; events are appended as ready-made JSON strings."""

    def __init__(self, out, chip: str):
        self.out = out
        self.chip = chip
        self.buffer: list[str] = []
        self.started = False
        self.devices: set[int] = set()
        self.tids: dict[tuple[int, str], int] = {}      # (device, lane) -> tid
        self.next_tid = _FIRST_LANE_TID
        self.counts = {"M": 0, "X": 0, "C": 0, "s": 0, "f": 0}
        self.names: dict[str, str] = {}                 # name -> its JSON string

    def name(self, text: str) -> str:
        s = self.names.get(text)
        if s is None:
            if len(self.names) >= _NAME_CACHE_LIMIT:    # unbounded distinct names: stay bounded
                self.names.clear()
            s = self.names[text] = json.dumps(str(text))
        return s

    def emit(self, event: str, ph: str) -> None:
        self.buffer.append(event)
        self.counts[ph] += 1
        if len(self.buffer) >= _FLUSH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            if self.started:
                self.out.write(",\n")
            self.out.write(",\n".join(self.buffer))
            self.started = True
            self.buffer.clear()

    def metadata(self, pid: int, tid: int, name: str, args: dict) -> None:
        # metadata needs no time; ts 0 keeps "every event has ts" true for simple readers
        self.emit(f'{{"ph":"M","pid":{pid},"tid":{tid},"ts":0,"name":"{name}","args":{_dumps(args)}}}', "M")

    def device(self, device: int) -> int:
        pid = device + 1
        if device not in self.devices:
            self.devices.add(device)
            label = f"NPU {device} ({self.chip})" if self.chip else f"NPU {device}"
            self.metadata(pid, pid, "process_name", {"name": label})
            self.metadata(pid, pid, "process_sort_index", {"sort_index": device})
        return pid

    def lane(self, device: int, lane: str) -> int:
        """The tid of a lane, announcing it (name, sort order) the first time it is seen."""
        key = (device, lane)
        tid = self.tids.get(key)
        if tid is None:
            pid = self.device(device)
            tid = self.tids[key] = self.next_tid
            self.next_tid += 1
            self.metadata(pid, tid, "thread_name", {"name": lane_display_name(lane)})
            self.metadata(pid, tid, "thread_sort_index", {"sort_index": lane_sort_index(lane)})
        return tid


def _op_args(rec: OpRecord) -> dict:
    args = {
        "Type": kernel_type(rec.name),
        "Accelerator Core": accelerator_core(rec.core_type),
        "Block Num": rec.block_dim,
        "Input Shapes": format_shapes(rec.input_shapes),
        "Input Data Types": format_dtypes(rec.input_dtypes),
        "Input Formats": format_formats(rec.input_formats),
        "Output Shapes": format_shapes(rec.output_shapes),
        "Output Data Types": format_dtypes(rec.output_dtypes),
        "Output Formats": format_formats(rec.output_formats),
        "Launch Time(us)": round(rec.launch_us, 3),
        "Wait Time(us)": round(rec.wait_us, 3),
        "Bytes Read": rec.bytes_read,
        "Bytes Written": rec.bytes_written,
        "Bound": rec.bound,
    }
    if rec.l2_hit_rate is not None:
        args["L2 Hit Rate"] = round(rec.l2_hit_rate, 4)
    if rec.flops:
        args["FLOPs"] = rec.flops
    if rec.task_id >= 0:
        args["Task ID"] = rec.task_id
    for key in ("tiling", "algorithm"):
        if key in rec.attrs:
            args[key] = rec.attrs[key]
    return args


def _span(start_us: float, end_us: float) -> tuple[float, float]:
    # round the ends, not the duration, so back-to-back work stays back to back after rounding
    ts = round(start_us, 3)
    dur = round(round(end_us, 3) - ts, 3)
    return ts, (dur if dur > 0 else 0.0)


def _in_order(times: list, values: list) -> Iterable[tuple[float, float]]:
    pairs = zip(times, values)
    if any(b < a for a, b in zip(times, times[1:])):
        pairs = sorted(pairs, key=lambda p: p[0])
    return pairs


def write_chrome_trace(timeline: Timeline, path, *, detail: str = "pipe", chip_name: str | None = None) -> str:
    """Write ``timeline`` as Chrome trace event JSON (gzip-compressed when ``path`` ends with
    ``.gz``) and return the path.

    ``detail`` selects the lanes: "ops" the op spans per stream, Communication and the counters;
    "core" also each core's block spans (recorded by a ``trace="core"`` simulation); "pipe"
    everything, each pipe of each core included. ``chip_name`` names the devices (default: the
    timeline's chip).
    """
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(repr(d) for d in DETAILS)}, got {detail!r}")
    path = os.fspath(path)
    chip = chip_name if chip_name is not None else (timeline.chip or "")
    shown = _KINDS_SHOWN[detail]
    ops = [rec for rec in (timeline.ops or ()) if is_device_op(rec)]
    # The engine mirrors each op as an interval on its stream's lane (a collective's on
    # Communication); the records say more (shapes, bound...), so when there are records they draw
    # those lanes and the mirrored intervals are left out.
    from_ops = frozenset({"stream", "comm"}) if ops else frozenset()
    # A communicator's stream holds only collectives, drawn on Communication: flows to and from
    # that stream (the waits around a collective) go there too, where the collective is.
    stream_kinds: dict[tuple[int, str], set] = {}
    for rec in ops:
        stream_kinds.setdefault((rec.device, "stream:" + rec.stream), set()).add(rec.core_type == "HCCL")
    redirect = {key: "Communication" for key, kinds in stream_kinds.items() if kinds == {True}}

    with _open_text(path) as out:
        out.write('{"traceEvents":[\n')
        w = _TraceWriter(out, chip)

        for rec in ops:
            tid = w.lane(rec.device, op_lane(rec))
            ts, dur = _span(rec.start_us, rec.end_us)
            w.emit(f'{{"ph":"X","pid":{rec.device + 1},"tid":{tid},"ts":{ts!r},"dur":{dur!r},'
                   f'"name":{w.name(op_span_name(rec))},"args":{_dumps(_op_args(rec))}}}', "X")

        # The hot loop (up to millions of pipe instructions): locals, one dict lookup per interval.
        lane_tids: dict[tuple[int, str], int] = {}      # 0: a lane this detail level leaves out
        buffer = w.buffer
        name_of = w.name
        slices = 0
        for iv in timeline.intervals:
            tid = lane_tids.get((iv.device, iv.lane))
            if tid is None:
                kind = split_lane(iv.lane)[0]
                shows = kind in shown and kind not in from_ops
                tid = lane_tids[iv.device, iv.lane] = w.lane(iv.device, iv.lane) if shows else 0
            if not tid:
                continue
            ts = round(iv.start_us, 3)
            dur = round(round(iv.end_us, 3) - ts, 3)
            if dur < 0:
                dur = 0.0
            if iv.args:
                buffer.append(f'{{"ph":"X","pid":{iv.device + 1},"tid":{tid},"ts":{ts!r},"dur":{dur!r},'
                              f'"name":{name_of(iv.name)},"args":{_dumps(iv.args)}}}')
            else:
                buffer.append(f'{{"ph":"X","pid":{iv.device + 1},"tid":{tid},"ts":{ts!r},"dur":{dur!r},'
                              f'"name":{name_of(iv.name)}}}')
            slices += 1
            if len(buffer) >= _FLUSH_EVENTS:
                w.flush()
        w.counts["X"] += slices

        for counter in timeline.counters:
            pid = w.device(counter.device)
            name = w.name(counter.name)
            for t, v in _in_order(counter.times_us, counter.values):
                if v is None or not math.isfinite(v):
                    continue
                w.emit(f'{{"ph":"C","pid":{pid},"tid":{pid},"ts":{round(t, 3)!r},"name":{name},'
                       f'"args":{{"value":{round(float(v), 4)!r}}}}}', "C")

        flow_id = 0
        for flow in timeline.flows:
            src_device, src_lane = flow.src_device, flow.src_lane
            dst_device, dst_lane = flow.dst_device, flow.dst_lane
            dst_lane = redirect.get((dst_device, dst_lane), dst_lane)
            if "->" in src_lane and split_lane(src_lane)[0] == "other":
                # A cross-core flag names its setter only by kind ("AIC->AIV3"): start the arrow on
                # the waiting lane, at the time the flag was set.
                src_device, src_lane = dst_device, dst_lane
            src_lane = redirect.get((src_device, src_lane), src_lane)
            if split_lane(src_lane)[0] not in shown or split_lane(dst_lane)[0] not in shown:
                continue
            src_tid = w.lane(src_device, src_lane)
            dst_tid = w.lane(dst_device, dst_lane)
            flow_id += 1
            name = w.name(flow.name)
            start = round(max(0.0, flow.src_us - _FLOW_LEAD_US), 3)
            w.emit(f'{{"ph":"s","pid":{src_device + 1},"tid":{src_tid},"ts":{start!r},"name":{name},'
                   f'"cat":"flow","id":{flow_id},"bp":"e"}}', "s")
            w.emit(f'{{"ph":"f","pid":{dst_device + 1},"tid":{dst_tid},"ts":{round(flow.dst_us, 3)!r},'
                   f'"name":{name},"cat":"flow","id":{flow_id}}}', "f")

        w.flush()
        other = {"generator": "ascend-sim", "chip": chip, "detail": detail, "time_unit": "us",
                 "event_counts": dict(w.counts)}
        out.write(f'\n],"displayTimeUnit":"ns","otherData":{_dumps(other)}}}\n')
    return path


def read_chrome_trace(path) -> dict:
    """Load a Chrome trace (.json or .json.gz, told apart by content). A bare event array, as the
    Ascend profiler's trace_view.json is, comes back wrapped as ``{"traceEvents": [...]}``."""
    with _open_binary(os.fspath(path)) as f:
        data = json.load(f)
    if isinstance(data, list):
        return {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError(f"{path}: not a Chrome trace (expected a traceEvents list or an event array)")
    return data


def trace_summary(trace: dict) -> dict:
    """What a trace holds: its processes, lanes (thread names, in display order), events per phase,
    slices per lane, samples per counter, flows (ids with both a start and an end) and time span in
    microseconds."""
    events = trace["traceEvents"]
    processes: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    sort_index: dict[tuple[int, int], int] = {}
    counts: dict[str, int] = {}
    slices: dict[tuple[int, int], int] = {}
    counters: dict[str, int] = {}
    flow_starts: set = set()
    flow_ends: set = set()
    start = math.inf
    end = -math.inf
    for ev in events:
        ph = ev.get("ph", "")
        counts[ph] = counts.get(ph, 0) + 1
        pid, tid = ev.get("pid", 0), ev.get("tid", 0)
        if ph == "M":
            args = ev.get("args", {})
            if ev.get("name") == "process_name":
                processes[pid] = args.get("name", "")
            elif ev.get("name") == "thread_name":
                threads[pid, tid] = args.get("name", "")
            elif ev.get("name") == "thread_sort_index":
                sort_index[pid, tid] = args.get("sort_index", 0)
            continue
        ts = float(ev.get("ts", 0.0))
        t_end = ts + float(ev.get("dur", 0.0) or 0.0)
        start, end = min(start, ts), max(end, t_end)
        if ph == "X":
            slices[pid, tid] = slices.get((pid, tid), 0) + 1
        elif ph == "C":
            counters[ev.get("name", "")] = counters.get(ev.get("name", ""), 0) + 1
        elif ph == "s":
            flow_starts.add((ev.get("cat"), ev.get("name"), ev.get("id")))
        elif ph == "f":
            flow_ends.add((ev.get("cat"), ev.get("name"), ev.get("id")))
    ordered = sorted(threads, key=lambda k: (k[0], sort_index.get(k, 0), k[1]))
    lanes: list[str] = []
    by_process: dict[str, list[str]] = {}
    for key in ordered:
        name = threads[key]
        if name not in lanes:
            lanes.append(name)
        by_process.setdefault(processes.get(key[0], f"pid {key[0]}"), []).append(name)
    per_lane: dict[str, int] = {}
    for key, n in slices.items():
        name = threads.get(key, f"tid {key[1]}")
        per_lane[name] = per_lane.get(name, 0) + n
    if start == math.inf:
        start = end = 0.0
    return {
        "processes": [processes[p] for p in sorted(processes)],
        "lanes": lanes,
        "lanes_by_process": by_process,
        "event_counts": counts,
        "slices_per_lane": per_lane,
        "counters": counters,
        "flows": len(flow_starts & flow_ends),
        "unmatched_flows": len(flow_starts ^ flow_ends),
        "start_us": round(start, 3),
        "end_us": round(end, 3),
        "span_us": round(end - start, 3),
    }
