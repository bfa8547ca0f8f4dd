"""The user-facing notebooks (notebooks/*.ipynb) run from top to bottom without an error.

Each notebook is executed with nbclient in a fresh kernel ("python3", i.e. this interpreter), with
its working directory and TMPDIR in a pytest tmp folder (a notebook never writes into the
repository) and MPLBACKEND=Agg (figures are drawn but not shown). Every notebook ends with a cell
of ``assert`` statements about its own results -- the property it exists to show (e.g. 03: the best
tiling of the sweep is at least as fast as the default tiler; 05: npu_prefetch speeds up a matmul
whose weight fits in L2 and not one whose weight does not) -- so a failed check fails this test with
the cell's error. The notebooks are stored without outputs; that is checked too.

Wall time is not asserted (see DESIGN.md, "Performance of the simulator itself"); the per-cell
timeout only catches hangs.
"""
from __future__ import annotations

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


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_checks_pass(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))          # tempfile.mkdtemp() in a notebook lands here
    before = sorted(p.name for p in NOTEBOOK_DIR.iterdir())
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as e:
        # the kernel's traceback comes coloured: strip the ANSI codes for a readable failure
        pytest.fail(f"{name}: a cell raised\n{_ANSI.sub('', str(e))}", pytrace=False)

    # the checks cell (the code cell with the notebook's asserts) ran to its end
    checks = [c for c in _code_cells(nb) if "assert " in c.source]
    assert checks, f"{name} has no cell of checks"
    assert "passed" in _stream_text(checks[-1]), f"{name}: the checks cell did not report success"
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir()) == before, f"{name} wrote into notebooks/"
