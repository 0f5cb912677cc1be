"""The plugin author kit: pytest fixtures and a contract check for MOSAIC plugins.

mosaic-core registers this module as a pytest plugin (entry point ``pytest11``), so in any test
suite with mosaic-core installed these fixtures are available without imports:

- ``mosaic_host``: a fresh, empty :class:`~mosaic.core.plugins.PluginHost` (no entry points read,
  environment ignored) — load the plugins you want into it.
- ``mosaic_registry``: the registry of ``mosaic_host``.
- ``use_plugin``: ``use_plugin(obj, name="my-plugin")`` registers a plugin object (module, class
  or instance with ``@hookimpl`` functions) into ``mosaic_host`` for one test and fails the test
  if the plugin did not load.

``check_plugin(module_or_object)`` returns the list of contract violations of a plugin (empty
when it is fine): hooks that match no spec, ill-formed IDs, IDs registered from the wrong hook,
config classes that are not attrs classes, factories that cannot be imported. ``assert_plugin_ok``
fails with all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mosaic.core.plugins.host import LOADED, PluginHost, PluginRecord, PluginSelection
from mosaic.core.registry import Registry


def isolated_host() -> PluginHost:
    """A host that ignores the environment and the installed entry points."""
    return PluginHost(PluginSelection())


def check_plugin(plugin: object, name: str = "plugin-under-test") -> list[str]:
    """Every contract violation of ``plugin``; an empty list means it passes."""
    host = isolated_host()
    record = host.add_plugin(plugin, name)
    problems: list[str] = []
    if record.status != LOADED:
        problems.append(record.error or f"status {record.status}")
        return problems
    if not record.hooks:
        problems.append("implements no MOSAIC hook")
    for component in host.registry:
        try:
            component.load_factory()
        except Exception as exc:  # noqa: BLE001 - any import failure is a contract violation
            problems.append(f"{component.id}: factory {component.factory!r} cannot be loaded: {exc}")
        try:
            component.load_config_class()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{component.id}: config {component.config!r} cannot be loaded: {exc}")
    return problems


def assert_plugin_ok(plugin: object, name: str = "plugin-under-test") -> None:
    """Fail with every contract violation of ``plugin``."""
    problems = check_plugin(plugin, name)
    if problems:
        pytest.fail("plugin contract violated:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def mosaic_host() -> Iterator[PluginHost]:
    yield isolated_host()


@pytest.fixture
def mosaic_registry(mosaic_host: PluginHost) -> Registry:
    return mosaic_host.registry


@pytest.fixture
def use_plugin(mosaic_host: PluginHost) -> Callable[..., PluginRecord]:
    def register(plugin: object, name: str = "plugin-under-test", *, distribution: str | None = None) -> PluginRecord:
        record = mosaic_host.add_plugin(plugin, name, distribution=distribution)
        if record.status != LOADED:
            pytest.fail(f"plugin {name!r} did not load: {record.error}", pytrace=False)
        return record

    return register
