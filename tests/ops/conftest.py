import pytest

from ascend_sim import Simulator


@pytest.fixture
def tiled_rows():
    """``tiled_rows(call, op, tiling=None)``: run ``call()`` on a fresh meta-mode 910B2 simulator,
    under ``sim.tiling(op, tiling)`` when a tiling is given; the report rows of ``op``."""
    def run(call, op, tiling=None, chip="Ascend910B2"):
        with Simulator(chip, mode="meta", trace="ops") as sim:
            if tiling is None:
                call()
            else:
                with sim.tiling(op, tiling):
                    call()
            return [r for r in sim.report().ops if r.name == op]
    return run
