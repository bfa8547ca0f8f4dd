"""The AI Core instruction set: pipes, buffers, instructions and their cost on a chip.

Kernels (ops/) are built from these instructions with :class:`ProgramBuilder`; the engine runs the
resulting :class:`KernelPlan`. An instruction's cost is a function of its operands and the
ChipSpec only. This package may import ascend_sim.hw (and dtypes) and nothing else of the
simulator.
"""
from .pipes import AIC_PIPES, AIV_PIPES, LANE_NAMES, Buf, Pipe
from .program import (BARRIER, COMPUTE, CORE_TYPES, GM, KIND_NAMES, SET, WAIT, XSET, XWAIT, CommStep, GMAccess,
                      ISAError, KernelPlan, Program, ProgramBuilder, WaitComm)

__all__ = ["Pipe", "Buf", "LANE_NAMES", "AIC_PIPES", "AIV_PIPES", "Program", "ProgramBuilder", "KernelPlan",
           "GMAccess", "ISAError", "CORE_TYPES", "COMPUTE", "GM", "SET", "WAIT", "BARRIER", "XSET", "XWAIT",
           "KIND_NAMES", "CommStep", "WaitComm"]
