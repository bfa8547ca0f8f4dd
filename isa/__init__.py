"""The AI Core instruction set: pipes, buffers, instructions and their cost on a chip.

Kernels (ops/) are built from these instructions; the engine runs them. An instruction's cost
is a function of its operands and the ChipSpec only. This package may import ascend_sim.hw and
nothing else of the simulator.
"""
