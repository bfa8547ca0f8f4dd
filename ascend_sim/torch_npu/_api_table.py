"""The torch_npu custom-operator API surface, as data.

One ``ApiEntry`` per public function: the 123 APIs of the seed list (in seed order), then
``get_npu_format``. Each entry records a Python parameter list that merges the documented
(26.1.0) signature with the native schema, so that both the documented keyword names and the
schema's keyword names are accepted (the non-canonical spelling is listed in ``aliases``).

Pure data: nothing here imports numpy, torch or the rest of the simulator.
"""
import functools
import inspect
from dataclasses import dataclass

PRODUCTS: tuple[str, ...] = ("950", "A3", "A2", "910", "310P")

_ALL = ("950", "A3", "A2", "910", "310P")
_CLASSIC = ("A3", "A2", "910", "310P")  # every product except the Ascend 950
_A3A2 = ("A3", "A2")
_A3A2_310P = ("A3", "A2", "310P")

_T2 = "tuple[Tensor, Tensor]"
_T3 = "tuple[Tensor, Tensor, Tensor]"
_T4 = "tuple[Tensor, Tensor, Tensor, Tensor]"
_T5 = "tuple[Tensor, Tensor, Tensor, Tensor, Tensor]"
_T6 = "tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]"
_T7 = "tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]"
_T8 = "tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]"

_ELT = "elementwise/activation"
_MEM = "memory/format/runtime"
_BOX = "detection/box"
_OPT = "optimizer"
_MM = "matmul/gemm"
_CONV = "conv"
_RNN = "rnn"
_NORM = "norm"
_ATTN = "attention"
_QUANT = "quant"
_MOE = "moe routing"
_COMM = "comm-fused (HCCL)"
_MOVE = "other (data movement)"
_REDUCE = "other (reduction)"
_INDEX = "other (sort/index)"
_BITS = "other (bit pack)"
_LOSS = "other (loss)"
_SERVE = "other (serving metadata)"
_SAMPLE = "sampling"


@dataclass(frozen=True)
class ApiEntry:
    name: str  # attribute name under torch_npu (or torch_npu.<namespace>)
    params: str  # Python parameter list; valid inside ``def f(<params>): pass``
    aliases: tuple[tuple[str, str], ...] = ()  # (other keyword name, canonical param name)
    returns: str = "Tensor"  # documented return type, e.g. "tuple[Tensor, Tensor]", "None"
    category: str = ""  # category column of API.md
    products: tuple[str, ...] = ()  # subset of PRODUCTS the op's page lists
    comm: bool = False  # needs multi-device (HCCL) communication
    summary: str = ""  # one line: what the op computes
    namespace: str = ""  # "" for torch_npu.<name>, "npu" for torch_npu.npu.<name>

    @property
    def qualname(self) -> str:
        """Dotted path under torch_npu, e.g. ``npu.enable_deterministic_with_backward``."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The documented signature (``params`` as a Python parameter list)."""
        ns: dict = {}
        exec(f"def _sig({self.params}): pass", ns)
        return inspect.signature(ns["_sig"])

    def bind(self, /, *args, **kwargs) -> dict:
        """The call's arguments by canonical name, defaults filled in, alias keywords mapped; a
        TypeError naming the function when they do not fit its signature."""
        for alt, canon in self.aliases:
            if alt in kwargs:
                if canon in kwargs:
                    raise TypeError(f"{self.name}: got both '{alt}' and '{canon}' (the same argument)")
                kwargs[canon] = kwargs.pop(alt)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}{self.signature}: {e}") from None
        bound.apply_defaults()
        return dict(bound.arguments)


E = ApiEntry

API_TABLE: tuple[ApiEntry, ...] = (
    # 1-10
    E("_npu_dropout", "self, p", returns=_T2, category=_ELT, products=_CLASSIC,
      summary="Seedless dropout; returns the dropped-out tensor and its keep mask."),
    E("copy_memory_", "self, src, non_blocking=False", aliases=(("dst", "self"),),
      category=_MEM, products=_CLASSIC,
      summary="Copies src into self in place (any format) and returns self."),
    E("empty_with_format",
      "size, dtype=None, layout=None, device=None, pin_memory=None, acl_format=2, *, "
      "base_addr_aligned_kb=None",
      category=_MEM, products=_CLASSIC,
      summary="Allocates an uninitialised tensor whose storage uses the given ACL format."),
    E("fast_gelu", "self", category=_ELT, products=_CLASSIC,
      summary="Fast sigmoid-based approximation of GELU, applied element by element."),
    E("npu_alloc_float_status", "input", aliases=(("self", "input"),),
      category=_MEM, products=_CLASSIC,
      summary="Allocates the 8-element float32 buffer that receives the overflow status flags."),
    E("npu_anchor_response_flags", "self, featmap_size, stride, num_base_anchors",
      category=_BOX, products=_CLASSIC,
      summary="Marks, per anchor, whether its feature-map cell holds a ground-truth box centre."),
    E("npu_apply_adam",
      "beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad, use_locking, use_nesterov, *, "
      "out=None",
      returns=_T3, category=_OPT, products=_CLASSIC,
      summary="One Adam step that updates var, m and v (passed through out) in place."),
    E("npu_batch_nms",
      "self, scores, score_threshold, iou_threshold, max_size_per_class, max_total_size, "
      "change_coordinate_frame=False, transpose_box=False",
      returns=_T4, category=_BOX, products=("910", "310P"),
      summary="Per-class non-maximum suppression over a batch of boxes, padded to a fixed count."),
    E("npu_bert_apply_adam",
      "lr, beta1, beta2, epsilon, grad, max_grad_norm, global_grad_norm, weight_decay, "
      "step_size=None, adam_mode=0, *, out=None",
      returns=_T3, category=_OPT, products=("A3", "A2", "910"),
      summary="BERT-style AdamW step with gradient-norm clipping, updating var, m and v in place."),
    E("npu_bmmV2", "self, mat2, output_sizes", category=_MM, products=_CLASSIC,
      summary="Batched matrix multiply of two tensors with an explicit output shape."),
    # 11-20
    E("npu_bounding_box_decode",
      "rois, deltas, means0, means1, means2, means3, stds0, stds1, stds2, stds3, max_shape, "
      "wh_ratio_clip",
      category=_BOX, products=_CLASSIC,
      summary="Applies normalised (dx, dy, dw, dh) deltas to boxes, giving clipped decoded boxes."),
    E("npu_bounding_box_encode",
      "anchor_box, ground_truth_box, means0, means1, means2, means3, stds0, stds1, stds2, stds3",
      category=_BOX, products=_CLASSIC,
      summary="Computes normalised (dx, dy, dw, dh) regression targets from anchors to gt boxes."),
    E("npu_broadcast", "self, size", category=_MOVE, products=_CLASSIC,
      summary="Broadcasts a tensor to a new shape, materialising the copy."),
    E("npu_ciou",
      "boxes1, boxes2, trans=False, is_cross=True, mode=0, atan_sub_flag=False",
      aliases=(("self", "boxes1"), ("gtboxes", "boxes2")),
      category=_BOX, products=_ALL,
      summary="Complete-IoU (IoU with centre-distance and aspect-ratio penalties) of box pairs."),
    E("npu_clear_float_status", "self, mode=0", category=_MEM, products=_CLASSIC,
      summary="Resets the overflow status flags and returns the cleared buffer."),
    E("npu_confusion_transpose", "self, perm, shape, transpose_first",
      category=_MOVE, products=_CLASSIC,
      summary="Fused reshape and permute, in either order."),
    E("npu_conv_transpose2d",
      "input, weight, bias, padding, output_padding, stride, dilation, groups",
      category=_CONV, products=_CLASSIC,
      summary="2-D transposed convolution (deconvolution)."),
    E("npu_conv2d", "input, weight, bias, stride, padding, dilation, groups",
      category=_CONV, products=_CLASSIC,
      summary="2-D convolution."),
    E("npu_conv3d", "input, weight, bias, stride, padding, dilation, groups",
      category=_CONV, products=_CLASSIC,
      summary="3-D convolution."),
    E("npu_convolution", "input, weight, bias, stride, padding, dilation, groups",
      category=_CONV, products=_CLASSIC,
      summary="Convolution that picks the 2-D or 3-D kernel from the input rank."),
    # 21-30
    E("npu_convolution_transpose",
      "input, weight, bias, padding, output_padding, stride, dilation, groups",
      category=_CONV, products=_CLASSIC,
      summary="Transposed convolution that picks the 2-D or 3-D kernel from the input rank."),
    E("npu_deformable_conv2d",
      "self, weight, offset, bias, kernel_size, stride, padding, dilation=(1, 1, 1, 1), "
      "groups=1, deformable_groups=1, modulated=True",
      aliases=(("input", "self"),), returns=_T2, category=_CONV, products=_CLASSIC,
      summary="Deformable 2-D convolution at learned offsets; also returns the sampled input."),
    E("npu_diou", "self, gtboxes, trans=False, is_cross=False, mode=0",
      category=_BOX, products=_CLASSIC,
      summary="Distance-IoU (IoU with a centre-distance penalty) of box pairs."),
    E("npu_dtype_cast", "input, dtype, input_dtype=None", aliases=(("self", "input"),),
      category=_ELT, products=_CLASSIC,
      summary="Converts a tensor to another dtype."),
    E("npu_format_cast", "input, acl_format, *, customize_dtype=None, input_dtype=None",
      aliases=(("self", "input"),), category=_MEM, products=_ALL,
      summary="Returns a copy of the tensor stored in another internal (ACL) format."),
    E("npu_format_cast_", "input, src, *, customize_dtype=None, input_dtype=None",
      aliases=(("self", "input"),), category=_MEM, products=_ALL,
      summary="Changes a tensor's storage format in place, to an ACL format or to src's format."),
    E("npu_get_float_status", "self, mode=0", category=_MEM, products=_CLASSIC,
      summary="Reads the current overflow status flags into a tensor."),
    E("npu_giou", "self, gtboxes, trans=False, is_cross=False, mode=0",
      category=_BOX, products=_CLASSIC,
      summary="Generalised IoU (IoU minus the empty share of the enclosing box) of box pairs."),
    E("npu_grid_assign_positive",
      "self, overlaps, box_responsible_flags, max_overlaps, argmax_overlaps, gt_max_overlaps, "
      "gt_argmax_overlaps, num_gts, pos_iou_thr, min_pos_iou, gt_max_assign_all",
      category=_BOX, products=_CLASSIC,
      summary="Grid-assigner step that gives positive anchors the index of their matched gt box."),
    E("npu_gru",
      "input, hx, weight_input, weight_hidden, bias_input, bias_hidden, seq_length, has_biases, "
      "num_layers, dropout, train, bidirectional, batch_first",
      returns=_T6, category=_RNN, products=_CLASSIC,
      summary="Single-layer GRU over a sequence, returning outputs plus the gate activations."),
    # 31-40
    E("npu_indexing",
      "self, begin, end, strides, begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0, "
      "shrink_axis_mask=0",
      category=_MOVE, products=_CLASSIC,
      summary="Strided slice with begin/end/stride vectors and TensorFlow-style masks."),
    E("npu_iou", "bboxes, gtboxes, mode=0", category=_BOX, products=_ALL,
      summary="IoU (or IoF) between every box of one set and every box of another."),
    E("npu_layer_norm_eval", "input, normalized_shape, weight=None, bias=None, eps=1e-05",
      category=_NORM, products=_CLASSIC,
      summary="Inference-only layer normalisation over the trailing dimensions."),
    E("npu_linear", "input, weight, bias=None", category=_MM, products=_CLASSIC,
      summary="Fully connected layer: input times weight transposed, plus an optional bias."),
    E("npu_lstm",
      "x, weight, bias, seqMask, h, c, has_biases, num_layers, dropout, train, bidirectional, "
      "batch_first, flag_seq, direction",
      aliases=(("input", "x"), ("seq_mask", "seqMask")), returns=_T8,
      category=_RNN, products=_CLASSIC,
      summary="Single-layer LSTM over a sequence, returning outputs, states and gate activations."),
    E("npu_max", "self, dim, keepdim=False", returns=_T2, category=_REDUCE, products=_CLASSIC,
      summary="Maximum values along a dimension, with their indices."),
    E("npu_min", "self, dim, keepdim=False", returns=_T2, category=_REDUCE, products=_CLASSIC,
      summary="Minimum values along a dimension, with their indices."),
    E("npu_mish", "self", category=_ELT, products=_CLASSIC,
      summary="Mish activation, x * tanh(softplus(x))."),
    E("npu_nms_rotated",
      "dets, scores, iou_threshold, scores_threshold=0, max_output_size=-1, mode=0",
      aliases=(("self", "dets"),), returns=_T2, category=_BOX, products=_CLASSIC,
      summary="Non-maximum suppression for rotated boxes; returns kept indices and their count."),
    E("npu_nms_v4",
      "boxes, scores, max_output_size, iou_threshold, scores_threshold, "
      "pad_to_max_output_size=False",
      aliases=(("self", "boxes"),), returns=_T2, category=_BOX, products=_CLASSIC,
      summary="Greedy non-maximum suppression by score; returns kept indices and their count."),
    # 41-50
    E("npu_nms_with_mask", "input, iou_threshold", returns=_T3, category=_BOX,
      products=_CLASSIC,
      summary="Non-maximum suppression on scored boxes that also returns a keep mask."),
    E("npu_one_hot", "input, num_classes=-1, depth=1, on_value=1, off_value=0",
      aliases=(("self", "input"),), category=_INDEX, products=_CLASSIC,
      summary="One-hot encodes integer labels along a new last axis."),
    E("npu_pad", "input, paddings", category=_MOVE, products=_CLASSIC,
      summary="Zero-pads each dimension by (before, after) amounts."),
    E("npu_ps_roi_pooling", "x, rois, spatial_scale, group_size, output_dim",
      aliases=(("self", "x"),), category=_BOX, products=_CLASSIC,
      summary="Position-sensitive RoI average pooling."),
    E("npu_ptiou", "bboxes, gtboxes, mode=0", category=_BOX, products=_CLASSIC,
      summary="IoU (or IoF) between box sets, the older ptiou variant."),
    E("npu_random_choice_with_mask", "x, count=256, seed=0, seed2=0",
      returns=_T2, category=_BOX, products=_CLASSIC,
      summary="Shuffled indices of up to count true elements, with a validity mask."),
    E("npu_reshape", "self, shape, can_refresh=False", category=_MOVE, products=_CLASSIC,
      summary="Reshapes a tensor, optionally rewriting its metadata in place."),
    E("npu_roi_align",
      "features, rois, spatial_scale, pooled_height, pooled_width, sample_num, roi_end_mode",
      aliases=(("self", "features"),), category=_BOX, products=_CLASSIC,
      summary="RoI Align: bilinear sampling of each region into a fixed-size grid."),
    E("npu_rotated_iou",
      "self, query_boxes, trans=False, mode=0, is_cross=True, v_threshold=0.0, e_threshold=0.0",
      category=_BOX, products=_CLASSIC,
      summary="IoU between rotated boxes."),
    E("npu_rotated_overlaps", "self, query_boxes, trans=False",
      category=_BOX, products=_CLASSIC,
      summary="Intersection areas between rotated boxes."),
    # 51-60
    E("npu_sign_bits_pack", "self, size", category=_BITS, products=_CLASSIC,
      summary="Packs the signs of float values into bits (8 per uint8), split into size groups."),
    E("npu_sign_bits_unpack", "x, size, dtype", aliases=(("input", "x"),),
      category=_BITS, products=_CLASSIC,
      summary="Expands packed sign bits back into +1/-1 values of a float dtype."),
    E("npu_silu", "self", category=_ELT, products=_CLASSIC,
      summary="SiLU (swish) activation, x * sigmoid(x)."),
    E("npu_slice", "self, offsets, size", category=_MOVE, products=_CLASSIC,
      summary="Extracts a block given start offsets and a size per dimension."),
    E("npu_softmax_cross_entropy_with_logits", "features, labels",
      aliases=(("self", "features"),), category=_LOSS, products=_CLASSIC,
      summary="Per-sample softmax cross-entropy between logits and soft labels."),
    E("npu_sort_v2", "self, dim=-1, descending=False, *, out=None",
      category=_INDEX, products=_CLASSIC,
      summary="Sorts values along a dimension without returning indices."),
    E("npu_transpose", "self, perm, require_contiguous=True", category=_MOVE,
      products=_CLASSIC,
      summary="Permutes dimensions, producing a contiguous result by default."),
    E("npu_yolo_boxes_encode", "self, gt_bboxes, stride, performance_mode=False",
      category=_BOX, products=_CLASSIC,
      summary="Encodes gt boxes as YOLO regression targets relative to anchors and strides."),
    E("npu_fused_attention_score",
      "query_layer, key_layer, value_layer, attention_mask, scale, keep_prob, "
      "query_transpose=False, key_transpose=False, bmm_score_transpose_a=False, "
      "bmm_score_transpose_b=False, value_transpose=False, dx_transpose=False",
      category=_ATTN, products=("910", "310P"),
      summary="Fused scaled QK^T, mask, softmax, dropout and V product for transformer attention."),
    E("npu_multi_head_attention",
      "query, key, value, query_weight, key_weight, value_weight, attn_mask, out_proj_weight, "
      "query_bias, key_bias, value_bias, out_proj_bias, dropout_mask, attn_head_num, "
      "attn_dim_per_head, src_len, tgt_len, dropout_prob, softmax_use_float",
      returns=_T8, category=_ATTN, products=_CLASSIC,
      summary="Multi-head attention with in/out projections, plus saved intermediates."),
    # 61-70
    E("npu_rms_norm", "self, gamma, epsilon=1e-06", returns=_T2, category=_NORM,
      products=_CLASSIC,
      summary="RMS normalisation scaled by gamma; also returns the reciprocal RMS."),
    E("npu_dropout_with_add_softmax", "self, x1, alpha, prob, dim", returns=_T3,
      category=_ELT, products=_CLASSIC,
      summary="Fused softmax(alpha * self + x1) followed by dropout."),
    E("npu_rotary_mul", "input, r1, r2, rotary_mode='half', rotate=None",
      aliases=(("self", "input"),), category=_ELT, products=_CLASSIC,
      summary="Rotary position embedding: input * cos + rotate_half(input) * sin."),
    E("npu_scaled_masked_softmax", "x, mask, scale=1, fixed_triu_mask=False",
      category=_ELT, products=_ALL,
      summary="Softmax of scaled inputs with masked positions suppressed."),
    E("npu_swiglu", "input, dim=-1", aliases=(("self", "input"),), category=_ELT,
      products=("A2",),
      summary="SwiGLU: splits the input in two along dim and returns silu(a) * b."),
    E("one_", "self", category=_ELT, products=_CLASSIC,
      summary="Fills a tensor with ones in place."),
    E("npu_group_norm_swish",
      "input, num_groups, weight, bias, eps=1e-05, swish_scale=1.0",
      returns=_T3, category=_NORM, products=_A3A2,
      summary="Group normalisation followed by swish; also returns group mean and rstd."),
    E("npu_cross_entropy_loss",
      "input, target, weight=None, reduction='mean', ignore_index=-100, label_smoothing=0.0, "
      "lse_square_scale_for_zloss=0.0, return_zloss=False",
      returns=_T4, category=_LOSS, products=("950", "A3", "A2"),
      summary="Cross-entropy with label smoothing and optional z-loss, plus log-probs and LSE."),
    E("npu_advance_step_flashattn",
      "input_tokens, sampled_token_ids, input_positions, seq_lens, slot_mapping, block_tables, "
      "num_seqs, num_queries, block_size, *, spec_token=None, accepted_num=None",
      returns="None", category=_SERVE, products=_A3A2,
      summary="Advances vLLM decode metadata (tokens, positions, lengths, slots) in place."),
    E("npu_all_gather_base_mm",
      "x1, x2, hcom, world_size, *, bias=None, x1_scale=None, x2_scale=None, gather_index=0, "
      "gather_output=True, comm_turn=0, output_dtype=None, comm_mode=None",
      aliases=(("self", "x1"), ("input", "x1")), returns=_T2, category=_COMM,
      products=_A3A2, comm=True,
      summary="All-gathers x1 across ranks, multiplies by x2; can also return the gathered x1."),
    # 71-80
    E("npu_anti_quant", "x, scale, *, offset=None, dst_dtype=None, src_dtype=None",
      category=_QUANT, products=_A3A2_310P,
      summary="Dequantises integer values to float: (x + offset) * scale."),
    E("npu_convert_weight_to_int4pack", "weight, inner_k_tiles=0",
      category=_QUANT, products=_A3A2,
      summary="Packs int32 values holding int4 weights, eight per int32."),
    E("npu_dynamic_quant",
      "x, *, smooth_scales=None, group_index=None, dst_type=None, quant_mode='pertoken', "
      "dst_type_max=0.0",
      aliases=(("input", "x"),), returns=_T2, category=_QUANT, products=_A3A2,
      summary="Symmetric per-token dynamic quantisation; returns the quantised data and scales."),
    E("npu_dynamic_quant_asymmetric",
      "x, *, smooth_scales=None, group_index=None, dst_type=None, quant_mode='pertoken', "
      "dst_type_max=0.0",
      aliases=(("input", "x"),), returns=_T3, category=_QUANT, products=_A3A2,
      summary="Asymmetric per-token dynamic quantisation; returns data, scales and offsets."),
    E("npu_fast_gelu", "input", aliases=(("self", "input"),), category=_ELT,
      products=_CLASSIC,
      summary="Fast sigmoid-based approximation of GELU."),
    E("npu_ffn",
      "x, weight1, weight2, activation, *, expert_tokens=None, expert_tokens_index=None, "
      "bias1=None, bias2=None, scale=None, offset=None, deq_scale1=None, deq_scale2=None, "
      "antiquant_scale1=None, antiquant_scale2=None, antiquant_offset1=None, "
      "antiquant_offset2=None, inner_precise=None, output_dtype=None",
      category=_MM, products=_A3A2,
      summary="Feed-forward block (matmul, activation, matmul), optionally per expert, quantised."),
    E("npu_fused_infer_attention_score",
      "query, key, value, *, pse_shift=None, atten_mask=None, actual_seq_lengths=None, "
      "actual_seq_lengths_kv=None, dequant_scale1=None, quant_scale1=None, dequant_scale2=None, "
      "quant_scale2=None, quant_offset2=None, antiquant_scale=None, antiquant_offset=None, "
      "key_antiquant_scale=None, key_antiquant_offset=None, value_antiquant_scale=None, "
      "value_antiquant_offset=None, block_table=None, query_padding_size=None, "
      "kv_padding_size=None, key_shared_prefix=None, value_shared_prefix=None, "
      "actual_shared_prefix_len=None, query_rope=None, key_rope=None, "
      "key_rope_antiquant_scale=None, num_heads=1, scale=1.0, pre_tokens=2147483647, "
      "next_tokens=2147483647, input_layout='BSH', num_key_value_heads=0, sparse_mode=0, "
      "inner_precise=0, block_size=0, antiquant_mode=0, key_antiquant_mode=0, "
      "value_antiquant_mode=0, softmax_lse_flag=False",
      returns=_T2, category=_ATTN, products=_A3A2,
      summary="Inference attention for both prefill and decode, with paged KV and quantisation."),
    E("npu_fusion_attention",
      "query, key, value, head_num, input_layout, pse=None, padding_mask=None, atten_mask=None, "
      "scale=1.0, keep_prob=1.0, pre_tockens=2147483647, next_tockens=2147483647, "
      "inner_precise=0, prefix=None, actual_seq_qlen=None, actual_seq_kvlen=None, sparse_mode=0, "
      "gen_mask_parallel=True, sync=False, softmax_layout='', sink=None, dropout_mask=None, "
      "seed=0, offset=0",
      returns="tuple[Tensor, Tensor, Tensor, Tensor, int, int, int]", category=_ATTN,
      products=("950", "A2"),
      summary="Training flash-attention forward; returns output, softmax stats and dropout seed."),
    E("npu_gelu", "input, *, approximate='none'", aliases=(("self", "input"),),
      category=_ELT, products=("A2", "910", "310P"),
      summary="GELU activation, exact (erf) or tanh approximation."),
    E("npu_group_norm_silu", "input, weight, bias, group, eps=1e-05", returns=_T3,
      category=_NORM, products=("A2", "310P"),
      summary="Group normalisation followed by SiLU; also returns group mean and rstd."),
    # 81-90
    E("npu_group_quant", "x, scale, group_index, *, offset=None, dst_dtype=None",
      category=_QUANT, products=_A3A2,
      summary="Static quantisation with a separate scale row per group of tokens."),
    E("npu_grouped_matmul",
      "x, weight, *, bias=None, scale=None, offset=None, antiquant_scale=None, "
      "antiquant_offset=None, per_token_scale=None, group_list=None, activation_input=None, "
      "activation_quant_scale=None, activation_quant_offset=None, split_item=0, group_type=None, "
      "group_list_type=0, act_type=0, tuning_config=None, output_dtype=None, x_dtype=None, "
      "weight_dtype=None, scale_dtype=None, per_token_scale_dtype=None",
      returns="list[Tensor]", category=_MM, products=_A3A2_310P,
      summary="Several independent matmuls in one call, grouping tokens per expert."),
    E("npu_incre_flash_attention",
      "query, key, value, *, padding_mask=None, atten_mask=None, pse_shift=None, "
      "actual_seq_lengths=None, antiquant_scale=None, antiquant_offset=None, block_table=None, "
      "dequant_scale1=None, quant_scale1=None, dequant_scale2=None, quant_scale2=None, "
      "quant_offset2=None, kv_padding_size=None, num_heads=1, scale_value=1.0, "
      "input_layout='BSH', num_key_value_heads=0, block_size=0, inner_precise=1",
      category=_ATTN, products=("A2", "310P"),
      summary="Decode-phase (incremental) attention of new queries over a KV cache."),
    E("npu_mla_prolog",
      "token_x, weight_dq, weight_uq_qr, weight_uk, weight_dkv_kr, rmsnorm_gamma_cq, "
      "rmsnorm_gamma_ckv, rope_sin, rope_cos, cache_index, kv_cache, kr_cache, *, "
      "dequant_scale_x=None, dequant_scale_w_dq=None, dequant_scale_w_uq_qr=None, "
      "dequant_scale_w_dkv_kr=None, quant_scale_ckv=None, quant_scale_ckr=None, "
      "smooth_scales_cq=None, rmsnorm_epsilon_cq=1e-05, rmsnorm_epsilon_ckv=1e-05, "
      "cache_mode='PA_BSND'",
      returns=_T4, category=_ATTN, products=_A3A2,
      summary="MLA prologue: low-rank Q/KV projections, RMSNorm, RoPE and KV-cache update."),
    E("npu_mla_prolog_v2",
      "token_x, weight_dq, weight_uq_qr, weight_uk, weight_dkv_kr, rmsnorm_gamma_cq, "
      "rmsnorm_gamma_ckv, rope_sin, rope_cos, cache_index, kv_cache, kr_cache, *, "
      "dequant_scale_x=None, dequant_scale_w_dq=None, dequant_scale_w_uq_qr=None, "
      "dequant_scale_w_dkv_kr=None, quant_scale_ckv=None, quant_scale_ckr=None, "
      "smooth_scales_cq=None, rmsnorm_epsilon_cq=1e-05, rmsnorm_epsilon_ckv=1e-05, "
      "cache_mode='PA_BSND'",
      returns=_T5, category=_ATTN, products=_A3A2,
      summary="MLA prologue as in npu_mla_prolog, also returning the query dequant scale."),
    E("npu_mm_all_reduce_base",
      "x1, x2, hcom, *, reduce_op='sum', bias=None, antiquant_scale=None, antiquant_offset=None, "
      "x3=None, dequant_scale=None, pertoken_scale=None, comm_quant_scale_1=None, "
      "comm_quant_scale_2=None, antiquant_group_size=0, comm_turn=0, group_sizes=None, "
      "y_dtype=None, x1_dtype=None, x2_dtype=None, dequant_scale_dtype=None, "
      "pertoken_scale_dtype=None, comm_quant_mode=0, comm_mode=None",
      category=_COMM, products=("A2",), comm=True,
      summary="Matmul whose partial results are summed across ranks with all-reduce."),
    E("npu_mm_reduce_scatter_base",
      "input, x2, hcom, world_size, *, reduce_op='sum', bias=None, x1_scale=None, x2_scale=None, "
      "comm_turn=0, output_dtype=None, comm_mode=None",
      aliases=(("self", "input"),), category=_COMM, products=_A3A2, comm=True,
      summary="Matmul followed by reduce-scatter of the result rows across ranks."),
    E("npu_moe_compute_expert_tokens", "sorted_expert_for_source_row, num_expert",
      category=_MOE, products=("A2",),
      summary="Cumulative token counts per expert from sorted expert ids."),
    E("npu_moe_finalize_routing",
      "expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row, "
      "expert_for_source_row, drop_pad_mode=0, k=1",
      aliases=(("export_for_source_row", "expert_for_source_row"),),
      category=_MOE, products=("A2",),
      summary="Un-permutes expert outputs and sums them per token with weights, bias and skips."),
    E("npu_moe_gating_top_k_softmax", "x, finished=None, k=1", returns=_T3,
      category=_MOE, products=_A3A2,
      summary="Softmax over gating logits then top-k experts per token."),
    # 91-100
    E("npu_moe_init_routing", "x, row_idx, expert_idx, active_num", returns=_T3,
      category=_MOE, products=("A2",),
      summary="Replicates and sorts tokens by selected expert, with the index maps to undo it."),
    E("npu_prefetch", "input, dependency, max_size, offset=0", aliases=(("self", "input"),),
      returns="None", category=_MEM, products=_A3A2,
      summary="Prefetches part of a weight tensor into L2 cache after a dependency; no output."),
    E("npu_prompt_flash_attention",
      "query, key, value, *, padding_mask=None, atten_mask=None, pse_shift=None, "
      "actual_seq_lengths=None, deq_scale1=None, quant_scale1=None, deq_scale2=None, "
      "quant_scale2=None, quant_offset2=None, num_heads=1, scale_value=1.0, "
      "pre_tokens=2147483647, next_tokens=0, input_layout='BSH', num_key_value_heads=0, "
      "actual_seq_lengths_kv=None, sparse_mode=0",
      category=_ATTN, products=_A3A2_310P,
      summary="Prefill-phase (full prompt) flash attention for inference."),
    E("npu_quant_matmul",
      "x1, x2, scale, *, offset=None, pertoken_scale=None, bias=None, output_dtype=None, "
      "x1_dtype=None, x2_dtype=None, pertoken_scale_dtype=None, scale_dtype=None, "
      "group_sizes=None, y_scale=None",
      category=_QUANT, products=_A3A2_310P,
      summary="Integer matmul with dequantisation by per-channel and optional per-token scales."),
    E("npu_quant_scatter",
      "input, indices, updates, quant_scales, quant_zero_points=None, axis=-2, quant_axis=-1, "
      "reduce='update', dst_type=None, round_mode='rint'",
      aliases=(("self", "input"),), category=_QUANT, products=("A2", "310P"),
      summary="Quantises updates and scatters them into an int8 tensor, returning a new tensor."),
    E("npu_quant_scatter_",
      "input, indices, updates, quant_scales, quant_zero_points=None, axis=-2, quant_axis=-1, "
      "reduce='update', dst_type=None, round_mode='rint'",
      aliases=(("self", "input"),), category=_QUANT, products=("A2", "310P"),
      summary="Quantises updates and scatters them into an int8 tensor in place."),
    E("npu_quantize", "input, scales, zero_points, dtype, axis=1, div_mode=True",
      aliases=(("self", "input"),), category=_QUANT, products=_A3A2_310P,
      summary="Static quantisation to an integer dtype with per-axis scales and zero points."),
    E("npu_scatter_nd_update", "input, indices, updates", aliases=(("self", "input"),),
      category=_INDEX, products=_CLASSIC,
      summary="Writes update slices at N-d indices, returning a new tensor."),
    E("npu_top_k_top_p", "logits, p=None, k=None", category=_SAMPLE,
      products=("950", "A3", "A2"),
      summary="Masks logits outside the per-row top-k and nucleus (top-p) sets."),
    E("npu_scatter_nd_update_", "input, indices, updates", aliases=(("self", "input"),),
      category=_INDEX, products=_CLASSIC,
      summary="Writes update slices at N-d indices in place."),
    # 101-110
    E("npu_trans_quant_param", "scale, offset=None, round_mode=0",
      category=_QUANT, products=_A3A2_310P,
      summary="Packs float32 quantisation scale (and offset) into the int64 form matmuls expect."),
    E("npu_weight_quant_batchmatmul",
      "x, weight, antiquant_scale, antiquant_offset=None, quant_scale=None, quant_offset=None, "
      "bias=None, antiquant_group_size=0, inner_precise=0, weight_dtype=None",
      category=_QUANT, products=_A3A2_310P,
      summary="Matmul of float activations with low-bit weights dequantised on the fly."),
    E("scatter_update", "data, indices, updates, axis", aliases=(("self", "data"),),
      category=_INDEX, products=("A3", "A2", "910"),
      summary="Replaces slices along an axis at given indices, returning a new tensor."),
    E("scatter_update_", "data, indices, updates, axis", aliases=(("self", "data"),),
      category=_INDEX, products=("A3", "A2", "910"),
      summary="Replaces slices along an axis at given indices in place."),
    E("enable_deterministic_with_backward", "tensor", category=_MEM, products=_CLASSIC,
      namespace="npu",
      summary="Turns deterministic mode on for forward and backward; passes tensor through."),
    E("disable_deterministic_with_backward", "tensor", category=_MEM, products=_CLASSIC,
      namespace="npu",
      summary="Turns deterministic mode off for forward and backward; passes tensor through."),
    E("empty_with_swapped_memory", "size, *, dtype=None, device=None",
      category=_MEM, products=_A3A2,
      summary="Allocates an uninitialised tensor backed by host memory mapped for device access."),
    E("erase_stream", "tensor, stream", returns="None", category=_MEM, products=("A2", "910"),
      summary="Removes a stream's record from a tensor so its memory can be reused sooner."),
    E("npu_gather_sparse_index", "input, index", category=_INDEX, products=("950", "A3", "A2"),
      summary="Gathers rows of the input selected by an index tensor of any shape."),
    E("npu_moe_distribute_combine",
      "expand_x, expert_ids, expand_idx, ep_send_counts, expert_scales, group_ep, "
      "ep_world_size, ep_rank_id, moe_expert_num, *, tp_send_counts=None, x_active_mask=None, "
      "activation_scale=None, weight_scale=None, group_list=None, expand_scales=None, "
      "shared_expert_x=None, group_tp='', tp_world_size=0, tp_rank_id=0, expert_shard_type=0, "
      "shared_expert_num=1, shared_expert_rank_num=0, global_bs=0, out_dtype=0, "
      "comm_quant_mode=0, group_list_type=0",
      category=_COMM, products=_A3A2, comm=True,
      summary="Sends expert outputs back to source ranks and sums them per token by weight."),
    # 111-120
    E("npu_moe_distribute_dispatch",
      "x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, *, scales=None, "
      "x_active_mask=None, expert_scales=None, group_tp='', tp_world_size=0, tp_rank_id=0, "
      "expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, quant_mode=0, "
      "global_bs=0, expert_token_nums_type=1",
      returns=_T7, category=_COMM, products=_A3A2, comm=True,
      summary="Optionally quantises tokens and sends each to the ranks of its selected experts."),
    E("npu_moe_distribute_combine_v2",
      "expand_x, expert_ids, assist_info_for_combine, ep_send_counts, expert_scales, group_ep, "
      "ep_world_size, ep_rank_id, moe_expert_num, *, tp_send_counts=None, x_active_mask=None, "
      "expand_scales=None, shared_expert_x=None, elastic_info=None, ori_x=None, "
      "const_expert_alpha_1=None, const_expert_alpha_2=None, const_expert_v=None, "
      "performance_info=None, group_tp='', tp_world_size=0, tp_rank_id=0, expert_shard_type=0, "
      "shared_expert_num=1, shared_expert_rank_num=0, global_bs=0, comm_quant_mode=0, "
      "comm_alg='', zero_expert_num=0, copy_expert_num=0, const_expert_num=0",
      category=_COMM, products=_A3A2, comm=True,
      summary="Version 2 of the MoE combine, with elastic and constant/zero/copy expert support."),
    # the seed's 124th function: its row sits inside the unclosed combine_v2 row (API.md)
    E("npu_moe_distribute_dispatch_v2",
      "x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, *, scales=None, "
      "x_active_mask=None, expert_scales=None, elastic_info=None, performance_info=None, group_tp='', "
      "tp_world_size=0, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, "
      "quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg='', zero_expert_num=0, "
      "copy_expert_num=0, const_expert_num=0, y_dtype=None, x_dtype=None, scales_dtype=None",
      returns=_T7, category=_COMM, products=_A3A2, comm=True,
      summary="Dispatch v2: optionally quantises tokens and sends each to the ranks of its experts "
              "(elastic and zero/copy/const experts)."),
    E("npu_moe_gating_top_k",
      "x, k, *, bias=None, input_ids=None, tid2eid=None, k_group=1, group_count=1, "
      "group_select_mode=0, renorm=0, norm_type=0, out_flag=False, routed_scaling_factor=1.0, "
      "eps=1e-20",
      returns=_T3, category=_MOE, products=_A3A2,
      summary="Group-limited top-k expert selection with sigmoid or softmax scoring."),
    E("npu_moe_init_routing_v2",
      "x, expert_idx, *, scale=None, offset=None, active_num=-1, expert_capacity=-1, "
      "expert_num=-1, drop_pad_mode=0, expert_tokens_num_type=0, expert_tokens_num_flag=False, "
      "quant_mode=-1, active_expert_range=(), row_idx_type=0, x_dtype=None",
      returns=_T4, category=_MOE, products=_A3A2_310P,
      summary="Sorts tokens by expert with capacity/drop control and optional quantisation."),
    E("npu_dequant_swiglu_quant",
      "x, *, weight_scale=None, activation_scale=None, bias=None, quant_scale=None, "
      "quant_offset=None, group_index=None, activate_left=False, quant_mode=0, dst_type=None, "
      "round_mode=None, activate_dim=None, swiglu_mode=0, clamp_limit=7.0, glu_alpha=1.702, "
      "glu_bias=1.0",
      returns=_T2, category=_QUANT, products=_A3A2,
      summary="Fused dequantise, SwiGLU and requantise; returns quantised output and scales."),
    E("npu_kv_rmsnorm_rope_cache",
      "kv, gamma, cos, sin, index, k_cache, ckv_cache, *, k_rope_scale=None, c_kv_scale=None, "
      "k_rope_offset=None, c_kv_offset=None, v=None, epsilon=1e-05, cache_mode='Norm', "
      "is_output_kv=False",
      returns=_T4, category=_NORM, products=_A3A2,
      summary="RMSNorm on the latent part of KV, RoPE on the rest, both written to cache."),
    E("npu_interleave_rope", "x, cos, sin", category=_ELT, products=_A3A2,
      summary="Rotary embedding with interleaved (even/odd pair) rotation."),
    E("npu_moe_re_routing",
      "tokens, expert_token_num_per_rank, *, per_token_scales=None, expert_token_num_type=1, "
      "idx_type=0, tokens_dtype=None",
      returns=_T4, category=_MOE, products=_A3A2,
      summary="Reorders received tokens from rank-major to expert-major order."),
    E("matmul_checksum", "a, b, c", category=_MM, products=("A2", "910"),
      summary="Checks a matmul result against a checksum to flag silent hardware faults."),
    E("npu_alltoallv_gmm",
      "gmm_x, gmm_weight, hcom, ep_world_size, send_counts, recv_counts, *, "
      "send_counts_tensor=None, recv_counts_tensor=None, mm_x=None, mm_weight=None, "
      "trans_gmm_weight=False, trans_mm_weight=False, permute_out_flag=False, comm_mode=None",
      returns=_T3, category=_COMM, products=("A3",), comm=True,
      summary="All-to-all-v of tokens then grouped matmul, plus an optional shared-expert matmul."),
    # 121-123
    E("npu_gmm_alltoallv",
      "gmm_x, gmm_weight, hcom, ep_world_size, send_counts, recv_counts, *, "
      "send_counts_tensor=None, recv_counts_tensor=None, mm_x=None, mm_weight=None, "
      "trans_gmm_weight=False, trans_mm_weight=False, comm_mode=None",
      returns=_T2, category=_COMM, products=("A3",), comm=True,
      summary="Grouped matmul then all-to-all-v of results, plus optional shared-expert matmul."),
    E("npu_moe_distribute_combine_add_rms_norm",
      "expand_x, expert_ids, expand_idx, ep_send_counts, expert_scales, residual_x, gamma, "
      "group_ep, ep_world_size, ep_rank_id, moe_expert_num, *, tp_send_counts=None, "
      "x_active_mask=None, activation_scale=None, weight_scale=None, group_list=None, "
      "expand_scales=None, shared_expert_x=None, elastic_info=None, ori_x=None, "
      "const_expert_alpha_1=None, const_expert_alpha_2=None, const_expert_v=None, "
      "group_tp='', tp_world_size=0, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1, "
      "shared_expert_rank_num=0, global_bs=0, out_dtype=0, comm_quant_mode=0, "
      "group_list_type=0, comm_alg='', norm_eps=1e-06, zero_expert_num=0, copy_expert_num=0, "
      "const_expert_num=0",
      returns=_T3, category=_COMM, products=("A3",), comm=True,
      summary="MoE combine, then residual add and RMSNorm on the combined tokens."),
    E("npu_transpose_batchmatmul",
      "input, weight, *, bias=None, scale=None, perm_x1=None, perm_x2=None, perm_y=None, "
      "batch_split_factor=1",
      category=_MM, products=_A3A2,
      summary="Batched matmul with permutations applied to the inputs and the output."),
    # Not in the seed list, but used alongside npu_format_cast.
    E("get_npu_format", "self", returns="int", category=_MEM, products=_ALL,
      summary="Returns the internal (ACL) storage format code of a tensor."),
)

del E
