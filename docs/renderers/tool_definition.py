"""The tool-definition reference, rendered from the code that validates definitions."""

from __future__ import annotations

import json
from pathlib import Path

import attrs


def _default(field: attrs.Attribute) -> str:
    if field.default is attrs.NOTHING:
        return "required"
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    if attrs.has(type(default)):
        return "see below"
    return f"`{json.dumps(default)}`"


def _fields(cls: type) -> list[str]:
    return [f"| `{f.name}` | {_default(f)} |" for f in attrs.fields(cls)]


def render(results: Path) -> str:
    from mosaic.runtime.tools.definition import (
        DEFAULT_IMPORTS,
        MAX_DESCRIPTION,
        PARAMETER_TYPES,
        McpEndpoint,
        ParameterSpec,
        ToolCapabilities,
        ToolDefinition,
    )

    lines = ["**`ToolDefinition`** (the event's payload)", "", "| field | default |", "|---|---|"]
    lines += _fields(ToolDefinition)
    lines += ["", "**A parameter** (each value of `parameters`)", "", "| field | default |", "|---|---|"]
    lines += _fields(ParameterSpec)
    lines += ["", "**`capabilities`**", "", "| field | default |", "|---|---|"]
    lines += _fields(ToolCapabilities)
    lines += [
        "",
        '**`mcp`** (with `builder: "mcp"`: an MCP endpoint instead of source)',
        "",
        "| field | default |",
        "|---|---|",
    ]
    lines += _fields(McpEndpoint)
    lines += [
        "",
        f"- Parameter types: {', '.join(f'`{t}`' for t in PARAMETER_TYPES)}.",
        f"- `description`: non-empty, at most {MAX_DESCRIPTION} characters.",
        f"- Imports allowed without approval: {', '.join(f'`{m}`' for m in sorted(DEFAULT_IMPORTS))}.",
    ]
    return "\n".join(lines) + "\n"
