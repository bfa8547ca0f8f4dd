"""kernel_details.csv and op_statistic.csv: the torch_npu profiler's columns and conventions, read back
with the csv module."""
import csv

import pytest

from ascend_sim.timeline import OpRecord
from ascend_sim.traces import read_kernel_details, write_kernel_details, write_op_statistic

# The profiler's names, written out here rather than taken from the module under test.
PROFILER_COLUMNS = [
    "Device_id", "Name", "Type", "Accelerator Core", "Start Time(us)", "Duration(us)", "Wait Time(us)",
    "Block Num", "Mix Block Num", "Input Shapes", "Input Data Types", "Input Formats", "Output Shapes",
    "Output Data Types", "Output Formats",
    "aic_mac_time(us)", "aic_mac_ratio", "aic_scalar_time(us)", "aic_scalar_ratio", "aic_mte1_time(us)",
    "aic_mte1_ratio", "aic_mte2_time(us)", "aic_mte2_ratio", "aic_fixpipe_time(us)", "aic_fixpipe_ratio",
    "aiv_vec_time(us)", "aiv_vec_ratio", "aiv_scalar_time(us)", "aiv_scalar_ratio", "aiv_mte2_time(us)",
    "aiv_mte2_ratio", "aiv_mte3_time(us)", "aiv_mte3_ratio",
]
EXTRA_COLUMNS = ["Launch Time(us)", "Bytes Read", "Bytes Written", "L2 Hit Rate", "Bound"]
STATISTIC_COLUMNS = ["Device_id", "OP Type", "Core Type", "Count", "Total Time(us)", "Min Time(us)",
                     "Avg Time(us)", "Max Time(us)", "Ratio(%)"]


def csv_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture
def kernel_details(pipe_run, tmp_path):
    path = write_kernel_details(pipe_run.ops, tmp_path / "kernel_details.csv", chip_name="Ascend910B2")
    return csv_rows(path)


def test_kernel_details_has_the_profiler_columns_then_the_extras(kernel_details, pipe_run):
    header, rows = kernel_details
    assert header == PROFILER_COLUMNS + EXTRA_COLUMNS
    assert len(rows) == len(pipe_run.ops)
    assert all(len(r) == len(header) and None not in r for r in rows)
    starts = [float(r["Start Time(us)"]) for r in rows]
    assert starts == sorted(starts)


def test_names_types_cores_and_tensors_follow_the_profiler(kernel_details):
    _, rows = kernel_details
    by_name = {r["Name"]: r for r in rows}
    linear = by_name["npu_linear"]
    assert (linear["Type"], linear["Accelerator Core"]) == ("MatMul", "AI_CORE")
    assert linear["Input Shapes"] == "256,512;256,512" and linear["Output Shapes"] == "256,256"
    assert linear["Input Data Types"] == "FLOAT16;FLOAT16" and linear["Input Formats"] == "ND;ND"
    assert linear["Mix Block Num"] == "N/A"
    assert by_name["npu_format_cast"]["Output Formats"] == "FRACTAL_NZ"
    assert by_name["npu_format_cast"]["Type"] == "TransData"
    rms = by_name["npu_rms_norm"]
    assert rms["Type"] == "RmsNorm" and rms["Accelerator Core"] == "AI_VECTOR_CORE"
    assert rms["Input Shapes"] == "256,512;512" and rms["Output Data Types"] == "FLOAT16;FLOAT"


def test_a_mix_kernel_row(kernel_details, mix_kernel):
    _, rows = kernel_details
    attention = next(r for r in rows if r["Name"] == mix_kernel.name)
    assert attention["Accelerator Core"] == "MIX_AIC" and attention["Type"] == "FlashAttentionScore"
    assert int(attention["Mix Block Num"]) == 2 * int(attention["Block Num"])     # 1 AIC : 2 AIV


def test_pipe_columns_are_per_core_times_and_shares_of_the_duration(kernel_details, pipe_run):
    _, rows = kernel_details
    by_name = {r["Name"]: r for r in rows}
    linear = next(r for r in pipe_run.ops if r.name == "npu_linear")
    cores = linear.attrs["cores_used"]
    row = by_name["npu_linear"]
    mac = linear.pipe_busy_us["CUBE"] / cores
    assert float(row["aic_mac_time(us)"]) == pytest.approx(mac, abs=1e-3)
    assert float(row["aic_mac_ratio"]) == pytest.approx(mac / linear.duration_us, abs=1e-3)
    assert float(row["aic_mte2_time(us)"]) == pytest.approx(linear.pipe_busy_us["MTE2"] / cores, abs=1e-3)
    assert row["aiv_vec_time(us)"] == "N/A" and row["aiv_mte2_time(us)"] == "N/A"   # a cube kernel
    silu = next(r for r in pipe_run.ops if r.name == "npu_silu")
    row = next(r for r in rows if r["Name"] == "npu_silu")
    assert float(row["aiv_vec_time(us)"]) == pytest.approx(silu.pipe_busy_us["VECTOR"] / silu.attrs["cores_used"],
                                                           abs=1e-3)
    assert float(row["aiv_mte2_time(us)"]) == pytest.approx(silu.pipe_busy_us["MTE2"] / silu.attrs["cores_used"],
                                                            abs=1e-3)
    assert row["aic_mac_time(us)"] == "N/A" and row["aic_mte2_time(us)"] == "N/A"


def mix_record(**kw):
    fields = dict(name="npu_fusion_attention", device=0, stream="default", start_us=0.0, duration_us=10.0,
                  core_type="MIX", block_dim=4, pipe_busy_us={"CUBE": 8.0, "VECTOR": 16.0, "MTE2": 24.0},
                  attrs={"cores_used": 12})
    fields.update(kw)
    return OpRecord(**fields)


def test_a_mix_kernel_splits_its_cores_one_cube_to_two_vector(tmp_path):
    (row,) = read_kernel_details(write_kernel_details([mix_record()], tmp_path / "k.csv"))
    # 12 cores = 4 AIC + 8 AIV
    assert row["aic_mac_time(us)"] == pytest.approx(2.0) and row["aic_mac_ratio"] == pytest.approx(0.2)
    assert row["aiv_vec_time(us)"] == pytest.approx(2.0)
    # MTE2 summed over both kinds: the mean over all 12 cores, in both columns
    assert row["aic_mte2_time(us)"] == row["aiv_mte2_time(us)"] == pytest.approx(2.0)
    assert row["Mix Block Num"] == 8
    # a record that splits MTE2 by core kind is taken at its word
    split = mix_record(pipe_busy_us={"CUBE": 8.0, "AIC.MTE2": 4.0, "AIV.MTE2": 16.0})
    (row,) = read_kernel_details(write_kernel_details([split], tmp_path / "s.csv"))
    assert row["aic_mte2_time(us)"] == pytest.approx(1.0) and row["aiv_mte2_time(us)"] == pytest.approx(2.0)


def test_on_a_coupled_chip_each_core_serves_both_sides(tmp_path):
    (row,) = read_kernel_details(write_kernel_details([mix_record()], tmp_path / "k.csv", chip_name="Ascend910A"))
    assert row["aic_mac_time(us)"] == pytest.approx(8.0 / 12, abs=1e-3)         # times to the ns
    assert row["aiv_vec_time(us)"] == pytest.approx(16.0 / 12, abs=1e-3)
    assert row["Mix Block Num"] == 4


def test_read_kernel_details_types_the_values(pipe_run, tmp_path):
    rows = read_kernel_details(write_kernel_details(pipe_run.ops, tmp_path / "k.csv"))
    linear = next(r for r in rows if r["Name"] == "npu_linear")
    rec = next(r for r in pipe_run.ops if r.name == "npu_linear")
    assert linear["Device_id"] == 0 and linear["Block Num"] == rec.block_dim
    assert isinstance(linear["Duration(us)"], float)
    assert linear["Duration(us)"] == pytest.approx(rec.duration_us, abs=1e-3)
    assert linear["Bytes Read"] == rec.bytes_read and linear["Bound"] == rec.bound
    assert linear["aiv_vec_time(us)"] is None and linear["Mix Block Num"] is None
    assert linear["Input Shapes"] == "256,512;256,512"


def test_host_only_records_are_left_out(tmp_path):
    ops = [OpRecord("npu_silu", 0, "default", 1.0, 2.0, core_type="AIV", block_dim=8, attrs={"cores_used": 8}),
           OpRecord("view", 0, "default", 3.0, 0.0, core_type="")]
    _, rows = csv_rows(write_kernel_details(ops, tmp_path / "k.csv"))
    assert [r["Name"] for r in rows] == ["npu_silu"]
    _, rows = csv_rows(write_op_statistic(ops, tmp_path / "s.csv"))
    assert [r["OP Type"] for r in rows] == ["Swish"]


def test_op_statistic_totals_equal_the_sum_of_durations(pipe_run, two_device_run, tmp_path):
    ops = pipe_run.ops + two_device_run.ops
    header, rows = csv_rows(write_op_statistic(ops, tmp_path / "op_statistic.csv"))
    assert header == STATISTIC_COLUMNS
    assert sum(int(r["Count"]) for r in rows) == len(ops)
    for device in (0, 1):
        mine = [r for r in rows if int(r["Device_id"]) == device]
        device_ops = [o for o in ops if o.device == device]
        assert sum(float(r["Total Time(us)"]) for r in mine) == pytest.approx(
            sum(o.duration_us for o in device_ops), abs=1e-3 * len(mine))
        assert sum(float(r["Ratio(%)"]) for r in mine) == pytest.approx(100.0, abs=0.01)
        totals = [float(r["Total Time(us)"]) for r in mine]
        assert totals == sorted(totals, reverse=True)                  # heaviest first
    swish = next(r for r in rows if r["OP Type"] == "Swish" and r["Device_id"] == "0")
    silus = [o.duration_us for o in ops if o.name == "npu_silu" and o.device == 0]
    assert int(swish["Count"]) == len(silus) == 3 and swish["Core Type"] == "AI_VECTOR_CORE"
    assert float(swish["Min Time(us)"]) == pytest.approx(min(silus), abs=1e-3)
    assert float(swish["Max Time(us)"]) == pytest.approx(max(silus), abs=1e-3)
    assert float(swish["Avg Time(us)"]) == pytest.approx(sum(silus) / 3, abs=1e-3)
    hccl = next(r for r in rows if r["Core Type"] == "HCCL")
    assert hccl["OP Type"] == "hcom_allReduce_"
