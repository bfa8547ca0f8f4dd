"""ascend-sim: a cycle-approximate simulator of Huawei Ascend NPUs.

Kept thin on purpose: importing ``ascend_sim.hw`` must not drag the runtime in, so the heavier
names are handed on lazily.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Simulator": ("ascend_sim.runtime", "Simulator"),
    "current_simulator": ("ascend_sim.runtime", "current_simulator"),
    "NPUTensor": ("ascend_sim.tensor", "NPUTensor"),
    "ChipSpec": ("ascend_sim.hw", "ChipSpec"),
    "get_chip": ("ascend_sim.hw", "get_chip"),
    "list_chips": ("ascend_sim.hw", "list_chips"),
    "Format": ("ascend_sim.formats", "Format"),
    "torch_npu": ("ascend_sim.torch_npu", None),
    "dtypes": ("ascend_sim.dtypes", None),
    "hw": ("ascend_sim.hw", None),
    "formats": ("ascend_sim.formats", None),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ascend_sim' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
