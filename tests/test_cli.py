"""The ascend-sim command: every subcommand on small inputs."""
import csv
import json

import pytest

from ascend_sim.cli import main


def test_chips_table_and_toml(capsys):
    assert main(["chips"]) == 0
    out = capsys.readouterr().out
    assert "Ascend910B2" in out and "353.9" in out
    assert main(["chips", "--toml", "Ascend910B4"]) == 0
    assert 'name = "Ascend910B4"' in capsys.readouterr().out


def test_demo_writes_tables_traces_csvs_and_timelines(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--model", "tiny", "--seq", "128"]) == 0
    out = capsys.readouterr().out
    assert "TP=1, prefill 128 tokens" in out and "TP=8, one decode step" in out
    assert "npu_fusion_attention" in out and "all_reduce" in out
    for tag in ("tp1_prefill", "tp1_decode", "tp8_prefill", "tp8_decode"):
        assert (tmp_path / f"{tag}_trace.json").stat().st_size > 0
        assert (tmp_path / f"{tag}_timeline.png").stat().st_size > 0
        with open(tmp_path / f"{tag}_kernel_details.csv") as f:
            assert len(list(csv.DictReader(f))) > 5


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_estimate_from_a_config_file(tmp_path, capsys, fmt):
    cfg = {"preset": "tiny", "tp": 2, "phase": "both", "seq": 64, "context": 256, "layers": 2}
    p = tmp_path / f"model.{fmt}"
    if fmt == "json":
        p.write_text(json.dumps(cfg))
    else:
        p.write_text("\n".join(f'{k} = {json.dumps(v)}' for k, v in cfg.items()))
    assert main(["estimate", str(p)]) == 0
    out = capsys.readouterr().out
    assert "prefill of 64 tokens" in out and "one decode step at context 256" in out and "per layer" in out


def test_estimate_rejects_unknown_keys(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"preset": "tiny", "hidden_size": 5}))
    with pytest.raises(ValueError, match="unknown keys \\['hidden_size'\\]"):
        main(["estimate", str(p)])


def test_sweep_gemm_writes_csv_and_heatmap(tmp_path, capsys):
    assert main(["sweep", "gemm", "--m", "512", "--n", "512", "--k", "512", "--base-m", "64,256",
                 "--base-n", "128,512", "--workers", "1", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "sweep_gemm.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    too_big = [r for r in rows if r["base_m"] == "256" and r["base_n"] == "512"]
    assert too_big[0]["error"] and "L0C" in too_big[0]["error"]            # does not fit: reported, not run
    assert all(float(r["tflops"]) > 0 for r in rows if not r["error"])
    assert (tmp_path / "sweep_gemm.png").stat().st_size > 0


def test_sweep_chips(tmp_path, capsys):
    assert main(["sweep", "chips", "--chips", "Ascend910B2,Ascend910B4", "--m", "512", "--n", "512", "--k", "512",
                 "--workers", "1", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "sweep_chips.csv") as f:
        rows = {r["chip"]: float(r["time_us"]) for r in csv.DictReader(f)}
    assert rows["Ascend910B4"] > rows["Ascend910B2"]          # fewer cores, lower clock
