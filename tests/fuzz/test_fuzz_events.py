"""Fuzzing the event substrate: envelopes, the byte codec, the streaming decoder and the JSONL input
path. The one property: every input is either accepted (and then round-trips) or refused with a
:class:`~mosaic.core.errors.MosaicError` subclass. Any other exception is a bug.

Profiles (tests/fuzz/conftest.py): ``ci`` 500 cases per property, ``nightly`` (``nox -s fuzz``) 10,000.
"""

from __future__ import annotations

import io
import json
import sys

import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core.errors import EventError, MosaicError
from mosaic.core.events.codec import (
    EVENT_DELIMITER,
    EventDecoder,
    EventEncoder,
    StreamingEventDecoder,
    decode_event_bytes,
)
from mosaic.core.events.envelope import FIELD_NAMES, EventEnvelope
from mosaic.core.events.lines import LineSplitter, OversizedLine, read_event_lines
from mosaic.runtime.agent.reactive import parse_line

# --- strategies for hostile event input: JSON-like values with every shape that has broken parsers
# (huge integers, lone surrogates, non-finite floats, deep nesting, wrong types, control bytes)

HUGE_INTEGERS = st.builds(lambda digits, sign: sign * 10 ** (digits - 1), st.integers(19, 6000), st.sampled_from([-1, 1]))
INTEGERS = st.integers() | HUGE_INTEGERS | st.integers(-(2**64), 2**64)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
# Any code point, lone surrogates included (valid in a Python str, not in UTF-8).
TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40) | st.sampled_from(["", "\ud800", "x" * 300, "\n"])
SCALARS = st.none() | st.booleans() | INTEGERS | FLOATS | TEXT
KEYS = TEXT | st.sampled_from(sorted(FIELD_NAMES)) | INTEGERS | st.none()


def nested(depth: int, leaf: object) -> object:
    """A list nested ``depth`` deep around ``leaf`` (built iteratively: no recursion limit)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


JSON_LIKE = st.recursive(
    SCALARS | st.builds(nested, st.integers(60, 3000), SCALARS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    | st.tuples(inner, inner) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)


#: Per field: usually a plausible value, sometimes anything at all.
PLAUSIBLE = {
    "type": st.text(min_size=1, max_size=12),
    "sender": st.text(min_size=1, max_size=12),
    "id": st.text(min_size=1, max_size=12),
    "commitment_id": st.none() | st.text(min_size=1, max_size=12),
    "payload": JSON_LIKE,
    "priority": INTEGERS,
    "budget_ms": st.none() | INTEGERS,
    "ts": FLOATS | INTEGERS,
    "commitment_delta": st.integers(-2, 2),
}
ENVELOPE_DICTS = st.one_of(
    st.fixed_dictionaries(
        {name: PLAUSIBLE[name] | JSON_LIKE for name in ("type", "payload", "sender")},
        optional={**{name: PLAUSIBLE[name] | JSON_LIKE for name in sorted(FIELD_NAMES - {"type", "payload", "sender"})},
                  "extra": JSON_LIKE},
    ),
    st.dictionaries(KEYS, JSON_LIKE, max_size=6),
    JSON_LIKE,
)

VALID_DICTS = st.fixed_dictionaries(
    {"type": st.text(min_size=1, max_size=8), "payload": st.none() | st.integers(-5, 5) | st.text(max_size=8),
     "sender": st.text(min_size=1, max_size=8)},
    optional={"priority": st.integers(-(2**63), 2**63 - 1), "commitment_delta": st.sampled_from([-1, 0, 1]),
              "commitment_id": st.text(min_size=1, max_size=8), "ts": st.floats(0, 2e9)},
)


def to_json_bytes(value: object) -> bytes:
    """JSON text of ``value`` (huge integers written out in full, NaN as the NaN literal) where
    Python can write it at all, as raw bytes (lone surrogates kept)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the writer may spell out what the reader must refuse
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = "[unwritable]"
    finally:
        sys.set_int_max_str_digits(limit)
    return text.encode("utf-8", errors="surrogatepass")


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with each (position, kind, byte) edit: replace, insert or delete one byte."""
    out = bytearray(data)
    for position, kind, byte in edits:
        if not out:
            out.append(byte)
            continue
        at = position % len(out)
        if kind == 0:
            out[at] = byte
        elif kind == 1:
            out.insert(at, byte)
        else:
            del out[at]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.integers(0, 255)), max_size=6)


def accepted_or_typed(call, *args, **kwargs):
    """``call``'s result, or None when it raised a MosaicError; anything else fails the test."""
    try:
        return call(*args, **kwargs)
    except MosaicError:
        return None


def assert_round_trips(event: EventEnvelope) -> None:
    assert decode_event_bytes(event.to_bytes()) == event
    assert EventEnvelope.from_json_dict(event.to_json_dict()) == event


# --- envelopes ------------------------------------------------------------------------------------


@given(data=ENVELOPE_DICTS)
def test_from_json_dict_accepts_or_raises_typed(data: object) -> None:
    event = accepted_or_typed(EventEnvelope.from_json_dict, data)
    if event is not None:
        assert_round_trips(event)


@given(fields=st.fixed_dictionaries({}, optional={name: strategy | JSON_LIKE for name, strategy in PLAUSIBLE.items()}))
def test_constructor_accepts_or_raises_typed(fields: dict) -> None:
    try:
        event = EventEnvelope(**fields)
    except TypeError as exc:  # a missing required argument is a programming error, not input
        assert "required" in str(exc) or "missing" in str(exc)
        return
    except EventError:
        return
    assert_round_trips(event)


@given(data=VALID_DICTS, max_bytes=st.none() | st.integers(1, 400))
def test_valid_dicts_are_accepted_unless_over_the_byte_limit(data: dict, max_bytes: int | None) -> None:
    # A generated ts (time.time()) varies in printed length from call to call: fix both generated fields.
    data = {"id": "fixed", "ts": 1.5, **data}
    event = accepted_or_typed(EventEnvelope.from_json_dict, data, max_bytes=max_bytes)
    if max_bytes is None or len(EventEnvelope.from_json_dict(data, max_bytes=None).to_bytes()) <= max_bytes:
        assert event is not None
        assert_round_trips(event)
    else:
        assert event is None


# --- the byte codec -------------------------------------------------------------------------------


@given(data=st.binary(max_size=600))
def test_decoding_arbitrary_bytes(data: bytes) -> None:
    event = accepted_or_typed(decode_event_bytes, data)
    if event is not None:
        assert_round_trips(event)


@given(value=ENVELOPE_DICTS)
def test_decoding_the_json_of_hostile_values(value: object) -> None:
    event = accepted_or_typed(decode_event_bytes, to_json_bytes(value))
    if event is not None:
        assert_round_trips(event)


@given(data=VALID_DICTS, edits=EDITS)
def test_decoding_mutated_valid_events(data: dict, edits: list) -> None:
    original = EventEnvelope.from_json_dict(data).to_bytes()
    event = accepted_or_typed(decode_event_bytes, mutate(original, edits))
    if event is not None:
        assert_round_trips(event)


@given(ids=st.lists(st.integers(-300, 600), max_size=200), dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8]))
def test_decoding_arbitrary_token_ids(ids: list[int], dtype: torch.dtype) -> None:
    if dtype is torch.uint8:
        ids = [i % 256 for i in ids]
    tensor = torch.tensor(ids, dtype=dtype) if ids else torch.zeros(0, dtype=dtype)
    event = accepted_or_typed(EventDecoder().decode, tensor)
    if event is not None:
        assert torch.equal(EventEncoder().encode(event), EventEncoder().encode(event))


@given(events=st.lists(VALID_DICTS, max_size=5), edits=EDITS, cuts=st.lists(st.integers(0, 4000), max_size=6),
       on_error=st.sampled_from(["raise", "skip"]))
def test_streaming_decoder_on_mutated_streams(events: list, edits: list, cuts: list[int], on_error: str) -> None:
    envelopes = [EventEnvelope.from_json_dict(data) for data in events]
    stream = mutate(b"".join(e.to_bytes() + bytes([EVENT_DELIMITER]) for e in envelopes), edits)
    decoder = StreamingEventDecoder(max_event_bytes=2048, on_error=on_error)
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    decoded: list[EventEnvelope] = []
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):
            decoded += decoder.feed(stream[start:end])
        decoded += decoder.feed(b"")
        decoder.finish()
    except MosaicError:
        assert on_error == "raise"
    for event in decoded:
        assert_round_trips(event)
    if not edits:
        assert decoded == envelopes


@given(events=st.lists(VALID_DICTS, min_size=1, max_size=4), pad_id=st.integers(0, 255))
def test_padded_batches_round_trip(events: list, pad_id: int) -> None:
    envelopes = [EventEnvelope.from_json_dict(data) for data in events]
    ids, mask = EventEncoder().encode_padded(envelopes, pad_id=pad_id)
    assert EventDecoder().decode_padded(ids, mask) == envelopes


# --- the JSONL input path (mosaic events / live) ----------------------------------------------------


@given(lines=st.lists(st.one_of(st.binary(max_size=200), ENVELOPE_DICTS.map(to_json_bytes),
                                VALID_DICTS.map(lambda d: EventEnvelope.from_json_dict(d).to_bytes())), max_size=8),
       limit=st.integers(1, 400), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_jsonl_reader_turns_every_line_into_an_event_or_an_error(lines: list[bytes], limit: int,
                                                               cuts: list[int]) -> None:
    data = b"\n".join(lines)
    items = list(read_event_lines(io.BytesIO(data), max_line_bytes=limit))
    splitter = LineSplitter(max_line_bytes=limit)
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    pushed: list = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        pushed += splitter.feed(data[start:end])
    assert pushed + splitter.finish() == items
    for number, item in enumerate(items, 1):
        held = 0 if isinstance(item, OversizedLine) else len(item.rstrip(b"\n"))
        assert held <= limit
        event, error = parse_line(item, number, "runtime")
        assert (event is None) != (error is None)
        if error is not None:
            assert error.type == "Error" and error.payload["line"] == number
        else:
            assert_round_trips(event)
