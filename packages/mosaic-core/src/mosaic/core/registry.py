"""The registry of components by semantic ID (``<kind>.<name>``).

A component records *how* to build something, not the thing itself: its factory and config class
may be import-path strings, resolved only when the component is built or shown, so that populating
and listing the registry never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import attrs

from mosaic.core.contract.opcodes import V0_OPCODE_NAMES
from mosaic.core.errors import (
    DuplicateComponentError,
    InvalidComponentError,
    UnknownComponentError,
)
from mosaic.core.plugins.hookspecs import COMPONENT_KINDS

COMPONENT_ID = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")

#: IDs shipped by the toolkit's own packages: an unknown ID found here tells the user what to install.
#: It has to be data (the package that would provide an ID may be the one not installed); the
#: integration test ``test_contract_registry`` derives it from the real registry and fails on drift.
KNOWN_PROVIDERS: Mapping[str, str] = {
    **dict.fromkeys(
        ["drive.memory_pressure", "drive.output_confidence", "drive.routing_entropy", "drive.commitment_balance"],
        "mosaic-core",
    ),
    **dict.fromkeys(
        [
            "model.mosaic_lm",
            "model.transformer_baseline",
            "model.delta_baseline",
            "layer.mosaic_block",
            "memory.hashed",
            "memory.off",
            *(f"opcode.{name}" for name in V0_OPCODE_NAMES),
        ],
        "mosaic-layers",
    ),
    **dict.fromkeys(
        [
            "dataset.mosaic_memory_curriculum",
            "dataset.mosaic_control_curriculum",
            "dataset.mosaic_event_traces",
            "dataset.tool_building",
            "dataset.mqar",
            "dataset.text",
            "curriculum.teacher_forcing_decay",
            "curriculum.difficulty_ramp",
        ],
        "mosaic-data",
    ),
    **dict.fromkeys(
        ["layer.moe", "layer.chrono_lifecycle", "router.topk", "router.chrono", "router.loss_free"],
        "chronomoe",
    ),
    **dict.fromkeys(
        [
            "objective.mosaic_event_prediction",
            "objective.mosaic_next_token_aux",
            "tool_builder.python",
            "tool_builder.mcp",
            "logger.jsonl",
            "logger.csv",
            "logger.tensorboard",
            *(
                f"preset.{name}"
                for name in (
                    "mosaic_vm", "mosaic_gates", "mosaic_event_native", "mosaic_idle", "mosaic_commitment",
                    "mosaic_memory_curriculum", "mosaic_tools", "mqar_mosaic", "mqar_transformer", "phase8_moe",
                )
            ),
            "preset.mqar_delta_64_4",
            *(
                f"preset.mqar_{model}_{point}"
                for model in ("mosaic", "transformer", "delta")
                for point in ("128_8", "256_16", "512_64")
            ),
        ],
        "mosaic-runtime",
    ),
}


def parse_component_id(component_id: str) -> tuple[str, str]:
    """Split ``kind.name`` or raise :class:`InvalidComponentError`."""
    match = COMPONENT_ID.fullmatch(component_id) if isinstance(component_id, str) else None
    if match is None:
        raise InvalidComponentError(
            f"{component_id!r} is not a semantic ID of the form <kind>.<name> "
            "(kind lowercase, name a Python identifier)"
        )
    return match["kind"], match["name"]


def resolve_import_path(path: str) -> Any:
    """Import ``package.module:attribute`` (attribute may be dotted)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidComponentError(f"{path!r} is not an import path of the form 'module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InvalidComponentError(f"{path!r}: {module_name} has no attribute {attribute!r}") from None
    return obj


@attrs.frozen
class Component:
    """One registered component. ``factory`` and ``config`` may be import-path strings."""

    id: str
    factory: str | Callable[..., Any] = attrs.field(repr=False)
    summary: str
    config: str | type | None = attrs.field(default=None, repr=False)
    provider: str = "unknown"
    provider_version: str = "0"
    plugin: str = "unknown"

    @property
    def kind(self) -> str:
        return self.id.partition(".")[0]

    @property
    def name(self) -> str:
        return self.id.partition(".")[2]

    def load_factory(self) -> Callable[..., Any]:
        factory = self._resolve("factory", self.factory) if isinstance(self.factory, str) else self.factory
        if not callable(factory):
            raise InvalidComponentError(f"{self.id}: factory {self.factory!r} is not callable")
        return factory

    def load_config_class(self) -> type | None:
        config = self._resolve("config", self.config) if isinstance(self.config, str) else self.config
        if config is not None and not (isinstance(config, type) and attrs.has(config)):
            raise InvalidComponentError(f"{self.id}: config {self.config!r} is not an attrs class")
        return config

    def _resolve(self, role: str, path: str) -> Any:
        """Import this component's ``factory`` or ``config`` path; the plugin's module may fail to import in
        any way (a missing dependency, a bug at its top level): that is this component's error, named."""
        try:
            return resolve_import_path(path)
        except InvalidComponentError as exc:
            raise InvalidComponentError(f"{self.id} (plugin {self.plugin}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - importing a plugin's module runs its code
            raise InvalidComponentError(f"{self.id} (plugin {self.plugin}): its {role} {path!r} cannot be imported "
                                        f"({type(exc).__name__}: {exc})") from None


class Registry:
    """Components by semantic ID. The plugin manager fills it; everything else looks things up."""

    def __init__(self) -> None:
        self._components: dict[str, Component] = {}

    # --- registration -------------------------------------------------------------------------

    def add(self, component: Component) -> None:
        kind, _ = parse_component_id(component.id)
        if kind not in COMPONENT_KINDS:
            raise InvalidComponentError(
                f"{component.id}: unknown component kind {kind!r} (kinds: {', '.join(COMPONENT_KINDS)})"
            )
        if not isinstance(component.summary, str) or not component.summary.strip():
            raise InvalidComponentError(f"{component.id}: a one-line summary is required")
        if "\n" in component.summary.strip():
            raise InvalidComponentError(f"{component.id}: the summary must be one line")
        if not (isinstance(component.factory, str) or callable(component.factory)):
            raise InvalidComponentError(f"{component.id}: factory must be callable or 'module:attr'")
        if isinstance(component.factory, str):
            _check_import_path(component.id, "factory", component.factory)
        if isinstance(component.config, str):
            _check_import_path(component.id, "config", component.config)
        elif component.config is not None and not (
            isinstance(component.config, type) and attrs.has(component.config)
        ):
            raise InvalidComponentError(f"{component.id}: config must be an attrs class or 'module:Class'")
        existing = self._components.get(component.id)
        if existing is not None:
            raise DuplicateComponentError(
                component.id,
                f"{existing.provider} {existing.provider_version}",
                f"{component.provider} {component.provider_version}",
            )
        self._components[component.id] = component

    def remove(self, component_id: str) -> None:
        self._components.pop(component_id, None)

    # --- lookup -------------------------------------------------------------------------------

    def __contains__(self, component_id: object) -> bool:
        return component_id in self._components

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._components.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._components)

    def ids(self, kind: str | None = None) -> list[str]:
        return [c.id for c in self if kind is None or c.kind == kind]

    def get(self, component_id: str) -> Component:
        component = self._components.get(component_id)
        if component is not None:
            return component
        kind = component_id.partition(".")[0] if isinstance(component_id, str) else ""
        same_kind = self.ids(kind) if kind in COMPONENT_KINDS else []
        if same_kind:
            # Compare names only: a shared "kind." prefix makes every ID of the kind look close.
            by_name = {c.partition(".")[2]: c for c in same_kind}
            name = str(component_id).partition(".")[2]
            suggestions = [by_name[n] for n in difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)]
        elif kind in COMPONENT_KINDS:
            suggestions = []  # nothing of this kind is installed; other kinds' IDs would mislead
        else:
            suggestions = difflib.get_close_matches(str(component_id), self.ids(), n=3, cutoff=0.6)
        provided_by = KNOWN_PROVIDERS.get(component_id)
        raise UnknownComponentError(
            str(component_id),
            suggestions=suggestions,
            known_ids=same_kind,
            provided_by=provided_by,
            provider_installed=provided_by is not None and _is_installed(provided_by),
        )

    # --- building -----------------------------------------------------------------------------

    def make_config(self, component_id: str, config: Mapping[str, Any] | None = None, *, path: str = "$") -> Any:
        """Structure ``config`` into the component's config class (``None`` if it takes none)."""
        component = self.get(component_id)
        config_cls = component.load_config_class()
        if config_cls is None:
            if config:
                raise InvalidComponentError(f"{component_id} takes no configuration, got {sorted(config)}")
            return None
        from mosaic.core.config import structure_config  # cattrs is only needed when building

        return structure_config(config or {}, config_cls, path=path)

    def build(self, component_id: str, config: Mapping[str, Any] | Any = None, *, path: str = "$") -> Any:
        """Build a component: structure ``config`` (a mapping, or an instance of its config class)
        and call the factory with it."""
        component = self.get(component_id)
        config_cls = component.load_config_class()
        if config_cls is not None and isinstance(config, config_cls):
            structured = config
        else:
            structured = self.make_config(component_id, config, path=path)
        factory = component.load_factory()
        # a factory that builds further components (a model's ffn, an MoE layer's router) declares a
        # keyword ``registry`` and gets this one, instead of reaching for the process-wide registry
        extra = {"registry": self} if _takes_registry(factory) else {}
        return factory(**extra) if config_cls is None else factory(structured, **extra)


def _takes_registry(factory: Callable[..., Any]) -> bool:
    try:
        parameter = inspect.signature(factory).parameters.get("registry")
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return parameter is not None and parameter.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                         inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _is_installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _check_import_path(component_id: str, what: str, path: str) -> None:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidComponentError(f"{component_id}: {what} {path!r} is not of the form 'module:attribute'")
