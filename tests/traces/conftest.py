"""Small simulated runs shared by the trace tests (simulated once per session: they are read-only)."""
import matplotlib
import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu

matplotlib.use("Agg")


def _workload(sim):
    """A MIX kernel (cross-core flags), an AIC matmul, AIV ops on two streams joined by an event, a
    format cast to FRACTAL_NZ."""
    q = np.ones((1, 2, 256, 128), np.float16)
    try:
        torch_npu.npu_fusion_attention(q, q, q, 2, "BNSD", scale=0.1)
    except NotImplementedError:
        pass            # a tree without the attention ops: the MIX tests skip (see mix_kernel)
    a = np.ones((256, 512), np.float16)
    side = sim.new_stream("side")
    with sim.stream(side):
        torch_npu.npu_silu(a)
    done = side.record_event()
    sim.current_stream.wait_event(done)
    torch_npu.npu_linear(a, a)
    torch_npu.npu_format_cast(a, 29)
    torch_npu.npu_rms_norm(a, np.ones(512, np.float16))
    torch_npu.npu_silu(a)


@pytest.fixture(scope="session")
def pipe_run():
    """Report of the workload with every pipe instruction traced."""
    with Simulator("Ascend910B2", trace="pipe") as sim:
        _workload(sim)
        return sim.report()


@pytest.fixture(scope="session")
def core_run():
    """Report of the workload with per-core block spans (trace="core")."""
    with Simulator("Ascend910B2", trace="core") as sim:
        _workload(sim)
        return sim.report()


@pytest.fixture(scope="session")
def two_device_run():
    """Two ranks: a vector op then an all_reduce each (meta mode: timing only)."""
    import ascend_sim.distributed as dist

    def rank(r):
        torch_npu.npu_silu(torch_npu.empty_with_format((256, 256), "float16"))
        dist.all_reduce(torch_npu.empty_with_format((1 << 16,), "float16"))

    with Simulator("Ascend910B2", world_size=2, trace="ops", mode="meta") as sim:
        sim.spmd(rank)
        return sim.report()


@pytest.fixture
def mix_kernel(pipe_run):
    """The MIX kernel's record in pipe_run (the tests that need one skip without it)."""
    mix = [r for r in pipe_run.ops if r.core_type == "MIX"]
    if not mix:
        pytest.skip("no MIX kernel in this tree (npu_fusion_attention is not built)")
    return mix[0]
