"""Escaping of untrusted text (tool output, error messages) before it reaches a terminal or log."""

from __future__ import annotations


def escape_control(text: str, *, keep_newlines: bool = False) -> str:
    """Replace every non-printable character (C0/C1 controls, escape sequences, bidi overrides and
    other format characters, separators, surrogates, unassigned code points) with a visible
    ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` escape. Spaces stay; newlines stay if asked."""
    out = []
    for char in text:
        if char.isprintable() or (keep_newlines and char == "\n"):
            out.append(char)
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out)
