"""Hostile input to the event substrate: oversized integers anywhere in an envelope are typed errors,
the JSONL line reader never holds more than its limit of one line, and the bus stays fast with
many distinct priorities."""

from __future__ import annotations

import gc
import heapq
import io
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import EventError, EventValidationError
from mosaic.core.events.bus import EventBus
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.events.lines import LineSplitter, OversizedLine, read_event_lines

HUGE = 10**5000  # past Python's 4,300-digit limit for int <-> str conversion

secondary = settings(max_examples=min(settings().max_examples, 1000))


@pytest.mark.parametrize("data", [
    {"type": "a", "payload": HUGE, "sender": "s"},
    {"type": "a", "payload": {"deep": [1, {"x": -HUGE}]}, "sender": "s"},
    {"type": "a", "payload": {}, "sender": "s", "priority": HUGE},
    {"type": "a", "payload": {}, "sender": "s", "budget_ms": HUGE},
    {"type": "a", "payload": {}, "sender": "s", "ts": HUGE},
    {"type": "a", "payload": {}, "sender": "s", "commitment_delta": HUGE},
    {"type": HUGE, "payload": {}, "sender": "s"},
    {"type": "a", "payload": {}, "sender": "s", "id": HUGE},
    {"type": "a", "payload": {}, "sender": "s", HUGE: 1},
], ids=["payload", "nested", "priority", "budget_ms", "ts", "delta", "type", "id", "key"])
def test_oversized_integers_are_typed_errors(data: dict) -> None:
    with pytest.raises(EventValidationError) as raised:
        EventEnvelope.from_json_dict(data)
    assert "digits" in str(raised.value)


@secondary
@given(field=st.sampled_from(["type", "payload", "sender", "priority", "budget_ms", "id", "ts",
                              "commitment_delta", "commitment_id"]),
       digits=st.integers(4301, 8000), negative=st.booleans())
def test_any_field_holding_a_huge_integer_is_an_event_error(field: str, digits: int, negative: bool) -> None:
    value = (-1 if negative else 1) * 10 ** (digits - 1)
    data = {"type": "a", "payload": {}, "sender": "s", field: value}
    with pytest.raises(EventError):
        EventEnvelope.from_json_dict(data)


# --- the JSONL line reader ----------------------------------------------------------------------


class EndlessLine(io.RawIOBase):
    """``size`` bytes of one line (no newline until the end), made on demand; records the largest
    read asked of it."""

    def __init__(self, size: int, tail: bytes = b"") -> None:
        self.left = size
        self.tail = tail
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.largest_read = max(self.largest_read, len(buffer))
        if self.left > 0:
            count = min(len(buffer), self.left)
            buffer[:count] = b"x" * count
            self.left -= count
            return count
        count = min(len(buffer), len(self.tail))
        buffer[:count] = self.tail[:count]
        self.tail = self.tail[count:]
        return count


def test_lines_up_to_the_limit_pass_and_longer_ones_are_skipped() -> None:
    data = b"a" * 10 + b"\n" + b"b" * 11 + b"\n" + b"c\n" + b"d" * 30
    items = list(read_event_lines(io.BytesIO(data), max_line_bytes=10))
    assert items[0] == b"a" * 10 + b"\n"
    assert isinstance(items[1], OversizedLine) and items[1].size == 12
    assert items[2] == b"c\n"
    assert isinstance(items[3], OversizedLine) and items[3].size == 30
    assert len(items) == 4


def test_an_oversized_line_is_never_read_whole() -> None:
    raw = EndlessLine(200 * 2**20, tail=b"\n{}\n")
    stream = io.BufferedReader(raw, buffer_size=64 * 1024)
    limit = 1 << 20
    held = 0
    items = []
    for item in read_event_lines(stream, max_line_bytes=limit):
        held = max(held, len(item) if isinstance(item, bytes) else 0)
        items.append(item)
    assert isinstance(items[0], OversizedLine) and items[0].size == 200 * 2**20 + 1
    assert items[1] == b"{}\n"
    assert held <= limit + 1


@secondary
@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
       limit=st.integers(1, 32), final_newline=st.booleans())
def test_reader_splits_exactly_like_readlines_below_the_limit(lines: list[bytes], limit: int,
                                                              final_newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    expected = io.BytesIO(data).readlines()
    got = list(read_event_lines(io.BytesIO(data), max_line_bytes=limit))
    assert len(got) == len(expected)
    for item, line in zip(got, expected, strict=True):
        content = len(line.rstrip(b"\n"))
        if content <= limit:
            assert item == line
        else:
            assert isinstance(item, OversizedLine) and item.size == len(line)


@secondary
@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n")), limit=st.integers(1, 40),
       cuts=st.lists(st.integers(0, 300), max_size=8))
def test_the_push_splitter_gives_the_readers_lines_for_any_chunking(data: bytes, limit: int,
                                                                   cuts: list[int]) -> None:
    expected = list(read_event_lines(io.BytesIO(data), max_line_bytes=limit))
    splitter = LineSplitter(max_line_bytes=limit)
    got: list = []
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        got += splitter.feed(data[start:end])
    got += splitter.finish()
    assert got == expected


def test_reader_and_splitter_reject_a_bad_limit() -> None:
    with pytest.raises(EventValidationError):
        list(read_event_lines(io.BytesIO(b""), max_line_bytes=0))
    with pytest.raises(EventValidationError):
        LineSplitter(max_line_bytes=True)


# --- the bus with many distinct priorities --------------------------------------------------------


def _bus_seconds(events: list[EventEnvelope]) -> float:
    bus = EventBus(capacity=len(events))
    bus.subscribe("*", lambda event: None)
    start = time.process_time()
    for event in events:
        bus.publish(event)
    bus.drain()
    elapsed = time.process_time() - start
    assert bus.stats().deliveries == len(events)
    return elapsed


def _bare_heapq_seconds(events: list[EventEnvelope]) -> float:
    """The same ordering with a bare heap of (-priority, arrival, event) and one call per event."""
    heap: list = []
    handler = lambda event: None  # noqa: E731
    start = time.process_time()
    for arrival, event in enumerate(events):
        heapq.heappush(heap, (-event.priority, arrival, event))
    while heap:
        handler(heapq.heappop(heap)[2])
    return time.process_time() - start


def test_publish_with_distinct_priorities_stays_near_a_bare_heap() -> None:
    # Descending priorities: every publish brings a new lowest priority, the worst case of a sorted
    # list (an O(n) insert each, 8x the bare heap at this size) and no harder for a heap.
    count = 100_000
    events = [EventEnvelope("T", None, "s", priority=-n, id=f"e{n}", ts=1.0) for n in range(count)]
    ours = bare = float("inf")
    gc.collect()
    gc.disable()  # the collector's pauses depend on what else the test process holds, not on the bus
    try:
        for _ in range(5):  # alternated, best of five: load from other processes hits both alike
            bare = min(bare, _bare_heapq_seconds(events))
            ours = min(ours, _bus_seconds(events))
    finally:
        gc.enable()
    # The goal is 2x (benchmarks/bench_events.py measures it at 1M); 3x leaves room for noise.
    assert ours / bare < 3, (ours, bare)


@pytest.mark.parametrize("when_full", ["reject", "drop_lowest"])
def test_bus_matches_a_reference_queue_under_random_load(when_full: str) -> None:
    """Against a plain list: dispatch takes (highest priority, earliest arrival); when full,
    drop_lowest drops the most recent of the lowest (the newcomer when it ranks there)."""
    from mosaic.core.errors import BusFullError

    rng = random.Random(11)
    bus = EventBus(capacity=64, when_full=when_full)
    seen: list[EventEnvelope] = []
    bus.subscribe("*", seen.append)
    pending: list[tuple[int, int, EventEnvelope]] = []  # (priority, arrival, event)
    expected: list[EventEnvelope] = []
    for n in range(20_000):
        if rng.random() < 0.55:
            event = EventEnvelope("T", None, "s", priority=rng.randrange(-40, 40), id=f"e{n}", ts=1.0)
            if len(pending) >= 64:
                if when_full == "reject":
                    with pytest.raises(BusFullError):
                        bus.publish(event)
                    continue
                lowest = min(priority for priority, _, _ in pending)
                if event.priority <= lowest:
                    bus.publish(event)
                    assert bus.dropped_events[-1] is event
                    continue
                victim = max((item for item in pending if item[0] == lowest), key=lambda item: item[1])
                pending.remove(victim)
                bus.publish(event)
                assert bus.dropped_events[-1] is victim[2]
            else:
                bus.publish(event)
            pending.append((event.priority, n, event))
        elif pending:
            best = min(pending, key=lambda item: (-item[0], item[1]))
            pending.remove(best)
            expected.append(best[2])
            assert bus.dispatch_next() is best[2]
        assert len(bus) == len(pending)
    assert seen == expected
