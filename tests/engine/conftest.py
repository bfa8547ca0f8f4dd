import pytest

from ascend_sim.hw import get_chip
from ascend_sim.runtime import Simulator, Task


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


def run_plans(chip, *plans_and_addresses, streams=None, trace="ops"):
    """Queue plans (each with its address map) on the default stream, or on the given stream
    indices; return the report rows in submission order."""
    sim = Simulator(chip, trace=trace)
    dev = sim.current_device
    made = {}
    tasks = []
    for i, (plan, addrs) in enumerate(plans_and_addresses):
        s = 0 if streams is None else streams[i]
        if s not in made:
            made[s] = dev.default_stream if s == 0 else dev.new_stream(f"s{s}")
        tasks.append(sim.submit(Task(plan.name, "kernel", made[s], plan=plan, addresses=addrs)))
    sim.synchronize()
    return [t.record for t in tasks], sim
