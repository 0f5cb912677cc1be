"""The byte codec: tensor round-trips, robustness against arbitrary ids, streaming decoding."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core import EVENT_DELIMITER, EventDecoder, EventEncoder, EventEnvelope, StreamingEventDecoder
from mosaic.core.errors import EventDecodeError, EventError, EventValidationError
from mosaic.core.events.envelope import INT_MAX, INT_MIN

names = st.text(min_size=1, max_size=16)
payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INT_MIN, INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
envelopes = st.builds(
    EventEnvelope,
    type=names,
    payload=payloads,
    sender=names,
    priority=st.integers(-5, 5),
    budget_ms=st.none() | st.integers(0, 10**6),
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    commitment_delta=st.sampled_from([-1, 0, 1]),
    commitment_id=st.none() | names,
)

encoder = EventEncoder()
decoder = EventDecoder()


def make(**changes):
    fields = {"type": "Message", "payload": {"text": "héllo ✓"}, "sender": "user"}
    fields.update(changes)
    return EventEnvelope(**fields)


def ids_of(data: bytes) -> torch.Tensor:
    return torch.tensor(list(data), dtype=torch.int64)


@given(envelopes)
def test_every_valid_envelope_round_trips_through_tensors(event):
    ids = encoder.encode(event)
    assert ids.dtype == torch.int64 and ids.dim() == 1
    assert int(ids.min()) >= 0 and int(ids.max()) <= 255
    assert EVENT_DELIMITER not in ids.tolist() and 0 not in ids.tolist()
    assert bytes(ids.tolist()) == event.to_json().encode("utf-8")
    assert decoder.decode(ids) == event


@given(st.lists(envelopes, max_size=5), st.integers(0, 8))
def test_padded_and_stream_batches_round_trip(events, pad_id):
    ids, mask = encoder.encode_padded(events, pad_id=pad_id)
    assert ids.shape == mask.shape and ids.shape[0] == len(events)
    assert bool((ids[~mask] == pad_id).all())
    assert decoder.decode_padded(ids, mask) == events
    assert decoder.decode_stream(encoder.encode_stream(events)) == events


@given(st.lists(envelopes, min_size=1, max_size=5), st.data())
def test_streaming_decoder_is_independent_of_chunking(events, data):
    stream = bytes(encoder.encode_stream(events).tolist())
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    streaming = StreamingEventDecoder()
    decoded = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        decoded += streaming.feed(stream[start:end])
    streaming.finish()
    assert decoded == events
    one_by_one = StreamingEventDecoder()
    emitted = [one_by_one.push(byte) for byte in stream]
    assert [event for event in emitted if event is not None] == events
    assert emitted[-1] == events[-1] and one_by_one.pending_bytes == 0


@given(st.lists(st.integers(INT_MIN, INT_MAX) | st.integers(-3, 300), max_size=64))
def test_arbitrary_id_tensors_raise_only_typed_errors(values):
    try:
        event = decoder.decode(torch.tensor(values, dtype=torch.int64))
    except EventError as exc:
        assert isinstance(exc, (EventDecodeError, EventValidationError))
        return
    assert isinstance(event, EventEnvelope)


@given(st.binary(max_size=300), st.data())
def test_corrupted_events_raise_only_typed_errors(noise, data):
    good = make(id="e" * 32, ts=1.7e9).to_bytes()  # fixed length: the draws below depend on it
    at = data.draw(st.integers(0, len(good)))
    cut = data.draw(st.integers(0, 4))
    corrupted = good[:at] + noise[:8] + good[at + cut :]
    for blob in (corrupted, noise):
        try:
            decoder.decode(ids_of(blob))
        except EventError:
            pass
        skipping = StreamingEventDecoder(on_error="skip", max_event_bytes=256)
        skipping.feed(blob + b"\n" + good + b"\n")
        skipping.finish()
        assert skipping.error_count + skipping.events_decoded >= 1


def test_out_of_range_ids_report_their_position():
    ids = ids_of(make().to_bytes())
    ids[5] = 256
    with pytest.raises(EventDecodeError, match="256 is outside") as info:
        decoder.decode(ids)
    assert info.value.position == 5
    ids[5] = -1
    with pytest.raises(EventDecodeError) as info:
        decoder.decode(ids)
    assert info.value.position == 5


def test_invalid_utf8_and_json_report_byte_positions():
    good = make().to_bytes()
    with pytest.raises(EventDecodeError, match="UTF-8") as info:
        decoder.decode(ids_of(good[:10] + b"\xff" + good[10:]))
    assert info.value.position == 10
    broken = good.replace(b'"sender"', b'"sender" :: ')
    with pytest.raises(EventDecodeError, match="invalid JSON") as info:
        decoder.decode(ids_of(broken))
    # Non-ASCII text comes before the error: the position counts bytes, not characters.
    assert broken[info.value.position : info.value.position + 1] == b":"
    assert broken.index(b"\xc3") < info.value.position


@pytest.mark.parametrize(
    ("blob", "fragment"),
    [
        (b"", "empty"),
        (b"[1,2]", "JSON object"),
        (b'{"a":1,"a":2}', "duplicate"),
        (b'{"type":"x","payload":NaN,"sender":"s"}', "finite"),
        (b'{"type":"x","payload":1e999,"sender":"s"}', "finite"),
        (b'{"type":"x","payload":"\\ud800","sender":"s"}', "Unicode"),
        (b'{"type":"x","payload":1}\n{"type":"x"}', "delimiter"),
        (b"[" * 5000 + b"]" * 5000, "JSON"),
        (b'{"type":"x","payload":' + b"9" * 5000 + b',"sender":"s"}', "JSON"),
    ],
)
def test_malformed_events_raise_typed_errors(blob, fragment):
    with pytest.raises(EventError, match=fragment):
        decoder.decode_bytes(blob)


def test_decoder_rejects_non_token_tensors():
    for bad in (torch.zeros(3), torch.zeros(2, 2, dtype=torch.int64), torch.ones(3, dtype=torch.bool), [1, 2]):
        with pytest.raises(EventDecodeError):
            decoder.decode(bad)


def test_one_trailing_delimiter_is_accepted():
    event = make()
    assert decoder.decode(torch.cat([encoder.encode(event), torch.tensor([EVENT_DELIMITER])])) == event


def test_size_limit_applies_to_encoder_and_decoder():
    event = make(payload="x" * 300)
    small_encoder, small_decoder = EventEncoder(max_event_bytes=128), EventDecoder(max_event_bytes=128)
    with pytest.raises(EventValidationError, match="exceeds the limit of 128"):
        small_encoder.encode(event)
    with pytest.raises(EventDecodeError, match="exceeds") as info:
        small_decoder.decode(encoder.encode(event))
    assert info.value.position == 128


def test_padded_batch_uses_pad_id_and_mask():
    events = [make(), make(payload=None)]
    ids, mask = encoder.encode_padded(events, pad_id=256)
    lengths = [len(event.to_bytes()) for event in events]
    assert mask.sum(dim=1).tolist() == lengths and ids.shape == (2, max(lengths))
    assert set(ids[~mask].tolist()) == {256}
    empty_ids, empty_mask = encoder.encode_padded([])
    assert empty_ids.shape == (0, 0) and decoder.decode_padded(empty_ids, empty_mask) == []
    with pytest.raises(EventDecodeError, match="row 1"):
        mask[1] = False
        decoder.decode_padded(ids, mask)


def test_streaming_raise_mode_loses_nothing_around_a_bad_event():
    a, b = make(payload=1), make(payload=2)
    stream = a.to_bytes() + b"\n" + b"{oops}\n" + b.to_bytes() + b"\n"
    streaming = StreamingEventDecoder()
    with pytest.raises(EventDecodeError) as info:
        streaming.feed(stream)
    assert info.value.position == len(a.to_bytes()) + 2  # the 'o' of {oops}
    assert streaming.feed(b"") == [a, b]
    assert streaming.position == len(stream) and streaming.error_count == 1


def test_streaming_skip_mode_counts_errors_and_continues():
    a = make()
    streaming = StreamingEventDecoder(on_error="skip", max_event_bytes=200)
    events = streaming.feed(b"\n" + b"x" * 500 + b"\n" + a.to_bytes() + b"\n" + b"{}\n")
    assert events == [a]
    assert streaming.error_count == 3 and len(streaming.errors) == 3
    assert isinstance(streaming.errors[0], EventDecodeError) and "empty" in str(streaming.errors[0])
    assert streaming.errors[1].position == 1 + 200  # the first byte past the limit
    assert isinstance(streaming.errors[2], EventValidationError)


def test_streaming_push_overflow_and_truncation():
    streaming = StreamingEventDecoder(max_event_bytes=4)
    for byte in b"abcd":
        assert streaming.push(byte) is None
    with pytest.raises(EventDecodeError, match="within 4 bytes") as info:
        streaming.push(ord("e"))
    assert info.value.position == 4
    assert streaming.push(ord("f")) is None and streaming.pending_bytes == 0  # discarded to the delimiter
    assert streaming.push(EVENT_DELIMITER) is None
    with pytest.raises(EventDecodeError, match="outside 0..255"):
        streaming.push(300)
    with pytest.raises(EventDecodeError, match="not an integer"):
        streaming.push(1.5)  # type: ignore[arg-type]
    streaming.reset()
    streaming.push(ord("{"))
    with pytest.raises(EventDecodeError, match="stream ended inside an event"):
        streaming.finish()


def test_streaming_accepts_tensor_scalars_and_tensor_chunks():
    event = make()
    ids = encoder.encode_stream([event, event])
    streaming = StreamingEventDecoder()
    assert [e for e in (streaming.push(t) for t in ids[: len(ids) // 2]) if e] == [event]
    assert streaming.feed(ids[len(ids) // 2 :]) == [event]


def test_delimiter_is_the_newline_byte_and_never_inside_an_event():
    assert EVENT_DELIMITER == 0x0A == ord("\n")
    event = make(payload={"text": "line one\nline two\r\n\x00"})
    data = event.to_bytes()
    assert b"\n" not in data and b"\x00" not in data
    assert json.loads(data)["payload"]["text"].count("\n") == 2
