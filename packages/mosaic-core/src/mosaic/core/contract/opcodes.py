"""The ten v0 opcodes of the MOSAIC VM. An opcode's id is its index; plugin opcodes follow after."""

from __future__ import annotations

V0_OPCODE_NAMES: tuple[str, ...] = (
    "NOP", "READ_MEM", "WRITE_MEM", "CLEAR_MEM", "IDLE", "GATE_UP", "GATE_DOWN", "SCAN", "COMMIT", "RESPOND",
)
