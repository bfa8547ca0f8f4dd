"""Chrome trace event JSON: structure, lane names, counters, flows, detail levels, streaming of a
million events, round trips through .json and .json.gz."""
import gzip
import json
import os
import re
import tracemalloc

import numpy as np
import pytest

from ascend_sim.timeline import Counter, Flow, Interval, OpRecord, Timeline
from ascend_sim.traces import read_chrome_trace, trace_summary, write_chrome_trace

PIPE_LANE = re.compile(r"^(AIC|AIV|AICore)\d+(\.vec\d+)? (SCALAR|CUBE|VECTOR|MTE1|MTE2|MTE3|FIXP)$")
CORE_LANE = re.compile(r"^(AIC|AIV|AICore)\d+(\.vec\d+)?$")


def written(timeline, tmp_path, name="trace.json", **kw):
    path = write_chrome_trace(timeline, tmp_path / name, **kw)
    with open(path) as f:
        return json.load(f)        # plain json: the file must be valid JSON as written


def thread_names(trace):
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def test_every_event_has_phase_time_process_and_thread(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    assert trace["displayTimeUnit"] == "ns"
    assert trace["otherData"]["chip"] == "Ascend910B2" and trace["otherData"]["detail"] == "pipe"
    events = trace["traceEvents"]
    assert len(events) > 1000
    for e in events:
        assert {"ph", "ts", "pid", "tid"} <= e.keys(), e
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0 and e["name"]
    counts = trace["otherData"]["event_counts"]
    assert sum(counts.values()) == len(events)
    assert counts["X"] == sum(e["ph"] == "X" for e in events)


def test_times_are_rounded_to_the_nanosecond(pipe_run, tmp_path):
    path = write_chrome_trace(pipe_run.timeline, tmp_path / "t.json")
    text = open(path).read()
    decimals = [len(m) for m in re.findall(r'"(?:ts|dur)":\d+\.(\d+)', text)]
    assert decimals and max(decimals) <= 3


def test_lanes_are_named_as_the_vendor_tools_name_them(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    summary = trace_summary(trace)
    assert summary["processes"] == ["NPU 0 (Ascend910B2)"]
    lanes = summary["lanes"]
    assert lanes[:2] == ["Stream default", "Stream side"]          # op lanes first
    pipe_lanes = [n for n in lanes if PIPE_LANE.match(n)]
    assert len(pipe_lanes) == len(lanes) - 2                        # everything else is a core's pipe
    assert any(n.endswith(" CUBE") for n in pipe_lanes) and any(n.endswith(" VECTOR") for n in pipe_lanes)
    assert any(n.startswith("AIV") and n.endswith(" MTE2") for n in pipe_lanes)
    assert any(n.startswith("AIC") and n.endswith(" FIXP") for n in pipe_lanes)
    # one op span per device op, on the stream it ran on
    assert summary["slices_per_lane"]["Stream side"] == 1
    assert summary["slices_per_lane"]["Stream default"] == len(pipe_run.ops) - 1


def test_thread_sort_index_puts_op_lanes_first_and_orders_cores(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    names = thread_names(trace)
    index = {names[e["pid"], e["tid"]]: e["args"]["sort_index"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_sort_index"}
    assert set(index) == set(names.values())
    streams = [v for k, v in index.items() if k.startswith("Stream")]
    others = [v for k, v in index.items() if not k.startswith("Stream")]
    assert max(streams) < min(others)
    assert index["Stream default"] < index["Stream side"]
    assert index["AIC0 SCALAR"] < index["AIC0 CUBE"] < index["AIC0 MTE2"] < index["AIC1 SCALAR"] < index["AIV0 VECTOR"]
    assert index["AIC2 CUBE"] < index["AIC10 CUBE"]                 # by core number, not as text


def test_thread_ids_are_unique_over_the_file(two_device_run, tmp_path):
    # Perfetto keys threads by tid alone: the same lane on two devices needs two tids
    trace = written(two_device_run.timeline, tmp_path)
    names = thread_names(trace)
    tids = [tid for _, tid in names]
    assert len(tids) == len(set(tids))
    assert sorted(names.values()) == ["Communication", "Communication", "Stream default", "Stream default"]


def test_op_spans_carry_the_profiler_fields(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    names = thread_names(trace)
    ops = [e for e in trace["traceEvents"] if e["ph"] == "X" and names[e["pid"], e["tid"]].startswith("Stream")]
    linear = next(e for e in ops if e["name"] == "npu_linear")
    assert linear["args"]["Type"] == "MatMul" and linear["args"]["Accelerator Core"] == "AI_CORE"
    assert linear["args"]["Input Shapes"] == "256,512;256,512"
    assert linear["args"]["Input Data Types"] == "FLOAT16;FLOAT16"
    cast = next(e for e in ops if e["name"] == "npu_format_cast")
    assert cast["args"]["Output Formats"] == "FRACTAL_NZ"
    rec = next(r for r in pipe_run.ops if r.name == "npu_linear")
    assert linear["ts"] == pytest.approx(rec.start_us, abs=1e-3)
    assert linear["dur"] == pytest.approx(rec.duration_us, abs=2e-3)


def test_counters_are_in_time_order_per_series(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    series = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "C":
            series.setdefault((e["pid"], e["name"]), []).append(e["ts"])
            assert set(e["args"]) == {"value"}
    assert {name for _, name in series} >= {"HBM GB/s", "L2 hit rate"}
    for times in series.values():
        assert times == sorted(times)


def test_counter_samples_out_of_order_are_sorted(tmp_path):
    tl = Timeline(counters=[Counter(0, "HBM GB/s", [3.0, 1.0, 2.0], [30.0, 10.0, 20.0]),
                            Counter(0, "L2 hit rate", [1.0, 2.0], [0.5, None])])
    events = [e for e in written(tl, tmp_path)["traceEvents"] if e["ph"] == "C"]
    hbm = [(e["ts"], e["args"]["value"]) for e in events if e["name"] == "HBM GB/s"]
    assert hbm == [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]
    assert [e["ts"] for e in events if e["name"] == "L2 hit rate"] == [1.0]     # None is no sample


def test_flows_have_matching_start_and_end(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    names = thread_names(trace)
    starts = {(e["cat"], e["name"], e["id"]): e for e in trace["traceEvents"] if e["ph"] == "s"}
    ends = {(e["cat"], e["name"], e["id"]): e for e in trace["traceEvents"] if e["ph"] == "f"}
    assert starts and starts.keys() == ends.keys()
    assert len(starts) == len(pipe_run.timeline.flows)
    for key, s in starts.items():
        f = ends[key]
        assert s["bp"] == "e" and f["ts"] >= s["ts"]
    # the cross-stream event: from the side stream to the default stream
    event = [k for k in starts if k[1] == "event"]
    assert len(event) == 1
    assert names[starts[event[0]]["pid"], starts[event[0]]["tid"]] == "Stream side"
    assert names[ends[event[0]]["pid"], ends[event[0]]["tid"]] == "Stream default"
    assert trace_summary(trace)["flows"] == len(starts)


def test_cross_core_flags_run_along_the_waiting_pipe(pipe_run, mix_kernel, tmp_path):
    trace = written(pipe_run.timeline, tmp_path)
    names = thread_names(trace)
    starts = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "s" and e["name"].startswith("cross-core")}
    ends = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "f" and e["name"].startswith("cross-core")}
    assert starts and starts.keys() == ends.keys()
    for key, end in ends.items():
        lane = names[end["pid"], end["tid"]]
        assert PIPE_LANE.match(lane) and names[starts[key]["pid"], starts[key]["tid"]] == lane


def test_detail_ops_has_no_core_or_pipe_lanes(pipe_run, tmp_path):
    trace = written(pipe_run.timeline, tmp_path, detail="ops")
    summary = trace_summary(trace)
    assert summary["lanes"] == ["Stream default", "Stream side"]
    assert summary["event_counts"]["X"] == len(pipe_run.ops)
    assert summary["counters"]["HBM GB/s"] > 0
    # only the cross-stream flow survives: cross-core flags end on pipe lanes
    assert {e["name"] for e in trace["traceEvents"] if e["ph"] in "sf"} == {"event"}


def test_detail_core_shows_core_blocks_and_no_pipes(core_run, pipe_run, tmp_path):
    summary = trace_summary(written(core_run.timeline, tmp_path, detail="core"))
    cores = [n for n in summary["lanes"] if CORE_LANE.match(n)]
    assert cores and any(n.startswith("AIC") for n in cores) and any(n.startswith("AIV") for n in cores)
    assert not any(PIPE_LANE.match(n) for n in summary["lanes"])
    # a pipe-traced run at "core" detail drops its pipe lanes
    summary = trace_summary(written(pipe_run.timeline, tmp_path, "p.json", detail="core"))
    assert not any(PIPE_LANE.match(n) for n in summary["lanes"])


def test_communication_lane_per_device(two_device_run, tmp_path):
    summary = trace_summary(written(two_device_run.timeline, tmp_path, detail="ops"))
    assert summary["processes"] == ["NPU 0 (Ascend910B2)", "NPU 1 (Ascend910B2)"]
    for process in summary["processes"]:
        assert summary["lanes_by_process"][process] == ["Stream default", "Communication"]
    assert summary["slices_per_lane"]["Communication"] == 2


def test_collectives_and_the_waits_around_them_are_on_communication(two_device_run, tmp_path):
    trace = written(two_device_run.timeline, tmp_path, detail="ops")
    names = thread_names(trace)
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X" and names[e["pid"], e["tid"]] == "Communication"]
    assert [e["name"] for e in spans] == ["all_reduce (mesh)"] * 2
    assert spans[0]["args"]["Accelerator Core"] == "HCCL" and spans[0]["args"]["Type"] == "hcom_allReduce_"
    # the communicator's stream holds only the collective: its event waits point at Communication
    ends = [names[e["pid"], e["tid"]] for e in trace["traceEvents"] if e["ph"] == "f"]
    assert sorted(ends) == ["Communication", "Communication", "Stream default", "Stream default"]


def test_bad_detail_is_refused(pipe_run, tmp_path):
    with pytest.raises(ValueError, match="detail must be one of 'ops', 'core', 'pipe'"):
        write_chrome_trace(pipe_run.timeline, tmp_path / "x.json", detail="instructions")


def test_round_trip_json_and_gzip(pipe_run, tmp_path):
    plain = write_chrome_trace(pipe_run.timeline, tmp_path / "t.json")
    packed = write_chrome_trace(pipe_run.timeline, tmp_path / "t.json.gz")
    with open(packed, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    a, b = read_chrome_trace(plain), read_chrome_trace(packed)
    assert a == b
    assert os.path.getsize(packed) < os.path.getsize(plain) / 4
    assert trace_summary(a) == trace_summary(b)
    span = trace_summary(a)
    ops_end = max(r.end_us for r in pipe_run.ops)
    assert span["end_us"] == pytest.approx(ops_end, abs=0.01)


def test_an_empty_timeline_is_an_empty_valid_trace(tmp_path):
    trace = written(Timeline(), tmp_path)
    assert trace["traceEvents"] == [] and trace_summary(trace)["span_us"] == 0.0


def test_reads_a_bare_event_array_as_the_profiler_writes_it(tmp_path):
    path = tmp_path / "trace_view.json"
    path.write_text(json.dumps([{"ph": "X", "pid": 1, "tid": 2, "ts": 5, "dur": 1, "name": "MatMul"}]))
    trace = read_chrome_trace(path)
    assert trace_summary(trace)["event_counts"] == {"X": 1}
    path.write_text(json.dumps({"nothing": 1}))
    with pytest.raises(ValueError, match="not a Chrome trace"):
        read_chrome_trace(path)


def test_numpy_values_in_args_are_written_as_numbers(tmp_path):
    tl = Timeline(intervals=[Interval("AIV0.MTE2", 0, 1.0, 2.0, "MTE2.gm_to_ub",
                                      {"bytes": np.int64(4096), "tensor": "x", "shape": np.array([2, 3])})])
    (ev,) = [e for e in written(tl, tmp_path)["traceEvents"] if e["ph"] == "X"]
    assert ev["args"] == {"bytes": 4096, "tensor": "x", "shape": [2, 3]}
    # NaN is not JSON: written as text so that viewers still load the file
    tl = Timeline(intervals=[Interval("AIV0.MTE2", 0, 1.0, 2.0, "x", {"rate": float("nan"), "n": [np.float32(1)]})])
    (ev,) = [e for e in written(tl, tmp_path, "nan.json")["traceEvents"] if e["ph"] == "X"]
    assert ev["args"] == {"rate": "nan", "n": [1.0]}


def test_a_timeline_of_records_alone_draws_its_streams(tmp_path):
    ops = [OpRecord("npu_silu", 0, "default", 1.0, 2.0, core_type="AIV"),
           OpRecord("npu_reshape", 0, "default", 3.0, 0.0, core_type="")]      # host-only: no device span
    summary = trace_summary(written(Timeline(ops=ops, chip="Ascend910B2"), tmp_path))
    assert summary["slices_per_lane"] == {"Stream default": 1}


def _synthetic_intervals(n, consumed):
    pipes = ("MTE2", "VECTOR", "MTE3", "SCALAR")
    for i in range(n):
        consumed[0] += 1
        yield Interval(f"AIV{i % 48}.{pipes[i % 4]}", 0, i * 0.0137, i * 0.0137 + 0.011, "VECTOR.vadd")


def test_a_million_events_stream_from_a_generator_compactly(tmp_path):
    n = 1_000_000
    consumed = [0]
    tl = Timeline(intervals=_synthetic_intervals(n, consumed), chip="Ascend910B2",
                  flows=[Flow("cross-core flag 0", 0, "AIC->AIV1", 5.0, 0, "AIV1.MTE2", 6.0)])
    path = write_chrome_trace(tl, tmp_path / "big.json")
    assert consumed[0] == n                    # one pass over the generator, nothing else needed
    size = os.path.getsize(path)
    assert size / n < 120
    with open(path, "rb") as f:               # well formed at both ends without loading it all
        head = f.read(200)
        f.seek(size - 400)
        tail = f.read()
    assert head.startswith(b'{"traceEvents":[\n{"ph":"M"')
    other = json.loads(tail[tail.index(b'"otherData":') + len(b'"otherData":'):].rstrip()[:-1])
    assert other["event_counts"]["X"] == n and other["event_counts"]["s"] == 1


def test_writing_holds_no_list_of_events(tmp_path):
    # 50k events held as a list of dicts take about 17 MB; the writer keeps one small buffer
    n = 50_000
    consumed = [0]
    tracemalloc.start()
    try:
        write_chrome_trace(Timeline(intervals=_synthetic_intervals(n, consumed)), tmp_path / "m.json.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert consumed[0] == n
    assert peak < 6e6
    with gzip.open(tmp_path / "m.json.gz", "rt") as f:
        # 48 lanes (core i % 48 fixes the pipe i % 4): a name and a sort index each; one process
        assert len(json.load(f)["traceEvents"]) == n + 48 * 2 + 2
