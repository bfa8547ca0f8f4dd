"""Op benchmark: achieved TFLOPS (cube/attention ops) or GB/s (memory-bound ops) per op and shape
on each A2 preset. Prints a table (not a test).

Run: python benchmarks/ops.py [--chips Ascend910B1,Ascend910B2,...]

Each case runs alone on a fresh simulator in meta mode (cold L2): device time only, launch
excluded. GB/s counts the bytes the op reads and writes (payload); TFLOPS its useful flops.
"""
from __future__ import annotations

import argparse
import time

from ascend_sim import Simulator, torch_npu

A2 = ("Ascend910B1", "Ascend910B2", "Ascend910B3", "Ascend910B4")


def e(*shape, dtype="float16"):
    return torch_npu.empty_with_format(shape, dtype)


CASES = [
    # (label, metric, callable building the op's inputs and calling it)
    ("npu_linear fp16 4096x4096x4096", "TFLOPS", lambda: torch_npu.npu_linear(e(4096, 4096), e(4096, 4096))),
    ("npu_bmmV2 fp16 8 x 1024^3", "TFLOPS", lambda: torch_npu.npu_bmmV2(e(8, 1024, 1024), e(8, 1024, 1024), [])),
    ("npu_quant_matmul int8 4096^3", "TFLOPS", lambda: torch_npu.npu_quant_matmul(
        e(4096, 4096, dtype="int8"), e(4096, 4096, dtype="int8"), e(4096, dtype="float32"), output_dtype=5)),
    ("npu_linear decode 16x8192x8192", "GB/s", lambda: torch_npu.npu_linear(e(16, 8192), e(8192, 8192))),
    ("npu_fusion_attention B1 N32 S4096 D128 causal", "TFLOPS", lambda: torch_npu.npu_fusion_attention(
        e(1, 4096, 32, 128), e(1, 4096, 8, 128), e(1, 4096, 8, 128), 32, "BSND",
        atten_mask=e(2048, 2048, dtype="bool"), scale=0.088, sparse_mode=3)),
    ("npu_incre_flash_attention B8 ctx8192 N32/8", "GB/s", lambda: torch_npu.npu_incre_flash_attention(
        e(8, 1, 4096), e(8, 8192, 1024), e(8, 8192, 1024), num_heads=32, num_key_value_heads=8, input_layout="BSH",
        actual_seq_lengths=[8192] * 8)),
    ("npu_silu fp16 128 Mi elements", "GB/s", lambda: torch_npu.npu_silu(e(128 << 20))),
    ("npu_swiglu fp16 8192x28672", "GB/s", lambda: torch_npu.npu_swiglu(e(8192, 28672))),
    ("npu_rms_norm fp16 8192x8192", "GB/s", lambda: torch_npu.npu_rms_norm(e(8192, 8192), e(8192))),
    ("npu_rotary_mul fp16 1x8192x32x128", "GB/s", lambda: torch_npu.npu_rotary_mul(
        e(1, 8192, 32, 128), e(1, 8192, 1, 128), e(1, 8192, 1, 128))),
    ("npu_scaled_masked_softmax 4x16x2048x2048", "GB/s", lambda: torch_npu.npu_scaled_masked_softmax(
        e(4, 16, 2048, 2048), e(4, 1, 2048, 2048, dtype="bool"))),
    ("npu_format_cast ND->NZ fp16 8192x8192", "GB/s", lambda: torch_npu.npu_format_cast(e(8192, 8192), 29)),
    ("npu_dtype_cast fp16->fp32 128 Mi elements", "GB/s", lambda: torch_npu.npu_dtype_cast(e(128 << 20), "float32")),
]


def measure(chip: str, build) -> tuple[float, float, float, str]:
    with Simulator(chip, mode="meta", trace="ops") as sim:
        build()
        rows = sim.report().ops
    us = sum(r.duration_us for r in rows)
    flops = sum(r.flops for r in rows)
    moved = sum(r.bytes_read + r.bytes_written for r in rows)
    bound = max(rows, key=lambda r: r.duration_us).bound
    return us, flops / (us * 1e6), moved / (us * 1e3), bound


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chips", default=",".join(A2))
    args = ap.parse_args()
    chips = args.chips.split(",")
    t0 = time.perf_counter()
    print("ascend-sim op benchmark (simulated device time, meta mode, cold L2)\n")
    print("| op and shape | metric | " + " | ".join(chips) + " |")
    print("|---|---|" + "---|" * len(chips))
    for label, metric, build in CASES:
        cells = []
        for chip in chips:
            us, tflops, gbps, bound = measure(chip, build)
            value = tflops if metric == "TFLOPS" else gbps
            cells.append(f"{value:.0f} ({us:.0f} us, {bound})")
        print(f"| {label} | {metric} | " + " | ".join(cells) + " |")
    print(f"\n(wall time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
