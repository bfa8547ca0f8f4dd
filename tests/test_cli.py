"""The ascend-sim command: every subcommand on small inputs."""
import csv
import json

import pytest

from ascend_sim import cli
from ascend_sim.cli import main


class _Bar:
    """Stands in for cli.progress_bar: records what each bar was told."""
    def __init__(self, total, desc, unit="layer"):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0

    def update(self, n=1):
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def bars(monkeypatch):
    made = []

    def progress_bar(*args, **kwargs):
        made.append(_Bar(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(cli, "progress_bar", progress_bar)
    return made


def test_chips_table_and_toml(capsys):
    assert main(["chips"]) == 0
    out = capsys.readouterr().out
    assert "Ascend910B2" in out and "353.9" in out
    assert main(["chips", "--toml", "Ascend910B4"]) == 0
    assert 'name = "Ascend910B4"' in capsys.readouterr().out


def test_demo_writes_tables_traces_csvs_and_timelines(tmp_path, capsys, bars):
    assert main(["demo", "--out", str(tmp_path), "--model", "tiny", "--seq", "128"]) == 0
    assert [(b.desc, b.unit, b.total, b.n) for b in bars] == [("demo", "step", 4, 4)]     # one per TP x phase
    out = capsys.readouterr().out
    assert "TP=1, prefill 128 tokens" in out and "TP=8, one decode step" in out
    assert "npu_fusion_attention" in out and "all_reduce" in out
    for tag in ("tp1_prefill", "tp1_decode", "tp8_prefill", "tp8_decode"):
        assert (tmp_path / f"{tag}_trace.json").stat().st_size > 0
        assert (tmp_path / f"{tag}_timeline.png").stat().st_size > 0
        with open(tmp_path / f"{tag}_kernel_details.csv") as f:
            assert len(list(csv.DictReader(f))) > 5


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_estimate_from_a_config_file(tmp_path, capsys, fmt, bars):
    cfg = {"preset": "tiny", "tp": 2, "phase": "both", "seq": 64, "context": 256, "layers": 2}
    p = tmp_path / f"model.{fmt}"
    if fmt == "json":
        p.write_text(json.dumps(cfg))
    else:
        p.write_text("\n".join(f'{k} = {json.dumps(v)}' for k, v in cfg.items()))
    assert main(["estimate", str(p)]) == 0
    out = capsys.readouterr().out
    assert "prefill of 64 tokens" in out and "one decode step at context 256" in out and "per layer" in out
    assert [(b.desc, b.total, b.n) for b in bars] == [("prefill", 2, 2), ("decode", 2, 2)]   # one per layer


def test_progress_bar_is_off_unless_stderr_is_a_terminal(monkeypatch):
    import io
    import sys
    with cli.progress_bar(3, "x") as bar:              # pytest's stderr is no terminal
        assert bar.disable

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stderr", Terminal())
    with cli.progress_bar(3, "points", "point") as bar:
        assert not bar.disable
        bar.update(1)
    assert "points" in sys.stderr.getvalue()


def _one_line_error(capsys, code):
    assert code == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert err.startswith("ascend-sim: error: ") and "\n" not in err and "Traceback" not in cap.err
    return err


def test_estimate_rejects_unknown_keys_with_did_you_mean_and_every_valid_key(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"preset": "tiny", "hiden": 5}))
    err = _one_line_error(capsys, main(["estimate", str(p)]))
    assert "unknown key 'hiden' (did you mean 'hidden'?)" in err
    for key in ("preset", "hidden", "heads", "kv_heads", "head_dim", "ffn", "eps", "dtype",     # model keys
                "tp", "phase", "batch", "seq", "context", "chip", "fused_allreduce", "weight_format", "layers"):
        assert f" {key}," in err or f" {key} (" in err, key


def test_estimate_unknown_chip_preset_and_bad_values_are_one_line(tmp_path, capsys):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"preset": "tiny", "chip": "Ascend910B9"}))
    err = _one_line_error(capsys, main(["estimate", str(p)]))
    assert "unknown chip 'Ascend910B9' (did you mean" in err and "Ascend910B2" in err
    p.write_text(json.dumps({"preset": "tiny3"}))
    assert "unknown preset 'tiny3' (did you mean 'tiny'?)" in _one_line_error(capsys, main(["estimate", str(p)]))
    p.write_text(json.dumps({"preset": "tiny", "tp": "eight"}))
    assert "tp must be a positive integer" in _one_line_error(capsys, main(["estimate", str(p)]))
    p.write_text(json.dumps({"preset": "tiny", "tp": 3}))
    assert "not divisible by tp=3" in _one_line_error(capsys, main(["estimate", str(p)]))


def test_missing_or_malformed_file_is_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, main(["estimate", str(tmp_path / "nope.json")]))
    assert "not found" in err and "nope.json" in err
    bad = tmp_path / "broken.toml"
    bad.write_text("preset = ")
    assert "not valid TOML" in _one_line_error(capsys, main(["estimate", str(bad)]))
    assert "is a directory" in _one_line_error(capsys, main(["estimate", str(tmp_path)]))


@pytest.mark.parametrize("argv", [["chips", "--toml", "Ascend910B9"], ["demo", "--chip", "Ascend91OB2"],
                                  ["sweep", "gemm", "--chip", "ascend910b7"], ["sweep", "chips", "--chips", "x,y"],
                                  ["chips", "--toml", "/nonexistent/my.toml"]])
def test_unknown_chip_on_every_subcommand_is_one_line(argv, capsys, tmp_path):
    err = _one_line_error(capsys, main(argv + (["--out", str(tmp_path)] if argv[0] != "chips" else [])))
    assert "chip" in err


def test_unknown_model_preset_suggests_one(capsys, tmp_path):
    err = _one_line_error(capsys, main(["demo", "--model", "llama3-8", "--out", str(tmp_path)]))
    assert "did you mean 'llama3-8b'?" in err


def test_version(capsys):
    from ascend_sim import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"ascend-sim {__version__}"


def test_console_script_exit_code_is_2_without_a_traceback(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", "import sys; from ascend_sim.cli import main; sys.exit(main())",
                        "estimate", str(tmp_path / "missing.toml")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


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
                 "--workers", "2", "--out", str(tmp_path)]) == 0                       # a process pool
    with open(tmp_path / "sweep_chips.csv") as f:
        rows = {r["chip"]: float(r["time_us"]) for r in csv.DictReader(f)}
    assert rows["Ascend910B4"] > rows["Ascend910B2"]          # fewer cores, lower clock


GEMM_256 = ["sweep", "gemm", "--m", "256", "--n", "256", "--k", "256", "--base-m", "64,128", "--base-n", "64,128",
            "--workers", "1"]


def test_sweep_prints_its_title_first_and_writes_each_row_as_its_point_finishes(tmp_path, capsys, monkeypatch):
    real, seen = cli._gemm_point, []

    def point(job):                      # what is on stdout and in the CSV when each point starts
        seen.append((capsys.readouterr().out, (tmp_path / "sweep_gemm.csv").read_text().splitlines()))
        return real(job)
    monkeypatch.setattr(cli, "_gemm_point", point)
    assert main(GEMM_256 + ["--out", str(tmp_path)]) == 0
    assert len(seen) == 5                                           # 4 tilings, then the default tiler
    assert seen[0][0].startswith("GEMM 256x256x256 float16") and "base_m=" not in seen[0][0]
    header = "chip,base_m,base_n,base_k,time_us,tflops,bound,error"
    for i, (out, lines) in enumerate(seen):
        assert lines[0] == header and len(lines) == 1 + i             # the rows of the points before it
        assert out.count("base_m=") == (i > 0)                       # and the line of the one just before
    with open(tmp_path / "sweep_gemm.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["base_m"], r["base_n"]) for r in rows} == {("64", "64"), ("64", "128"), ("128", "64"), ("128", "128")}
    assert len(rows) == 4 and all(float(r["tflops"]) > 0 for r in rows)


def test_interrupted_sweep_keeps_its_rows_and_exits_130(tmp_path, capsys, monkeypatch):
    real, calls = cli._gemm_point, []

    def point(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)
    monkeypatch.setattr(cli, "_gemm_point", point)
    assert main(GEMM_256 + ["--out", str(tmp_path)]) == 130
    lines = (tmp_path / "sweep_gemm.csv").read_text().splitlines()
    assert lines[0].startswith("chip,base_m") and len(lines) == 3               # the header and 2 rows
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "2 of 4 points" in err and str(tmp_path / "sweep_gemm.csv") in err
    assert not (tmp_path / "sweep_gemm.png").exists()


def test_closing_a_pool_sweep_early_stops_its_workers():
    import multiprocessing
    points = cli._stream_points([("Ascend910B2", 512, 512, 512, "float16", 0, 0, 0, False)] * 4, workers=2)
    i, r = next(points)
    assert r["tflops"] > 0
    points.close()                                   # what Ctrl-C in cmd_sweep does
    assert not multiprocessing.active_children()
