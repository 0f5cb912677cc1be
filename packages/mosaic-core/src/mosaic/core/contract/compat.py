"""What the components of one experiment promise each other: provides/requires sets.

A model, a dataset and an objective are chosen independently in a preset, yet they must agree: the
model's embedding must cover every token the data emits, the memory the dataset computes teacher
buckets for must be the model's memory, an objective weight can only train a head the model has.
Each component's config declares these facts itself, in this vocabulary:

- ``provides() -> Iterable[Provided]``: a :class:`Capability` and its value (``VOCAB_SIZE`` 512);
- ``requires() -> Iterable[Required]``: a capability some *other* component of the experiment must
  provide, a :class:`Relation` between this component's value and the provided one, the field to
  report and why.

:func:`check_compatibility` matches them and returns one problem per broken requirement, at the
requiring field's ``$.path``. A requirement nobody provides a value for is not checked: a plugin
component that declares nothing constrains nothing. Configs need not import this module to be
checked; those that declare requirements do (it is torch-free and cheap).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from mosaic.core.errors import ConfigProblem


class Capability(enum.Enum):
    """What a component can provide to the others of its experiment."""

    #: int: token ids a dataset emits lie in ``[0, VOCAB_SIZE)``
    VOCAB_SIZE = "vocab_size"
    #: int: the longest sample, in tokens, a dataset produces
    SAMPLE_LENGTH = "sample_length"
    #: int: buckets per hash of the model's hashed memory
    MEMORY_BUCKETS = "memory_buckets"
    #: int: hashes (independent bucket choices) of the model's hashed memory
    MEMORY_HASHES = "memory_hashes"
    #: frozenset[Head]: the auxiliary heads a model computes
    HEADS = "heads"


class Head(enum.Enum):
    """Auxiliary heads of a model, as objective terms require them."""

    MEMORY = "memory"  # write gate, read/write bucket bits, write utility
    OPCODES = "opcodes"
    COMMITMENT = "commitment"
    REGISTERS = "registers"
    STATE_BANK = "state_bank"  # the decay regulariser of the state bank


class Relation(enum.Enum):
    """How the requiring component's value must relate to the provided one."""

    EQUALS = "=="
    AT_LEAST = ">="
    AT_MOST = "<="
    SUBSET = "within"  # every item of the required set is in the provided set

    def holds(self, required: Any, provided: Any) -> bool:
        if self is Relation.EQUALS:
            return bool(required == provided)
        if self is Relation.AT_LEAST:
            return bool(required >= provided)
        if self is Relation.AT_MOST:
            return bool(required <= provided)
        return set(required) <= set(provided)


@attrs.frozen
class Provided:
    """``capability`` has ``value``, set by this component's ``field``."""

    capability: Capability
    value: Any
    field: str


@attrs.frozen
class Required:
    """This component's ``field`` (holding ``value``) must stand in ``relation`` to what another
    component provides for ``capability``; ``reason`` says why, in the report."""

    capability: Capability
    relation: Relation
    value: Any
    field: str
    reason: str


@runtime_checkable
class DeclaresCompatibility(Protocol):
    """A component config that states what it provides and requires."""

    def provides(self) -> Iterable[Provided]: ...

    def requires(self) -> Iterable[Required]: ...


def _describe(value: Any) -> str:
    if isinstance(value, (set, frozenset)):
        names = sorted(item.value if isinstance(item, enum.Enum) else str(item) for item in value)
        return "{" + ", ".join(names) + "}"
    return repr(value)


def check_compatibility(components: Mapping[str, Any]) -> list[ConfigProblem]:
    """Problems between the configs of one experiment, keyed by their ``$.path``
    (``{"$.targets[0].model": MosaicLMConfig(...), ...}``)."""
    provided: dict[Capability, list[tuple[str, Provided]]] = {}
    for path, config in components.items():
        for offer in getattr(config, "provides", lambda: ())():
            provided.setdefault(offer.capability, []).append((path, offer))
    problems = []
    reported: set[tuple[str, str]] = set()
    for path, config in components.items():
        for need in getattr(config, "requires", lambda: ())():
            for source, offer in provided.get(need.capability, ()):
                if source == path or need.relation.holds(need.value, offer.value):
                    continue
                where = f"{source}.{offer.field}" if offer.field else source
                if need.relation is Relation.SUBSET:
                    message = f"{need.reason}: missing {_describe(set(need.value) - set(offer.value))}"
                else:
                    message = (f"must be {need.relation.value} {_describe(offer.value)} ({need.reason}), "
                               f"got {_describe(need.value)}")
                # the eval split of a dataset provides the same values: one report per mismatch
                if (f"{path}.{need.field}", message) in reported:
                    continue
                reported.add((f"{path}.{need.field}", message))
                problems.append(ConfigProblem(
                    f"{path}.{need.field}", message,
                    hint=f"{where} provides {need.capability.value} {_describe(offer.value)}",
                ))
    return problems
