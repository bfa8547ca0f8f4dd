import pytest

from ascend_sim.runtime import reset_default_simulator


@pytest.fixture(autouse=True)
def _fresh_default_simulator():
    """Each test starts without leftover queued work or memory on the default simulator."""
    reset_default_simulator()
    yield
    reset_default_simulator()
