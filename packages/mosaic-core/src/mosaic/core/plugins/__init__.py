"""The plugin system: hook specifications and the host that loads plugins into a registry."""

from mosaic.core.plugins.hookspecs import COMPONENT_KINDS, REGISTRATION_HOOKS, hookimpl, hookspec
from mosaic.core.plugins.host import (
    BUILTIN_DISTRIBUTIONS,
    PluginHost,
    PluginLoadFailures,
    PluginRecord,
    PluginSelection,
    get_host,
    get_registry,
    reset_host,
)

__all__ = [
    "BUILTIN_DISTRIBUTIONS",
    "COMPONENT_KINDS",
    "REGISTRATION_HOOKS",
    "PluginHost",
    "PluginLoadFailures",
    "PluginRecord",
    "PluginSelection",
    "get_host",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_host",
]
