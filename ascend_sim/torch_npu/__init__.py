"""The front door: the torch_npu custom-operator API under its real names.

Every function of the seed list (123) plus ``get_npu_format`` is here with its documented
signature; the deterministic pair also lives under ``ascend_sim.torch_npu.npu`` as in torch_npu.
Calls run on the current :class:`ascend_sim.Simulator` (``with Simulator(...):``) or, outside any
``with``, on a default Simulator on Ascend910B2. Inputs may be numpy arrays, NPUTensors or torch
tensors (torch in, torch out). A function whose op is not built yet raises NotImplementedError
naming itself; :func:`not_implemented` lists them.

>>> import numpy as np
>>> from ascend_sim import torch_npu
>>> x = np.ones((8, 100, 30), np.float16)
>>> torch_npu.npu_format_cast(x, 29).storage_shape
(8, 2, 112, 16)
"""
from __future__ import annotations

from ..formats import Format
from . import _runtime_api  # noqa: F401  (registers the host functions)
from . import npu
from ._api_table import API_TABLE, ApiEntry
from ._dispatch import API_FUNCTIONS, not_implemented

globals().update({_e.name: API_FUNCTIONS[_e.name] for _e in API_TABLE if not _e.namespace})

__all__ = sorted(e.name for e in API_TABLE if not e.namespace) + ["npu", "Format", "not_implemented",
                                                                    "API_TABLE", "ApiEntry"]
