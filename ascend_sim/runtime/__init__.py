"""The runtime: simulators, devices, streams, events, memory, reports.

Public entry points (fixed names): :class:`Simulator`, :func:`current_simulator`,
:class:`Stream`, :class:`Event`, :class:`Report`, :class:`NPUOutOfMemoryError`.

:mod:`ascend_sim.runtime.collective` is the one service that meets a group and queues its
collectives (``meet``, ``queue``), for ``ascend_sim.distributed`` and the fused ops alike.
"""
from .device import Device
from .memory import CachingAllocator, NPUOutOfMemoryError
from .report import Report
from .simulator import MODES, Simulator, current_simulator, reset_default_simulator
from .stream import Event, Stream, Task
from .world import CollectiveMismatchError, ProcessGroup, World

__all__ = ["Simulator", "current_simulator", "reset_default_simulator", "Device", "Stream", "Event", "Task",
           "Report", "CachingAllocator", "NPUOutOfMemoryError", "MODES", "World", "ProcessGroup",
           "CollectiveMismatchError"]
