"""The byte codec: events to token ids and back, one token per UTF-8 byte.

An event is its canonical JSON (compact, sorted keys, UTF-8); in a stream each event is followed by
one :data:`EVENT_DELIMITER` byte. The delimiter is the newline byte, which never occurs inside
compact JSON (``json`` escapes control characters in strings), so it splits streams unambiguously.
Datasets and runtimes use this same constant.

The bytes-level functions are pure Python; torch is imported only when a tensor is made or read.
"""

from __future__ import annotations

import ctypes
import json
import operator
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mosaic.core.errors import EventDecodeError, EventError, EventValidationError
from mosaic.core.events.envelope import DEFAULT_MAX_EVENT_BYTES, EventEnvelope

if TYPE_CHECKING:
    import torch
    from torch import Tensor  # for locals in functions that bind ``torch`` lazily

#: The byte that ends every event in a stream (``"\n"``), in training data and at run time alike.
EVENT_DELIMITER = 0x0A
#: Token ids of the byte codec are 0..255.
EVENT_VOCAB_SIZE = 256
#: Default padding id of :meth:`EventEncoder.encode_padded`; the NUL byte never occurs in an event.
EVENT_PAD_ID = 0

_DELIMITER_BYTE = bytes([EVENT_DELIMITER])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite JSON number")


# Duplicate object keys are valid JSON grammar (RFC 8259 leaves their meaning open); like Python's
# json they resolve to the last value. Rejecting them needs a Python hook per object, which would
# cost a third of the decoder's throughput.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _check_max_bytes(max_event_bytes: int) -> int:
    if type(max_event_bytes) is not int or max_event_bytes < 1:
        raise EventValidationError("max_event_bytes", f"expected a positive integer, got {max_event_bytes!r}")
    return max_event_bytes


_TORCH: Any = None


def _torch() -> Any:
    global _TORCH
    if _TORCH is None:
        import torch

        _TORCH = torch
    return _TORCH


# --- bytes level (no torch) -----------------------------------------------------------------------


def encode_event_bytes(event: EventEnvelope, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> bytes:
    """The canonical bytes of ``event`` (no delimiter); an event over the limit is refused."""
    if type(event) is not EventEnvelope:
        raise EventValidationError("event", f"expected an EventEnvelope, got {type(event).__name__}")
    data = event.to_bytes()
    if len(data) > max_event_bytes:
        raise EventValidationError(
            "event", f"{len(data)} bytes exceeds the limit of {max_event_bytes} bytes (type {event.type!r})"
        )
    return data


def decode_event_bytes(
    data: bytes, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, offset: int = 0
) -> EventEnvelope:
    """Parse one event from its bytes (one trailing delimiter is allowed).

    Raises :class:`EventDecodeError` (empty, too long, invalid UTF-8, invalid JSON) with the byte
    position, counted from ``offset``, or :class:`EventValidationError` for a well-formed JSON
    object that is not a valid envelope.
    """
    if data[-1:] == _DELIMITER_BYTE:
        data = data[:-1]
    if not data:
        raise EventDecodeError("empty event", position=offset)
    inner_delimiter = data.find(_DELIMITER_BYTE)
    if inner_delimiter >= 0:
        raise EventDecodeError("delimiter byte inside an event", position=offset + inner_delimiter)
    if len(data) > max_event_bytes:
        raise EventDecodeError(
            f"{len(data)} bytes exceeds the limit of {max_event_bytes} bytes", position=offset + max_event_bytes
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventDecodeError(f"invalid UTF-8 ({exc.reason})", position=offset + exc.start) from None
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        position = offset + len(text[: exc.pos].encode("utf-8"))
        raise EventDecodeError(f"invalid JSON ({exc.msg})", position=position) from None
    except (ValueError, RecursionError) as exc:
        # NaN/Infinity literals, integers beyond the digit limit, runaway nesting.
        raise EventDecodeError(f"invalid JSON ({exc})", position=offset) from None
    if type(obj) is not dict:
        raise EventDecodeError(f"expected a JSON object, got {type(obj).__name__}", position=offset)
    return EventEnvelope.from_json_dict(obj, max_bytes=None)


# --- tensors --------------------------------------------------------------------------------------


def _check_id_tensor(ids: Any, where: str) -> Any:
    torch = _TORCH or _torch()
    if not isinstance(ids, torch.Tensor):
        raise EventDecodeError(f"{where}: expected a torch.Tensor of token ids, got {type(ids).__name__}")
    dtype = ids.dtype
    if dtype is not torch.int64 and (dtype.is_floating_point or dtype.is_complex or dtype is torch.bool):
        raise EventDecodeError(f"{where}: expected an integer tensor, got dtype {dtype}")
    if ids.dim() != 1:
        raise EventDecodeError(f"{where}: expected a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    return ids


def _bytes_of_reference(ids: Any, where: str) -> bytes:
    """Token ids (a 1-D integer tensor) to bytes, refusing ids outside 0..255 (plain twin)."""
    values = _check_id_tensor(ids, where).tolist()
    try:
        return bytes(values)
    except ValueError:
        position = next(index for index, value in enumerate(values) if not 0 <= value <= 255)
        raise EventDecodeError(
            f"{where}: token id {values[position]} is outside the byte range 0..255", position=position
        ) from None


_LOW_BYTE = 0 if sys.byteorder == "little" else None  # None: index from the item's end


def _bytes_of(ids: Any, where: str) -> bytes:
    """Same result as :func:`_bytes_of_reference`, without a Python int per id: copy the tensor's
    memory and keep the low byte of each item; every other byte must be zero (an id in 0..255)."""
    ids = _check_id_tensor(ids, where)
    if ids.device.type != "cpu" or not ids.is_contiguous():
        ids = ids.cpu().contiguous()
    count, itemsize = ids.numel(), ids.element_size()
    raw = ctypes.string_at(ids.data_ptr(), count * itemsize) if count else b""
    if itemsize == 1:
        return raw if not ids.dtype.is_signed else _bytes_of_reference(ids, where)
    offset = 0 if _LOW_BYTE is not None else itemsize - 1
    low = raw[offset::itemsize]
    expected = bytearray(len(raw))
    expected[offset::itemsize] = low
    if expected != raw:
        return _bytes_of_reference(ids, where)  # raises, naming the first id out of range
    return low


def _ids_of_reference(data: bytes) -> torch.Tensor:
    """Bytes to ``(L,)`` int64 ids (plain twin of :func:`_ids_of`)."""
    torch = _TORCH or _torch()
    if not data:
        empty: Tensor = torch.zeros(0, dtype=torch.int64)
        return empty
    ids: Tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()  # (L,)
    return ids


def _ids_of(data: bytes) -> torch.Tensor:
    """Same result as :func:`_ids_of_reference` with one tensor op instead of two: the bytes are
    widened to native int64 layout in Python (one C-level strided copy) and wrapped as int64."""
    torch = _TORCH or _torch()
    if not data:
        empty: Tensor = torch.zeros(0, dtype=torch.int64)
        return empty
    wide = bytearray(8 * len(data))
    wide[0 if _LOW_BYTE is not None else 7 :: 8] = data
    ids: Tensor = torch.frombuffer(wide, dtype=torch.int64)  # (L,)
    return ids


class EventEncoder:
    """Events to int64 token-id tensors (one id per UTF-8 byte, values 0..255)."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = _check_max_bytes(max_event_bytes)

    def encode_bytes(self, event: EventEnvelope) -> bytes:
        return encode_event_bytes(event, max_event_bytes=self.max_event_bytes)

    def encode(self, event: EventEnvelope) -> torch.Tensor:
        """``(L,)`` int64 ids of one event, without delimiter."""
        return _ids_of(encode_event_bytes(event, max_event_bytes=self.max_event_bytes))

    def encode_many(self, events: Iterable[EventEnvelope]) -> list[torch.Tensor]:
        return [self.encode(event) for event in events]

    def encode_stream(self, events: Iterable[EventEnvelope]) -> torch.Tensor:
        """``(sum L_i + n,)`` ids of the events, each followed by :data:`EVENT_DELIMITER`."""
        parts = [encode_event_bytes(event, max_event_bytes=self.max_event_bytes) for event in events]
        if not parts:
            empty: Tensor = _torch().zeros(0, dtype=_torch().int64)
            return empty
        return _ids_of(_DELIMITER_BYTE.join(parts) + _DELIMITER_BYTE)

    def encode_padded(
        self, events: Sequence[EventEnvelope], pad_id: int = EVENT_PAD_ID
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded batch: ``ids (B, L)`` int64 and ``mask (B, L)`` bool (True on event bytes)."""
        torch = _torch()
        if type(pad_id) is not int:
            raise EventValidationError("pad_id", f"expected an integer, got {pad_id!r}")
        parts = [encode_event_bytes(event, max_event_bytes=self.max_event_bytes) for event in events]
        if not parts:
            return torch.zeros(0, 0, dtype=torch.int64), torch.zeros(0, 0, dtype=torch.bool)
        width = max(len(part) for part in parts)
        buffer = bytearray(len(parts) * width)
        for row, part in enumerate(parts):
            buffer[row * width : row * width + len(part)] = part
        ids = torch.frombuffer(buffer, dtype=torch.uint8).view(len(parts), width).long()  # (B, L)
        lengths = torch.tensor([len(part) for part in parts])  # (B,)
        mask = torch.arange(width) < lengths[:, None]  # (B, L)
        ids.masked_fill_(~mask, pad_id)
        return ids, mask


class EventDecoder:
    """Token-id tensors back to events, rejecting anything that is not exactly an event."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = _check_max_bytes(max_event_bytes)

    def decode_bytes(self, data: bytes) -> EventEnvelope:
        return decode_event_bytes(bytes(data), max_event_bytes=self.max_event_bytes)

    def decode(self, ids: torch.Tensor) -> EventEnvelope:
        """One event from ``(L,)`` ids (a single trailing delimiter is allowed)."""
        return decode_event_bytes(_bytes_of(ids, "ids"), max_event_bytes=self.max_event_bytes)

    def decode_many(self, encoded: Iterable[torch.Tensor]) -> list[EventEnvelope]:
        return [self.decode(ids) for ids in encoded]

    def decode_padded(self, ids: torch.Tensor, mask: torch.Tensor) -> list[EventEnvelope]:
        """Events from a padded batch: ``ids (B, L)`` and ``mask (B, L)`` (True on event bytes)."""
        torch = _torch()
        if not isinstance(ids, torch.Tensor) or not isinstance(mask, torch.Tensor):
            raise EventDecodeError("decode_padded expects two tensors (ids, mask)")
        if ids.dim() != 2 or mask.shape != ids.shape:
            raise EventDecodeError(
                f"decode_padded: expected ids and mask of one (B, L) shape, got {tuple(ids.shape)} "
                f"and {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise EventDecodeError(f"decode_padded: mask must be a bool tensor, got dtype {mask.dtype}")
        flat = _bytes_of(ids[mask], "ids")  # (sum of row lengths,)
        events = []
        start = 0
        for row, length in enumerate(mask.sum(dim=1).tolist()):
            try:
                events.append(decode_event_bytes(flat[start : start + length], max_event_bytes=self.max_event_bytes))
            except EventDecodeError as exc:
                raise EventDecodeError(f"row {row}: {exc}", position=exc.position) from None
            start += length
        return events

    def decode_stream(self, ids: torch.Tensor | bytes) -> list[EventEnvelope]:
        """Every event of a complete stream (each event ends with the delimiter)."""
        data = ids if isinstance(ids, (bytes, bytearray)) else _bytes_of(ids, "ids")
        decoder = StreamingEventDecoder(max_event_bytes=self.max_event_bytes)
        events = decoder.feed(data)
        decoder.finish()
        return events


# --- streaming --------------------------------------------------------------------------------------


ON_ERROR_POLICIES = ("raise", "skip")


class StreamingEventDecoder:
    """Decodes events from bytes as they arrive (one at a time, as a model emits them, or in chunks).

    Each complete event is returned when its delimiter arrives. An invalid event (bad bytes, bad
    JSON, an invalid envelope, or longer than ``max_event_bytes`` without a delimiter) is, by
    ``on_error``:

    - ``"raise"``: raised as an :class:`EventError` whose position is the offset in the whole stream.
      Decoding resumes after the bad event's delimiter; nothing else is lost — events completed
      earlier in the same ``feed`` chunk and the bytes after the error are kept and returned by the
      next ``feed`` call (``feed(b"")`` collects them).
    - ``"skip"``: counted in ``error_count`` and kept (the latest 100) in ``errors``.
    """

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, on_error: str = "raise") -> None:
        if on_error not in ON_ERROR_POLICIES:
            raise EventValidationError("on_error", f"expected one of {ON_ERROR_POLICIES}, got {on_error!r}")
        self.max_event_bytes = _check_max_bytes(max_event_bytes)
        self.on_error = on_error
        self.errors: list[EventError] = []
        self.error_count = 0
        self.events_decoded = 0
        self._buffer = bytearray()
        self._position = 0  # stream offset of the next byte
        self._discarding = False  # inside an event already reported as too long or malformed
        self._backlog = b""
        self._ready: list[EventEnvelope] = []

    @property
    def position(self) -> int:
        """Bytes consumed so far."""
        return self._position

    @property
    def pending_bytes(self) -> int:
        """Bytes of the unfinished event held in the buffer."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any unfinished event and undelivered input (counters are kept)."""
        self._buffer.clear()
        self._discarding = False
        self._backlog = b""
        self._ready = []

    def push(self, token: int) -> EventEnvelope | None:
        """Feed one byte; the event it completes, or None."""
        if type(token) is not int:
            try:
                token = operator.index(token)  # torch / numpy integer scalars; never a float
            except TypeError:
                raise EventDecodeError(f"token {token!r} is not an integer", position=self._position) from None
        position = self._position
        self._position += 1
        if token == EVENT_DELIMITER:
            return self._complete(position)
        if not 0 <= token <= 255:
            self._buffer.clear()
            self._discarding = True
            self._fail(EventDecodeError(f"token id {token} is outside 0..255", position=position))
            return None
        if self._discarding:
            return None
        self._buffer.append(token)
        if len(self._buffer) > self.max_event_bytes:
            self._overflow(position)
        return None

    def feed(self, data: bytes | bytearray | Iterable[int] | Any) -> list[EventEnvelope]:
        """Feed a chunk (bytes, a 1-D id tensor, or ints); the events it completes, in order."""
        chunk = self._chunk_bytes(data)
        if self._backlog:
            chunk, self._backlog = self._backlog + chunk, b""
        events, self._ready = self._ready, []
        start = 0
        while start < len(chunk):
            cut = chunk.find(_DELIMITER_BYTE, start)
            end = len(chunk) if cut < 0 else cut
            if not self._discarding:
                self._buffer += chunk[start:end]
                if len(self._buffer) > self.max_event_bytes:
                    overflow_at = self._position + (end - start) - (len(self._buffer) - self.max_event_bytes)
                    try:
                        self._overflow(overflow_at)
                    except EventError:
                        self._position += end - start
                        self._hold(chunk, end, events)
                        raise
            self._position += end - start
            if cut < 0:
                break
            self._position += 1
            start = cut + 1
            try:
                event = self._complete(self._position - 1)
            except EventError:
                self._hold(chunk, start, events)
                raise
            if event is not None:
                events.append(event)
        return events

    def finish(self) -> None:
        """Declare the end of the stream: an unfinished event is an error (raised or recorded)."""
        if self._backlog:
            raise EventDecodeError("finish() called with undelivered input; call feed(b'') first")
        if self._buffer or self._discarding:
            truncated = len(self._buffer)
            self._buffer.clear()
            was_discarding, self._discarding = self._discarding, False
            if not was_discarding:
                self._fail(EventDecodeError(f"stream ended inside an event ({truncated} bytes)", position=self._position))

    # --- internals ----------------------------------------------------------------------------------

    def _chunk_bytes(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        if isinstance(data, bytearray):
            return bytes(data)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(data, torch.Tensor):
            return _bytes_of(data, "chunk")
        values = list(data)
        try:
            return bytes(values)
        except (TypeError, ValueError):
            raise EventDecodeError("chunk: expected bytes or integers in 0..255", position=self._position) from None

    def _hold(self, chunk: bytes, resume_at: int, events: list[EventEnvelope]) -> None:
        self._backlog = chunk[resume_at:]
        self._ready = events

    def _complete(self, delimiter_position: int) -> EventEnvelope | None:
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._discarding:
            self._discarding = False
            return None
        start = delimiter_position - len(data)
        try:
            event = decode_event_bytes(data, max_event_bytes=self.max_event_bytes, offset=start)
        except (EventDecodeError, EventValidationError) as exc:
            self._fail(exc)
            return None
        self.events_decoded += 1
        return event

    def _overflow(self, position: int) -> None:
        self._buffer.clear()
        self._discarding = True
        self._fail(
            EventDecodeError(f"no delimiter within {self.max_event_bytes} bytes", position=position)
        )

    def _fail(self, error: EventError) -> None:
        self.error_count += 1
        if self.on_error == "raise":
            raise error
        self.errors.append(error)
        if len(self.errors) > 100:
            del self.errors[0]
