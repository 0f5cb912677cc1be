"""``ToolDefinition``: what a model (or a person) declares when it creates a tool.

A definition names the tool, describes its parameters, carries its implementation (Python source
defining ``run(**params)``, or with ``builder: "mcp"`` an MCP endpoint: a server, as a stdio command
or a URL, and one of its tools) and declares its capabilities. ``validate()`` returns every problem;
``requires_approval()`` says whether any capability exceeds the default profile, in which case a
human must approve the definition's hash (``definition_hash``) before it may run.
"""

from __future__ import annotations

import hashlib
import keyword
import math
from collections.abc import Mapping
from typing import Any

import attrs

from mosaic.core.audit import canonical_json
from mosaic.core.errors import MosaicError, ToolError
from mosaic.runtime.tools.ast_gate import import_problem
from mosaic.runtime.tools.sandbox import SandboxLimits

PARAMETER_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
#: Modules a tool may import without human approval: pure computation, no I/O.
DEFAULT_IMPORTS = frozenset(
    {
        "math",
        "cmath",
        "json",
        "re",
        "string",
        "statistics",
        "itertools",
        "functools",
        "collections",
        "datetime",
        "decimal",
        "fractions",
        "random",
        "heapq",
        "bisect",
        "operator",
        "textwrap",
        "unicodedata",
        "hashlib",
        "base64",
    }
)
DEFAULT_LIMITS = SandboxLimits()
HASH_DOMAIN = b"mosaic.tool.definition.v1\x00"
MAX_DESCRIPTION = 2000


@attrs.frozen
class ParameterSpec:
    type: str
    required: bool = True
    description: str = ""
    default: Any = None

    def problems(self, name: str) -> list[str]:
        found = []
        if self.type not in PARAMETER_TYPES:
            found.append(f"parameters.{name}.type: {self.type!r} is not one of {', '.join(PARAMETER_TYPES)}")
        elif self.default is not None and not _matches(self.default, self.type):
            found.append(f"parameters.{name}.default: {self.default!r} is not of type {self.type}")
        else:
            try:  # the definition is hashed and audited as canonical JSON: NaN and infinity have none
                canonical_json(self.default)
            except MosaicError as exc:
                found.append(f"parameters.{name}.default: {str(exc).removeprefix('audit data is ')}"[:300])
        if self.required and self.default is not None:
            found.append(f"parameters.{name}: a required parameter cannot have a default")
        return found


def _matches(value: Any, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, PARAMETER_TYPES[type_name])


@attrs.frozen
class ToolCapabilities:
    """What a tool may do. Anything beyond the defaults needs human approval."""

    allowed_imports: tuple[str, ...] = attrs.field(default=(), converter=lambda v: tuple(sorted(set(v))))
    network: bool = False
    scratch: bool = True
    cpu_seconds: int = DEFAULT_LIMITS.cpu_seconds
    wall_seconds: float = DEFAULT_LIMITS.wall_seconds
    memory_bytes: int = DEFAULT_LIMITS.memory_bytes
    output_bytes: int = DEFAULT_LIMITS.output_bytes

    def problems(self) -> list[str]:
        found = [
            f"capabilities.allowed_imports: {p}" for m in self.allowed_imports if (p := import_problem(m))
        ]
        if not self.scratch:
            found.append(
                "capabilities.scratch: the sandbox always provides a private scratch directory; "
                "declare scratch=True"
            )
        for field in ("cpu_seconds", "wall_seconds", "memory_bytes", "output_bytes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                found.append(f"capabilities.{field}: must be a positive number, got {value!r}")
            elif value > CAPABILITY_MAXIMA[field]:
                found.append(f"capabilities.{field}: at most {CAPABILITY_MAXIMA[field]}, got {value!r}")
        return found

    def above_default(self) -> list[str]:
        """The capabilities that exceed the default profile (each needs approval)."""
        above = [f"import {m}" for m in self.allowed_imports if m.split(".")[0] not in DEFAULT_IMPORTS]
        for field in ("cpu_seconds", "wall_seconds", "memory_bytes", "output_bytes"):
            if getattr(self, field) > getattr(DEFAULT_LIMITS, field):
                above.append(f"{field} {getattr(self, field)} > default {getattr(DEFAULT_LIMITS, field)}")
        if self.network:
            above.append("network")
        return above

    def limits(self) -> SandboxLimits:
        return attrs.evolve(
            DEFAULT_LIMITS,
            cpu_seconds=math.ceil(self.cpu_seconds),
            wall_seconds=float(self.wall_seconds),
            memory_bytes=int(self.memory_bytes),
            output_bytes=int(self.output_bytes),
        )


MCP_BUILDER = "mcp"
#: (section, field) of a definition that hold lists of strings
LIST_FIELDS = (("capabilities", "allowed_imports"), ("mcp", "command"))
#: The largest limits a tool may declare (approval still decides whether it gets them): past these a
#: limit overflows the kernel's rlimits or the event loop's timers, and fails only when the tool runs.
CAPABILITY_MAXIMA = {"cpu_seconds": 24 * 3600, "wall_seconds": 24 * 3600.0, "memory_bytes": 1 << 40,
                     "output_bytes": 1 << 30}
MAX_COMMAND_PARTS = 64


@attrs.frozen
class McpEndpoint:
    """An MCP server and the tool of it that the definition stands for. The server is a stdio
    ``command`` (argv: it runs under the sandbox's OS layers) or a ``url`` (Streamable HTTP, which
    needs ``capabilities.network``); exactly one of the two."""

    tool: str
    command: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    url: str = ""

    def problems(self) -> list[str]:
        found = []
        if not isinstance(self.tool, str) or not self.tool.strip() or len(self.tool) > 128:
            found.append("mcp.tool: must be the name of one of the server's tools (1 to 128 characters)")
        if bool(self.command) == bool(self.url):
            found.append("mcp: name exactly one server, a stdio 'command' or a 'url'")
        if len(self.command) > MAX_COMMAND_PARTS or not all(
            isinstance(p, str) and p and "\x00" not in p for p in self.command
        ):
            found.append(f"mcp.command: at most {MAX_COMMAND_PARTS} non-empty strings without NUL")
        elif self.command and not self.command[0].startswith("/"):
            found.append(f"mcp.command: the program must be an absolute path, got {self.command[0]!r}")
        if self.url and not (isinstance(self.url, str) and self.url.startswith(("http://", "https://"))):
            found.append(f"mcp.url: expected an http:// or https:// URL, got {self.url!r}")
        return found


@attrs.frozen
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, ParameterSpec] = attrs.field(factory=dict)
    implementation: str = ""
    capabilities: ToolCapabilities = ToolCapabilities()
    sandbox: bool = True
    builder: str = "python"
    mcp: McpEndpoint | None = None

    def validate(self) -> list[str]:
        """Every problem with this definition (empty when valid). Source is checked by the builder."""
        found = []
        if not isinstance(self.name, str) or not self.name.isidentifier() or keyword.iskeyword(self.name):
            found.append(f"name: {self.name!r} is not a valid identifier")
        elif self.name.startswith("_") or len(self.name) > 64:
            found.append(f"name: {self.name!r} must not start with '_' and has at most 64 characters")
        if not isinstance(self.description, str) or not self.description.strip():
            found.append("description: must be a non-empty string")
        elif len(self.description) > MAX_DESCRIPTION:
            found.append(f"description: longer than {MAX_DESCRIPTION} characters")
        for name, spec in self.parameters.items():
            if not name.isidentifier() or name.startswith("_") or keyword.iskeyword(name):
                found.append(f"parameters: {name!r} is not a valid parameter name")
            if not isinstance(spec, ParameterSpec):
                found.append(f"parameters.{name}: expected a ParameterSpec")
                continue
            found += spec.problems(name)
        if self.builder == MCP_BUILDER:
            found += self._mcp_problems()
        else:
            if not isinstance(self.implementation, str) or not self.implementation.strip():
                found.append("implementation: must be non-empty source code")
            if self.mcp is not None:
                found.append(f"mcp: an MCP endpoint needs builder 'mcp', not {self.builder!r}")
            if self.capabilities.network:
                found.append(
                    "capabilities.network: only MCP endpoints may be granted network access; "
                    "Python tools run offline"
                )
        found += self.capabilities.problems()
        if self.sandbox is not True:
            found.append("sandbox: tools always run sandboxed; sandbox=False is refused")
        return found

    def _mcp_problems(self) -> list[str]:
        if self.mcp is None:
            return [
                "mcp: builder 'mcp' needs an endpoint ({'tool': ..., 'command': [...]} or {'tool': ..., 'url': ...})"
            ]
        found = self.mcp.problems()
        if self.implementation:
            found.append("implementation: an MCP tool has no source; leave it empty")
        if self.mcp.url and not self.capabilities.network:
            found.append(
                "capabilities.network: an MCP server at a URL needs network=true (granted by approval)"
            )
        return found

    def approval_reasons(self) -> list[str]:
        """Why a human must approve this definition (empty: it may run at once)."""
        reasons = self.capabilities.above_default()
        if self.mcp is not None:
            reasons.insert(0, "MCP endpoint " + (self.mcp.url or " ".join(self.mcp.command)))
        return reasons

    def requires_approval(self) -> bool:
        """Anything above the default capabilities, and every MCP endpoint, needs a human."""
        return bool(self.approval_reasons())

    def bind_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check call arguments against the parameter specs; fill defaults. Raises ``ToolError``."""
        problems = [f"unknown parameter {key!r}" for key in arguments if key not in self.parameters]
        bound = {}
        for name, spec in self.parameters.items():
            if name in arguments:
                if not _matches(arguments[name], spec.type):
                    problems.append(
                        f"parameter {name!r}: expected {spec.type}, got {type(arguments[name]).__name__}"
                    )
                bound[name] = arguments[name]
            elif spec.required:
                problems.append(f"missing required parameter {name!r}")
            else:
                bound[name] = spec.default
        if problems:
            raise ToolError(f"invalid call of tool {self.name!r}: " + "; ".join(problems))
        return bound

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form; ``mcp`` only when set, so that a Python tool's hash has no MCP field."""
        data = attrs.asdict(self)
        if self.mcp is None:
            del data["mcp"]
        else:
            data["mcp"]["command"] = list(self.mcp.command)
        return data

    @classmethod
    def from_json_dict(cls, data: Any) -> ToolDefinition:
        from mosaic.core.config import structure_config
        from mosaic.core.errors import ConfigError, ConfigProblem

        # cattrs reads a string where a list belongs as its characters ("os" -> "o", "s"): refuse it
        if isinstance(data, Mapping):
            for section, field in LIST_FIELDS:
                parent = data.get(section)
                if isinstance(parent, Mapping) and isinstance(parent.get(field), str):
                    raise ConfigError([ConfigProblem(f"$.{section}.{field}", "expected a list of strings, got a "
                                                                           "string")])
        return structure_config(data, cls)


def definition_hash(definition: ToolDefinition) -> str:
    """SHA-256 over the canonical JSON of the whole definition, source included: any edit changes it."""
    return hashlib.sha256(HASH_DOMAIN + canonical_json(definition.to_json_dict())).hexdigest()
