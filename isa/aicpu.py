"""AI CPU tasks: typed work items instead of a duration.

An op that runs on the AI CPU (control flow, Unique/NonZero/TopK-style irregular work, int64
arithmetic; HARDWARE.md 5) hands the engine a KernelPlan of core type "AI_CPU" whose
``aicpu_work`` lists what the task does: per item a work class of the chip's AI CPU model
(``ChipSpec.aicpu.cycles_per_elem``: "copy", "arith", "compare", "hash", "sort"), an element
count and the bytes it streams. ascend_sim.engine.aicpu turns the items into time with the
chip's parameters; no op writes a duration.
"""
from __future__ import annotations

from dataclasses import dataclass

from ascend_sim.hw import ChipSpec

from .program import ISAError, KernelPlan


@dataclass(frozen=True)
class AICpuWork:
    """One piece of an AI CPU task: ``elems`` elements of work class ``work``, each of
    ``itemsize`` bytes read or written (``nbytes`` overrides the bytes streamed)."""

    work: str
    elems: int
    itemsize: float = 4.0
    nbytes: int | None = None

    @property
    def bytes(self) -> float:
        return float(self.nbytes) if self.nbytes is not None else self.elems * self.itemsize


def aicpu_plan(name: str, chip: ChipSpec, work, *, tensors: tuple[str, ...] = (), tiling=None) -> KernelPlan:
    """An AI_CPU KernelPlan of ``work`` (AICpuWork items), checked against the chip's AI CPU model."""
    work = tuple(work)
    classes = chip.aicpu.cycles_per_elem
    for i, w in enumerate(work):
        if not isinstance(w, AICpuWork):
            raise ISAError(f"{name}: AI CPU work item {i} must be an AICpuWork, got {type(w).__name__}")
        if w.work not in classes:
            raise ISAError(f"{name}: AI CPU work item {i}: unknown work class {w.work!r}; "
                           f"{chip.name} has {', '.join(classes)}")
        if w.elems < 0 or w.bytes < 0:
            raise ISAError(f"{name}: AI CPU work item {i}: negative size ({w.elems} elements, {w.bytes} bytes)")
    return KernelPlan(name, "AI_CPU", [], tensors=tuple(tensors), tiling=tiling, aicpu_work=work)
