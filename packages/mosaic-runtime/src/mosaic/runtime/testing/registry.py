"""A registry holding only the plugins a test names, loaded the way the real host loads installed
ones, so tests never depend on what else is installed or on ``MOSAIC_*`` variables."""

from __future__ import annotations

from collections.abc import Sequence

from mosaic.core.errors import PluginError
from mosaic.core.plugins import PluginHost, PluginSelection
from mosaic.core.registry import Registry


def isolated_registry(plugins: Sequence[tuple[object, str]]) -> Registry:
    """A registry of ``plugins`` (``(module or class with hookimpls, distribution name)``), each
    registered under its distribution's name; any plugin that fails to load is an error."""
    host = PluginHost(PluginSelection())
    for plugin, distribution in plugins:
        host.add_plugin(plugin, distribution, distribution=distribution)
    if host.failures:  # a test's own plugins must load; name the first that did not
        failed = host.failures[0]
        raise PluginError(failed.name, failed.error or "failed to load")
    return host.registry
