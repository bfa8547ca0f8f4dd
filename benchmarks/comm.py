"""Communication benchmark: all_reduce algorithm and bus bandwidth against message size.

Run: python benchmarks/comm.py [--chip Ascend910B2] [--op all_reduce]

For 2, 4 and 8 ranks of one A2 server (HCCS full mesh) and 16 ranks over two servers (RoCE
between them), message sizes from 1 KiB to 1 GiB. algbw = bytes / time; busbw = algbw x
2(N-1)/N for all_reduce ((N-1)/N for all_gather/reduce_scatter), as nccl-tests reports it.
"""
from __future__ import annotations

import argparse
import time

import ascend_sim.distributed as dist
from ascend_sim import Simulator, torch_npu

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZES = [KiB * 4 ** i for i in range(11)]          # 1 KiB .. 1 GiB
CONFIGS = [(2, "1 server"), (4, "1 server"), (8, "1 server"), (16, "2 servers")]


def measure(chip: str, op: str, ranks: int, nbytes: int):
    with Simulator(chip, world_size=ranks, trace="ops", mode="meta") as sim:
        def fn(rank):
            elems = max(1, nbytes // 2)
            if op == "all_reduce":
                dist.all_reduce(torch_npu.empty_with_format((elems,), "float16"))
            elif op == "all_gather":
                out = torch_npu.empty_with_format((elems,), "float16")
                dist.all_gather_into_tensor(out, torch_npu.empty_with_format((max(1, elems // ranks),), "float16"))
            else:
                dist.reduce_scatter_tensor(torch_npu.empty_with_format((max(1, elems // ranks),), "float16"),
                                           torch_npu.empty_with_format((elems,), "float16"))
        sim.spmd(fn)
        row = next(r for r in sim.report().ops if r.name.startswith(op.split("_")[0]) and r.device == 0)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chip", default="Ascend910B2")
    ap.add_argument("--op", default="all_reduce", choices=("all_reduce", "all_gather", "reduce_scatter"))
    args = ap.parse_args()
    factor = (lambda n: 2 * (n - 1) / n) if args.op == "all_reduce" else (lambda n: (n - 1) / n)
    t0 = time.perf_counter()
    print(f"ascend-sim {args.op} on {args.chip} (simulated; algbw / busbw in GB/s, time in us)\n")
    head = "| size | " + " | ".join(f"{n} ranks ({where}) time / algbw / busbw / alg" for n, where in CONFIGS) + " |"
    print(head)
    print("|" + "---|" * (len(CONFIGS) + 1))
    for size in SIZES:
        cells = []
        for n, _ in CONFIGS:
            r = measure(args.chip, args.op, n, size)
            algbw = size / (r.duration_us * 1e3)
            cells.append(f"{r.duration_us:.1f} / {algbw:.1f} / {algbw * factor(n):.1f} / {r.attrs['algorithm']}")
        label = f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n(wall time {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
