"""The ``ascend-sim`` command.

    ascend-sim chips            the chip presets, with derived peaks
    ascend-sim chips --toml B2  print one preset as TOML (edit it, load it with --chip file.toml)
    ascend-sim demo             what the simulator does, on Ascend910B2
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


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


def _layout_demo(out) -> None:
    from . import Simulator, torch_npu
    from .formats import fractal_dims
    with Simulator("Ascend910B2") as sim:
        x = np.arange(100 * 30, dtype=np.float16).reshape(1, 100, 30)
        nz = torch_npu.npu_format_cast(x, 29)
        d = fractal_dims(nz.format, nz.shape, nz.dtype)
        print("\nND (1, 100, 30) float16 -> FRACTAL_NZ", file=out)
        print(f"  storage shape {nz.storage_shape}: N1={d.n1} column blocks of M1*16={d.m1 * 16} rows x "
              f"N0={d.n0}; {nz.nbytes} bytes in HBM for {x.nbytes} bytes of data "
              f"({100 * (nz.nbytes - x.nbytes) / nz.nbytes:.0f}% padding)", file=out)
        st = nz.storage()
        print("  first fractal (rows 0-3, lanes 0-7):", file=out)
        for r in range(4):
            print("   ", " ".join(f"{v:6.0f}" for v in st[0, 0, r, :8]), file=out)
        print("  second column block starts with element (0, 16):", st[0, 1, 0, 0], file=out)

        img = np.random.default_rng(0).standard_normal((1, 20, 4, 4)).astype(np.float16)
        hd = torch_npu.npu_format_cast(img, "NC1HWC0")
        print("\nNCHW (1, 20, 4, 4) float16 -> NC1HWC0", file=out)
        print(f"  storage shape {hd.storage_shape}: C1={hd.storage_shape[1]} channel blocks of C0=16; "
              f"channels 20..31 are zero padding: {not hd.storage()[0, 1, :, :, 4:].any()}", file=out)
        print(f"\n  device memory now: {sim.memory_stats()['allocated_bytes']} bytes allocated "
              f"at addresses {nz.address:#x}, {hd.address:#x}", file=out)


def cmd_chips(args) -> int:
    if args.toml:
        from .hw import get_chip, to_dict
        from .hw.toml_io import dumps
        print(dumps(to_dict(get_chip(args.toml))))
        return 0
    print(chips_table())
    return 0


def cmd_demo(args) -> int:
    print("ascend-sim: chip presets (peaks derived from cores x clock x MACs/cycle x 2)\n")
    print(chips_table())
    _layout_demo(sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="ascend-sim",
        description="Cycle-approximate simulator of Huawei Ascend NPUs: torch_npu ops with real numbers "
                    "and simulated time.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("chips", help="list the chip presets and their peaks",
                       description="The built-in chip presets. Every number has a source: see "
                                   "ascend_sim/hw/presets.py or print one preset with --toml.")
    c.add_argument("--toml", metavar="PRESET", help="print this preset as TOML (a starting point for a what-if chip)")
    c.set_defaults(fn=cmd_chips)
    d = sub.add_parser("demo", help="show what the simulator does",
                       description="Prints the chip presets and how a tensor is laid out in FRACTAL_NZ and NC1HWC0.")
    d.set_defaults(fn=cmd_demo)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
