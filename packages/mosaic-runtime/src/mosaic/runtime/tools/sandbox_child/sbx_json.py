"""A strict JSON encoder for the sandbox child, so that the child need not import ``json`` (whose
import chain — re, enum, collections — is a large part of a tool call's start-up time).

Accepts exactly the JSON data model: dict with str keys, list/tuple, str, int, finite float, bool,
None. Anything else raises TypeError/ValueError with a message in the style of ``json.dumps``.
"""

from __future__ import annotations

import math

MAX_DEPTH = 200
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " " or char == "\x7f" or "\ud800" <= char <= "\udfff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _encode(value: object, out: list, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("value is nested too deeply to encode as JSON")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif type(value) is str:
        out.append(_string(value))
    elif type(value) is int:
        out.append(int.__repr__(value))
    elif type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
        out.append(float.__repr__(value))
    elif isinstance(value, (list, tuple)) and type(value) in (list, tuple):  # exact types only
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    elif type(value) is dict:
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if type(key) is not str:
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(item, out, depth + 1)
        out.append("}")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: object) -> str:
    out: list = []
    _encode(value, out, 0)
    return "".join(out)
