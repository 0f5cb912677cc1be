"""The instruction set of the MOSAIC VM, declared without torch.

An opcode does not run code: it declares the value it gives to each *control channel* of a block.
For every token the block mixes, channel by channel, the values of all opcodes weighted by the
opcode probabilities (a straight-through one-hot by default)::

    channel[b, t] = sum_v  p[b, t, v] * value_v(channel)

where ``value_v(channel)`` is what opcode ``v`` declares, or the channel's default when it declares
nothing. Because the probabilities sum to one, an opcode that leaves every channel unset behaves like
NOP. Plugin opcodes extend the VM purely by declaring channel values — no block code changes.

Channels (defaults in brackets):

- ``read`` [0]: gate on memory reads (READ_MEM and SCAN open it).
- ``write`` [0]: gate on memory and register writes (WRITE_MEM opens it).
- ``clear`` [0]: strength with which the routed memory slot is cleared (CLEAR_MEM).
- ``update`` [1]: scale of the block's residual update; IDLE sets it to 0.
- ``fusion`` [1]: the token's gain on the state and memory paths (GATE_UP 2, GATE_DOWN 0.5): it scales
  what the token drives into the state bank (a lasting effect: a token at gain 2 weighs four times
  one at gain 0.5 in every later read of the state) and multiplies the state/memory/register fusion
  gates at the token.
- ``scan`` [0]: mix-in of a summary read across all buckets (SCAN).
- ``commit`` [0]: drive of the commitment head's input (COMMIT); exposed as ``mosaic_commit_signal``,
  which gates the runtime's commitment ledger.
- ``respond`` [0]: response-onset signal exposed as ``mosaic_response_onset`` (RESPOND); the event
  runtime starts emitting where it dominates. IDLE's ``update`` 0 is exposed as
  ``mosaic_idle_signal``; the runtime stays silent where it dominates.
- ``output_scale`` [1]: multiplier on the block's whole update, for opcodes that damp or amplify.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from mosaic.core.contract.opcodes import V0_OPCODE_IDS as CONTRACT_OPCODE_IDS
from mosaic.core.contract.opcodes import V0_OPCODE_NAMES
from mosaic.core.errors import InvalidComponentError

if TYPE_CHECKING:
    from mosaic.core.registry import Registry

_OPCODE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@attrs.frozen
class ChannelValues:
    """The channel values an opcode declares; ``None`` means "the channel's default"."""

    read: float | None = None
    write: float | None = None
    clear: float | None = None
    update: float | None = None
    fusion: float | None = None
    scan: float | None = None
    commit: float | None = None
    respond: float | None = None
    output_scale: float | None = None


#: Value of each channel when an opcode declares nothing for it.
CHANNEL_DEFAULTS = ChannelValues(
    read=0.0, write=0.0, clear=0.0, update=1.0, fusion=1.0, scan=0.0, commit=0.0, respond=0.0,
    output_scale=1.0,
)
CHANNELS: tuple[str, ...] = tuple(field.name for field in attrs.fields(ChannelValues))


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _OPCODE_NAME.fullmatch(value):
        raise InvalidComponentError(f"opcode name {value!r} must be UPPER_SNAKE_CASE")


@attrs.frozen
class Opcode:
    """One VM instruction: its name (the part after ``opcode.``), meaning and channel values."""

    name: str = attrs.field(validator=_check_name)
    meaning: str
    channels: ChannelValues = ChannelValues()

    def value(self, channel: str) -> float:
        declared = getattr(self.channels, channel)
        return getattr(CHANNEL_DEFAULTS, channel) if declared is None else float(declared)


#: What each v0 opcode means and does; names and ids come from the contract's one table.
_V0_SEMANTICS: dict[str, tuple[str, ChannelValues]] = {
    "NOP": ("do nothing special; every channel keeps its default", ChannelValues()),
    "READ_MEM": ("read the associative memory at the routed bucket", ChannelValues(read=1.0)),
    "WRITE_MEM": ("write the current key/value into memory and registers", ChannelValues(write=1.0)),
    "CLEAR_MEM": ("clear the routed memory slot", ChannelValues(clear=1.0)),
    "IDLE": ("suppress this block's update for the token", ChannelValues(update=0.0)),
    "GATE_UP": ("amplify the state and memory paths (x2): the token's drive into the state bank and the "
                "fusion gates", ChannelValues(fusion=2.0)),
    "GATE_DOWN": ("suppress the state and memory paths (x0.5): the token's drive into the state bank and "
                  "the fusion gates", ChannelValues(fusion=0.5)),
    "SCAN": ("read a summary across all memory buckets", ChannelValues(read=1.0, scan=1.0)),
    "COMMIT": ("drive the commitment head's input", ChannelValues(commit=1.0)),
    "RESPOND": ("signal the onset of a response", ChannelValues(respond=1.0)),
}
V0_OPCODES: tuple[Opcode, ...] = tuple(Opcode(name, *_V0_SEMANTICS[name]) for name in V0_OPCODE_NAMES)
V0_OPCODE_IDS: Mapping[str, int] = CONTRACT_OPCODE_IDS


def v0_opcode(name: str) -> Opcode:
    """The v0 opcode called ``name`` (the factory of the built-in ``opcode.*`` components)."""
    return V0_OPCODES[V0_OPCODE_IDS[name]]


def v0_opcode_factories() -> dict[str, functools.partial[Opcode]]:
    return {op.name: functools.partial(v0_opcode, op.name) for op in V0_OPCODES}


def opcode_table(registry: Registry | None = None, *, include_plugins: bool = True) -> tuple[Opcode, ...]:
    """The VM's instruction table: the ten v0 opcodes (ids 0-9), then every other ``opcode.*``
    component of ``registry`` (the process-wide one by default) with ids in semantic-ID order, so
    that installing the same plugins always yields the same ids."""
    table = list(V0_OPCODES)
    if not include_plugins:
        return tuple(table)
    if registry is None:
        from mosaic.core.plugins import get_registry

        registry = get_registry()
    for component_id in registry.ids("opcode"):
        name = component_id.partition(".")[2]
        if name in V0_OPCODE_IDS:
            continue
        opcode = registry.build(component_id)
        if not isinstance(opcode, Opcode):
            raise InvalidComponentError(
                f"{component_id}: its factory returned {type(opcode).__name__}, expected mosaic.layers.isa.Opcode"
            )
        if opcode.name != name:
            raise InvalidComponentError(f"{component_id}: its factory returned opcode {opcode.name!r}")
        table.append(opcode)
    return tuple(table)


def channel_matrix(opcodes: tuple[Opcode, ...]) -> list[list[float]]:
    """``[opcode][channel]`` values, channels in :data:`CHANNELS` order."""
    return [[opcode.value(channel) for channel in CHANNELS] for opcode in opcodes]
