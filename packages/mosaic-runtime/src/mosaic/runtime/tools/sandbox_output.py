"""Parsing what the sandbox child writes: two framed lines, each bounded in size, depth and width.

The child writes newline-terminated JSON frames on its stdout:

1. a *status* frame, before any tool code runs: ``{"frame": "confined", "layers": {...}}`` or
   ``{"frame": "unavailable", "layer": ..., "message": ..., "layers": {...}}``;
2. after the tool ran, one *result* frame: ``{"frame": "result", "ok": ..., ...}``.

Only the first line can say which layers are active or that the sandbox is unavailable, and it is
written before the tool exists, so a tool cannot forge it: anything the tool writes lands after
it, where a status is not accepted and a second result frame is an error. Every value that comes
back must be one the event bus can carry (``check_payload``): anything else is a typed
``ToolOutputError``, never a ``RecursionError``/``ValueError`` or a silently dropped reply.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mosaic.core.errors import MosaicError
from mosaic.core.events.envelope import check_payload
from mosaic.runtime.tools.errors import (
    SandboxUnavailableError,
    ToolFailedError,
    ToolOutputError,
)

#: Deepest nesting of a tool's value; the ToolResult event wraps it one level down, well inside the
#: event payload limit (64).
MAX_VALUE_DEPTH = 48
#: Longest integer literal parsed (int64 has at most 19 digits and a sign).
MAX_INT_DIGITS = 20
MAX_STATUS_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 4000

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")


def _nesting(data: bytes) -> int:
    """Deepest bracket nesting outside string literals (computed without recursion)."""
    skeleton = _STRINGS.sub(b"", data).translate(None, _BRACKETS_ONLY)
    depth = deepest = 0
    for byte in skeleton:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer literal with {len(text)} characters")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def parse_bounded_json(data: bytes, *, max_depth: int, what: str, name: str) -> Any:
    """One JSON document from untrusted bytes: strict UTF-8, nesting at most ``max_depth``, no
    integer wider than ``MAX_INT_DIGITS`` digits, no NaN/Infinity. Raises ``ToolOutputError``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolOutputError(name, f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    depth = _nesting(data)
    if depth > max_depth:
        raise ToolOutputError(name, f"{what} is nested {depth} levels deep; the limit is {max_depth}")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ToolOutputError(name, f"{what} is not valid JSON: {str(exc)[:200]}") from None


def parse_status(line: bytes, name: str) -> dict[str, dict[str, Any]]:
    """The layers from the status frame; raises ``SandboxUnavailableError`` for an unavailable one."""
    if len(line) > MAX_STATUS_BYTES:
        raise ToolOutputError(name, f"status frame of {len(line)} bytes")
    frame = parse_bounded_json(line, max_depth=4, what="the sandbox status frame", name=name)
    if not isinstance(frame, dict) or frame.get("frame") not in ("confined", "unavailable"):
        raise ToolOutputError(name, "the sandbox child wrote no status frame before the tool ran")
    raw_layers = frame.get("layers")
    layers = {
        str(layer): {"active": info.get("active") is True, "detail": str(info.get("detail", ""))[:MAX_MESSAGE_CHARS]}
        for layer, info in (raw_layers.items() if isinstance(raw_layers, dict) else ())
        if isinstance(info, dict)
    }
    if frame["frame"] == "unavailable":
        raise SandboxUnavailableError(
            str(frame.get("layer", "?"))[:200], str(frame.get("message", ""))[:MAX_MESSAGE_CHARS], layers
        )
    return layers


def parse_result(line: bytes, name: str) -> tuple[Any, str, bool]:
    """(value, captured stdout, stdout truncated) from the result frame; a failure the tool raised
    becomes ``ToolFailedError``, anything unrepresentable ``ToolOutputError``."""
    frame = parse_bounded_json(line, max_depth=MAX_VALUE_DEPTH + 1, what="the tool's result", name=name)
    if not isinstance(frame, dict) or frame.get("frame") != "result" or not isinstance(frame.get("ok"), bool):
        raise ToolOutputError(name, "the result frame is malformed")
    stdout = frame.get("stdout", "")
    if not isinstance(stdout, str):
        raise ToolOutputError(name, "the captured output is not a string")
    # Printed text is informational: lone surrogates become U+FFFD instead of failing the call.
    stdout = stdout.encode("utf-8", "replace").decode("utf-8")
    if not frame["ok"]:
        reported = frame.get("error")
        error: dict[str, Any] = reported if isinstance(reported, dict) else {}
        raise ToolFailedError(
            name,
            str(error.get("type", "Error"))[:200],
            str(error.get("message", ""))[:MAX_MESSAGE_CHARS],
            stdout,
        )
    value = frame.get("value")
    try:
        check_payload({"tool": name, "value": value, "stdout": stdout})
    except MosaicError as exc:
        raise ToolOutputError(name, str(exc)[:MAX_MESSAGE_CHARS]) from None
    return value, stdout, frame.get("stdout_truncated") is True


def split_frames(stdout: bytes, name: str) -> tuple[bytes, bytes | None]:
    """(status line, result line or None when the child ended before writing one)."""
    status, newline, rest = stdout.partition(b"\n")
    if not newline:
        raise ToolOutputError(name, "the sandbox child ended before confining itself")
    if not rest:
        return status, None
    result, newline, extra = rest.partition(b"\n")
    if not newline or extra:
        raise ToolOutputError(name, "the tool wrote outside its result frame (more than one frame)")
    return status, result
