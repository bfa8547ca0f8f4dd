"""The timing engine (SimPy): devices, AI Cores and their pipes, L2, HBM, launch, streams.

The engine runs KernelPlans (data from ops/, built from isa/ instructions); it never imports ops
or the runtime. See :mod:`ascend_sim.engine.engine` and :mod:`ascend_sim.engine.memory`.
"""
from .engine import DeadlockError, Engine, OpStats
from .memory import FluidNetwork, L2Cache

__all__ = ["Engine", "DeadlockError", "OpStats", "L2Cache", "FluidNetwork"]
