"""``opcode.DAMPEN``: an opcode acts only by declaring values for the VM's control channels."""

from __future__ import annotations

from mosaic.layers.isa import ChannelValues, Opcode


def dampen() -> Opcode:
    """Scale the block's whole update by 0.5 wherever the VM selects this opcode."""
    return Opcode("DAMPEN", "halve the block's update for the token", ChannelValues(output_scale=0.5))
