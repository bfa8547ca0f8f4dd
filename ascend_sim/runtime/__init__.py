"""The runtime: simulators, devices, streams, events, memory, reports.

Public entry points (fixed names): :class:`Simulator`, :func:`current_simulator`,
:class:`Stream`, :class:`Event`, :class:`Report`, :class:`NPUOutOfMemoryError`.
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
