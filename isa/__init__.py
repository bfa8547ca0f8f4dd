"""The AI Core instruction set: pipes, buffers, instructions and their cost on a chip.

Kernels (ops/) are built from these instructions with :class:`ProgramBuilder`; the engine runs the
resulting :class:`KernelPlan`. An instruction's cost is a function of its operands and the
ChipSpec only. Beside the plain instructions: indexed GM row accesses (gather/scatter by an
:class:`IndexList` or a declared :class:`IndexPattern`, isa/indexed.py), the vector sort, merge,
gather, compare and select instructions, and AI CPU tasks as typed work items
(:class:`AICpuWork`, isa/aicpu.py).

Imports: this package may import ``ascend_sim.hw`` and ``ascend_sim.dtypes`` (the bottom of the
import ladder: numpy and ml_dtypes only) and nothing else of the simulator.
"""
from .aicpu import AICpuWork, aicpu_plan
from .indexed import IndexList, IndexPattern, IndexSummary
from .pipes import AIC_PIPES, AIV_PIPES, LANE_NAMES, Buf, Pipe
from .program import (BARRIER, COMPUTE, CORE_TYPES, GM, KIND_NAMES, SET, WAIT, XSET, XWAIT, AccessRecorder, CommStep,
                      GMAccess, ISAError, KernelPlan, Program, ProgramBuilder, WaitComm, class_programs)

__all__ = ["Pipe", "Buf", "LANE_NAMES", "AIC_PIPES", "AIV_PIPES", "Program", "ProgramBuilder", "KernelPlan",
           "GMAccess", "ISAError", "CORE_TYPES", "COMPUTE", "GM", "SET", "WAIT", "BARRIER", "XSET", "XWAIT",
           "KIND_NAMES", "CommStep", "WaitComm", "IndexList", "IndexPattern", "IndexSummary", "AICpuWork",
           "aicpu_plan", "AccessRecorder", "class_programs"]
