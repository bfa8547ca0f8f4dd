"""The big configurations that tests were shrunk from (issue 10, "A test suite that fits").

`make test` runs each of these properties at the smallest case that still discriminates; this
script runs the original, larger configurations through the same helpers as the tests and prints
what they measure, whether the test's property holds there too, and the wall seconds of each case
(wall time is reported, never asserted). Not a test: run it by hand,

    python benchmarks/big_cases.py [--case NAME ...] [--list]

Each case builds its configuration with the test's own helper and judges it with the test's own
check function (its asserts), imported from the test file (tests/ is not a package: see tests()),
so a case here and its test cannot drift apart.
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import tempfile
import time
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
MiB = 1 << 20
_PKG = "_big_cases_tests"


def tests(relpath: str):
    """The test module at tests/<relpath>, imported once as a submodule of a private package that
    stands for tests/ (so the tests' relative imports, e.g. ``from .test_attention import ...``,
    resolve as under pytest)."""
    parts = [_PKG, *relpath.removesuffix(".py").split("/")]
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(ROOT.joinpath("tests", *parts[1:i]))]
            sys.modules[name] = pkg
    return importlib.import_module(".".join(parts))


def holds(check, *args) -> bool:
    """Does the test's own check (its asserts) pass on these results?"""
    try:
        check(*args)
    except AssertionError:
        return False
    return True


# ------------------------------------------------------------------------------------- the cases
# Each returns (what it measured, whether the test's check passes on it).

def matmul_overlaps_all_reduce():
    t = tests("distributed/test_comm_timing.py")
    ar, mm = t.matmul_beside_all_reduce(8, 4096, 64 * MiB)
    return (f"all_reduce 128 MiB {ar.duration_us:.1f} us, matmul {mm.duration_us:.1f} us, "
            f"overlap {t.overlap_us(ar, mm):.1f} us"), holds(t.check_matmul_overlaps_all_reduce, ar, mm)


def fused_all_reduce_pipelines():
    t = tests("ops/test_comm_matmul.py")
    f, seq, mm, ar = reports = t.fused_all_reduce_reports(4096, 1024, 4096)
    chunks = sum(o.stream == "hccl" for o in t.on(f))
    return (f"fused {f.total_us:.1f} us in {chunks} chunks, matmul then all_reduce {seq.total_us:.1f} us, "
            f"matmul {mm.total_us:.1f} us, all_reduce {ar.total_us:.1f} us"), \
        holds(t.check_fused_all_reduce_pipelines, *reports)


def softmax_1gib_bandwidth():
    t = tests("ops/test_softmax.py")
    row, numel, chip = t.masked_softmax_row((8, 16, 2048, 2048))
    gbps = (row.bytes_read + row.bytes_written) / (row.duration_us * 1e3)
    return (f"{row.duration_us:.1f} us, {gbps:.0f} GB/s of HBM {chip.memory.hbm_bandwidth_GBps:.0f}, "
            f"{row.block_dim} blocks"), holds(t.check_softmax_streams_at_hbm_bandwidth, row, numel, chip)


def flash_attention_quadratic():
    t = tests("ops/test_attention.py")
    S, N = 4096, 2
    t1, t2, c2, out = t.quadratic_growth_rows(S, N)
    return (f"S={S} {t1.duration_us:.1f} us, S={2 * S} {t2.duration_us:.1f} us "
            f"(x{t2.duration_us / t1.duration_us:.2f}), causal {c2.duration_us:.1f} us "
            f"(x{c2.duration_us / t2.duration_us:.2f})"), holds(t.check_quadratic_growth, S, N, t1, t2, c2, out)


def decode_linear_in_the_cache():
    t = tests("ops/test_attention_infer.py")
    S = 4096
    a, b, c, f = t.decode_linearity_rows(S)
    return (f"IFA {S} {a.duration_us:.1f} us, {2 * S} {b.duration_us:.1f} us (x{b.duration_us / a.duration_us:.2f}), "
            f"int8 reads x{c.bytes_read / b.bytes_read:.2f}, FIA {f.duration_us:.1f} us"), \
        holds(t.check_decode_linearity, S, a, b, c, f)


def decode_tiling_override():
    t = tests("ops/test_attention_infer.py")
    rows = t.decode_tiling_override_rows(8192)
    return ", ".join(f"{op.split('_')[1]}: own {base.duration_us:.1f} us, kv_tile=64 {row.duration_us:.1f} us"
                     for op, (base, row) in rows.items()), holds(t.check_decode_tiling_override, rows)


def notebook(name):
    """Run notebooks/<name> at the sizes its text describes (not the test suite's SMALL sizes)."""
    def run():
        t = tests("notebooks/test_notebooks.py")
        with tempfile.TemporaryDirectory() as d:
            nb = t.run_notebook(name, d, small=False)
        checks = [c for c in t._code_cells(nb) if "assert " in c.source]
        last = t._stream_text(checks[-1]).strip().splitlines() if checks else []
        return (last[-1] if last else "no output from the checks cell"), t.checks_passed(nb)
    return run


# name: (the test it stands behind, the big configuration, function)
CASES = {
    "matmul_overlaps_all_reduce": (
        "tests/distributed/test_comm_timing.py::test_a_matmul_overlaps_an_all_reduce_on_the_comm_stream",
        "8 ranks, 4096^3 fp16 matmul beside an async all_reduce of 128 MiB (test: 8 x 2048^3 + 16 MiB)",
        matmul_overlaps_all_reduce),
    "fused_all_reduce_pipelines": (
        "tests/ops/test_comm_matmul.py::test_fused_all_reduce_pipelines_compute_and_communication",
        "8 ranks, npu_mm_all_reduce_base 4096 x 1024 x 4096 fp16 (test: 2048 x 1024 x 2048)",
        fused_all_reduce_pipelines),
    "softmax_1gib_bandwidth": (
        "tests/ops/test_softmax.py::test_large_softmax_reaches_hbm_bandwidth",
        "npu_scaled_masked_softmax of x (8, 16, 2048, 2048) fp16 = 1 GiB (test: (2, 16, 2048, 2048) = 256 MiB)",
        softmax_1gib_bandwidth),
    "flash_attention_quadratic": (
        "tests/ops/test_attention.py::test_time_grows_quadratically_and_causal_is_half_the_work",
        "npu_fusion_attention B1 N2 D128, S 4096 -> 8192, causal at 8192 (test: N3, S 2048 -> 4096)",
        flash_attention_quadratic),
    "decode_linear_in_the_cache": (
        "tests/ops/test_attention_infer.py::test_decode_time_is_linear_in_the_cache_and_int8_reads_half",
        "npu_incre_flash_attention B8 N32 Nkv8 D128, cache 4096 -> 8192, int8 and FIA at 8192 (test: 2048 -> 4096)",
        decode_linear_in_the_cache),
    "decode_tiling_override": (
        "tests/ops/test_attention_infer.py::"
        "test_decode_tiling_is_overridden_through_the_simulator_for_every_inference_op",
        "IFA and FIA B8 N32 Nkv8 D128 over 8192 keys, own tiling vs kv_tile=64 (test: 2048 keys)",
        decode_tiling_override),
    "notebook_02": (
        "tests/notebooks/test_notebooks.py::"
        "test_notebook_runs_and_its_checks_pass[02_roofline_of_a_decoder_layer.ipynb]",
        "notebook 02 as a user runs it: 2048-token prefill (test: ASCEND_SIM_NOTEBOOK_SMALL=1, 512 tokens)",
        notebook("02_roofline_of_a_decoder_layer.ipynb")),
    "notebook_03": (
        "tests/notebooks/test_notebooks.py::test_notebook_runs_and_its_checks_pass[03_gemm_tiling_sweep.ipynb]",
        "notebook 03 as a user runs it: 2048^3 and 64 x 8192 x 8192 sweeps, 4096^3 check "
        "(test: 1024^3, 64 x 8192 x 2048)",
        notebook("03_gemm_tiling_sweep.ipynb")),
    "notebook_06": (
        "tests/notebooks/test_notebooks.py::test_notebook_runs_and_its_checks_pass[06_comm_compute_overlap_tp8.ipynb]",
        "notebook 06 as a user runs it: TP=8 Llama-3-8B layer, 2048-token prefill (test: 512 tokens)",
        notebook("06_comm_compute_overlap_tp8.ipynb")),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="run only these (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the cases and the tests they stand behind")
    args = ap.parse_args(argv)
    if not __debug__:
        ap.error("the checks are assert statements: run without python -O")
    if args.list:
        for name, (test, config, _) in CASES.items():
            print(f"{name}\n    test:   {test}\n    config: {config}")
        return 0
    rows = []
    for name in args.case or list(CASES):
        test, config, fn = CASES[name]
        t0 = time.perf_counter()
        result, holds = fn()
        wall = time.perf_counter() - t0
        rows.append((name, config, result, "yes" if holds else "NO", f"{wall:.1f}"))
        print(f"{name}: {result} -- property holds: {'yes' if holds else 'NO'} ({wall:.1f} s)",
              file=sys.stderr, flush=True)
    print("\n| case | configuration | result | property holds | wall s |\n|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0 if all(r[3] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
