"""mosaic-layers' plugin: the v0 opcodes (and the block and models) registered through the same
``mosaic`` entry point a third party uses."""

from __future__ import annotations

from typing import Any

from mosaic.core.plugins import hookimpl
from mosaic.layers.isa import V0_OPCODES, v0_opcode_factories


@hookimpl
def register_opcodes(register: Any) -> None:
    factories = v0_opcode_factories()
    for opcode in V0_OPCODES:
        register(f"opcode.{opcode.name}", factories[opcode.name], summary=opcode.meaning)
