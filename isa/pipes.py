"""Pipes and on-core storages of an AI Core (HARDWARE.md 2.3).

Each pipe runs its instructions in order; pipes run in parallel and wait on each other only
through flags. Lane names are the ones the vendor's profiling tools use.
"""
from __future__ import annotations

from enum import IntEnum


class Pipe(IntEnum):
    SCALAR = 0   # PIPE_S: address and loop control
    MTE1 = 1     # L1 -> L0A/L0B (LoadData, Load3D), L1 -> BT/FB
    MTE2 = 2     # GM -> L1/UB/L0A/L0B
    MTE3 = 3     # UB -> GM (UB -> L1 where the chip has it)
    CUBE = 4     # PIPE_M: L0A x L0B -> L0C
    VECTOR = 5   # PIPE_V: UB -> UB
    FIXPIPE = 6  # L0C -> GM/L1 with cast, quantisation, activation, NZ2ND

    @property
    def lane(self) -> str:
        return LANE_NAMES[self]


LANE_NAMES = {Pipe.SCALAR: "SCALAR", Pipe.MTE1: "MTE1", Pipe.MTE2: "MTE2", Pipe.MTE3: "MTE3",
              Pipe.CUBE: "CUBE", Pipe.VECTOR: "VECTOR", Pipe.FIXPIPE: "FIXP"}

# Pipes each core type has (split chips); a coupled AI Core has all of them.
AIC_PIPES = (Pipe.SCALAR, Pipe.MTE1, Pipe.MTE2, Pipe.CUBE, Pipe.FIXPIPE)
AIV_PIPES = (Pipe.SCALAR, Pipe.MTE2, Pipe.MTE3, Pipe.VECTOR)


class Buf(IntEnum):
    GM = 0
    L1 = 1
    L0A = 2
    L0B = 3
    L0C = 4
    UB = 5
    BT = 6
    FB = 7

    @property
    def spec_name(self) -> str:
        """Field name in ChipSpec.buffers."""
        return self.name.lower()


# Which storages each core type owns on a split chip (AIC: L1/L0x/BT/FB, AIV: UB).
AIC_BUFFERS = (Buf.L1, Buf.L0A, Buf.L0B, Buf.L0C, Buf.BT, Buf.FB)
AIV_BUFFERS = (Buf.UB,)
