"""The front door's modules import one way: submodules never take names from the package's
__init__ (which imports them), so any of them can be imported first in a fresh interpreter."""
import ast
import pathlib
import subprocess
import sys

import ascend_sim.torch_npu as pkg

PKG = pathlib.Path(pkg.__file__).parent


def test_no_submodule_imports_a_name_of_its_package():
    submodules = {p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir() if p.is_dir()}
    for path in PKG.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                for alias in node.names:
                    assert alias.name in submodules, f"{path.name} imports {alias.name!r} from its package's __init__"


def test_the_package_init_imports_before_it_runs_code():
    body = ast.parse((PKG / "__init__.py").read_text()).body
    kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in body
             if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert kinds == sorted(kinds, reverse=True), "an import after code in torch_npu/__init__.py"


def test_npu_imported_first_in_a_fresh_interpreter():
    code = ("import ascend_sim.torch_npu.npu as npu, ascend_sim.torch_npu as t; "
            "assert npu.enable_deterministic_with_backward.__name__ == 'enable_deterministic_with_backward'; "
            "assert t.npu is npu and callable(t.npu_format_cast)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
