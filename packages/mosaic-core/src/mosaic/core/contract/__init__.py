"""The seams between MOSAIC packages, written as code.

Every name that crosses a package boundary lives here: batch and aux key specs (``keys``), the v0
opcode names (``opcodes``), and the Protocols each seam implements (``protocols``). A package never
spells another package's keys as string literals; it imports the spec from here. Nothing here
imports torch.
"""

from mosaic.core.contract import keys, protocols
from mosaic.core.contract.keys import IGNORE_INDEX, KEY_SPECS, KeySpec
from mosaic.core.contract.opcodes import V0_OPCODE_IDS, V0_OPCODE_NAMES

__all__ = ["IGNORE_INDEX", "KEY_SPECS", "V0_OPCODE_IDS", "V0_OPCODE_NAMES", "KeySpec", "keys", "protocols"]
