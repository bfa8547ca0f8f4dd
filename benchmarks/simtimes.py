"""Simulated-time fingerprint: the simulated duration of a fixed set of calls, to full precision.

Run: python benchmarks/simtimes.py [--out FILE.json] [--compare BASE.json] [--tol 0.001]

A refactoring that should not change behaviour must leave every number here within ``--tol``
(relative; default 0.1%). The set: every case of benchmarks/ops.py on Ascend910B2, a tiny
Llama-style model (prefill and decode, TP=1, TP=2 unfused and fused, ND and NZ weights; every
op row by name), all_reduce at 4 KiB and 16 MiB on 2, 8 and 16 ranks, and the engine
benchmark's template kernels (a one-core GEMM loop, a 64 MiB copy). Device time only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CHIP = "Ascend910B2"


def op_cases(out: dict) -> None:
    import ops as opbench
    for label, _metric, build in opbench.CASES:
        us, *_ = opbench.measure(CHIP, build)
        out[f"ops/{label}"] = us


def model_cases(out: dict) -> None:
    from ascend_sim import Simulator
    from ascend_sim.workloads.llama import LlamaConfig, run_model
    cfg = LlamaConfig.preset("tiny") if hasattr(LlamaConfig, "preset") else None
    if cfg is None:
        from ascend_sim.workloads.llama import PRESETS
        cfg = PRESETS["tiny"]
    for tp, fused, fmt in ((1, False, "ND"), (1, False, "NZ"), (2, False, "ND"), (2, True, "ND")):
        for phase in ("prefill", "decode"):
            sim = Simulator(CHIP, world_size=tp, mode="meta", trace="ops")
            run = run_model(sim, cfg, tp=tp, phase=phase, batch=2, seq=256, context=512, layers=2, fused=fused,
                            weight_format=fmt)
            key = f"model/tp{tp}{'-fused' if fused else ''}-{fmt}-{phase}"
            out[key] = run.total_us if hasattr(run, "total_us") else run[4]
            for i, r in enumerate(run.ops):
                out[f"{key}/{i:03d} {r.name}"] = r.duration_us


def comm_cases(out: dict) -> None:
    import comm as commbench
    for ranks in (2, 8, 16):
        for size in (4 << 10, 16 << 20):
            out[f"comm/all_reduce {ranks} ranks {size} B"] = commbench.measure(CHIP, "all_reduce", ranks,
                                                                              size).duration_us


def engine_cases(out: dict) -> None:
    import engine as enginebench
    from ascend_sim.hw import get_chip
    from ascend_sim.ops.templates.elementwise import ElementwiseTiling
    from ascend_sim.ops.templates.matmul import MatmulTiling
    chip = get_chip(CHIP)
    (r,), _, _ = enginebench.run(chip, enginebench.gemm(chip, 128, 256, 8192, MatmulTiling(block_dim=1)))
    out["engine/gemm 1 core 128x256x8192"] = r.duration_us
    (r,), _, _ = enginebench.run(chip, enginebench.copy(chip, 64 << 20, ElementwiseTiling(48 * 1024, 1)))
    out["engine/copy 64 MiB 1 AIV"] = r.duration_us
    (r,), _, _ = enginebench.run(chip, enginebench.copy(chip, 256 << 20))
    out["engine/copy 256 MiB all AIV"] = r.duration_us


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the fingerprint here (JSON)")
    ap.add_argument("--compare", help="a fingerprint to compare with")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--only", default="ops,model,comm,engine")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    for part in args.only.split(","):
        {"ops": op_cases, "model": model_cases, "comm": comm_cases, "engine": engine_cases}[part](out)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    print(f"{len(out)} simulated times in {time.perf_counter() - t0:.0f} s")
    if not args.compare:
        return 0
    with open(args.compare) as f:
        base = json.load(f)
    bad = 0
    for k in sorted(set(base) | set(out)):
        a, b = base.get(k), out.get(k)
        if a is None or b is None:
            print(f"  {'new' if a is None else 'gone'}: {k}")
            bad += 1
            continue
        rel = abs(b - a) / max(abs(a), 1e-12)
        if rel > args.tol:
            print(f"  {100 * rel:.3f}%  {k}: {a:.4f} -> {b:.4f} us")
            bad += 1
    print(f"{bad} of {len(set(base) | set(out))} differ by more than {100 * args.tol:.2f}%")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
