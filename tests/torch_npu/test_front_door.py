"""The front door: every name, its signature, product checks, the not-built list."""
import inspect

import numpy as np
import pytest

from ascend_sim import Simulator, torch_npu
from ascend_sim.torch_npu import API_TABLE

# The functions whose ops are not built yet. This list may only shrink: when an op lands, remove it
# here (the test fails until you do, and fails if anything is added).
NOT_BUILT = {
    'matmul_checksum', 'npu_advance_step_flashattn',
    'npu_alltoallv_gmm', 'npu_anchor_response_flags',
    'npu_batch_nms', 'npu_bert_apply_adam', 'npu_bounding_box_decode',
    'npu_bounding_box_encode', 'npu_broadcast', 'npu_ciou', 'npu_confusion_transpose', 'npu_conv2d',
    'npu_conv3d', 'npu_conv_transpose2d', 'npu_convolution',
    'npu_convolution_transpose', 'npu_cross_entropy_loss', 'npu_deformable_conv2d',
    'npu_dequant_swiglu_quant', 'npu_diou', 'npu_dynamic_quant',
    'npu_dynamic_quant_asymmetric', 'npu_ffn', 'npu_fused_attention_score',
    'npu_gather_sparse_index',
    'npu_giou', 'npu_gmm_alltoallv', 'npu_grid_assign_positive',
    'npu_group_quant', 'npu_gru',
    'npu_indexing', 'npu_iou',
    'npu_kv_rmsnorm_rope_cache', 'npu_lstm', 'npu_max', 'npu_min',
    'npu_mla_prolog', 'npu_mla_prolog_v2',
    'npu_moe_compute_expert_tokens', 'npu_moe_distribute_combine',
    'npu_moe_distribute_combine_add_rms_norm', 'npu_moe_distribute_combine_v2',
    'npu_moe_distribute_dispatch', 'npu_moe_distribute_dispatch_v2', 'npu_moe_finalize_routing', 'npu_moe_gating_top_k',
    'npu_moe_gating_top_k_softmax', 'npu_moe_init_routing', 'npu_moe_init_routing_v2',
    'npu_moe_re_routing', 'npu_multi_head_attention', 'npu_nms_rotated', 'npu_nms_v4',
    'npu_nms_with_mask', 'npu_one_hot', 'npu_pad',
    'npu_ps_roi_pooling', 'npu_ptiou', 'npu_quant_scatter', 'npu_quant_scatter_',
    'npu_quantize', 'npu_reshape', 'npu_roi_align',
    'npu_rotated_iou', 'npu_rotated_overlaps',
    'npu_scatter_nd_update', 'npu_scatter_nd_update_', 'npu_sign_bits_pack', 'npu_sign_bits_unpack',
    'npu_slice', 'npu_softmax_cross_entropy_with_logits', 'npu_sort_v2',
    'npu_top_k_top_p', 'npu_transpose',
    'npu_yolo_boxes_encode', 'scatter_update', 'scatter_update_',
}


def test_the_not_built_list_is_pinned():
    assert set(torch_npu.not_implemented()) == NOT_BUILT


def _fn(entry):
    return getattr(torch_npu.npu, entry.name) if entry.namespace == "npu" else getattr(torch_npu, entry.name)


def test_all_124_names_and_get_npu_format_are_callable():
    names = [e.name for e in API_TABLE]
    assert len(names) == 125 and len(set(names)) == 125
    for e in API_TABLE:
        assert callable(_fn(e)), e.name


@pytest.mark.parametrize("entry", API_TABLE, ids=lambda e: e.name)
def test_signature_is_the_documented_one(entry):
    ns = {}
    exec(f"def f({entry.params}): pass", ns)
    assert inspect.signature(_fn(entry)) == inspect.signature(ns["f"])


@pytest.mark.parametrize("name", sorted(NOT_BUILT))
def test_not_built_ops_raise_naming_themselves(name):
    entry = next(e for e in API_TABLE if e.name == name)
    chip = {"A2": "Ascend910B2", "A3": "Ascend910_9391", "910": "Ascend910A", "310P": "Ascend310P3",
            "950": "Ascend910_95"}[entry.products[0]]
    fn = _fn(entry)
    args = [None] * sum(1 for p in inspect.signature(fn).parameters.values()
                        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD)
    with Simulator(chip):
        with pytest.raises(NotImplementedError, match=name):
            fn(*args)


def test_op_on_a_chip_its_page_does_not_list_is_refused():
    with Simulator("Ascend910A"):     # empty_with_swapped_memory: A3, A2 only
        with pytest.raises(ValueError, match="empty_with_swapped_memory is not supported on Ascend910A"):
            torch_npu.empty_with_swapped_memory((4,))


def test_documented_and_schema_names_are_both_accepted():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = torch_npu.npu_format_cast(input=x, acl_format=2)
    b = torch_npu.npu_format_cast(self=x, acl_format=2)
    assert a.npu_format == b.npu_format == 2
    with pytest.raises(TypeError, match="got both"):
        torch_npu.npu_format_cast(input=x, self=x, acl_format=2)


def test_bad_arguments_bind_errors_name_the_op():
    with pytest.raises(TypeError, match="npu_format_cast"):
        torch_npu.npu_format_cast(np.zeros(3, np.float16))
    with pytest.raises(TypeError, match="npu_format_cast"):
        torch_npu.npu_format_cast(np.zeros(3, np.float16), 2, colour="red")


def test_non_tensor_argument_is_a_clear_type_error():
    with pytest.raises(TypeError, match="npu_format_cast: argument 'input' must be a tensor"):
        torch_npu.npu_format_cast([1, 2, 3], 29)


def test_help_text_carries_the_signature():
    assert "npu_rms_norm(self, gamma, epsilon=1e-06)" in torch_npu.npu_rms_norm.__doc__
