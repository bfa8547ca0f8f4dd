"""The ``ascend-sim`` command.

    ascend-sim chips                      the chip presets, with derived peaks
    ascend-sim chips --toml Ascend910B2   one preset as TOML (edit it; use it with --chip my.toml)
    ascend-sim demo [--out DIR]           a Llama-style decoder layer, prefill and decode, TP=1 and TP=8
    ascend-sim estimate MODEL.json        time per layer and in total for a model (meta mode)
    ascend-sim sweep gemm ...             a GEMM tiling study (CSV + heat map), on every host core
    ascend-sim sweep chips ...            the same GEMM or decoder layer on every chip preset
    ascend-sim --version                  the package version

A mistake of the user's (a missing or unreadable file, a typo'd config key, an unknown chip or
model preset) is one line on stderr, ``ascend-sim: error: ...`` with a did-you-mean where one is
close, and exit code 2 (argparse's own code for a bad command line); never a traceback. Ctrl-C is
one line too, and exit code 130 (a sweep says how many of its points it wrote, and where).

demo, estimate and sweep show a progress bar on stderr (one helper, :func:`progress_bar`) and
print each step's, phase's or point's lines as it finishes; sweep writes each CSV row as its
point finishes.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import json
import os
import sys
import time

EXAMPLE_MODEL = """{"preset": "llama3-70b", "tp": 8, "phase": "decode", "batch": 1, "seq": 2048,
 "context": 4096, "chip": "Ascend910B2", "fused_allreduce": false, "weight_format": "NZ"}"""


RUN_KEYS = {"tp": 1, "phase": "decode", "batch": 1, "seq": 2048, "context": 2048, "chip": "Ascend910B2",
            "fused_allreduce": False, "weight_format": "ND", "layers": None}


class UsageError(Exception):
    """A mistake in what the user asked for: main prints it as one line and exits with 2."""


def did_you_mean(word: str, valid) -> str:
    close = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1, cutoff=0.6)
    if not close:
        close = [v for v in map(str, valid) if v.lower() == str(word).lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_chip(name) -> str:
    """A chip preset name (any case) or a .toml path that exists; else a UsageError with the presets."""
    from .hw import PRESETS
    if isinstance(name, str) and name.endswith(".toml"):
        if not os.path.isfile(name):
            raise UsageError(f"chip file {name!r} not found")
        return name
    if not isinstance(name, str) or name.strip().lower() not in {p.lower() for p in PRESETS}:
        raise UsageError(f"unknown chip {name!r}{did_you_mean(name, PRESETS)}; valid chips: {', '.join(PRESETS)} "
                         f"(or a .toml file)")
    return name


def chips_table() -> str:
    from .hw import PRESETS
    head = (f"{'preset':<16} {'family':<6} {'AIC':>4} {'AIV':>4} {'MHz':>6} {'fp16 TF':>8} {'int8 TO':>8} "
            f"{'HBM GiB':>8} {'HBM GB/s':>9} {'L2 MiB':>7} {'L1 KiB':>7} {'UB KiB':>7}")
    lines = [head, "-" * len(head)]
    for c in PRESETS.values():
        lines.append(
            f"{c.name:<16} {c.family:<6} {c.cores.aic:>4} {c.cores.aiv:>4} {c.cores.aic_mhz:>6.0f} "
            f"{c.cube_peak_tflops('float16'):>8.1f} {c.cube_peak_tflops('int8'):>8.1f} "
            f"{c.memory.hbm_bytes / 2**30:>8.1f} {c.memory.hbm_bandwidth_GBps:>9.0f} "
            f"{c.memory.l2_bytes / 2**20:>7.0f} {c.buffers.l1 / 1024:>7.0f} {c.buffers.ub / 1024:>7.0f}")
    return "\n".join(lines)


def progress_bar(total: int, desc: str, unit: str = "layer"):
    """The progress bar of demo (per step), estimate (per layer of a phase) and sweep (per point):
    tqdm on stderr, gone when closed, off when stderr is not a terminal (a pipe, a log file, a test).
    Use it as a context manager; ``update(1)`` per unit of work."""
    from tqdm.auto import tqdm
    isatty = getattr(sys.stderr, "isatty", None)
    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                disable=not (isatty is not None and isatty()))


def say(text: str = "") -> None:
    """print to stdout, above a live progress bar rather than through it, and now (not when a pipe's
    buffer fills)."""
    from tqdm.auto import tqdm
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def op_table(ops, title: str) -> str:
    head = f"{'op (scope)':<44} {'stream':<8} {'start us':>10} {'dur us':>9} {'core':<5} {'blk':>4} {'TFLOPS':>7} {'GB/s':>7} {'bound':<8}"
    lines = [title, head, "-" * len(head)]
    for r in ops:
        tf = r.flops / (r.duration_us * 1e6) if r.duration_us and r.flops else 0.0
        gbps = (r.bytes_read + r.bytes_written) / (r.duration_us * 1e3) if r.duration_us else 0.0
        scope = r.attrs.get("scope", "")
        label = f"{r.name} ({scope.split('/', 1)[-1]})" if "/" in scope else r.name
        lines.append(f"{label[:44]:<44} {r.stream[:8]:<8} {r.start_us:>10.1f} {r.duration_us:>9.1f} {r.core_type[:5]:<5} "
                     f"{r.block_dim:>4} {tf:>7.1f} {gbps:>7.0f} {r.bound:<8}")
    return "\n".join(lines)


# ----- chips -----
def cmd_chips(args) -> int:
    if args.toml:
        check_chip(args.toml)
        from .hw import get_chip, to_dict
        from .hw.toml_io import dumps
        print(dumps(to_dict(get_chip(args.toml))))
        return 0
    print(chips_table())
    return 0


# ----- demo -----
def cmd_demo(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    from . import Simulator
    from .traces import save
    from .workloads import LlamaConfig, run_model

    from .workloads.llama import PRESETS as MODELS
    check_chip(args.chip)
    if args.model not in MODELS:
        raise UsageError(f"unknown model preset {args.model!r}{did_you_mean(args.model, MODELS)}; "
                         f"valid presets: {', '.join(MODELS)}")
    out = args.out
    os.makedirs(out, exist_ok=True)
    cfg = LlamaConfig.preset(args.model)
    print(f"ascend-sim demo: one {cfg.name} decoder layer on {args.chip} (hidden {cfg.hidden}, {cfg.heads} heads, "
          f"{cfg.kv_heads} KV heads, FFN {cfg.ffn}, {cfg.dtype}), weights in FRACTAL_NZ\n", flush=True)
    t0 = time.perf_counter()
    summary = []
    cases = [(tp, phase) for tp in (1, 8) for phase in ("prefill", "decode")]
    with progress_bar(len(cases), "demo", unit="step") as bar:
        for tp, phase in cases:
            sim = Simulator(args.chip, world_size=tp, mode="meta", trace="ops")
            run = run_model(sim, cfg, tp=tp, phase=phase, batch=1, seq=args.seq, context=args.seq, layers=1,
                            weight_format="NZ")
            tag = f"tp{tp}_{phase}"
            rep = sim.report()
            what = f"prefill {args.seq} tokens" if phase == "prefill" else f"one decode step over {args.seq} tokens"
            say(op_table(run.ops, f"TP={tp}, {what}: {run.total_us:.1f} us on device 0") + "\n")
            rep.to_chrome_trace(os.path.join(out, f"{tag}_trace.json"), detail="ops")
            rep.to_kernel_details(os.path.join(out, f"{tag}_kernel_details.csv"))
            rep.to_op_statistic(os.path.join(out, f"{tag}_op_statistic.csv"))
            first = run.ops[0]
            ax = rep.plot_timeline(device=0, start_us=first.start_us - first.launch_us)   # the layer, not the load
            ax.set_title(f"{cfg.name} layer, TP={tp}, {phase} on {args.chip} (device 0)")
            save(ax, os.path.join(out, f"{tag}_timeline.png"))
            summary.append((tp, phase, run.total_us))
            bar.update(1)
    print("summary (device 0, one layer):")
    for tp, phase, us in summary:
        print(f"  TP={tp} {phase:<8} {us:>10.1f} us")
    print(f"\nwrote traces (open in ui.perfetto.dev), kernel_details/op_statistic CSVs and timeline PNGs to "
          f"{os.path.abspath(out)}  [{time.perf_counter() - t0:.1f} s]")
    return 0


# ----- estimate -----
def load_model_config(path: str) -> dict:
    """The config file as a dict; a missing, unreadable or malformed file is a UsageError."""
    import tomllib
    try:
        if path.endswith(".toml"):
            with open(path, "rb") as f:
                spec = tomllib.load(f)
        else:
            with open(path) as f:
                spec = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file {path!r} not found") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path!r} is a directory") from None
    except OSError as e:
        raise UsageError(f"config file {path!r}: {e.strerror or e}") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {path!r} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {e}") \
            from None
    if not isinstance(spec, dict):
        raise UsageError(f"config file {path!r}: expected an object of keys, got {type(spec).__name__}")
    return spec


def check_model_config(spec: dict) -> None:
    """Every key known (did-you-mean and the full list of valid keys, run keys included), the
    preset and the chip known."""
    from .workloads.llama import PRESETS as MODELS, LlamaConfig
    from dataclasses import fields
    model_keys = ["preset"] + [f.name for f in fields(LlamaConfig) if f.name not in ("name", *RUN_KEYS)]
    valid = model_keys + list(RUN_KEYS)
    for k in spec:
        if k not in valid:
            raise UsageError(f"model config: unknown key {k!r}{did_you_mean(k, valid)}; valid keys: "
                             f"{', '.join(model_keys)} (model), {', '.join(RUN_KEYS)} (run)")
    if "preset" in spec and spec["preset"] not in MODELS:
        raise UsageError(f"model config: unknown preset {spec['preset']!r}{did_you_mean(spec['preset'], MODELS)}; "
                         f"valid presets: {', '.join(MODELS)}")
    if "chip" in spec:
        check_chip(spec["chip"])
    for k in ("tp", "batch", "seq", "context", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn"):
        v = spec.get(k, 1)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UsageError(f"model config: {k} must be a positive integer, got {v!r}")
    if spec.get("phase", "decode") not in ("prefill", "decode", "both"):
        raise UsageError(f"model config: phase must be prefill, decode or both, got {spec['phase']!r}")


def cmd_estimate(args) -> int:
    from . import Simulator
    from .workloads import LlamaConfig, run_model

    spec = load_model_config(args.config)
    check_model_config(spec)
    run = {k: spec.pop(k, v) for k, v in RUN_KEYS.items()}
    try:
        cfg = LlamaConfig.from_dict(spec)
        cfg.check(run["tp"])
    except (ValueError, TypeError) as e:
        raise UsageError(f"model config: {e}") from None
    phases = ["prefill", "decode"] if run["phase"] == "both" else [run["phase"]]
    layers = run["layers"] or cfg.layers
    t0 = time.perf_counter()
    print(f"estimate: {cfg.name} ({cfg.params_per_layer() * cfg.layers / 1e9:.1f} B params), {layers} layers, "
          f"TP={run['tp']} on {run['chip']}, batch {run['batch']}, weights {run['weight_format']}", flush=True)
    for phase in phases:
        sim = Simulator(run["chip"], world_size=run["tp"], mode="meta", trace="ops")
        with progress_bar(layers, phase) as bar:
            res = run_model(sim, cfg, tp=run["tp"], phase=phase, batch=run["batch"], seq=run["seq"],
                            context=run["context"], layers=layers, fused=run["fused_allreduce"],
                            weight_format=run["weight_format"], progress=lambda done, total: bar.update(1))
        what = f"prefill of {run['seq']} tokens" if phase == "prefill" else f"one decode step at context {run['context']}"
        by_op: dict[str, float] = {}
        for r in res.ops:
            by_op[r.name] = by_op.get(r.name, 0.0) + r.duration_us
        print(f"\n{what}: {res.total_us / 1e3:.3f} ms in total, {res.per_layer_us:.1f} us per layer (device 0)")
        for name, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {name:<32} {us / 1e3:>9.3f} ms  ({100 * us / max(1e-9, sum(by_op.values())):4.1f}% of device time)")
        mem = sim.devices[0].allocator.max_allocated_bytes
        print(f"  device 0 peak memory: {mem / 2**30:.2f} GiB of {sim.chip.memory.hbm_bytes / 2**30:.0f} GiB",
              flush=True)
    print(f"\n[{time.perf_counter() - t0:.1f} s of wall time]")
    return 0


# ----- sweep -----
def _gemm_point(job):
    """One GEMM tiling (runs in a worker process): simulated us, TFLOPS, bound; or the error."""
    chip_name, m, n, k, dtype, bm, bn, bk, nz = job
    from . import Simulator
    from .dtypes import get_dtype
    from .ops.templates.matmul import MatmulProblem, MatmulTiling, Operand, matmul_plan
    from .runtime import Task
    dt = get_dtype(dtype)
    sim = Simulator(chip_name, mode="meta", trace="ops")
    p = MatmulProblem(1, m, n, k, Operand("a", m, k, dt), Operand("b", k, n, dt, nz=nz), "c",
                      get_dtype("float16") if dt.is_integer else dt)
    try:
        plans = matmul_plan("gemm", sim.chip, p, MatmulTiling(base_m=bm, base_n=bn, base_k=bk) if bm else None)
    except ValueError as e:
        return {"chip": chip_name, "base_m": bm, "base_n": bn, "base_k": bk, "time_us": "", "tflops": "",
                "bound": "", "error": str(e).split(":", 1)[-1].strip()}
    plans = plans if isinstance(plans, list) else [plans]
    gib = 1 << 30
    tasks = [sim.submit(Task("gemm", "kernel", sim.current_device.default_stream, plan=pl,
                             addresses={"a": 0, "b": 2 * gib, "c": 4 * gib, "workspace": 6 * gib})) for pl in plans]
    sim.synchronize()
    us = sum(t.record.duration_us for t in tasks)
    return {"chip": chip_name, "base_m": bm, "base_n": bn, "base_k": bk, "time_us": round(us, 3),
            "tflops": round(2 * m * n * k / (us * 1e6), 2), "bound": tasks[0].record.bound, "error": ""}


SWEEP_COLUMNS = ("chip", "base_m", "base_n", "base_k", "time_us", "tflops", "bound", "error")


def _ignore_sigint():
    """A pool worker's initializer: Ctrl-C is the main process's to handle (it stops the workers)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool) -> None:
    """Terminate a ProcessPoolExecutor's workers now, mid-point (shutdown alone waits for the points
    they are running)."""
    terminate = getattr(pool, "terminate_workers", None)          # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def _stream_points(jobs, workers: int):
    """``(index, result)`` of every job as it finishes, in finishing order: in this process when
    ``workers`` is 1, else on a process pool. Closing the generator early (Ctrl-C in the caller, an
    error) stops the pool's workers."""
    if workers <= 1:
        for i, job in enumerate(jobs):
            yield i, _gemm_point(job)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        index = {pool.submit(_gemm_point, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(index):
            yield index[fut], fut.result()
    except BaseException:                  # KeyboardInterrupt, a worker's error, GeneratorExit from close()
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _point_line(r: dict, study: str) -> str:
    """One point's line: its tiling (gemm) or chip (chips), then its time or why it did not run."""
    label = f"  base_m={r['base_m']:<4} base_n={r['base_n']:<4} " if study == "gemm" else f"  {r['chip']:<16} "
    if r["tflops"] != "":
        return f"{label}{r['time_us']:>10} us {r['tflops']:>7} TFLOPS {r['bound']}"
    return f"{label}{'does not fit' if study == 'gemm' else 'not supported'}: {r['error']}"


def cmd_sweep(args) -> int:
    for chip in [args.chip] + (args.chips.split(",") if args.chips else []):
        check_chip(chip)
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 (every host core) or more, got {args.workers}")
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np

    from .hw import list_chips
    from .traces import plot_heatmap, save
    t0 = time.perf_counter()
    if args.study == "gemm":
        bms = [int(x) for x in args.base_m.split(",")]
        bns = [int(x) for x in args.base_n.split(",")]
        jobs = [(args.chip, args.m, args.n, args.k, args.dtype, bm, bn, args.base_k, args.nz) for bm in bms for bn in bns]
        extra = [(args.chip, args.m, args.n, args.k, args.dtype, 0, 0, 0, args.nz)]     # the default tiler, not a row
        title = f"GEMM {args.m}x{args.n}x{args.k} {args.dtype} TFLOPS on {args.chip} (base_k={args.base_k})\n"
    else:
        chips = args.chips.split(",") if args.chips else list_chips()
        jobs = [(c, args.m, args.n, args.k, args.dtype, 0, 0, 0, args.nz) for c in chips]
        extra = []
        title = f"GEMM {args.m}x{args.n}x{args.k} {args.dtype}: simulated us per chip"
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, f"sweep_{args.study}.csv")
    png_path = os.path.join(args.out, f"sweep_{args.study}.png")
    workers = max(1, min(args.workers or os.cpu_count() or 1, len(jobs) + len(extra)))
    print(title, flush=True)

    # every row goes to the CSV (flushed) and to stdout as its point finishes; rows[i] is job i's
    rows: list = [None] * len(jobs)
    default = None
    written = 0
    try:
        with open(csv_path, "w", newline="") as f, \
                progress_bar(len(jobs) + len(extra), "tilings" if args.study == "gemm" else "chips", "point") as bar, \
                contextlib.closing(_stream_points(jobs + extra, workers)) as points:
            w = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS)
            w.writeheader()
            f.flush()
            for i, r in points:
                bar.update(1)
                if i >= len(jobs):
                    default = r
                    continue
                rows[i] = r
                w.writerow(r)
                f.flush()
                written += 1
                say(_point_line(r, args.study))
    except KeyboardInterrupt:
        print(f"ascend-sim: interrupted: {written} of {len(jobs)} points written to {os.path.abspath(csv_path)}",
              file=sys.stderr)
        return 130

    if args.study == "gemm":
        grid = np.array([[float(r["tflops"]) if r["tflops"] != "" else np.nan for r in rows[i * len(bns):(i + 1) * len(bns)]]
                         for i in range(len(bms))])
        ax = plot_heatmap(grid, [str(b) for b in bms], [str(b) for b in bns], title=title.strip())
        ax.set_ylabel("base_m")
        ax.set_xlabel("base_n")
        best = max((r for r in rows if r["tflops"] != ""), key=lambda r: r["tflops"], default=None)
        if best:
            print(f"\nbest: base_m={best['base_m']} base_n={best['base_n']}: {best['tflops']} TFLOPS; default tiler: "
                  + (f"{default['tflops']} TFLOPS" if default["tflops"] != "" else f"error: {default['error']}"))
    else:
        ok = [r for r in rows if r["tflops"] != ""]
        grid = np.array([[float(r["time_us"]) for r in ok]])
        ax = plot_heatmap(grid, ["time us"], [r["chip"] for r in ok], title=title)
    save(ax, png_path)
    print(f"\nwrote {csv_path} and {png_path}  [{time.perf_counter() - t0:.1f} s on {workers} worker(s)]")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="ascend-sim",
        description="Cycle-approximate simulator of Huawei Ascend NPUs: torch_npu ops with real numbers and "
                    "simulated time. Use it from Python (import ascend_sim; ascend_sim.torch_npu.<op>) or here.",
        epilog="Examples:\n  ascend-sim chips\n  ascend-sim demo --out demo_out\n"
               "  ascend-sim estimate model.json      (model.json: " + EXAMPLE_MODEL.replace("\n", "") + ")\n"
               "  ascend-sim sweep gemm --m 4096 --n 4096 --k 4096 --base-m 64,128,256 --base-n 64,128,256\n"
               "  ascend-sim sweep chips --m 8192 --n 8192 --k 8192",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__
    p.add_argument("--version", action="version", version=f"ascend-sim {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("chips", help="list the chip presets and their peaks",
                       description="The built-in chip presets. Every number has a source: see "
                                   "ascend_sim/hw/presets.py or print one preset with --toml.")
    c.add_argument("--toml", metavar="PRESET", help="print this preset as TOML (a starting point for a what-if chip)")
    c.set_defaults(fn=cmd_chips)

    d = sub.add_parser("demo", help="a decoder layer: prefill and decode, TP=1 and TP=8",
                       description="Simulates one Llama-style decoder layer (meta mode: shapes and time) on the "
                                   "chip, for prefill and one decode step, on 1 and 8 ranks; prints a per-op table "
                                   "and writes Perfetto traces, profiler-style CSVs and timeline PNGs.")
    d.add_argument("--out", default="ascend_sim_out", help="output folder (default: ascend_sim_out)")
    d.add_argument("--chip", default="Ascend910B2")
    d.add_argument("--model", default="llama3-8b", help="model preset: llama2-7b, llama3-8b, llama3-70b, tiny")
    d.add_argument("--seq", type=int, default=2048, help="prompt length, and the decode step's context")
    d.set_defaults(fn=cmd_demo)

    e = sub.add_parser("estimate", help="time per layer and in total for a model config (JSON or TOML)",
                       description="Estimates a whole model in meta mode (no numbers, no host memory for weights): "
                                   "every layer's ops are simulated; identical kernels are replayed. Config keys: "
                                   "preset or hidden/heads/kv_heads/head_dim/ffn/layers/dtype, and tp, phase "
                                   "(prefill, decode or both), batch, seq, context, chip, fused_allreduce, "
                                   "weight_format (ND or NZ), layers. Example:\n" + EXAMPLE_MODEL,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("config", help="model config file (.json or .toml)")
    e.set_defaults(fn=cmd_estimate)

    s = sub.add_parser("sweep", help="a GEMM tiling study or a chip study, to CSV and a heat map",
                       description="'gemm' times every base_m x base_n tiling of a GEMM (tilings that do not fit "
                                   "the buffers are reported, not run); 'chips' times the GEMM on every preset. "
                                   "Runs on every host core; prints each point and writes its CSV row as it "
                                   "finishes (in finishing order), so Ctrl-C keeps the rows done; the heat map "
                                   "is drawn at the end.")
    s.add_argument("study", choices=("gemm", "chips"))
    s.add_argument("--chip", default="Ascend910B2")
    s.add_argument("--chips", default="", help="comma-separated presets for 'chips' (default: all)")
    s.add_argument("--m", type=int, default=4096)
    s.add_argument("--n", type=int, default=4096)
    s.add_argument("--k", type=int, default=4096)
    s.add_argument("--dtype", default="float16")
    s.add_argument("--nz", action="store_true", help="the weight (B) in FRACTAL_NZ")
    s.add_argument("--base-m", default="64,128,256")
    s.add_argument("--base-n", default="64,128,256")
    s.add_argument("--base-k", type=int, default=64)
    s.add_argument("--workers", type=int, default=0,
                   help="processes (default: every host core; 1 runs the points in this process)")
    s.add_argument("--out", default="ascend_sim_out")
    s.set_defaults(fn=cmd_sweep)

    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except UsageError as e:
        print(f"ascend-sim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ascend-sim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
