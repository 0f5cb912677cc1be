"""The ten v0 opcodes of the MOSAIC VM. An opcode's id is its index; plugin opcodes follow after.

This is the one table: mosaic-layers' ISA, mosaic-data's teacher labels, the runtime's evaluation
and core's list of known provider IDs all derive from it.
"""

from __future__ import annotations

from collections.abc import Mapping

V0_OPCODE_NAMES: tuple[str, ...] = (
    "NOP", "READ_MEM", "WRITE_MEM", "CLEAR_MEM", "IDLE", "GATE_UP", "GATE_DOWN", "SCAN", "COMMIT", "RESPOND",
)

#: name -> id
V0_OPCODE_IDS: Mapping[str, int] = {name: index for index, name in enumerate(V0_OPCODE_NAMES)}
