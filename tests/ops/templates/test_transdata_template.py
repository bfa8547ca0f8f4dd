"""TransData: ND <-> FRACTAL_NZ moves every byte of both storages, in tiles that fit UB."""
import pytest

from ascend_sim.hw import get_chip
from ascend_sim.runtime import Simulator, Task

GiB = 1 << 30


@pytest.fixture
def chip():
    return get_chip("Ascend910B2")


@pytest.mark.parametrize("shape", [(8192, 8192), (100, 30), (3, 1000, 4000), (17, 33)])
def test_transdata_moves_every_byte_of_both_storages(chip, shape):
    """ND -> NZ reads the whole ND tensor once and writes the whole padded NZ storage once."""
    from ascend_sim import formats as F
    from ascend_sim.dtypes import float16
    from ascend_sim.ops.templates.transdata import transdata_plan
    from ascend_sim.tensor import TensorMeta
    src = TensorMeta(shape, float16)
    dst = TensorMeta(shape, float16, F.Format.FRACTAL_NZ)
    for a, b in ((src, dst), (dst, src)):
        plan = transdata_plan(a, b, chip)
        sim = Simulator(chip, mode="meta", trace="ops")
        t = sim.submit(Task("td", "kernel", sim.current_device.default_stream, plan=plan,
                            addresses={"input": 0, "out0": 2 * GiB}))
        sim.synchronize()
        assert t.record.bytes_read == a.nbytes and t.record.bytes_written == b.nbytes
