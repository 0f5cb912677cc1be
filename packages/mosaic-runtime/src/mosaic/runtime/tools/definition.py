"""``ToolDefinition``: what a model (or a person) declares when it creates a tool.

A definition names the tool, describes its parameters, carries its implementation (Python source
defining ``run(**params)``) and declares its capabilities. ``validate()`` returns every problem;
``requires_approval()`` says whether any capability exceeds the default profile, in which case a
human must approve the definition's hash (``definition_hash``) before it may run.
"""

from __future__ import annotations

import hashlib
import keyword
import math
from typing import Any

import attrs

from mosaic.core.audit import canonical_json
from mosaic.core.errors import ToolError
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
        if self.network:
            found.append("capabilities.network: no tool builder grants network access; tools run offline")
        if not self.scratch:
            found.append(
                "capabilities.scratch: the sandbox always provides a private scratch directory; "
                "declare scratch=True"
            )
        for field in ("cpu_seconds", "wall_seconds", "memory_bytes", "output_bytes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                found.append(f"capabilities.{field}: must be a positive number, got {value!r}")
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


@attrs.frozen
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, ParameterSpec] = attrs.field(factory=dict)
    implementation: str = ""
    capabilities: ToolCapabilities = ToolCapabilities()
    sandbox: bool = True
    builder: str = "python"

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
        if not isinstance(self.implementation, str) or not self.implementation.strip():
            found.append("implementation: must be non-empty source code")
        found += self.capabilities.problems()
        if self.sandbox is not True:
            found.append("sandbox: tools always run sandboxed; sandbox=False is refused")
        return found

    def requires_approval(self) -> bool:
        return bool(self.capabilities.above_default())

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
        return attrs.asdict(self)

    @classmethod
    def from_json_dict(cls, data: Any) -> ToolDefinition:
        from mosaic.core.config import structure_config

        return structure_config(data, cls)


def definition_hash(definition: ToolDefinition) -> str:
    """SHA-256 over the canonical JSON of the whole definition, source included: any edit changes it."""
    return hashlib.sha256(HASH_DOMAIN + canonical_json(definition.to_json_dict())).hexdigest()
