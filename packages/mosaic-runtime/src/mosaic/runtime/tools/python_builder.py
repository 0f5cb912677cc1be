"""``tool_builder.python``: turns a validated ``ToolDefinition`` with Python source into a tool that
runs only inside the sandbox."""

from __future__ import annotations

from typing import Any

import attrs

from mosaic.runtime.tools.ast_gate import check_source
from mosaic.runtime.tools.definition import ToolDefinition
from mosaic.runtime.tools.errors import ToolRejectedError
from mosaic.runtime.tools.sandbox import OS_LAYERS, Sandbox, SandboxPolicy, SandboxResult


def _known_layers(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(OS_LAYERS))
    if unknown:
        raise ValueError(f"unknown sandbox layers {unknown}; known: {', '.join(OS_LAYERS)}")


@attrs.frozen
class PythonToolBuilderConfig:
    """Which OS layers must be active for a tool to run (all by default: fail closed)."""

    required_layers: tuple[str, ...] = attrs.field(
        default=OS_LAYERS, converter=tuple, validator=_known_layers
    )
    landlock_min_abi: int = attrs.field(default=1, validator=attrs.validators.ge(1))


@attrs.frozen
class PythonTool:
    """A runnable tool: each call is a fresh confined child process."""

    definition: ToolDefinition
    sandbox: Sandbox

    def __call__(self, arguments: dict[str, Any]) -> SandboxResult:
        params = self.definition.bind_arguments(arguments)
        caps = self.definition.capabilities
        return self.sandbox.run(
            self.definition.implementation,
            params,
            allowed_modules=caps.allowed_imports,
            limits=caps.limits(),
            name=self.definition.name,
        )


class PythonToolBuilder:
    name = "python"

    def __init__(self, config: PythonToolBuilderConfig | None = None) -> None:
        self.config = config or PythonToolBuilderConfig()
        self._sandbox = Sandbox(
            SandboxPolicy(
                required_layers=frozenset(self.config.required_layers),
                landlock_min_abi=self.config.landlock_min_abi,
            )
        )

    def check(self, definition: ToolDefinition) -> list[str]:
        """Every reason the definition cannot become a tool: definition problems and source problems."""
        problems = definition.validate()
        if definition.builder != self.name:
            problems.append(f"builder: {definition.builder!r} is not handled by tool_builder.python")
        if isinstance(definition.implementation, str) and definition.implementation.strip():
            allowed = frozenset(definition.capabilities.allowed_imports)
            problems += [f"implementation: {p}" for p in check_source(definition.implementation, allowed)]
        return problems

    def build(self, definition: ToolDefinition) -> PythonTool:
        problems = self.check(definition)
        if problems:
            raise ToolRejectedError(definition.name, problems)
        return PythonTool(definition, self._sandbox)


def build_python_builder(config: PythonToolBuilderConfig) -> PythonToolBuilder:
    """Registry factory of ``tool_builder.python``."""
    return PythonToolBuilder(config)
