"""``tool_builder.mcp``: a ``ToolDefinition`` whose implementation is an MCP endpoint.

The definition names a server (``mcp.command``, a stdio server, or ``mcp.url``) and one of its tools
(``mcp.tool``). Every such tool needs human approval (``ToolDefinition.approval_reasons``), and a
URL server also needs ``capabilities.network``, so the approval grants the network. Calls go through
the official ``mcp`` client library (``pip install 'mosaic-runtime[mcp]'``): one connection per
call. A stdio server is launched by ``sandbox_child/sbx_mcp.py`` under the sandbox's OS layers
(network only when the approved definition grants it) and the launcher's status line must report
every required layer active before the result is accepted.

The call's value is the tool's structured result (its ``result`` field when that is all it holds),
else its text content; a result flagged ``is_error`` is a ``ToolError``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from mosaic.core.errors import ToolError
from mosaic.runtime.tools.definition import MCP_BUILDER, ToolDefinition
from mosaic.runtime.tools.errors import SandboxUnavailableError, ToolRejectedError
from mosaic.runtime.tools.sandbox import CHILD_DIR, SandboxResult, _nobody

STATUS_PREFIX = "mosaic-mcp-sandbox "
#: Layers a stdio server must run under; the network namespace is added unless the approval grants network.
MCP_LAYERS = ("pid_namespace", "mount_namespace", "rlimits", "no_new_privs", "landlock", "drop_privileges")
INSTALL_HINT = "MCP tools need the optional extra: pip install 'mosaic-runtime[mcp]'"


def mcp_available() -> bool:
    try:
        import mcp  # noqa: F401
    except ImportError:
        return False
    return True


def _known_layers(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(MCP_LAYERS))
    if unknown:
        raise ValueError(f"unknown MCP sandbox layers {unknown}; known: {', '.join(MCP_LAYERS)}")


@attrs.frozen
class McpToolBuilderConfig:
    """Where a stdio server may read (besides the interpreter's own prefixes), and which OS layers
    must hold (all by default; the network namespace is required unless the approval grants network).
    Without ``drop_privileges`` the server keeps uid 0 with every capability dropped (for an
    interpreter the unprivileged user cannot read, e.g. one under /root)."""

    read_only: tuple[str, ...] = attrs.field(default=("/usr", "/lib", "/lib64", "/etc"), converter=tuple)
    required_layers: tuple[str, ...] = attrs.field(
        default=MCP_LAYERS, converter=tuple, validator=_known_layers
    )


def _existing(paths: list[str]) -> list[str]:
    return sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})


def _value(result: Any) -> Any:
    structured = result.structured_content
    if isinstance(structured, dict) and set(structured) == {"result"}:
        return structured["result"]
    if structured is not None:
        return structured
    return "\n".join(getattr(block, "text", "") for block in result.content)


@attrs.frozen
class McpTool:
    definition: ToolDefinition
    config: McpToolBuilderConfig

    def endpoint(self) -> Any:
        """The definition's MCP endpoint (the builder refuses definitions without one)."""
        if self.definition.mcp is None:
            raise ToolRejectedError(self.definition.name, ["an MCP tool needs an `mcp` endpoint"])
        return self.definition.mcp

    def __call__(self, arguments: dict[str, Any]) -> SandboxResult:
        params = self.definition.bind_arguments(arguments)
        endpoint = self.endpoint()
        limits = self.definition.capabilities.limits()
        started = time.monotonic()
        with (
            tempfile.TemporaryDirectory(prefix="mosaic-mcp-") as scratch,
            tempfile.TemporaryFile("w+", prefix="mosaic-mcp-err-") as errlog,
        ):
            server: Any = endpoint.url or self._stdio(scratch)
            try:
                result = asyncio.run(
                    asyncio.wait_for(self._call(server, endpoint.tool, params, errlog), limits.wall_seconds)
                )
            except (TimeoutError, asyncio.TimeoutError) as exc:
                raise ToolError(
                    f"tool {self.definition.name!r}: the MCP call took longer than {limits.wall_seconds:g} s"
                ) from exc
            except ToolError:
                raise
            except Exception as exc:  # the client library raises many kinds; each becomes a ToolError
                raise ToolError(
                    f"tool {self.definition.name!r}: the MCP call failed: {exc}{self._stderr_hint(errlog)}"
                ) from exc
            layers = self._layers(errlog) if not endpoint.url else {}
        if result.is_error:
            raise ToolError(
                f"tool {self.definition.name!r}: the MCP server reported an error: {_value(result)}"
            )
        return SandboxResult(_value(result), "", False, layers, time.monotonic() - started)

    async def _call(self, server: Any, tool: str, params: dict[str, Any], errlog: Any) -> Any:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        if isinstance(server, StdioServerParameters):
            from mcp.client.session import ClientSession

            async with (
                stdio_client(server, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await session.call_tool(tool, params)
        async with Client(server) as client:
            return await client.call_tool(tool, params)

    def _stdio(self, scratch: str) -> Any:
        from mcp.client.stdio import StdioServerParameters

        endpoint = self.endpoint()
        caps = self.definition.capabilities
        uid, gid = _nobody()
        os.chmod(scratch, 0o700)
        if os.geteuid() == 0 and "drop_privileges" in self.config.required_layers:
            os.chown(scratch, uid, gid)
        program_dirs = [
            os.path.dirname(os.path.realpath(endpoint.command[0])),
            os.path.dirname(endpoint.command[0]),
        ]
        prefixes = [
            sys.prefix,
            sys.base_prefix,
            sysconfig.get_paths()["stdlib"],
            sysconfig.get_paths()["purelib"],
        ]
        argument_dirs = [
            os.path.dirname(os.path.realpath(p)) for p in endpoint.command[1:] if os.path.isfile(p)
        ]
        required = [*self.config.required_layers, *(() if caps.network else ("network_namespace",))]
        request = {
            "required_layers": sorted(required),
            "network_granted": caps.network,
            "landlock_min_abi": 1,
            "limits": {**attrs.asdict(caps.limits()), "processes": 256, "open_files": 256},
            "uid": uid,
            "gid": gid,
            "scratch": scratch,
            "read_only": _existing([*self.config.read_only, *prefixes, *argument_dirs]),
            "executable": _existing([*program_dirs, *prefixes, "/usr/lib", "/lib", "/lib64", "/usr/bin"]),
            "environment": {"PATH": "/usr/bin:/bin", "HOME": scratch, "LANG": "C.UTF-8"},
        }
        stub = f"import sys; sys.path.insert(0, {str(CHILD_DIR)!r}); import sbx_mcp; sbx_mcp.main()"
        return StdioServerParameters(
            command=os.path.realpath(sys.executable),
            args=["-I", "-S", "-c", stub, json.dumps(request), "--", *endpoint.command],
            env={},
            cwd="/",
        )

    def _status(self, errlog: Any) -> dict[str, Any] | None:
        errlog.seek(0)
        for line in errlog.read().splitlines():
            if line.startswith(STATUS_PREFIX):
                return dict(json.loads(line[len(STATUS_PREFIX) :]))
        return None

    def _stderr_hint(self, errlog: Any) -> str:
        status = self._status(errlog)
        if status is not None and status.get("frame") == "unavailable":
            return f" (sandbox layer {status.get('layer')} unavailable: {status.get('message')})"
        errlog.seek(0)
        tail = errlog.read()[-600:].strip()
        return f"; the server's stderr ends: {tail}" if tail else ""

    def _layers(self, errlog: Any) -> dict[str, dict[str, Any]]:
        status = self._status(errlog)
        if status is None or status.get("frame") != "confined":
            raise SandboxUnavailableError(
                "mcp", f"tool {self.definition.name!r}: the MCP server's launcher reported no confinement"
            )
        return dict(status["layers"])


class McpToolBuilder:
    name = MCP_BUILDER

    def __init__(self, config: McpToolBuilderConfig | None = None) -> None:
        self.config = config or McpToolBuilderConfig()

    def check(self, definition: ToolDefinition) -> list[str]:
        problems = definition.validate()
        if definition.builder != self.name:
            problems.append(f"builder: {definition.builder!r} is not handled by tool_builder.mcp")
        if not mcp_available():
            problems.append(f"builder: {INSTALL_HINT}")
        if (
            definition.mcp is not None
            and definition.mcp.command
            and not Path(definition.mcp.command[0]).is_file()
        ):
            problems.append(f"mcp.command: {definition.mcp.command[0]!r} is not a file")
        return problems

    def build(self, definition: ToolDefinition) -> McpTool:
        problems = self.check(definition)
        if problems:
            raise ToolRejectedError(definition.name, problems)
        return McpTool(definition, self.config)


def build_mcp_builder(config: McpToolBuilderConfig) -> McpToolBuilder:
    """Registry factory of ``tool_builder.mcp``."""
    return McpToolBuilder(config)
