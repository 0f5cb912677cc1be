"""The plugin system: hook specifications and the host that loads plugins into a registry.

Names are resolved on first use so that the registry can import the hook specifications without
importing the host (which imports the registry).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "COMPONENT_KINDS": "mosaic.core.plugins.hookspecs",
    "REGISTRATION_HOOKS": "mosaic.core.plugins.hookspecs",
    "hookimpl": "mosaic.core.plugins.hookspecs",
    "hookspec": "mosaic.core.plugins.hookspecs",
    "BUILTIN_DISTRIBUTIONS": "mosaic.core.plugins.host",
    "PluginHost": "mosaic.core.plugins.host",
    "PluginLoadFailures": "mosaic.core.plugins.host",
    "PluginRecord": "mosaic.core.plugins.host",
    "PluginSelection": "mosaic.core.plugins.host",
    "get_host": "mosaic.core.plugins.host",
    "get_registry": "mosaic.core.plugins.host",
    "reset_host": "mosaic.core.plugins.host",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mosaic.core.plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
