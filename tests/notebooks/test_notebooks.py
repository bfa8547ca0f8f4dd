"""The user-facing notebooks (notebooks/*.ipynb) run from top to bottom without an error.

Each notebook is executed with nbclient in a fresh kernel ("python3", i.e. this interpreter), with
its working directory and TMPDIR in a pytest tmp folder (a notebook never writes into the
repository) and MPLBACKEND=Agg (figures are drawn but not shown). Every notebook ends with a cell
of ``assert`` statements about its own results -- the property it exists to show (e.g. 03: the best
tiling of the sweep is at least as fast as the default tiler; 05: npu_prefetch speeds up a matmul
whose weight fits in L2 and not one whose weight does not) -- so a failed check fails this test with
the cell's error. The notebooks are stored without outputs; that is checked too.

The test sets ASCEND_SIM_NOTEBOOK_SMALL=1: notebooks 02, 03 and 06 then run smaller problems (a
512-token prefill; a 1024^3 sweep; a 512-token TP=8 layer) with the same checks, to keep `make test`
short. Run by hand, a notebook uses the sizes its text describes; `python benchmarks/big_cases.py`
runs those (run_notebook(..., small=False)) and reports whether their checks pass.

Wall time is not asserted (see DESIGN.md, "Performance of the simulator itself"); the per-cell
timeout only catches hangs.
"""
from __future__ import annotations

import os
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the dev extra (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="needs the dev extra (nbformat, nbclient, ipykernel)")
pytest.importorskip("ipykernel", reason="needs the dev extra (nbformat, nbclient, ipykernel)")

from nbclient.exceptions import CellExecutionError  # noqa: E402

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = [
    "01_quickstart_and_timeline.ipynb",
    "02_roofline_of_a_decoder_layer.ipynb",
    "03_gemm_tiling_sweep.ipynb",
    "04_formats_nd_nz_nc1hwc0.ipynb",
    "05_npu_prefetch.ipynb",
    "06_comm_compute_overlap_tp8.ipynb",
]
CELL_TIMEOUT_S = 600          # generous: only there to turn a hang into a failure
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_the_six_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{name}: cells {dirty} carry outputs; clear them before committing"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a title cell comes first"
    assert "what to try next" in nb.cells[-1].source.lower(), "the last cell says what to try next"


def run_notebook(name, workdir, small=True):
    """Execute notebooks/<name> top to bottom in a fresh kernel whose working directory and TMPDIR
    are workdir, with MPLBACKEND=Agg and, if small, ASCEND_SIM_NOTEBOOK_SMALL=1 (the kernel's
    environment: this process's, changed so); returns the executed notebook. A cell's error
    raises CellExecutionError."""
    env = {k: v for k, v in os.environ.items() if k != "ASCEND_SIM_NOTEBOOK_SMALL"}
    env.update(MPLBACKEND="Agg", TMPDIR=str(workdir))   # tempfile.mkdtemp() in a notebook lands in workdir
    if small:
        env["ASCEND_SIM_NOTEBOOK_SMALL"] = "1"
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)
    return nb


def checks_passed(nb) -> bool:
    """The checks cell (the last code cell with the notebook's asserts) ran to its end."""
    checks = [c for c in _code_cells(nb) if "assert " in c.source]
    return bool(checks) and "passed" in _stream_text(checks[-1])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_checks_pass(name, tmp_path):
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    try:
        nb = run_notebook(name, tmp_path)
    except CellExecutionError as e:
        # the kernel's traceback comes coloured: strip the ANSI codes for a readable failure
        pytest.fail(f"{name}: a cell raised\n{_ANSI.sub('', str(e))}", pytrace=False)

    assert any("assert " in c.source for c in _code_cells(nb)), f"{name} has no cell of checks"
    assert checks_passed(nb), f"{name}: the checks cell did not report success"
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before, f"{name} wrote into notebooks/"
