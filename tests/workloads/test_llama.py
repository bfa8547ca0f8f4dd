"""The Llama-style decoder layer: shapes, phases, and sharding invariants (TP=2 equals TP=1)."""
import numpy as np
import pytest

import ascend_sim.distributed as dist
from ascend_sim import Simulator, torch_npu
from ascend_sim.workloads import LlamaConfig, run_model
from ascend_sim.workloads.llama import LayerWeights, attention_inputs, build_layer_weights, decoder_layer

CFG = LlamaConfig.preset("tiny")


def _shard(w: LayerWeights, cfg: LlamaConfig, tp: int, rank: int, fused: bool) -> LayerWeights:
    """Rank ``rank``'s slice of full (tp=1) weights, as build_layer_weights lays shards out."""
    d, nq, nkv, f = cfg.head_dim, cfg.heads // tp, cfg.kv_heads // tp, cfg.ffn // tp
    rows = lambda t, lo, n: t.numpy()[lo:lo + n]                         # noqa: E731
    gu = w.w_gate_up.numpy()
    gate, up = gu[:cfg.ffn], gu[cfg.ffn:]
    wo = w.wo.numpy()[:, rank * nq * d:(rank + 1) * nq * d]
    wd = w.w_down.numpy()[:, rank * f:(rank + 1) * f]
    return LayerWeights(
        wq=rows(w.wq, rank * nq * d, nq * d), wk=rows(w.wk, rank * nkv * d, nkv * d),
        wv=rows(w.wv, rank * nkv * d, nkv * d),
        wo=np.ascontiguousarray(wo.T if fused else wo),
        w_gate_up=np.concatenate([gate[rank * f:(rank + 1) * f], up[rank * f:(rank + 1) * f]]),
        w_down=np.ascontiguousarray(wd.T if fused else wd),
        attn_norm=w.attn_norm.numpy(), mlp_norm=w.mlp_norm.numpy(), fused=fused)


@pytest.mark.parametrize("fused", [False, True])
def test_tensor_parallel_layer_equals_the_single_device_layer(fused):
    B, S = 1, 32
    with Simulator("Ascend910B2", trace="ops"):
        full_w = build_layer_weights(CFG, 1, seed=3)
        att = attention_inputs(CFG, 1, B, S, "prefill", seed=5)
        x = np.random.default_rng(9).standard_normal((B * S, CFG.hidden)).astype(np.float16)
        ref = decoder_layer(x, full_w, CFG, att, batch=B, seq=S).numpy().astype(np.float64)
        shards = [_shard(full_w, CFG, 2, r, fused) for r in range(2)]
        cos, sin, mask = att.cos.numpy(), att.sin.numpy(), att.mask.numpy()
    with Simulator("Ascend910B2", world_size=2, trace="ops") as sim:
        def fn(rank):
            a = attention_inputs(CFG, 2, B, S, "prefill", seed=5)
            a.cos, a.sin, a.mask = cos, sin, mask
            return decoder_layer(x, shards[rank], CFG, a, batch=B, seq=S, tp=2).numpy()
        outs = sim.spmd(fn)
    for o in outs:
        # fp16 end to end: the sharded sums round in another order than the single-device ones
        np.testing.assert_allclose(o.astype(np.float64), ref, rtol=0, atol=2e-2 * np.abs(ref).max())
    assert np.array_equal(outs[0], outs[1])          # every rank holds the same result


def test_prefill_and_decode_run_every_op_of_the_layer():
    prefill = run_model(Simulator("Ascend910B2", mode="meta", trace="ops"), CFG, phase="prefill", seq=128)
    decode = run_model(Simulator("Ascend910B2", mode="meta", trace="ops"), CFG, phase="decode", context=512)
    names = [o.name for o in prefill.ops]
    for op in ("npu_rms_norm", "npu_linear", "npu_rotary_mul", "npu_fusion_attention", "npu_swiglu", "aten.add"):
        assert op in names
    assert "npu_incre_flash_attention" in [o.name for o in decode.ops]
    assert prefill.layers == CFG.layers and prefill.total_us > 0 and decode.total_us > 0


def test_tp8_uses_collectives_and_the_fused_op():
    cfg = LlamaConfig.preset("llama3-8b")
    unfused = run_model(Simulator("Ascend910B2", world_size=8, mode="meta", trace="ops"), cfg, tp=8,
                        phase="prefill", seq=512, layers=1)
    fused = run_model(Simulator("Ascend910B2", world_size=8, mode="meta", trace="ops"), cfg, tp=8,
                      phase="prefill", seq=512, layers=1, fused=True)
    assert sum(o.name == "all_reduce" for o in unfused.ops) == 2
    assert any(o.name.startswith("npu_mm_all_reduce_base") for o in fused.ops)
    assert fused.total_us < unfused.total_us


def test_bad_sharding_is_an_error():
    with pytest.raises(ValueError, match="heads=8 is not divisible by tp=3"):
        CFG.check(3)
    with pytest.raises(ValueError, match="unknown model preset"):
        LlamaConfig.preset("gpt5")


def test_layer_ops_are_labelled_by_scope():
    run = run_model(Simulator("Ascend910B2", mode="meta", trace="ops"), CFG, phase="prefill", seq=64, layers=1)
    scopes = [o.attrs.get("scope") for o in run.ops if o.name == "npu_linear"]
    assert scopes == ["layer0/q_proj", "layer0/k_proj", "layer0/v_proj", "layer0/o_proj", "layer0/gate_up_proj",
                      "layer0/down_proj"]
