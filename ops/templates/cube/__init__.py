"""The cube template, layered as CATLASS layers its GEMMs:

* kernel (:mod:`.kernel`): a block scheduler deals output tiles to the cube cores (swizzled walk
  for one GEMM, :class:`GroupedScheduler` for grouped / MoE matmuls);
* block (:mod:`.block`): one core's K loop with its L1 / L0 / L0C buffers, ping-pong and flags;
* tile (:mod:`.tile`): the copies GM -> L1 (ND2NZ), L1 -> L0A / L0B, MMAD and FIXPIPE -- a
  :class:`TileCopy` object, so a convolution swaps in a load3d (img2col) copy and a MIX kernel a
  copy that waits for its vector cores;
* operands carry layouts (:mod:`.layout`): base offset, leading dimension, batch placement and
  format, so a sub-view is addressed directly.

Variants are parameters of one template. :mod:`ascend_sim.ops.templates.matmul` is the
single-GEMM front (MatmulProblem, matmul_plan, split-K).
"""
from .block import BlockMmad, Gemm
from .kernel import GroupedScheduler, SwizzleScheduler, cube_kernel, swizzled, tile_order
from .layout import Layout, Operand
from .tile import CrossCoreWaitCopy, TileCopy
from .tiling import MatmulTiling, check_tiling, choose_tiling, fits

__all__ = ["BlockMmad", "Gemm", "GroupedScheduler", "SwizzleScheduler", "cube_kernel", "swizzled", "tile_order",
           "Layout", "Operand", "CrossCoreWaitCopy", "TileCopy", "MatmulTiling", "check_tiling", "choose_tiling",
           "fits"]
