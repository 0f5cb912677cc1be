"""Launcher of a stdio MCP server under the sandbox's OS layers (standard library only).

Started by the MCP client library (``mcp.client.stdio``) as ``python3 -I -S -c <stub> REQUEST
-- COMMAND...``; its stdin and stdout are the client's pipes, so they are left alone and become the
server's. It applies, in order: network (unless the approval grants it), mount/IPC/UTS and PID
namespaces; rlimits; no_new_privs; Landlock (read-only everywhere the server needs, execute on its
program's directories, read-write only the scratch directory); the drop to the unprivileged user;
then it writes one status line (the verified layers) to stderr and executes the server. The
seccomp filter of Python tools is not installed: it forbids ``execve`` and sockets, which a server
process needs to start. A required layer that cannot be applied stops the launch (exit status 3,
the reason on stderr): the client then fails, the call becomes a ``ToolError``.
"""

from __future__ import annotations

import json
import os
import sys

import sbx_confine
import sbx_landlock

STATUS_PREFIX = "mosaic-mcp-sandbox "
UNAVAILABLE_EXIT = 3


def _status(payload: dict) -> None:
    os.write(2, (STATUS_PREFIX + json.dumps(payload, sort_keys=True) + "\n").encode())


def launch(request: dict, command: list[str]) -> None:
    required = set(request["required_layers"])
    layers: dict = {}
    libc = sbx_confine._libc()
    sbx_confine.enter_namespaces(request, layers)
    status_fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)  # read after the drop
    try:
        ruleset, abi = sbx_landlock.prepare(
            request["read_only"],
            request["scratch"],
            min_abi=request["landlock_min_abi"],
            executable=request["executable"],
        )
    except OSError as exc:
        ruleset, abi = -1, 0
        sbx_confine._record(layers, required, "landlock", False, str(exc))
    sbx_confine._set_rlimits(request, layers, required)
    ok = libc.prctl(sbx_confine.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    ok = ok and libc.prctl(sbx_confine.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    sbx_confine._record(layers, required, "no_new_privs", ok, "set" if ok else "prctl failed")
    if ruleset >= 0:
        try:
            sbx_landlock.restrict_self(ruleset)
            sbx_confine._record(
                layers,
                required,
                "landlock",
                True,
                f"ABI {abi}: read-only {', '.join(request['read_only'])}; "
                f"execute {', '.join(request['executable'])}; read-write scratch only",
            )
        except OSError as exc:
            sbx_confine._record(layers, required, "landlock", False, str(exc))
    if "drop_privileges" in required:
        sbx_confine._drop_privileges(request, layers, required, status_fd)
    else:  # the policy keeps uid 0 (e.g. an interpreter the unprivileged user cannot read): no capabilities
        sbx_confine._clear_capabilities(libc)
        sbx_confine._zero_capsets(libc)
        layers["drop_privileges"] = {
            "active": False,
            "detail": "uid 0 kept by the policy; every capability dropped",
        }
    os.close(status_fd)
    layers["seccomp"] = {
        "active": False,
        "detail": "not installed for MCP servers: it forbids execve and sockets",
    }
    os.chdir(request["scratch"])
    _status({"frame": "confined", "layers": layers})
    os.execve(command[0], command, request["environment"])


def main() -> None:
    request = json.loads(sys.argv[1])
    command = sys.argv[3:] if sys.argv[2:3] == ["--"] else []
    if not command:
        _status({"frame": "unavailable", "layer": "launcher", "message": "no server command"})
        os._exit(UNAVAILABLE_EXIT)
    try:
        launch(request, command)
    except sbx_confine.LayerUnavailable as exc:
        _status({"frame": "unavailable", "layer": exc.layer, "message": str(exc)})
        os._exit(UNAVAILABLE_EXIT)
    except OSError as exc:
        _status({"frame": "unavailable", "layer": "exec", "message": str(exc)})
        os._exit(UNAVAILABLE_EXIT)
