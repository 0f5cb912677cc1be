"""Native tool building: definitions, builders, a persistent registry and a real sandbox.

Public names are imported on first use (PEP 562), so importing this package is cheap.
"""

from __future__ import annotations

from mosaic.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ParameterSpec": "mosaic.runtime.tools.definition",
    "ToolCapabilities": "mosaic.runtime.tools.definition",
    "ToolDefinition": "mosaic.runtime.tools.definition",
    "definition_hash": "mosaic.runtime.tools.definition",
    "PythonToolBuilder": "mosaic.runtime.tools.python_builder",
    "PythonToolBuilderConfig": "mosaic.runtime.tools.python_builder",
    "ToolRegistry": "mosaic.runtime.tools.registry",
    "ToolRegistryConfig": "mosaic.runtime.tools.registry",
    "ToolState": "mosaic.runtime.tools.registry",
    "open_registry": "mosaic.runtime.tools.registry",
    "ToolEventHandler": "mosaic.runtime.tools.events",
    "Sandbox": "mosaic.runtime.tools.sandbox",
    "SandboxLimits": "mosaic.runtime.tools.sandbox",
    "SandboxPolicy": "mosaic.runtime.tools.sandbox",
    "SandboxResult": "mosaic.runtime.tools.sandbox",
    "ToolRejectedError": "mosaic.runtime.tools.errors",
    "ToolStateError": "mosaic.runtime.tools.errors",
    "ToolFailedError": "mosaic.runtime.tools.errors",
    "ToolOutputError": "mosaic.runtime.tools.errors",
    "SandboxUnavailableError": "mosaic.runtime.tools.errors",
    "SandboxLimitError": "mosaic.runtime.tools.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
