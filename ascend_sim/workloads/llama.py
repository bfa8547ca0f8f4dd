"""A Llama-style decoder layer built from torch_npu ops, and whole-model estimates.

What is modelled: one transformer decoder layer as an Ascend inference stack runs it, op by op --
RMSNorm, the Q/K/V projections, rotary embedding, flash attention (npu_fusion_attention for
prefill, npu_incre_flash_attention for one decode step over a KV cache), the output projection,
the residual add, RMSNorm, the gate/up projection, SwiGLU, the down projection and the second
residual add -- with tensor parallelism over ``tp`` ranks: attention heads and FFN columns are
split, and the two row-parallel projections end in an all_reduce (``ascend_sim.distributed``) or
are fused with it (``npu_mm_all_reduce_base``).

Every call is a real torch_npu op on the current Simulator: in full mode the numbers are computed;
in meta mode (how 70B-size models are estimated) only shapes, memory and time. Weights can be
kept in ND or in FRACTAL_NZ (``weight_format``), which is what inference stacks do.

Entry points: :class:`LlamaConfig` (with presets), :func:`build_layer_weights`,
:func:`decoder_layer`, :func:`run_model` (N layers of prefill and/or decode on every rank).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .. import aten, torch_npu
from .. import distributed as dist
from ..runtime import current_simulator


@dataclass(frozen=True)
class LlamaConfig:
    """Model shape. ``tp`` ranks split heads and FFN columns (heads and kv_heads must divide)."""

    name: str = "llama3-8b"
    hidden: int = 4096
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    ffn: int = 14336
    layers: int = 32
    eps: float = 1e-5
    dtype: str = "float16"

    def check(self, tp: int) -> None:
        for what, v in (("heads", self.heads), ("kv_heads", self.kv_heads), ("ffn", self.ffn)):
            if v % tp:
                raise ValueError(f"LlamaConfig {self.name}: {what}={v} is not divisible by tp={tp}")
        if self.heads % self.kv_heads:
            raise ValueError(f"LlamaConfig {self.name}: heads ({self.heads}) must be a multiple of kv_heads "
                             f"({self.kv_heads})")

    def params_per_layer(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.ffn
        return q + kv + o + mlp + 2 * self.hidden

    @classmethod
    def preset(cls, name: str) -> "LlamaConfig":
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}") from None

    @classmethod
    def from_dict(cls, d: dict) -> "LlamaConfig":
        base = cls.preset(d["preset"]) if "preset" in d else cls()
        fields = {k: v for k, v in d.items() if k != "preset"}
        unknown = set(fields) - set(asdict(base))
        if unknown:
            raise ValueError(f"model config: unknown keys {sorted(unknown)}; valid: {sorted(asdict(base))}")
        return replace(base, **fields)


PRESETS = {c.name: c for c in (
    LlamaConfig("llama2-7b", 4096, 32, 32, 128, 11008, 32, 1e-5),
    LlamaConfig("llama3-8b", 4096, 32, 8, 128, 14336, 32, 1e-5),
    LlamaConfig("llama3-70b", 8192, 64, 8, 128, 28672, 80, 1e-5),
    LlamaConfig("tiny", 512, 8, 8, 64, 1024, 2, 1e-5),
)}


@dataclass
class LayerWeights:
    wq: Any
    wk: Any
    wv: Any
    wo: Any
    w_gate_up: Any
    w_down: Any
    attn_norm: Any
    mlp_norm: Any
    fused: bool = False


def _tensor(shape, dtype: str, rng: np.random.Generator | None, scale: float = 0.02):
    """A weight: random numbers in full mode, a data-less tensor in meta mode."""
    sim = current_simulator()
    if sim.is_meta or rng is None:
        return torch_npu.empty_with_format(tuple(shape), dtype)
    from ..dtypes import cast, get_dtype
    vals = cast((rng.standard_normal(shape) * scale).astype(np.float32), get_dtype(dtype))
    t = torch_npu.empty_with_format(tuple(shape), dtype)
    t.numpy()[...] = vals
    return t


def build_layer_weights(cfg: LlamaConfig, tp: int = 1, *, weight_format: str = "ND", fused: bool = False,
                        seed: int | None = 0) -> LayerWeights:
    """This rank's shard of one layer's weights. npu_linear weights are (out, in); for the fused
    path the row-parallel projections are stored (in, out), as npu_mm_all_reduce_base takes them."""
    cfg.check(tp)
    rng = None if seed is None else np.random.default_rng(seed)
    dt = cfg.dtype
    h, d = cfg.hidden, cfg.head_dim
    nq, nkv, f = cfg.heads // tp, cfg.kv_heads // tp, cfg.ffn // tp
    w = LayerWeights(
        wq=_tensor((nq * d, h), dt, rng), wk=_tensor((nkv * d, h), dt, rng), wv=_tensor((nkv * d, h), dt, rng),
        wo=_tensor((nq * d, h) if fused else (h, nq * d), dt, rng),
        w_gate_up=_tensor((2 * f, h), dt, rng),
        w_down=_tensor((f, h) if fused else (h, f), dt, rng),
        attn_norm=_tensor((h,), dt, rng, 1.0), mlp_norm=_tensor((h,), dt, rng, 1.0), fused=fused)
    if weight_format.upper() in ("NZ", "FRACTAL_NZ", "29"):
        for name in ("wq", "wk", "wv", "wo", "w_gate_up", "w_down"):
            setattr(w, name, torch_npu.npu_format_cast(getattr(w, name), 29))
    elif weight_format.upper() != "ND":
        raise ValueError(f"weight_format must be 'ND' or 'NZ', got {weight_format!r}")
    return w


@dataclass
class AttentionInputs:
    """Per-phase tensors shared by the layers: rotary tables, the causal mask, the KV cache."""

    cos: Any
    sin: Any
    mask: Any = None
    k_cache: list = field(default_factory=list)
    v_cache: list = field(default_factory=list)
    context: int = 0


def attention_inputs(cfg: LlamaConfig, tp: int, batch: int, seq: int, phase: str, context: int = 0,
                     layers: int = 1, seed: int | None = 0) -> AttentionInputs:
    rng = None if seed is None else np.random.default_rng(seed + 1)
    dt = cfg.dtype
    cos = _tensor((1, seq, 1, cfg.head_dim), dt, rng, 1.0)
    sin = _tensor((1, seq, 1, cfg.head_dim), dt, rng, 1.0)
    ai = AttentionInputs(cos, sin, context=context)
    if phase == "prefill":
        # the compressed 2048 x 2048 causal mask the fused attention kernels take (True = masked)
        m = torch_npu.empty_with_format((2048, 2048), "bool")
        if m.data is not None:
            m.numpy()[...] = np.triu(np.ones((2048, 2048), bool), 1)
        ai.mask = m
    else:
        nkv = cfg.kv_heads // tp
        for _ in range(layers):
            ai.k_cache.append(_tensor((batch, context, nkv * cfg.head_dim), dt, rng, 1.0))
            ai.v_cache.append(_tensor((batch, context, nkv * cfg.head_dim), dt, rng, 1.0))
    return ai


def decoder_layer(x, w: LayerWeights, cfg: LlamaConfig, att: AttentionInputs, *, batch: int, seq: int,
                  phase: str = "prefill", tp: int = 1, layer: int = 0):
    """One decoder layer on this rank: ``x`` is (batch * seq, hidden); returns the same shape."""
    sim = current_simulator()
    with sim.scope(f"layer{layer}"):
        return _decoder_layer(sim, x, w, cfg, att, batch, seq, phase, tp, layer)


def _decoder_layer(sim, x, w, cfg, att, batch, seq, phase, tp, layer):
    nq, nkv, d = cfg.heads // tp, cfg.kv_heads // tp, cfg.head_dim
    hcom = dist.get_hccl_comm_name() if tp > 1 else None
    with sim.scope("attn_norm"):
        h = torch_npu.npu_rms_norm(x, w.attn_norm, cfg.eps)[0]
    with sim.scope("q_proj"):
        q = torch_npu.npu_linear(h, w.wq).view(batch, seq, nq, d)
    with sim.scope("k_proj"):
        k = torch_npu.npu_linear(h, w.wk).view(batch, seq, nkv, d)
    with sim.scope("v_proj"):
        v = torch_npu.npu_linear(h, w.wv).view(batch, seq, nkv, d)
    with sim.scope("rope"):
        q = torch_npu.npu_rotary_mul(q, att.cos, att.sin)
        k = torch_npu.npu_rotary_mul(k, att.cos, att.sin)
    with sim.scope("attention"):
        o = _attention(q, k, v, att, cfg, batch, seq, phase, nq, nkv, d, layer)
    o = o.view(batch * seq, nq * d)
    with sim.scope("o_proj"):
        attn_out = _row_parallel(o, w.wo, w.fused, tp, hcom)
    x = aten.add(x, attn_out)
    with sim.scope("mlp_norm"):
        h2 = torch_npu.npu_rms_norm(x, w.mlp_norm, cfg.eps)[0]
    with sim.scope("gate_up_proj"):
        gate_up = torch_npu.npu_linear(h2, w.w_gate_up)
    with sim.scope("swiglu"):
        act = torch_npu.npu_swiglu(gate_up, dim=-1)
    with sim.scope("down_proj"):
        mlp_out = _row_parallel(act, w.w_down, w.fused, tp, hcom)
    return aten.add(x, mlp_out)


def _attention(q, k, v, att, cfg, batch, seq, phase, nq, nkv, d, layer):
    if phase == "prefill":
        o = torch_npu.npu_fusion_attention(q, k, v, nq, "BSND", atten_mask=att.mask, scale=1.0 / math.sqrt(d),
                                           sparse_mode=3)[0]
    elif phase == "decode":
        o = torch_npu.npu_incre_flash_attention(
            q.view(batch, 1, nq * d), att.k_cache[layer], att.v_cache[layer], num_heads=nq,
            num_key_value_heads=nkv, input_layout="BSH", scale_value=1.0 / math.sqrt(d),
            actual_seq_lengths=[att.context] * batch)
    else:
        raise ValueError(f"decoder_layer: phase must be 'prefill' or 'decode', got {phase!r}")
    return o


def _row_parallel(x, weight, fused: bool, tp: int, hcom):
    """A row-parallel projection: a partial product on each rank, summed over the ranks."""
    if fused and tp > 1:
        return torch_npu.npu_mm_all_reduce_base(x, weight, hcom)
    out = torch_npu.npu_linear(x, weight)
    if tp > 1:
        dist.all_reduce(out)
    return out


@dataclass
class ModelRun:
    """What :func:`run_model` measured (device 0), in microseconds."""

    config: LlamaConfig
    tp: int
    phase: str
    layers: int
    total_us: float
    per_layer_us: float
    ops: list


def run_model(sim, cfg: LlamaConfig, *, tp: int = 1, phase: str = "prefill", batch: int = 1, seq: int = 2048,
              context: int = 2048, layers: int | None = None, fused: bool = False, weight_format: str = "ND",
              progress=None) -> ModelRun:
    """Run ``layers`` decoder layers (default: the config's) on every rank of ``sim`` (world_size
    must be ``tp``) and simulate them. ``progress(done, total)`` is called after each layer."""
    layers = cfg.layers if layers is None else layers
    if sim.world_size != tp:
        raise ValueError(f"run_model: the Simulator has {sim.world_size} ranks, tp={tp}")
    cfg.check(tp)
    seq_run = seq if phase == "prefill" else 1
    seed = None if sim.is_meta else 0

    marks = {}

    def rank_fn(rank):
        weights = [build_layer_weights(cfg, tp, weight_format=weight_format, fused=fused,
                                       seed=None if seed is None else seed + i) for i in range(layers)]
        att = attention_inputs(cfg, tp, batch, seq_run, phase, context, layers, seed)
        x = _tensor((batch * seq_run, cfg.hidden), cfg.dtype, None if seed is None else np.random.default_rng(7), 1.0)
        # loading the weights (their format casts) is not the model's time: finish it first
        sim.synchronize()
        if rank == 0:
            marks["ops_before"] = len(sim.simulated_ops)
        for i in range(layers):
            x = decoder_layer(x, weights[i], cfg, att, batch=batch, seq=seq_run, phase=phase, tp=tp, layer=i)
            if progress is not None and rank == 0:
                progress(i + 1, layers)
        return x

    with sim:
        if tp > 1:
            sim.spmd(rank_fn)
        else:
            rank_fn(0)
        rep = sim.report()
    ops = [r for r in rep.ops[marks.get("ops_before", 0):] if r.device == 0]
    start = min(r.start_us - r.launch_us for r in ops) if ops else 0.0
    end = max(r.end_us for r in ops) if ops else 0.0
    return ModelRun(cfg, tp, phase, layers, end - start, (end - start) / max(1, layers), ops)
