"""Example workloads built from the torch_npu ops (shape-parametrised)."""
from .llama import PRESETS, LlamaConfig, ModelRun, build_layer_weights, decoder_layer, run_model

__all__ = ["LlamaConfig", "PRESETS", "ModelRun", "build_layer_weights", "decoder_layer", "run_model"]
