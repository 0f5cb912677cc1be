"""Fuzzing the event substrate: envelopes, the byte codec, the streaming decoder and the JSONL input
path. The one property: every input is either accepted (and then round-trips) or refused with a
:class:`~mosaic.core.errors.MosaicError` subclass. Any other exception is a bug.

Profiles (tests/fuzz/conftest.py): ``ci`` 500 cases per property, ``nightly`` (``nox -s fuzz``) 10,000.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from hostile import EDITS, ENVELOPE_DICTS, JSON_LIKE, PLAUSIBLE, VALID_DICTS, mutate, to_json_bytes

from mosaic.core.errors import EventError, MosaicError
from mosaic.core.events.codec import (
    EVENT_DELIMITER,
    EventDecoder,
    EventEncoder,
    StreamingEventDecoder,
    decode_event_bytes,
)
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.events.lines import LineSplitter, OversizedLine, read_event_lines
from mosaic.runtime.agent.reactive import parse_line


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
