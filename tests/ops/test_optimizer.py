"""npu_apply_adam: an op that writes three tensors in place (var, m, v through out=).

The reference is TensorFlow's ApplyAdam written in float64 from the op's documentation.
"""
import dataclasses

import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.isa import ISAError
from ascend_sim.ops import OpError
from ascend_sim.ops.study import plan_for, tiling_for
from ascend_sim.tensor import NPUTensor

HYPER = dict(beta1_power=0.9 ** 5, beta2_power=0.999 ** 5, lr=1e-2, beta1=0.9, beta2=0.999, epsilon=1e-8)


def reference(var, m, v, g, nesterov, beta1_power, beta2_power, lr, beta1, beta2, epsilon):
    var, m, v, g = (np.asarray(x, np.float64) for x in (var, m, v, g))
    lr_t = lr * np.sqrt(1 - beta2_power) / (1 - beta1_power)
    m = m + (g - m) * (1 - beta1)
    v = v + (g * g - v) * (1 - beta2)
    num = m * beta1 + (1 - beta1) * g if nesterov else m
    return var - lr_t * num / (epsilon + np.sqrt(v)), m, v


def state(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    var, m, g = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(shape)).astype(dtype)
    return var, m, v, g


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float16, 1e-3)])
@pytest.mark.parametrize("nesterov", [False, True])
def test_updates_var_m_v_in_place_like_tensorflow_apply_adam(dtype, rtol, nesterov):
    var, m, v, g = state((33, 70), dtype)
    want = reference(var, m, v, g, nesterov, **HYPER)
    with Simulator(trace="ops"):
        outs = torch_npu.npu_apply_adam(*HYPER.values(), g, False, nesterov, out=(var, m, v))
    for host, out, ref in zip((var, m, v), outs, want):
        # the caller's numpy arrays are written, and the returned tensors hold the same numbers
        np.testing.assert_array_equal(np.asarray(out.data), host)
        np.testing.assert_allclose(host.astype(np.float64), ref, rtol=rtol, atol=rtol)


def test_npu_tensors_are_updated_and_returned_themselves():
    var, m, v, g = (NPUTensor(x.shape, "float32", data=x) for x in state((8, 16), np.float32))
    with Simulator(trace="ops"):
        outs = torch_npu.npu_apply_adam(*HYPER.values(), g, None, None, out=(var, m, v))
    assert all(o is t for o, t in zip(outs, (var, m, v)))


def test_one_kernel_reads_four_tensors_and_writes_three():
    shape = (1024, 1024)
    with Simulator(mode="meta", trace="ops") as sim:
        t = [torch_npu.empty_with_format(shape, "float16") for _ in range(4)]
        torch_npu.npu_apply_adam(*HYPER.values(), t[3], False, False, out=tuple(t[:3]))
        (row,) = sim.report().ops
    nbytes = 2 * shape[0] * shape[1]
    assert row.core_type == "AIV"
    assert row.bytes_read == 4 * nbytes and row.bytes_written == 3 * nbytes


def test_the_tiling_goes_through_the_one_interface():
    args = dict(**HYPER, grad=((4096,), "float32"), use_locking=False, use_nesterov=False,
                out=[((4096,), "float32")] * 3)
    t = tiling_for("npu_apply_adam", "Ascend910B2", **args)
    (p,) = plan_for("npu_apply_adam", "Ascend910B2", dataclasses.replace(t, block_dim=1), **args)
    assert p.block_dim == 1
    with pytest.raises(ISAError, match="UB"):
        plan_for("npu_apply_adam", "Ascend910B2", dataclasses.replace(t, tile_elems=1 << 20), **args)


@pytest.mark.parametrize("change,rule", [
    (dict(out=None), "required: pass out=\\(var, m, v\\)"),
    (dict(out="two"), "tuple of three tensors"),
    (dict(lr="fast"), "'lr' must be a number"),
    (dict(use_nesterov=1), "'use_nesterov' must be a bool"),
])
def test_bad_arguments_name_the_argument_and_the_rule(change, rule):
    var, m, v, g = state((4, 4), np.float32)
    args = dict(**HYPER, grad=g, use_locking=False, use_nesterov=False, out=(var, m, v))
    args.update(change)
    with Simulator(trace="ops"), pytest.raises((OpError, TypeError), match=f"npu_apply_adam: argument .*{rule}"):
        torch_npu.npu_apply_adam(**args)


def test_state_must_match_grad():
    var, m, v, g = state((4, 4), np.float32)
    with Simulator(trace="ops"):
        with pytest.raises(OpError, match="argument 'out\\[2\\] \\(v\\)': shape \\(4, 5\\) must equal grad's"):
            torch_npu.npu_apply_adam(*HYPER.values(), g, False, False, out=(var, m, np.zeros((4, 5), np.float32)))
        with pytest.raises(TypeError, match="argument 'out\\[1\\] \\(m\\)' has dtype float16"):
            torch_npu.npu_apply_adam(*HYPER.values(), g, False, False, out=(var, m.astype(np.float16), v))
        with pytest.raises(TypeError, match="argument 'grad' has dtype int32"):
            torch_npu.npu_apply_adam(*HYPER.values(), g.astype(np.int32), False, False, out=(var, m, v))
