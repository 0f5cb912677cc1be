"""``EventEnvelope``: the JSON contract every model, dataset and runtime speaks.

An envelope is validated when it is built, so every envelope that exists serialises to canonical
JSON (compact, sorted keys, UTF-8) and parses back to an equal envelope. ``from_json_dict`` is the
strict door for JSON that came from outside: unknown keys, wrong types, non-finite numbers, a
``commitment_delta`` outside {-1, 0, 1}, a payload that is not JSON and an event over the byte
limit are each an :class:`~mosaic.core.errors.EventValidationError` naming the field and the value.
"""

from __future__ import annotations

import json
import math
import reprlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from mosaic.core.errors import EventValidationError

#: Largest canonical JSON form (in bytes, delimiter excluded) accepted by default.
DEFAULT_MAX_EVENT_BYTES = 1 << 20
#: Deepest nesting of arrays/objects allowed in a payload (keeps encoding and decoding off the
#: interpreter's recursion limit).
MAX_PAYLOAD_DEPTH = 64
#: Longest ``type``, ``sender``, ``id`` and ``commitment_id`` string.
MAX_NAME_LENGTH = 256
#: Integers (payload values, ``priority``, ``budget_ms``) must fit a signed 64-bit integer, so that
#: every consumer (torch, other languages) reads them exactly.
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1

FIELD_NAMES = frozenset(
    {"type", "payload", "sender", "priority", "budget_ms", "id", "ts", "commitment_delta", "commitment_id"}
)
REQUIRED_FIELDS = ("type", "payload", "sender")

# One shared encoder: json.dumps with keyword arguments builds a new encoder on every call.
# check_circular is off because validation bounds the payload depth, which rules out cycles.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)


def canonical_json(value: Any) -> str:
    """Compact, sorted-key JSON text (non-ASCII kept as is): the one serialisation of events."""
    return _CANONICAL.encode(value)


#: Integers longer than this are described by their size: Python refuses to turn an int of more
#: than 4,300 digits into text, and a message needs no more than the first few anyway.
_MAX_SHOWN_DIGITS = 60


def _int_text(value: int) -> str:
    """``value`` as text, or a description of its size when it is too long to show (never raises)."""
    if value.bit_length() <= _MAX_SHOWN_DIGITS * 3:  # 3 bits < one decimal digit: short enough
        return str(value)
    digits = int(value.bit_length() * 0.30103) + 1  # log10(2): the digit count, give or take one
    return f"{'-' if value < 0 else ''}an integer of about {digits} digits"


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{type(value).__name__} {_int_text(value)}"
    try:
        text = reprlib.repr(value)  # bounded in length and depth
    except (ValueError, RecursionError):  # a huge integer inside, or nesting past the repr limit
        text = "(too large to show)"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def _key_text(key: Any) -> str:
    """A non-string object key as text (a huge integer key cannot be turned into a string)."""
    return _int_text(key) if isinstance(key, int) and not isinstance(key, bool) else repr(key)


def _utf8_encodable(text: str) -> bool:
    # Lone surrogates (e.g. from a "\ud800" escape) are valid in a Python str but not in UTF-8.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- payload validation -------------------------------------------------------------------------


def _scalar_is_json(item: Any, kind: type) -> bool:
    if kind is str:
        return bool(item.isascii()) or _utf8_encodable(item)
    if kind is int:
        return bool(INT_MIN <= item <= INT_MAX)
    if kind is float:
        return math.isfinite(item)
    return item is None or kind is bool


def _payload_is_json(value: Any) -> bool:
    """Fast check (no paths) that ``value`` is a JSON value the codec can round-trip.

    Scalars inside containers are checked in place; only containers go on the stack.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return _scalar_is_json(value, kind)
    stack = [(value, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= MAX_PAYLOAD_DEPTH:
            return False
        if type(container) is dict:
            for key in container:
                if type(key) is not str or not (key.isascii() or _utf8_encodable(key)):
                    return False
            children = container.values()
        else:
            children = container
        for child in children:
            kind = type(child)
            if kind is str:
                if not (child.isascii() or _utf8_encodable(child)):
                    return False
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int:
                if not INT_MIN <= child <= INT_MAX:
                    return False
            elif kind is float:
                if not math.isfinite(child):
                    return False
            elif child is not None and kind is not bool:
                return False
    return True


def _payload_problem(value: Any, path: str, depth: int) -> str | None:
    """Where and why ``value`` is not an acceptable JSON value (slow path, for the message)."""
    kind = type(value)
    if kind is dict:
        if depth >= MAX_PAYLOAD_DEPTH:
            return f"{path}: nested deeper than {MAX_PAYLOAD_DEPTH} levels"
        for key, child in value.items():
            if type(key) is not str:
                return f"{path}: object key {_describe(key)} is not a string"
            if not _utf8_encodable(key):
                return f"{path}: object key {key!r} is not valid Unicode (lone surrogate)"
            problem = _payload_problem(child, f"{path}.{key}", depth + 1)
            if problem:
                return problem
        return None
    if kind is list:
        if depth >= MAX_PAYLOAD_DEPTH:
            return f"{path}: nested deeper than {MAX_PAYLOAD_DEPTH} levels"
        for index, child in enumerate(value):
            problem = _payload_problem(child, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    if kind is str:
        return None if _utf8_encodable(value) else f"{path}: {_describe(value)} is not valid Unicode"
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else f"{path}: integer {_int_text(value)} does not fit 64 bits"
    if kind is float:
        return None if math.isfinite(value) else f"{path}: {value} is not a finite number"
    if value is None or kind is bool:
        return None
    return f"{path}: {_describe(value)} is not a JSON value (use dict, list, str, int, float, bool, None)"


def check_payload(value: Any) -> None:
    """Raise :class:`EventValidationError` unless ``value`` is a JSON value events can carry."""
    if not _payload_is_json(value):
        raise EventValidationError("payload", _payload_problem(value, "$", 0) or "not a JSON value")


# --- field validation ---------------------------------------------------------------------------


def _check_name(field: str, value: Any) -> None:
    if type(value) is not str:
        raise EventValidationError(field, f"expected a string, got {_describe(value)}")
    if not value or len(value) > MAX_NAME_LENGTH:
        raise EventValidationError(field, f"expected 1 to {MAX_NAME_LENGTH} characters, got {_describe(value)}")
    if not _utf8_encodable(value):
        raise EventValidationError(field, f"{value!r} is not valid Unicode (lone surrogate)")


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int:
        raise EventValidationError(field, f"expected an integer, got {_describe(value)}")
    if not low <= value <= high:
        raise EventValidationError(field, f"{_int_text(value)} is outside [{low}, {high}]")


def _to_timestamp(value: Any) -> Any:
    """Integers become float seconds so that ``ts`` has one type; anything else is checked later."""
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise EventValidationError("ts", f"{_int_text(value)} is not a finite number of seconds") from None
    return value


def _new_id() -> str:
    return uuid.uuid4().hex


def _is_plain_name(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME_LENGTH and value.isascii()


def _validate(event: EventEnvelope) -> None:
    # Common cases are checked inline (this runs for every decoded event); anything unusual goes
    # through the checks that name the problem.
    if not (_is_plain_name(event.type) and _is_plain_name(event.sender) and _is_plain_name(event.id)):
        _check_name("type", event.type)
        _check_name("sender", event.sender)
        _check_name("id", event.id)
    if not _payload_is_json(event.payload):
        raise EventValidationError("payload", _payload_problem(event.payload, "$", 0) or "not a JSON value")
    priority = event.priority
    if type(priority) is not int or not INT_MIN <= priority <= INT_MAX:
        _check_int("priority", priority, INT_MIN, INT_MAX)
    if event.budget_ms is not None:
        _check_int("budget_ms", event.budget_ms, 0, INT_MAX)
    ts = event.ts
    if type(ts) is not float or not math.isfinite(ts) or ts < 0:
        raise EventValidationError("ts", f"expected finite unix seconds >= 0, got {_describe(ts)}")
    delta = event.commitment_delta
    if type(delta) is not int or delta not in (-1, 0, 1):
        raise EventValidationError("commitment_delta", f"expected -1, 0 or 1, got {_describe(delta)}")
    if event.commitment_id is not None:
        _check_name("commitment_id", event.commitment_id)


# --- the envelope ---------------------------------------------------------------------------------


@attrs.frozen(unsafe_hash=False)
class EventEnvelope:
    """One event. Frozen and validated on construction.

    ``payload`` is held by reference (not copied): treat it as immutable once the event exists.
    Equality compares every field; the hash is that of ``id`` (payloads are not hashable).
    """

    type: str
    payload: Any
    sender: str
    priority: int = 0
    budget_ms: int | None = None
    id: str = attrs.field(factory=_new_id)
    ts: float = attrs.field(factory=time.time, converter=_to_timestamp)
    commitment_delta: int = 0
    commitment_id: str | None = None

    def __attrs_post_init__(self) -> None:
        _validate(self)

    def __hash__(self) -> int:
        return hash(self.id)

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object form; ``commitment_id`` is omitted when it is None."""
        data = {
            "budget_ms": self.budget_ms,
            "commitment_delta": self.commitment_delta,
            "id": self.id,
            "payload": self.payload,
            "priority": self.priority,
            "sender": self.sender,
            "ts": self.ts,
            "type": self.type,
        }
        if self.commitment_id is not None:
            data["commitment_id"] = self.commitment_id
        return data

    def to_json(self) -> str:
        """Canonical JSON text: compact, sorted keys, non-ASCII characters kept."""
        return _CANONICAL.encode(self.to_json_dict())

    def to_bytes(self) -> bytes:
        """Canonical JSON as UTF-8 bytes (no delimiter)."""
        return _CANONICAL.encode(self.to_json_dict()).encode("utf-8")

    @classmethod
    def from_json_dict(
        cls, data: Any, *, max_bytes: int | None = DEFAULT_MAX_EVENT_BYTES
    ) -> EventEnvelope:
        """Build an envelope from its JSON object form, strictly.

        ``type``, ``payload`` and ``sender`` are required; a missing ``id`` or ``ts`` is generated.
        ``max_bytes`` bounds the canonical JSON size (``None``: no bound).
        """
        if type(data) is not dict:
            if not isinstance(data, Mapping):
                raise EventValidationError("event", f"expected a JSON object, got {_describe(data)}")
            data = dict(data)
        if not FIELD_NAMES.issuperset(data):
            unknown = sorted(key if type(key) is str else _key_text(key) for key in data if key not in FIELD_NAMES)
            raise EventValidationError(unknown[0], f"unknown field(s) {', '.join(map(repr, unknown))}")
        for field in REQUIRED_FIELDS:
            if field not in data:
                raise EventValidationError(field, "required field missing")
        event = cls(**data)
        if max_bytes is not None:
            size = len(event.to_bytes())
            if size > max_bytes:
                raise EventValidationError("event", f"{size} bytes exceeds the limit of {max_bytes} bytes")
        return event

    def replace(self, **changes: Any) -> EventEnvelope:
        """A copy with ``changes`` applied (validated like any new envelope)."""
        return attrs.evolve(self, **changes)
