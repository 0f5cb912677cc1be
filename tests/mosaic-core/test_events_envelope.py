"""EventEnvelope: construction-time validation, strict from_json_dict, dict/JSON round-trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core import EventEnvelope
from mosaic.core.errors import EventValidationError
from mosaic.core.events.envelope import FIELD_NAMES, INT_MAX, INT_MIN, MAX_PAYLOAD_DEPTH

names = st.text(min_size=1, max_size=24)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT_MIN, INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
payloads = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
envelopes = st.builds(
    EventEnvelope,
    type=names,
    payload=payloads,
    sender=names,
    priority=st.integers(INT_MIN, INT_MAX),
    budget_ms=st.none() | st.integers(0, INT_MAX),
    id=names,
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False) | st.integers(0, 2**40),
    commitment_delta=st.sampled_from([-1, 0, 1]),
    commitment_id=st.none() | names,
)
# Anything json.loads could produce, and the Python values a careless caller might pass.
wild_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.just("\ud800")
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3)
    | st.tuples(inner)
    | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3),
    max_leaves=10,
)
field_names = st.sampled_from(
    ["type", "payload", "sender", "priority", "budget_ms", "id", "ts", "commitment_delta", "commitment_id"]
)


def make(**changes):
    fields = {"type": "Message", "payload": {"text": "hi"}, "sender": "user"}
    fields.update(changes)
    return EventEnvelope(**fields)


@given(envelopes)
def test_every_valid_envelope_round_trips_through_dict_and_json(event):
    assert EventEnvelope.from_json_dict(event.to_json_dict()) == event
    text = event.to_json()
    assert EventEnvelope.from_json_dict(json.loads(text)) == event
    assert "\n" not in text and text == json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


@given(st.dictionaries(field_names | st.text(max_size=6), wild_values, max_size=10) | wild_values)
def test_arbitrary_json_gives_an_envelope_or_a_validation_error(data):
    try:
        event = EventEnvelope.from_json_dict(data)
    except EventValidationError as exc:
        named = set(map(str, data)) if isinstance(data, dict) else set()
        assert exc.field in FIELD_NAMES | {"event"} | named
        return
    assert EventEnvelope.from_json_dict(event.to_json_dict()) == event


@given(field_names, wild_values)
def test_one_corrupted_field_is_named_in_the_error(field, value):
    data = make(commitment_id="c1").to_json_dict()
    data[field] = value
    try:
        event = EventEnvelope.from_json_dict(data)
    except EventValidationError as exc:
        assert exc.field == field
        return
    assert getattr(event, field) == value


def test_defaults_are_generated():
    a, b = make(), make()
    assert a.priority == 0 and a.budget_ms is None and a.commitment_delta == 0 and a.commitment_id is None
    assert len(a.id) == 32 and int(a.id, 16) >= 0 and a.id != b.id
    assert isinstance(a.ts, float) and a.ts > 1.6e9


def test_to_json_dict_omits_commitment_id_only_when_none():
    assert "commitment_id" not in make().to_json_dict()
    assert make().to_json_dict()["budget_ms"] is None
    assert make(commitment_id="c7", commitment_delta=1).to_json_dict()["commitment_id"] == "c7"


def test_missing_id_and_ts_are_generated_but_type_payload_sender_required():
    event = EventEnvelope.from_json_dict({"type": "Idle", "payload": None, "sender": "clock"})
    assert event.id and event.ts > 0
    for field in ("type", "payload", "sender"):
        data = make().to_json_dict()
        del data[field]
        with pytest.raises(EventValidationError, match="required") as info:
            EventEnvelope.from_json_dict(data)
        assert info.value.field == field


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("priority", True, "integer"),
        ("priority", 1.0, "integer"),
        ("budget_ms", -1, "outside"),
        ("commitment_delta", 2, "-1, 0 or 1"),
        ("commitment_delta", True, "-1, 0 or 1"),
        ("commitment_id", "", "characters"),
        ("ts", math.nan, "finite"),
        ("ts", math.inf, "finite"),
        ("ts", -5.0, ">= 0"),
        ("ts", "now", "finite"),
        ("type", "", "characters"),
        ("sender", 7, "string"),
        ("payload", {"x": math.nan}, "$.x"),
        ("payload", {"x": [1, (2, 3)]}, "$.x[1]"),
        ("payload", {1: "a"}, "key"),
        ("payload", {"s": "\ud800"}, "Unicode"),
        ("payload", 2**70, "64 bits"),
    ],
)
def test_invalid_fields_raise_typed_errors_naming_field_and_value(field, value, fragment):
    with pytest.raises(EventValidationError, match=f"'{field}'") as info:
        make(**{field: value})
    assert info.value.field == field
    assert fragment in str(info.value)
    data = make().to_json_dict()
    data[field] = value
    with pytest.raises(EventValidationError):
        EventEnvelope.from_json_dict(data)


def test_unknown_keys_are_rejected_by_name():
    data = make().to_json_dict()
    data["colour"] = "red"
    with pytest.raises(EventValidationError, match="colour") as info:
        EventEnvelope.from_json_dict(data)
    assert info.value.field == "colour"


def test_non_objects_are_rejected():
    for data in ([], "event", None, 3):
        with pytest.raises(EventValidationError, match="JSON object"):
            EventEnvelope.from_json_dict(data)


def test_payload_nesting_is_bounded():
    deep: object = "leaf"
    for _ in range(MAX_PAYLOAD_DEPTH):
        deep = [deep]
    assert make(payload=deep).payload == deep
    with pytest.raises(EventValidationError, match="deeper"):
        make(payload=[deep])
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(EventValidationError, match="deeper"):
        make(payload=cyclic)


def test_byte_limit_is_configurable():
    data = make(payload="x" * 500).to_json_dict()
    size = len(EventEnvelope.from_json_dict(data).to_bytes())
    assert EventEnvelope.from_json_dict(data, max_bytes=size).payload == "x" * 500
    with pytest.raises(EventValidationError, match=f"{size} bytes exceeds the limit of {size - 1}"):
        EventEnvelope.from_json_dict(data, max_bytes=size - 1)
    assert EventEnvelope.from_json_dict(data, max_bytes=None).payload == "x" * 500


def test_envelopes_are_frozen_hashable_and_replaceable():
    event = make(priority=3)
    with pytest.raises(AttributeError):
        event.priority = 4  # type: ignore[misc]
    assert {event: 1}[event] == 1
    bumped = event.replace(priority=9)
    assert bumped.priority == 9 and bumped.id == event.id and bumped != event
    with pytest.raises(EventValidationError):
        event.replace(commitment_delta=5)


def test_integer_timestamps_become_float_seconds():
    assert make(ts=12).ts == 12.0 and type(make(ts=12).ts) is float
    with pytest.raises(EventValidationError, match="'ts'"):
        make(ts=10**400)
