"""Attention ops: npu_fusion_attention, npu_prompt_flash_attention, npu_incre_flash_attention,
npu_fused_infer_attention_score (forward).

What is modelled. Numbers: softmax(scale * Q K^T + pse, masked) V, as each op's page defines it,
in float32 numpy (Q K^T and P V accumulate in fp32 as the cube does, softmax in fp32, one rounding
to the output dtype), vectorised over batch and heads; variable-length batches (TND, paged caches,
left padding) are computed batch by batch. Time: every call is one MIX flash-attention kernel
(:mod:`ascend_sim.ops.templates.flash_attention`), plus, for npu_fusion_attention with dropout on
A2, the dropout-mask generation kernel that torch_npu launches before it.

Semantics and the decisions taken where the pages leave room (op-plugin 26.1.0 docs):

* **Masks.** ``atten_mask`` True/1 = masked. Sparse modes, with i the query row and j the key
  (per batch, over the actual lengths Sq, Skv): 0 defaultMask = the given mask, plus the band
  ``i - pre <= j <= i + next`` (origin top-left); 1 allMask = the given mask; 2 leftUpCausal
  ``j <= i``; 3 rightDownCausal ``j <= i + Skv - Sq``; 4 band ``i + Skv - Sq - pre <= j <= i +
  Skv - Sq + next``; 5/6 prefix: rightDownCausal or ``j < prefix[b]`` (5 also applies the given
  full mask); 7 (varlen) rightDownCausal for every batch but the last, which is the band of mode 4;
  8 (varlen) leftUpCausal for every batch but the first, which is the band of mode 4. The optimised
  (2048, 2048) masks of modes 2-4, 6-8 are not read for values: the mode's rule is applied.
  npu_fusion_attention computes without any mask when ``atten_mask`` is None, whatever the mode
  (its page says so); the inference ops require the mask for modes 2-4.
* **Rows with no visible key** (fully masked rows, query padding rows) give 0 output; their
  softmax max and lse are float32's lowest value (a finite stand-in for -inf, so merging
  partial results with lse gives them weight 0) and their softmax sum is 0.
* **pse** (npu_fusion_attention) is added after scaling, ``softmax(scale * QK^T + pse)``, as the
  page's worked pse example computes it (the page's headline formula writes ``scale * (pse +
  QK^T)``; op-plugin passes pse type 1, "mul then add"). The ALiBi-compressed pse (last 1024 rows)
  is expanded with its Toeplitz structure: row i < Sq - 1024 takes row 0 shifted by the missing
  rows. ``pse_shift`` of the inference ops is added the same way.
* **Dropout** (npu_fusion_attention, keep_prob < 1): the keep mask is numpy's PCG64 seeded with
  ``(seed, offset)`` drawing one uniform float32 per score, element kept when below keep_prob;
  bits are ordered [B, N, Sq, Skv] (TND: batch after batch, [N, Sq_b, Skv_b]). An external
  ``dropout_mask`` is read as packed bits, little-endian within each byte, 1 = keep. Kept
  probabilities are scaled by 1/keep_prob; softmax_max/sum are taken before dropout. ``seed``,
  ``offset`` and ``numels`` are returned as given/computed.
* **sink** adds exp(sink[n] - max) to every row's softmax sum (its probability is dropped).
* **Outputs of npu_fusion_attention**: softmax_max and softmax_sum are float32 [B, N, Sq, 8]
  (the value repeated 8 times, as op-plugin allocates them; TND: [T, N, 8], stored N-major unless
  ``softmax_layout="TND"``), softmax_out is an empty reserved tensor. The three ints are
  returned as one-element int64 tensors (the front door hands back tensors only, and it makes
  arrays at least 1-D).
* **Quantisation.** Full int8 (PFA/FIA): S = (Q K^T in int32) * dequant_scale1 * scale; P =
  exp(S - max) is quantised with quant_scale1 (round half to even, saturate to int8); O = (P V in
  int32) * dequant_scale2 / rowsum. Output int8: round(O * quant_scale2 + quant_offset2),
  saturated. uint64/int64 dequant scales hold a float32 in their low 32 bits (npu_trans_quant_param's
  packing). Fake quantisation of int8/int4 KV: ``x * antiquant_scale + antiquant_offset`` (the
  page's formula; offset 0 when absent).
* **Paged KV**: logical key s of batch b is row s % block_size of block block_table[b][s //
  block_size]. In the kernel's timing the block ids are synthetic (b * blocks_per_seq + j, wrapped),
  because a plan never reads tensor values; the bytes moved are the same.
* **Left padding**: valid rows are [S - padding - length, S - padding); masks and pse are indexed
  by the physical row/column. KV start or end below 0 gives zeros.
* **MLA** (query_rope/key_rope): the rope parts are extra head-dim columns of Q and K
  (score = q.k + q_rope.k_rope).
* **Decode** kernels run one pass over the KV sequence per (batch, kv head); see the template.
  Fake-quantised (int8/int4) caches are timed as MSD kernels: the query is split into int8 (int4)
  pieces of 7 (3) significant bits, as many as an 11-bit fp16 significand needs (high precision,
  inner_precise bit 0 clear) or an 8-bit one (high performance).
* **Parameters without an effect on numbers or time**: gen_mask_parallel and sync (DSA
  scheduling), inner_precise beyond the MSD piece count (rows without keys always give 0),
  key_rope_antiquant_scale (reserved by the page); padding_mask is reserved and must be None.
* **Tiling studies**: every op's ``default_tiling(spec, chip)`` is the template's choice (the
  largest tiles that fit, see :func:`~ascend_sim.ops.templates.flash_attention.default_tiling`);
  ``plan(spec, chip, tiling)`` plans with the tiling it is given. A study overrides it the way it
  overrides any op's tiling, per simulator and for every rank (the op objects hold nothing)::

      with sim.tiling("npu_fusion_attention", FlashAttentionTiling(q_tile=64, kv_tile=64)):
          torch_npu.npu_fusion_attention(q, k, v, 2, "BNSD")

  or, without a simulator, ``ascend_sim.ops.study.plan_for("npu_fusion_attention", chip,
  tiling, **args)`` (``tiling_for`` returns the op's own choice; a function of it works too).

Modules: :mod:`.checks` (rules the four ops share), :mod:`.fusion` (npu_fusion_attention),
:mod:`.infer_shapes` and :mod:`.infer_features` (the inference ops' per-feature checks),
:mod:`.infer_ops` (PFA, IFA, FIA), :mod:`.numerics` (the host numbers), :mod:`.planning`
(operand placement for the template). Each op resolves its call once in ``infer`` into a frozen
spec (FusionSpec, InferAttentionSpec) that ``compute`` and ``plan`` read.
"""
from __future__ import annotations

from .fusion import NpuFusionAttention
from .infer_ops import NpuFusedInferAttentionScore, NpuIncreFlashAttention, NpuPromptFlashAttention

OPS = (NpuFusionAttention(), NpuPromptFlashAttention(), NpuIncreFlashAttention(), NpuFusedInferAttentionScore())
