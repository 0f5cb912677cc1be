"""The plugin system: hook specifications and the host that loads plugins into a registry.

Names are resolved on first use so that the registry can import the hook specifications without
importing the host (which imports the registry).
"""

from __future__ import annotations

from mosaic.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "COMPONENT_KINDS": "mosaic.core.plugins.hookspecs",
    "REGISTRATION_HOOKS": "mosaic.core.plugins.hookspecs",
    "hookimpl": "mosaic.core.plugins.hookspecs",
    "hookspec": "mosaic.core.plugins.hookspecs",
    "BUILTIN_DISTRIBUTIONS": "mosaic.core.plugins.host",
    "PluginHost": "mosaic.core.plugins.host",
    "PluginLoadFailures": "mosaic.core.plugins.host",
    "PluginRecord": "mosaic.core.plugins.host",
    "PluginSelectionError": "mosaic.core.plugins.host",
    "PluginSelection": "mosaic.core.plugins.host",
    "get_host": "mosaic.core.plugins.host",
    "get_registry": "mosaic.core.plugins.host",
    "reset_host": "mosaic.core.plugins.host",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
