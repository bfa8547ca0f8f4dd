"""The README's study examples run as written (tiling through the one interface; a meta-mode
assumption), and print what the README says they print."""
import contextlib
import io
import pathlib
import re


README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.index("\n## ", start + 3)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def _run(code: str, tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile("import ascend_sim\nfrom ascend_sim import torch_npu\n" + code, "README", "exec"), {})
    return out.getvalue()


def test_tiling_studies_example(tmp_path, monkeypatch):
    (code,) = _blocks("Tiling studies")
    printed = _run(code, tmp_path, monkeypatch).splitlines()
    ops = [line.split()[0] for line in printed]
    assert ops == ["npu_linear", "npu_fusion_attention", "npu_rms_norm", "npu_silu", "npu_format_cast"]
    assert "base 256x128" in printed[0] and "q_tile=64" in printed[1] and "rows_per_tile=1" in printed[2]


def test_value_dependent_example(tmp_path, monkeypatch):
    code = _blocks("Adding an op")[-1]
    expected = re.search(r"# (\(.*)$", code.strip().splitlines()[-1]).group(1)
    assert _run(code, tmp_path, monkeypatch).strip() == expected.strip()


