"""Reading JSONL event input with a bound on each line.

``for line in stream`` reads a line of any length into memory before anyone can look at it: a
500 MB line costs 500 MB (and more once parsed). :func:`read_event_lines` reads at most
``max_line_bytes + 1`` bytes of a line; a longer line is skipped in bounded pieces up to its newline
and reported as an :class:`OversizedLine`, so that the caller turns it into an error and goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import attrs

from mosaic.core.errors import EventValidationError
from mosaic.core.events.envelope import DEFAULT_MAX_EVENT_BYTES

#: Default longest input line: an event at the size limit, with room for the spacing and escapes of
#: non-canonical JSON (the line is re-encoded canonically before the event limit applies).
DEFAULT_MAX_LINE_BYTES = 4 * DEFAULT_MAX_EVENT_BYTES
#: How much of an oversized line is read (and dropped) at a time.
SKIP_CHUNK_BYTES = 1 << 16


@attrs.frozen
class OversizedLine:
    """A line longer than the limit, skipped unread: ``size`` bytes including its newline (if any)."""

    size: int
    limit: int

    @property
    def message(self) -> str:
        return f"line of {self.size} bytes exceeds the limit of {self.limit} bytes; skipped"


def read_event_lines(stream: IO[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[bytes | OversizedLine]:
    """The lines of ``stream`` (a binary stream with ``readline(size)``), each ending with its
    newline except maybe the last; a line whose content (newline excluded) exceeds
    ``max_line_bytes`` comes as an :class:`OversizedLine` instead, never read whole."""
    if type(max_line_bytes) is not int or max_line_bytes < 1:
        raise EventValidationError("max_line_bytes", f"expected a positive integer, got {max_line_bytes!r}")
    while True:
        # One byte over the limit leaves room for the newline of a line exactly at the limit.
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) <= max_line_bytes or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = stream.readline(SKIP_CHUNK_BYTES)
            if not line:
                break
            size += len(line)
        yield OversizedLine(size, max_line_bytes)


class LineSplitter:
    """The push form of :func:`read_event_lines`, for input that arrives in chunks (a socket): feed
    chunks, get complete lines back; at most ``max_line_bytes`` of a line is ever held."""

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if type(max_line_bytes) is not int or max_line_bytes < 1:
            raise EventValidationError("max_line_bytes", f"expected a positive integer, got {max_line_bytes!r}")
        self.max_line_bytes = max_line_bytes
        self._held = bytearray()
        self._skipped: int | None = None  # bytes of the oversized line being skipped, if any

    def feed(self, chunk: bytes) -> list[bytes | OversizedLine]:
        lines: list[bytes | OversizedLine] = []
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start : end + 1]
            start += len(piece)
            if self._skipped is not None:
                self._skipped += len(piece)
            elif len(self._held) + len(piece.rstrip(b"\n")) > self.max_line_bytes:
                self._skipped = len(self._held) + len(piece)
                self._held.clear()
            else:
                self._held += piece
            if end >= 0:
                lines.append(self._take())
        return lines

    def finish(self) -> list[bytes | OversizedLine]:
        """The last line when the input ended without a newline."""
        return [self._take()] if self._held or self._skipped is not None else []

    def _take(self) -> bytes | OversizedLine:
        if self._skipped is not None:
            line: bytes | OversizedLine = OversizedLine(self._skipped, self.max_line_bytes)
            self._skipped = None
        else:
            line = bytes(self._held)
        self._held.clear()
        return line
