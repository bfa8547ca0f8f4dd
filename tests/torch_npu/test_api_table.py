"""Checks on the torch_npu API table (ascend_sim/torch_npu/_api_table.py)."""
import html
import inspect
import re
from pathlib import Path

import pytest

from ascend_sim.torch_npu._api_table import API_TABLE, PRODUCTS, ApiEntry

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_FILE = REPO_ROOT.parent / "shared" / "seed" / "000_d2e8f5ac54b56a3b.txt"

# The 124 APIs of the seed list, sorted. Names only: the two deterministic APIs are
# torch_npu.npu.<name>.
SEED_API_NAMES = [
    '_npu_dropout', 'copy_memory_', 'disable_deterministic_with_backward', 'empty_with_format',
    'empty_with_swapped_memory', 'enable_deterministic_with_backward', 'erase_stream',
    'fast_gelu', 'matmul_checksum', 'npu_advance_step_flashattn', 'npu_all_gather_base_mm',
    'npu_alloc_float_status', 'npu_alltoallv_gmm', 'npu_anchor_response_flags',
    'npu_anti_quant', 'npu_apply_adam', 'npu_batch_nms', 'npu_bert_apply_adam', 'npu_bmmV2',
    'npu_bounding_box_decode', 'npu_bounding_box_encode', 'npu_broadcast', 'npu_ciou',
    'npu_clear_float_status', 'npu_confusion_transpose', 'npu_conv2d', 'npu_conv3d',
    'npu_conv_transpose2d', 'npu_convert_weight_to_int4pack', 'npu_convolution',
    'npu_convolution_transpose', 'npu_cross_entropy_loss', 'npu_deformable_conv2d',
    'npu_dequant_swiglu_quant', 'npu_diou', 'npu_dropout_with_add_softmax', 'npu_dtype_cast',
    'npu_dynamic_quant', 'npu_dynamic_quant_asymmetric', 'npu_fast_gelu', 'npu_ffn',
    'npu_format_cast', 'npu_format_cast_', 'npu_fused_attention_score',
    'npu_fused_infer_attention_score', 'npu_fusion_attention', 'npu_gather_sparse_index',
    'npu_gelu', 'npu_get_float_status', 'npu_giou', 'npu_gmm_alltoallv',
    'npu_grid_assign_positive', 'npu_group_norm_silu', 'npu_group_norm_swish',
    'npu_group_quant', 'npu_grouped_matmul', 'npu_gru', 'npu_incre_flash_attention',
    'npu_indexing', 'npu_interleave_rope', 'npu_iou', 'npu_kv_rmsnorm_rope_cache',
    'npu_layer_norm_eval', 'npu_linear', 'npu_lstm', 'npu_max', 'npu_min', 'npu_mish',
    'npu_mla_prolog', 'npu_mla_prolog_v2', 'npu_mm_all_reduce_base',
    'npu_mm_reduce_scatter_base', 'npu_moe_compute_expert_tokens', 'npu_moe_distribute_combine',
    'npu_moe_distribute_combine_add_rms_norm', 'npu_moe_distribute_combine_v2',
    'npu_moe_distribute_dispatch', 'npu_moe_distribute_dispatch_v2', 'npu_moe_finalize_routing', 'npu_moe_gating_top_k',
    'npu_moe_gating_top_k_softmax', 'npu_moe_init_routing', 'npu_moe_init_routing_v2',
    'npu_moe_re_routing', 'npu_multi_head_attention', 'npu_nms_rotated', 'npu_nms_v4',
    'npu_nms_with_mask', 'npu_one_hot', 'npu_pad', 'npu_prefetch', 'npu_prompt_flash_attention',
    'npu_ps_roi_pooling', 'npu_ptiou', 'npu_quant_matmul', 'npu_quant_scatter',
    'npu_quant_scatter_', 'npu_quantize', 'npu_random_choice_with_mask', 'npu_reshape',
    'npu_rms_norm', 'npu_roi_align', 'npu_rotary_mul', 'npu_rotated_iou',
    'npu_rotated_overlaps', 'npu_scaled_masked_softmax', 'npu_scatter_nd_update',
    'npu_scatter_nd_update_', 'npu_sign_bits_pack', 'npu_sign_bits_unpack', 'npu_silu',
    'npu_slice', 'npu_softmax_cross_entropy_with_logits', 'npu_sort_v2', 'npu_swiglu',
    'npu_top_k_top_p', 'npu_trans_quant_param', 'npu_transpose', 'npu_transpose_batchmatmul',
    'npu_weight_quant_batchmatmul', 'npu_yolo_boxes_encode', 'one_', 'scatter_update',
    'scatter_update_',
]

# The seed's HTML leaves the npu_moe_distribute_combine_v2 row unclosed, and the row for
# npu_moe_distribute_dispatch_v2 follows inside it: a parser that reads one API per <tr>...</tr>
# sees 123 APIs, one that reads the first-column cells sees all 124 (API.md: it is part of the API).

COMM_OPS = {
    "npu_all_gather_base_mm", "npu_mm_all_reduce_base", "npu_mm_reduce_scatter_base",
    "npu_moe_distribute_dispatch", "npu_moe_distribute_combine", "npu_moe_distribute_combine_v2",
    "npu_moe_distribute_combine_add_rms_norm", "npu_alltoallv_gmm", "npu_gmm_alltoallv",
    "npu_moe_distribute_dispatch_v2",
}


def signature_of(entry: ApiEntry) -> inspect.Signature:
    namespace: dict = {}
    exec(f"def f({entry.params}): pass", namespace)
    return inspect.signature(namespace["f"])


def seed_api_links(text: str) -> list:
    """Names linked from the first column of the seed table, in order, e.g. 'npu.erase_stream'."""
    cells = re.findall(r'<td[^>]*headers="mcps1\.2\.3\.1\.1 "[^>]*>(.*?)</td>', text, re.S)
    names = []
    for cell in cells:
        link = re.search(r"<a href=[^>]*>(.*?)</a>", cell, re.S)
        label = html.unescape(link.group(1)).strip()
        names.append(label.split("torch_npu.", 1)[1])
    return names


def is_immutable(value) -> bool:
    if isinstance(value, tuple):
        return all(is_immutable(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def test_entry_count_and_order():
    assert len(API_TABLE) == 125
    names = [e.name for e in API_TABLE]
    assert len(set(names)) == 125
    assert sorted(names[:124]) == SEED_API_NAMES
    assert len(SEED_API_NAMES) == 124 == len(set(SEED_API_NAMES))
    last = API_TABLE[-1]
    assert (last.name, last.params, last.products) == ("get_npu_format", "self", PRODUCTS)
    assert last.category == "memory/format/runtime"


@pytest.mark.skipif(not SEED_FILE.exists(), reason=f"seed file not found at {SEED_FILE}")
def test_names_match_seed_file():
    links = seed_api_links(SEED_FILE.read_text(encoding="utf-8"))
    assert len(links) == len(set(links))
    assert sorted(n.split(".")[-1] for n in links) == SEED_API_NAMES
    assert links == [e.qualname for e in API_TABLE[:124]]


def test_namespaces():
    in_npu = {e.name for e in API_TABLE if e.namespace == "npu"}
    assert in_npu == {"enable_deterministic_with_backward", "disable_deterministic_with_backward"}
    assert {e.namespace for e in API_TABLE} == {"", "npu"}


@pytest.mark.parametrize("entry", API_TABLE, ids=lambda e: e.name)
def test_params_compile(entry):
    signature_of(entry)


@pytest.mark.parametrize("entry", API_TABLE, ids=lambda e: e.name)
def test_defaults_are_immutable(entry):
    for p in signature_of(entry).parameters.values():
        if p.default is not inspect.Parameter.empty:
            assert is_immutable(p.default), (entry.name, p.name, p.default)


@pytest.mark.parametrize("entry", API_TABLE, ids=lambda e: e.name)
def test_aliases(entry):
    params = set(signature_of(entry).parameters)
    others = [other for other, _ in entry.aliases]
    assert len(others) == len(set(others))
    for other, canonical in entry.aliases:
        assert canonical in params, (entry.name, canonical)
        assert other not in params, (entry.name, other)


@pytest.mark.parametrize("entry", API_TABLE, ids=lambda e: e.name)
def test_metadata(entry):
    assert entry.products and set(entry.products) <= set(PRODUCTS)
    assert len(entry.products) == len(set(entry.products))
    assert entry.category and entry.returns
    assert entry.summary and "\n" not in entry.summary


def test_comm_ops():
    assert {e.name for e in API_TABLE if e.comm} == COMM_OPS
    assert all(e.category == "comm-fused (HCCL)" for e in API_TABLE if e.comm)


def test_some_merged_signatures():
    by_name = {e.name: e for e in API_TABLE}
    # Documented name canonical, schema name accepted as an alias.
    assert dict(by_name["npu_ciou"].aliases) == {"self": "boxes1", "gtboxes": "boxes2"}
    # empty_with_format takes its documented arguments positionally.
    sig = signature_of(by_name["empty_with_format"])
    sig.bind([2, 3], None, None, None, False, 29)
    # Schema-only parameters are present, keyword-only where the schema says so.
    params = signature_of(by_name["npu_moe_init_routing_v2"]).parameters
    assert params["active_expert_range"].default == ()
    assert params["active_expert_range"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "out" in signature_of(by_name["npu_apply_adam"]).parameters
