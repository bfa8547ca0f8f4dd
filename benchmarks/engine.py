"""Engine benchmark: prints a table (not a test). Run: python benchmarks/engine.py [--chip NAME]

a. one MMAD 128x256x64 fp16 against the formula's cycles (HARDWARE.md 2.2)
b. a double-buffered GEMM main loop on one core: cube utilisation when compute-bound; the bound
   unit when the K step is small
c. a 1 GiB GM->UB->GM copy over all AIV cores against the HBM bandwidth; on one core against the
   core's path rate
d. a tensor read twice: the second read when it fits in L2, and when it is twice the L2 size
e. simulator speed: simulated instructions per wall second, plan building rate, and wall time
   against instruction count
"""
from __future__ import annotations

import argparse
import time

from ascend_sim.dtypes import float16
from ascend_sim.hw import get_chip
from ascend_sim.isa import KernelPlan, ProgramBuilder
from ascend_sim.ops.templates.elementwise import ElementwiseTiling, Operand, VectorStep, elementwise_plan
from ascend_sim.ops.templates.matmul import MatmulProblem, MatmulTiling, Operand as MOp, matmul_plan
from ascend_sim.runtime import Simulator, Task

GiB, MiB = 1 << 30, 1 << 20


def run(chip, *jobs):
    """jobs: (plan, addresses). Returns (records, simulator, wall seconds of the simulation)."""
    sim = Simulator(chip, trace="ops")
    dev = sim.current_device
    tasks = [sim.submit(Task(p.name, "kernel", dev.default_stream, plan=p, addresses=a)) for p, a in jobs]
    t0 = time.perf_counter()
    sim.synchronize()
    return [t.record for t in tasks], sim, time.perf_counter() - t0


def gemm(chip, m, n, k, tiling=None):
    p = MatmulProblem(1, m, n, k, MOp("a", m, k, float16), MOp("b", k, n, float16), "c", float16)
    return matmul_plan("gemm", chip, p, tiling), {"a": 0, "b": 2 * GiB, "c": 4 * GiB}


def copy(chip, nbytes, tiling=None):
    return (elementwise_plan("copy", chip, nbytes // 2, [Operand("src", 2)], [Operand("dst", 2)], [], tiling=tiling),
            {"src": 0, "dst": 8 * GiB})


def read(chip, nbytes):
    return elementwise_plan("read", chip, nbytes // 2, [Operand("src", 2)], [], [VectorStep("unary", "float16")]), \
        {"src": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chip", default="Ascend910B2")
    args = ap.parse_args()
    chip = get_chip(args.chip)
    mhz = chip.cores.aic_mhz
    rows = []

    b = ProgramBuilder(chip, "AIC")
    b.mmad(128, 256, 64, "float16")
    (r,), _, _ = run(chip, (KernelPlan("mmad", "AIC", [[b.build()]]), {}))
    rows.append(("a", "MMAD 128x256x64 fp16", f"{r.duration_us * mhz:.0f} cycles", "formula: 8*16*4 = 512"))

    (r,), _, _ = run(chip, gemm(chip, 128, 256, 8192, MatmulTiling(block_dim=1)))
    rows.append(("b", "GEMM loop 1 core, 128x256x8192", f"cube {100 * r.pipe_busy_us['CUBE'] / r.duration_us:.1f}%",
                 f"bound={r.bound} (goal >= 95%)"))
    (r,), _, _ = run(chip, gemm(chip, 128, 256, 8192, MatmulTiling(base_k=16, step_k=1, block_dim=1)))
    rows.append(("b", "GEMM loop 1 core, K step 16", f"cube {100 * r.pipe_busy_us['CUBE'] / r.duration_us:.1f}%",
                 f"bound={r.bound} (goal: mte2)"))

    (r,), _, _ = run(chip, copy(chip, GiB))
    gbps = r.hbm_bytes / (r.duration_us * 1e3)
    payload = (r.bytes_read + r.bytes_written) / (r.duration_us * 1e3)
    rows.append(("c", f"1 GiB copy, {r.block_dim} AIV", f"HBM {gbps:.0f} GB/s",
                 f"preset {chip.memory.hbm_bandwidth_GBps:.0f} GB/s ({100 * gbps / chip.memory.hbm_bandwidth_GBps:.1f}%); "
                 f"payload {payload:.0f} GB/s (last writes still in L2); bound={r.bound}"))
    (r,), _, _ = run(chip, copy(chip, 64 * MiB, ElementwiseTiling(48 * 1024, 1)))
    rate = r.bytes_written / (r.duration_us * mhz)
    rows.append(("c", "64 MiB copy, 1 AIV", f"{rate:.1f} B/cycle",
                 f"path ub_to_gm {chip.paths['ub_to_gm'].bytes_per_cycle} B/cycle, bound={r.bound}"))

    for size, what in ((chip.memory.l2_bytes // 3, "1/3 of L2"), (2 * chip.memory.l2_bytes, "2x L2")):
        (r1, r2), _, _ = run(chip, read(chip, size), read(chip, size))
        rows.append(("d", f"read {size // MiB} MiB twice ({what})",
                     f"{size / (r1.duration_us * 1e3):.0f} -> {size / (r2.duration_us * 1e3):.0f} GB/s",
                     f"L2 hit {r1.l2_hit_rate:.2f} -> {r2.l2_hit_rate:.2f}"))

    speeds = []
    for m in (1024, 2048, 4096):
        t0 = time.perf_counter()
        job = gemm(chip, m, m, m)
        build = time.perf_counter() - t0
        _, sim, wall = run(chip, job)
        n = job[0].instruction_count()
        speeds.append((n, wall))
        rows.append(("e", f"GEMM {m}^3 fp16: {n} instructions", f"{n / wall / 1e3:.0f} k instr/s",
                     f"sim {wall:.2f} s, plan build {n / build / 1e3:.0f} k instr/s"))
    t0 = time.perf_counter()
    job = copy(chip, GiB)
    build = time.perf_counter() - t0
    _, sim, wall = run(chip, job)
    n = job[0].instruction_count()
    rows.append(("e", f"1 GiB copy: {n} instructions", f"{n / wall / 1e3:.0f} k instr/s",
                 f"sim {wall:.2f} s, plan build {n / build / 1e3:.0f} k instr/s"))
    (n0, w0), (n1, w1) = speeds[0], speeds[-1]
    rows.append(("e", "wall time growth 1024^3 -> 4096^3", f"x{w1 / w0:.1f} wall", f"for x{n1 / n0:.1f} instructions"))

    print(f"ascend-sim engine benchmark on {chip.name}\n")
    w = [max(len(str(r[i])) for r in rows) for i in range(4)]
    head = ("", "case", "result", "reference")
    print("| " + " | ".join(h.ljust(x) for h, x in zip(head, w)) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(x) for c, x in zip(r, w)) + " |")


if __name__ == "__main__":
    main()
