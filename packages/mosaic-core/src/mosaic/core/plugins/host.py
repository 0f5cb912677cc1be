"""Discovering, loading and isolating plugins.

The host reads the ``mosaic`` entry-point group once, then loads each plugin on its own: a plugin
that fails to import, implements a hook no spec defines, or raises (or registers a duplicate ID)
while registering is recorded with its error and everything it registered is rolled back; the
others are unaffected. ``MOSAIC_STRICT_PLUGINS=1`` turns any such failure into an error.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

import attrs
import pluggy

from mosaic.core.errors import MosaicError, PluginError
from mosaic.core.plugins import hookspecs
from mosaic.core.registry import Component, Registry, parse_component_id

#: The toolkit's own distributions; ``mosaic plugins list`` hides them unless ``--all``.
BUILTIN_DISTRIBUTIONS = frozenset(
    {"mosaic-core", "mosaic-layers", "mosaic-data", "chronomoe", "mosaic-runtime", "mosaic-cli"}
)
CORE_PLUGIN = "mosaic-core"

LOADED, FAILED, DISABLED = "loaded", "failed", "disabled"


@attrs.define
class PluginRecord:
    """What the host knows about one plugin, whether it loaded or not."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = LOADED
    error: str | None = None
    hooks: list[str] = attrs.Factory(list)
    components: dict[str, list[str]] = attrs.Factory(dict)

    @property
    def builtin(self) -> bool:
        return self.distribution in BUILTIN_DISTRIBUTIONS

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "entry_point": self.module,
            "version": self.version,
            "hooks": list(self.hooks),
            "components": {kind: list(ids) for kind, ids in sorted(self.components.items())},
            "status": self.status,
            "error": self.error,
        }


@attrs.frozen
class PluginSelection:
    """The environment's say on which plugins load (``MOSAIC_LOAD/DISABLE/STRICT/TRACE_PLUGINS``)."""

    load_only: frozenset[str] | None = None
    disabled: frozenset[str] = frozenset()
    strict: bool = False
    trace: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PluginSelection:
        env = os.environ if env is None else env

        def names(var: str) -> frozenset[str] | None:
            if var not in env:
                return None
            return frozenset(part.strip() for part in env[var].split(",") if part.strip())

        return cls(
            load_only=names("MOSAIC_LOAD_PLUGINS"),
            disabled=names("MOSAIC_DISABLE_PLUGINS") or frozenset(),
            strict=_truthy(env.get("MOSAIC_STRICT_PLUGINS", "")),
            trace=_truthy(env.get("MOSAIC_TRACE_PLUGINS", "")),
        )

    def check_names(self, known: set[str]) -> None:
        """Refuse a ``MOSAIC_LOAD_PLUGINS`` / ``MOSAIC_DISABLE_PLUGINS`` entry that names no
        installed plugin or distribution: a typo there would silently disable the built-ins."""
        problems = []
        for variable, names in (("MOSAIC_LOAD_PLUGINS", self.load_only), ("MOSAIC_DISABLE_PLUGINS", self.disabled)):
            for name in sorted(names or ()):
                if name in known:
                    continue
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{variable} names {name!r}, which is no installed plugin or distribution{hint}")
        if problems:
            raise PluginSelectionError(problems, sorted(known))

    def allows(self, name: str, distribution: str) -> bool:
        if name == CORE_PLUGIN:
            return True
        keys = {name, distribution}
        if keys & self.disabled:
            return False
        return self.load_only is None or bool(keys & self.load_only)


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


class PluginHost:
    """Owns the pluggy manager, the plugin records and the registry they fill."""

    def __init__(self, selection: PluginSelection | None = None, *, registry: Registry | None = None) -> None:
        self.selection = selection if selection is not None else PluginSelection.from_env()
        self.registry = registry if registry is not None else Registry()
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self._plugins: dict[str, object] = {}

    # --- discovery ----------------------------------------------------------------------------

    def load_entry_points(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        """Load every plugin of the ``mosaic`` entry-point group: core first, then the toolkit's
        built-ins, then third parties, each group by name. Built-ins load before any third party
        so that a third party's duplicate ID is the one rejected, never the built-in package."""
        found = list(metadata.entry_points(group=hookspecs.PROJECT_NAME) if entry_points is None else entry_points)
        unique: dict[str, tuple[metadata.EntryPoint, str, str]] = {}
        for ep in found:
            dist = getattr(ep, "dist", None)
            distribution = dist.metadata["Name"] if dist is not None else ep.name
            version = dist.version if dist is not None else "0"
            unique.setdefault(ep.name, (ep, distribution, version))
        self.selection.check_names(
            {name for name in unique} | {distribution for _, distribution, _ in unique.values()}
        )

        def load_order(item: tuple[metadata.EntryPoint, str, str]) -> tuple[int, str]:
            ep, distribution, _ = item
            group = 0 if ep.name == CORE_PLUGIN else 1 if distribution in BUILTIN_DISTRIBUTIONS else 2
            return group, ep.name

        for ep, distribution, version in sorted(unique.values(), key=load_order):
            self.load(ep.name, ep.load, distribution=distribution, version=version, module=ep.value)
        self.raise_if_strict()

    # --- loading one plugin -------------------------------------------------------------------

    def load(
        self,
        name: str,
        loader: Callable[[], object],
        *,
        distribution: str | None = None,
        version: str = "0",
        module: str = "",
    ) -> PluginRecord:
        """Import (via ``loader``) and register one plugin in isolation; never raises for the
        plugin's own faults (see :meth:`raise_if_strict`)."""
        record = PluginRecord(name=name, distribution=distribution or name, version=version, module=module)
        self.records.append(record)
        if not self.selection.allows(name, record.distribution):
            record.status = DISABLED
            return record
        try:
            plugin = loader()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._fail(record, f"failed to import: {_describe_exception(exc)}")
            return record
        self._register(record, plugin)
        return record

    def add_plugin(self, plugin: object, name: str, *, distribution: str | None = None, version: str = "0") -> PluginRecord:
        """Register an already-imported plugin object (a module, class or instance)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        return self.load(name, lambda: plugin, distribution=distribution, version=version, module=module)

    def _register(self, record: PluginRecord, plugin: object) -> None:
        try:
            self.manager.register(plugin, name=record.name)
        except Exception as exc:  # noqa: BLE001 - pluggy rejects bad signatures with several types
            self._fail(record, f"invalid hook implementation: {exc}")
            return
        callers = self.manager.get_hookcallers(plugin) or []
        unknown = sorted(caller.name for caller in callers if caller.spec is None)
        if unknown:
            self.manager.unregister(plugin)
            hints = []
            for hook in unknown:
                close = difflib.get_close_matches(hook, _all_hook_names(), n=1)
                hints.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            self._fail(record, f"implements unknown hook {', '.join(hints)}")
            return
        record.hooks = sorted(caller.name for caller in callers)
        self._plugins[record.name] = plugin
        added: list[str] = []
        try:
            for hook_name, kind in hookspecs.REGISTRATION_HOOKS.items():
                for impl in self._impls(plugin, hook_name):
                    register = self._register_callable(record, kind, added)
                    self._trace(f"{record.name}.{hook_name}(register)")
                    impl.function(register)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            for component_id in added:
                self.registry.remove(component_id)
            record.components = {}
            self.manager.unregister(plugin)
            self._plugins.pop(record.name, None)
            self._fail(record, _describe_exception(exc))
            return
        for component_id in added:
            record.components.setdefault(component_id.partition(".")[0], []).append(component_id)
        for ids in record.components.values():
            ids.sort()

    def _impls(self, plugin: object, hook_name: str) -> list[Any]:
        caller = getattr(self.manager.hook, hook_name)
        return [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]

    def _register_callable(self, record: PluginRecord, kind: str, added: list[str]) -> Callable[..., None]:
        def register(
            component_id: str,
            factory: str | Callable[..., Any],
            *,
            summary: str,
            config: str | type | None = None,
        ) -> None:
            id_kind, _ = parse_component_id(component_id)
            if id_kind != kind:
                raise PluginError(
                    record.name,
                    f"{component_id} registered from the {kind} hook; only {kind}.* IDs belong there",
                )
            self.registry.add(
                Component(
                    id=component_id,
                    factory=factory,
                    summary=summary,
                    config=config,
                    provider=record.distribution,
                    provider_version=record.version,
                    plugin=record.name,
                )
            )
            added.append(component_id)
            self._trace(f"  -> {component_id}")

        return register

    def _fail(self, record: PluginRecord, message: str) -> None:
        record.status = FAILED
        record.error = message
        self._trace(f"{record.name}: FAILED: {message}")

    def _trace(self, message: str) -> None:
        if self.selection.trace:
            print(f"[mosaic plugins] {message}", file=sys.stderr)

    # --- after loading ------------------------------------------------------------------------

    @property
    def failures(self) -> list[PluginRecord]:
        return [record for record in self.records if record.status == FAILED]

    def raise_if_strict(self) -> None:
        if self.selection.strict and self.failures:
            raise PluginLoadFailures(self.failures)

    def call_commands(self, cli: Any, on_failure: Callable[[PluginRecord, str], None]) -> None:
        """Call ``register_commands(cli)`` plugin by plugin. A failing one is recorded as failed
        (like a plugin that failed to register) and reported to ``on_failure``, which should
        undo whatever it added to ``cli`` before raising."""
        for record in self.records:
            plugin = self._plugins.get(record.name)
            if plugin is None:
                continue
            for impl in self._impls(plugin, "register_commands"):
                try:
                    self._trace(f"{record.name}.register_commands(cli)")
                    impl.function(cli)
                except Exception as exc:
                    message = f"register_commands failed: {_describe_exception(exc)}"
                    if self.selection.strict:
                        raise PluginError(record.name, message) from exc
                    self._fail(record, message)
                    on_failure(record, message)


class PluginLoadFailures(MosaicError):
    """Raised under ``MOSAIC_STRICT_PLUGINS=1`` when any plugin failed to load."""

    def __init__(self, failures: list[PluginRecord]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} plugin(s) failed to load (MOSAIC_STRICT_PLUGINS=1):"]
        lines += [
            f"  {r.name} ({r.distribution} {r.version}): {r.error} "
            f"(disable it with MOSAIC_DISABLE_PLUGINS={r.name})"
            for r in failures
        ]
        super().__init__("\n".join(lines))


class PluginSelectionError(MosaicError):
    """``MOSAIC_LOAD_PLUGINS`` or ``MOSAIC_DISABLE_PLUGINS`` names something that is not installed."""

    def __init__(self, problems: list[str], known: list[str]) -> None:
        self.problems = problems
        lines = [*problems, f"installed plugins and distributions: {', '.join(known) or '(none)'}"]
        super().__init__("\n".join(lines))


def _describe_exception(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _all_hook_names() -> list[str]:
    return [*hookspecs.REGISTRATION_HOOKS, "register_commands"]


_default_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loading entry points on first use."""
    global _default_host
    if _default_host is None:
        host = PluginHost()
        _default_host = host
        try:
            host.load_entry_points()
        except BaseException:
            _default_host = None
            raise
    return _default_host


def get_registry() -> Registry:
    """The process-wide registry (plugins loaded on first use)."""
    return get_host().registry


def reset_host() -> None:
    """Forget the process-wide host so that the next :func:`get_host` reloads plugins."""
    global _default_host
    _default_host = None
