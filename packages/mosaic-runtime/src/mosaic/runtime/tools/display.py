"""Escaping of untrusted text (tool output, error messages) before it reaches a terminal or log."""

from __future__ import annotations

import unicodedata

# Bidirectional overrides can make displayed text read differently from what it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def escape_control(text: str, *, keep_newlines: bool = False) -> str:
    """Replace control, format and bidi characters with visible ``\\xNN``/``\\uNNNN`` escapes."""
    out = []
    for char in text:
        if keep_newlines and char == "\n":
            out.append(char)
        elif char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)
