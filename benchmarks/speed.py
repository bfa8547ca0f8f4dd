"""Simulator speed: wall seconds of the cases issue 10 names, and simulated instructions per wall
second. Prints a table (not a test). Run: python benchmarks/speed.py [--case NAME] [--profile]

Cases (all meta mode; wall time of the whole call: planning + simulation):
  fa32k    npu_fusion_attention B1 N1 S32768 D128 fp16, BSND, no mask  (Ascend910B2)
  fa8k     the same at S8192
  linear   npu_linear fp16 7680 x 7680 x 7680 on Ascend910_9391
  gemm4k   npu_linear fp16 4096^3 on Ascend910B2, trace="pipe" (instruction level)
  gemm4k-full, fa8k-full   the same with accelerate=False: every block and iteration one by one
  layer8b  one Llama-3-8B decoder layer, prefill 2048, trace="pipe"  (Ascend910B2)
  est70b   the README's llama3-70b TP=8 estimate, both phases (ascend-sim estimate)

CPU is this process's CPU time (less sensitive than wall time to other work on the machine).
"instr/s" counts the instructions the engine ran one by one; "effective" counts every instruction
the plans hold (what a full instruction-level run would have executed).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time

from ascend_sim import Simulator, torch_npu


def e(*shape, dtype="float16"):
    return torch_npu.empty_with_format(shape, dtype)


def _fa(S):
    def build():
        torch_npu.npu_fusion_attention(e(1, S, 1, 128), e(1, S, 1, 128), e(1, S, 1, 128), 1, "BSND",
                                       scale=0.088)
    return "Ascend910B2", "ops", build


def _linear(n, chip, trace):
    def build():
        torch_npu.npu_linear(e(n, n), e(n, n))
    return chip, trace, build


def _layer8b():
    from ascend_sim.workloads import LlamaConfig, run_model

    def build(sim):
        run_model(sim, LlamaConfig.preset("llama3-8b"), phase="prefill", seq=2048, layers=1)
    return "Ascend910B2", "pipe", build


def run_sim_case(chip, trace, build, takes_sim=False, accelerate=True):
    t0 = time.perf_counter()
    sim = Simulator(chip, mode="meta", trace=trace, accelerate=accelerate)
    if takes_sim:
        build(sim)
    else:
        with sim:
            build()
            sim.synchronize()
    wall = time.perf_counter() - t0
    eng = sim.engine_stats()
    return wall, eng


def est70b():
    from ascend_sim.cli import main
    from ascend_sim.engine import engine as engine_module
    engines = []
    init = engine_module.Engine.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        engines.append(self)
    engine_module.Engine.__init__ = keep
    cfg = {"preset": "llama3-70b", "tp": 8, "phase": "both", "seq": 2048, "context": 4096, "weight_format": "NZ"}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        t0 = time.perf_counter()
        try:
            main(["estimate", path])
        finally:
            engine_module.Engine.__init__ = init
        wall = time.perf_counter() - t0
    return wall, {"instructions": sum(e.instructions for e in engines),
                  "effective_instructions": sum(e.effective for e in engines)}


CASES = {
    "fa32k": (lambda: run_sim_case(*_fa(32768)), "< 10 s"),
    "fa8k": (lambda: run_sim_case(*_fa(8192)), ""),
    "linear": (lambda: run_sim_case(*_linear(7680, "Ascend910_9391", "ops")), "< 5 s"),
    "gemm4k": (lambda: run_sim_case(*_linear(4096, "Ascend910B2", "pipe")), ""),
    # every block and iteration simulated one by one (accelerate=False): the raw instruction rate
    "gemm4k-full": (lambda: run_sim_case(*_linear(4096, "Ascend910B2", "pipe"), accelerate=False), ">= 300 k/s"),
    "fa8k-full": (lambda: run_sim_case(*_fa(8192), accelerate=False), ">= 300 k/s"),
    "layer8b": (lambda: run_sim_case(*_layer8b(), takes_sim=True), "< 10 s"),
    "est70b": (est70b, "< 30 s"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="run only these (repeatable)")
    ap.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = ap.parse_args()
    rows = []
    for name in args.case or list(CASES):
        fn, goal = CASES[name]
        if args.profile:
            pr = cProfile.Profile()
            pr.enable()
        cpu0 = time.process_time()
        wall, stats = fn()
        cpu = time.process_time() - cpu0
        if args.profile:
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        run = stats.get("instructions", 0)
        eff = stats.get("effective_instructions", 0)
        rows.append((name, f"{wall:.1f} s", f"{cpu:.1f} s", goal, f"{run / wall / 1e3:.0f} k/s" if run else "",
                     f"{eff / wall / 1e6:.2f} M/s" if eff else ""))
    print("\n| case | wall | CPU | goal | instr/s run | effective instr/s |\n|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
