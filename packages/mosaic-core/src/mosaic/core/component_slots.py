"""Config fields that name another registry component: ``ffn: {type: layer.moe, n_experts: 8}``.

Such a field stays a plain mapping in its owner's config (so the resolved preset, and with it every
run's fingerprint, reads exactly as written), but it is declared with :func:`component_field`, which
records the component kind and the fields the owner injects (``d_model``). When a preset is read,
:func:`structure_nested` structures every such mapping through the registry, recursively (a
``layer.moe`` mapping holds a ``router`` mapping), so a mistake three levels down is reported at its
own ``$.targets[0].model.block.ffn.n_experts`` path before anything is built or written.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from mosaic.core.config import structure_config
from mosaic.core.errors import (
    ConfigError,
    ConfigProblem,
    InvalidFieldError,
    MosaicError,
    UnknownComponentError,
)

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

#: key of :class:`ComponentSlot` in an attrs field's metadata
SLOT = "mosaic.component_slot"


@attrs.frozen
class ComponentSlot:
    """A field holding ``{type: <kind>.<name>, ...settings}``; ``injected`` fields come from the owner
    config's attributes of the same name and must not be written in the mapping."""

    kind: str
    injected: tuple[str, ...] = ()

    def __call__(self, _instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise InvalidFieldError(attribute.name, f"must be a mapping with 'type: {self.kind}.<name>', "
                                                    f"got {type(value).__name__}")
        component_id = value.get("type")
        if not isinstance(component_id, str) or not component_id.startswith(f"{self.kind}."):
            raise InvalidFieldError(f"{attribute.name}.type", f"must name a {self.kind}.<name> component, "
                                                              f"got {component_id!r}")
        shadowed = sorted(set(value) & set(self.injected))
        if shadowed:
            raise InvalidFieldError(f"{attribute.name}.{shadowed[0]}",
                                    f"must not be set here: the owner sets {', '.join(shadowed)}")

    def settings(self, owner: Any, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """The component's config mapping: the written settings plus the owner's injected fields."""
        settings = {key: value for key, value in mapping.items() if key != "type"}
        settings.update({name: getattr(owner, name) for name in self.injected})
        return settings


def component_field(kind: str, *, injected: Sequence[str] = (), default: Any = None) -> Any:
    """An attrs field holding an optional component mapping of ``kind`` (see the module docstring).
    A mapping ``default`` is copied per instance."""
    slot = ComponentSlot(kind, tuple(injected))
    if isinstance(default, dict):
        frozen = dict(default)
        return attrs.field(factory=lambda: dict(frozen), validator=slot, metadata={SLOT: slot})
    return attrs.field(default=default, validator=slot, metadata={SLOT: slot})


def slot_of(cls: type, field_name: str) -> ComponentSlot:
    """The :class:`ComponentSlot` declared on ``cls.field_name``."""
    slot: ComponentSlot = attrs.fields_dict(cls)[field_name].metadata[SLOT]
    return slot


@attrs.frozen
class NestedComponent:
    """One component mapping found inside a config: where, which, and its structured config."""

    path: str
    id: str
    config: Any


def structure_nested(config: Any, registry: Registry, *, path: str) -> tuple[list[NestedComponent], list[ConfigProblem]]:
    """Structure every component mapping inside ``config`` (an attrs instance), recursively.

    Returns the components found (outermost first) and every problem, each at its full path.
    """
    found: list[NestedComponent] = []
    problems: list[ConfigProblem] = []
    _walk(config, registry, path, found, problems)
    return found, problems


def _walk(config: Any, registry: Registry, path: str, found: list[NestedComponent],
          problems: list[ConfigProblem]) -> None:
    for field in attrs.fields(type(config)):
        value = getattr(config, field.name)
        slot = field.metadata.get(SLOT)
        if slot is not None and isinstance(value, dict):
            _structure_slot(config, slot, value, registry, f"{path}.{field.name}", found, problems)
        elif attrs.has(type(value)):
            _walk(value, registry, f"{path}.{field.name}", found, problems)


def _structure_slot(owner: Any, slot: ComponentSlot, mapping: dict[str, Any], registry: Registry, path: str,
                    found: list[NestedComponent], problems: list[ConfigProblem]) -> None:
    component_id = mapping["type"]
    try:
        config_cls = registry.get(component_id).load_config_class()
    except UnknownComponentError as exc:
        problems.append(unknown_component_problem(exc, f"{path}.type"))
        return
    except MosaicError as exc:
        problems.append(ConfigProblem(f"{path}.type", str(exc)))
        return
    written = [key for key in mapping if key != "type"]
    if config_cls is None:
        if written:
            problems.append(ConfigProblem(path, f"{component_id} takes no settings, got {', '.join(sorted(written))}"))
        found.append(NestedComponent(path, component_id, None))
        return
    names = [f.name for f in attrs.fields(config_cls)]
    unknown = unknown_key_problems(written, names, path)
    problems.extend(unknown)
    settings = {key: value for key, value in slot.settings(owner, mapping).items() if key in names}
    try:
        nested: Any = structure_config(settings, config_cls, path=path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return
    found.append(NestedComponent(path, component_id, nested))
    _walk(nested, registry, path, found, problems)


def unknown_key_problems(keys: Sequence[Any], allowed: Sequence[str], path: str) -> list[ConfigProblem]:
    """One problem per key of ``keys`` not in ``allowed``, with a did-you-mean when one is close."""
    problems = []
    for key in keys:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), list(allowed), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        problems.append(ConfigProblem(f"{path}.{key}", "unknown key", hint=hint))
    return problems


def unknown_component_problem(exc: UnknownComponentError, path: str) -> ConfigProblem:
    """An unknown ID as a problem at ``path``: what to install, or which IDs are close."""
    if exc.provided_by:
        return ConfigProblem(path, str(exc))
    if exc.suggestions:
        hint = f"did you mean {', '.join(exc.suggestions)}?"
    else:
        hint = f"known: {', '.join(exc.known_ids) or 'none installed'}"
    return ConfigProblem(path, f"unknown component {exc.component_id!r}", hint=hint)
