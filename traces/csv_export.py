"""Profiler-style CSVs: kernel_details.csv and op_statistic.csv, with the torch_npu profiler's columns.

The Ascend PyTorch profiler (``torch_npu.profiler`` with ``tensorboard_trace_handler``) writes, per
rank, ``ASCEND_PROFILER_OUTPUT/kernel_details.csv`` (one row per device task) and
``op_statistic.csv`` (one row per op type). Users sort, filter and diff these in pandas or a
spreadsheet; writing the simulated run under the same column names lets them put an estimate
beside a real profile, or feed it to scripts written for real ones.

kernel_details.csv columns, as the profiler names them: ``Device_id, Name, Type, Accelerator Core,
Start Time(us), Duration(us), Wait Time(us), Block Num, Mix Block Num, Input Shapes, Input Data
Types, Input Formats, Output Shapes, Output Data Types, Output Formats``, then the PipeUtilization
metrics ``aic_mac_time(us), aic_mac_ratio, ... aiv_mte3_ratio`` (per-core busy time of each pipe and
its share of the op's duration), then the simulator's own ``Launch Time(us), Bytes Read, Bytes
Written, L2 Hit Rate, Bound``. Conventions follow the profiler: shapes ``"8,100,30;16"``, ACL dtype
names (``FLOAT16``, ``BF16``, ``FLOAT`` for float32), ACL format names (``ND``, ``FRACTAL_NZ``),
``N/A`` where a field does not apply (pandas reads it as NaN). Times are simulated microseconds
from the start of the simulation, not wall-clock timestamps; ``Wait Time(us)`` is the time the op was
ready but waited for cores or events. Host-only records (no device task) are left out, as the
profiler leaves them out.

op_statistic.csv columns: ``Device_id, OP Type, Core Type, Count, Total Time(us), Min Time(us),
Avg Time(us), Max Time(us), Ratio(%)``, the ratio being the type's share of its device's total.
"""
from __future__ import annotations

import csv
import os
from typing import Iterable

from ascend_sim.timeline import OpRecord

from .profiler_names import (PIPE_METRICS, accelerator_core, format_dtypes, format_formats,
                             format_shapes, is_coupled_chip, is_device_op, kernel_type, per_core_pipe_us)

NA = "N/A"

PIPE_COLUMNS = tuple(col for side, metric in PIPE_METRICS
                     for col in (f"{side}_{metric}_time(us)", f"{side}_{metric}_ratio"))

KERNEL_DETAILS_COLUMNS = (
    "Device_id", "Name", "Type", "Accelerator Core", "Start Time(us)", "Duration(us)", "Wait Time(us)",
    "Block Num", "Mix Block Num", "Input Shapes", "Input Data Types", "Input Formats", "Output Shapes",
    "Output Data Types", "Output Formats",
) + PIPE_COLUMNS + ("Launch Time(us)", "Bytes Read", "Bytes Written", "L2 Hit Rate", "Bound")

OP_STATISTIC_COLUMNS = ("Device_id", "OP Type", "Core Type", "Count", "Total Time(us)", "Min Time(us)",
                        "Avg Time(us)", "Max Time(us)", "Ratio(%)")

# read_kernel_details: columns that hold numbers (besides every "...(us)" and "..._ratio" column)
_INT_COLUMNS = frozenset({"Device_id", "Block Num", "Mix Block Num", "Bytes Read", "Bytes Written", "Count",
                          "Task ID", "Stream ID", "Model ID", "Step Id"})
_FLOAT_COLUMNS = frozenset({"L2 Hit Rate", "Ratio(%)"})


def _us(x: float) -> float:
    return round(float(x), 3)


def _device_ops(ops: Iterable[OpRecord]) -> list[OpRecord]:
    # the profiler lists tasks in start order; ties keep submission order (sorted is stable)
    return sorted((r for r in ops if is_device_op(r)), key=lambda r: r.start_us)


def kernel_detail_row(rec: OpRecord, *, coupled: bool = False) -> dict:
    """One kernel_details.csv row of an op record (values, not yet text)."""
    row = {
        "Device_id": rec.device,
        "Name": rec.name,
        "Type": kernel_type(rec.name),
        "Accelerator Core": accelerator_core(rec.core_type),
        "Start Time(us)": _us(rec.start_us),
        "Duration(us)": _us(rec.duration_us),
        "Wait Time(us)": _us(rec.wait_us),
        "Block Num": rec.block_dim,
        "Mix Block Num": NA,
        "Input Shapes": format_shapes(rec.input_shapes),
        "Input Data Types": format_dtypes(rec.input_dtypes),
        "Input Formats": format_formats(rec.input_formats),
        "Output Shapes": format_shapes(rec.output_shapes),
        "Output Data Types": format_dtypes(rec.output_dtypes),
        "Output Formats": format_formats(rec.output_formats),
    }
    if rec.core_type == "MIX":
        # the secondary (vector) blocks of a MIX kernel: mix_ratio per cube block
        ratio = int(rec.attrs.get("mix_ratio") or (1 if coupled else 2))
        row["Mix Block Num"] = rec.block_dim * ratio
    per_core = per_core_pipe_us(rec, coupled) if rec.core_type in ("AIC", "AIV", "MIX") else {}
    for side, metric in PIPE_METRICS:
        us = per_core.get((side, metric))
        time_col, ratio_col = f"{side}_{metric}_time(us)", f"{side}_{metric}_ratio"
        if us is None:
            row[time_col] = row[ratio_col] = NA
        else:
            row[time_col] = _us(us)
            row[ratio_col] = round(us / rec.duration_us, 3) if rec.duration_us > 0 else 0.0
    row["Launch Time(us)"] = _us(rec.launch_us)
    row["Bytes Read"] = int(rec.bytes_read)
    row["Bytes Written"] = int(rec.bytes_written)
    row["L2 Hit Rate"] = NA if rec.l2_hit_rate is None else round(rec.l2_hit_rate, 4)
    row["Bound"] = rec.bound or NA
    return row


def write_kernel_details(ops: Iterable[OpRecord], path, *, chip_name: str | None = None) -> str:
    """Write kernel_details.csv (the columns of the module docstring) for ``ops`` and return the
    path. ``chip_name`` tells coupled chips (Ascend 910, 310P: one core holds cube and vector)
    from split ones, which changes how a MIX kernel's cores are counted."""
    path = os.fspath(path)
    coupled = is_coupled_chip(chip_name)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=KERNEL_DETAILS_COLUMNS)
        writer.writeheader()
        for rec in _device_ops(ops):
            writer.writerow(kernel_detail_row(rec, coupled=coupled))
    return path


def op_statistic_rows(ops: Iterable[OpRecord]) -> list[dict]:
    """op_statistic.csv rows: per device, op type and core type; heaviest first within a device."""
    groups: dict[tuple[int, str, str], list[float]] = {}
    for rec in _device_ops(ops):
        key = (rec.device, kernel_type(rec.name), accelerator_core(rec.core_type))
        groups.setdefault(key, []).append(rec.duration_us)
    device_total: dict[int, float] = {}
    for (device, _, _), durations in groups.items():
        device_total[device] = device_total.get(device, 0.0) + sum(durations)
    rows = []
    for (device, op_type, core), durations in sorted(groups.items(),
                                                      key=lambda kv: (kv[0][0], -sum(kv[1]), kv[0][1])):
        total = sum(durations)
        share = 100.0 * total / device_total[device] if device_total[device] > 0 else 0.0
        rows.append({
            "Device_id": device, "OP Type": op_type, "Core Type": core, "Count": len(durations),
            "Total Time(us)": _us(total), "Min Time(us)": _us(min(durations)),
            "Avg Time(us)": _us(total / len(durations)), "Max Time(us)": _us(max(durations)),
            "Ratio(%)": round(share, 3),
        })
    return rows


def write_op_statistic(ops: Iterable[OpRecord], path) -> str:
    """Write op_statistic.csv (count and total/min/avg/max time per op type) and return the path."""
    path = os.fspath(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=OP_STATISTIC_COLUMNS)
        writer.writeheader()
        writer.writerows(op_statistic_rows(ops))
    return path


def _value(column: str, text: str):
    # Real profiler files pad some fields with a tab (to keep spreadsheets from reformatting them).
    text = text.strip()
    if text in (NA, "NA"):
        return None
    numeric = column.endswith("(us)") or column.endswith("_ratio") or column in _FLOAT_COLUMNS
    if column in _INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            numeric = True
    if numeric:
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return text
    return text


def read_kernel_details(path) -> list[dict]:
    """Rows of a kernel_details.csv (ours or the profiler's) as dicts keyed by column name: numbers
    as int/float, ``N/A`` as None, text (names, shapes, dtypes) as str. Extra or missing columns are
    kept as they are."""
    with open(os.fspath(path), newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        return [{col: _value(col, text if text is not None else "") for col, text in row.items() if col is not None}
                for row in reader]


__all__ = ["KERNEL_DETAILS_COLUMNS", "OP_STATISTIC_COLUMNS", "PIPE_COLUMNS", "write_kernel_details",
           "write_op_statistic", "read_kernel_details", "kernel_detail_row", "op_statistic_rows"]
