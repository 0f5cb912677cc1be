"""EventBus: priority order, isolation of failing handlers, full-queue policies, asyncio waiting,
and a 1,000,000-event run in which every event is accounted for."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from mosaic.core import EventBus, EventEnvelope, EventHandler
from mosaic.core.errors import BusFullError, ConfigError, EventValidationError


def make(type_="Message", priority=0, n=0):
    return EventEnvelope(type_, {"n": n}, "test", priority=priority, id=f"e{n}", ts=1.0)


def test_delivery_is_by_priority_then_fifo():
    bus = EventBus()
    seen = []
    bus.subscribe("*", lambda event: seen.append(event.payload["n"]))
    for n, priority in enumerate([0, 5, 0, 5, -2, 9, 0]):
        bus.publish(make(priority=priority, n=n))
    assert bus.has_pending() and len(bus) == 7
    assert bus.drain() == 7
    assert seen == [5, 1, 3, 0, 2, 6, 4]
    assert not bus.has_pending() and bus.dispatch_next() is None and bus.pop() is None


def test_subscription_by_type_and_wildcard_and_unsubscribe():
    bus = EventBus()
    got = Counter()

    class Recorder:
        def handle(self, event):
            got["recorder:" + event.type] += 1

    assert isinstance(Recorder(), EventHandler)
    wildcard = bus.subscribe("*", lambda event: got.update(["any"]))
    bus.subscribe("Ping", Recorder())
    for type_ in ("Ping", "Pong", "Ping"):
        bus.publish(make(type_))
    bus.drain()
    assert got == {"any": 3, "recorder:Ping": 2}
    assert bus.unsubscribe(wildcard) and not bus.unsubscribe(wildcard)
    bus.publish(make("Pong"))
    bus.drain()
    assert got["any"] == 3 and bus.stats().unrouted == 1


def test_event_without_subscriber_is_counted_not_an_error():
    bus = EventBus()
    bus.publish(make("Nobody"))
    assert bus.dispatch_next().type == "Nobody"
    stats = bus.stats()
    assert stats.unrouted == 1 and stats.dispatched == 1 and stats.deliveries == 0


def test_failing_handler_is_isolated_and_dead_lettered():
    bus = EventBus()
    healthy = []

    def broken(event):
        raise RuntimeError(f"boom {event.id}")

    bus.subscribe("Message", healthy.append, name="first")
    bus.subscribe("Message", broken)
    bus.subscribe("*", healthy.append, name="last")
    event = make()
    bus.publish(event)
    assert bus.dispatch_next() == event
    assert healthy == [event, event]
    [letter] = bus.dead_letters
    assert letter.event == event and "broken" in letter.handler and "boom e0" in str(letter.error)
    assert "RuntimeError" in letter.message
    stats = bus.stats()
    assert stats.deliveries == 2 and stats.dead_lettered == 1


def test_reject_policy_raises_typed_error_and_counts():
    bus = EventBus(capacity=2)
    bus.publish(make(n=1))
    bus.publish(make(n=2))
    with pytest.raises(BusFullError, match="full"):
        bus.publish(make(n=3, priority=100))
    assert len(bus) == 2 and bus.stats().rejected == 1 and bus.stats().published == 2


def test_drop_lowest_policy_drops_the_lowest_most_recent_event():
    bus = EventBus(capacity=3, when_full="drop_lowest")
    for n, priority in [(1, 1), (2, 0), (3, 0)]:
        bus.publish(make(priority=priority, n=n))
    bus.publish(make(priority=0, n=4))  # ties the lowest: the newcomer is dropped
    bus.publish(make(priority=2, n=5))  # outranks: the newest of the lowest (n=3) is dropped
    assert [event.payload["n"] for event in bus.dropped_events] == [4, 3]
    order = []
    while bus.has_pending():
        order.append(bus.pop().payload["n"])
    assert order == [5, 1, 2]
    stats = bus.stats()
    assert stats.dropped == 2 and stats.published == 5 and stats.popped == 3


def test_invalid_arguments_raise_typed_errors():
    with pytest.raises(ConfigError, match=r"\$.capacity"):
        EventBus(capacity=0)
    with pytest.raises(ConfigError, match=r"\$.when_full"):
        EventBus(when_full="block")
    bus = EventBus()
    with pytest.raises(EventValidationError):
        bus.publish({"type": "Message"})  # type: ignore[arg-type]
    with pytest.raises(EventValidationError):
        bus.subscribe("", print)
    with pytest.raises(EventValidationError):
        bus.subscribe("Message", 42)  # type: ignore[arg-type]


def test_handlers_may_publish_while_draining():
    bus = EventBus()
    seen = []

    def echo(event):
        seen.append(event.type)
        if event.type == "Ping":
            bus.publish(make("Pong", n=event.payload["n"] + 1))

    bus.subscribe("*", echo)
    bus.publish(make("Ping"))
    assert bus.drain() == 2 and seen == ["Ping", "Pong"]


def test_async_next_event_waits_without_polling():
    async def scenario():
        bus = EventBus()
        received = []

        async def consumer():
            async for event in bus:
                received.append(event.payload["n"])
                if len(received) == 3:
                    return

        task = asyncio.create_task(consumer())
        await asyncio.sleep(0)
        assert not task.done() and len(bus._waiters) == 1  # parked on a future, not spinning
        for n in range(3):
            bus.publish(make(n=n))
            await asyncio.sleep(0)
        await asyncio.wait_for(task, 1)
        assert received == [0, 1, 2]
        # A timed-out wait loses nothing: the event is taken only once the wait completes.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bus.next_event(), 0.01)
        assert bus._waiters == []
        bus.publish(make(n=7))
        handled = []
        bus.subscribe("*", handled.append)
        assert (await bus.dispatch_next_async()).payload["n"] == 7 and len(handled) == 1
        return bus.stats()

    stats = asyncio.run(scenario())
    assert stats.popped == 3 and stats.dispatched == 1


@pytest.mark.parametrize("when_full", ["reject", "drop_lowest"])
def test_one_million_events_are_all_accounted_for(when_full):
    total = 1_000_000
    pool = [
        EventEnvelope(("Message", "Tick", "Tool")[n % 3], {"n": n}, "load", priority=n % 4, id=f"p{n}", ts=1.0)
        for n in range(4096)
    ]
    # The record limit is large enough to keep every dropped event, so each can be accounted for.
    bus = EventBus(capacity=3000, when_full=when_full, dead_letter_limit=total)
    healthy = Counter()
    failures = Counter()

    def count_all(event):
        healthy[event.id] += 1

    def count_ticks(event):
        healthy["tick"] += 1

    def fails_on_tenth(event):
        if event.payload["n"] % 10 == 0:
            failures[event.id] += 1
            raise ValueError("unlucky event")

    bus.subscribe("*", count_all)
    bus.subscribe("*", fails_on_tenth)
    bus.subscribe("Tick", count_ticks)
    published = Counter()
    rejected = 0
    for start in range(0, total, 4096):
        for event in pool[: min(4096, total - start)]:
            try:
                bus.publish(event)
            except BusFullError:
                rejected += 1
                continue
            published[event.id] += 1  # includes a newcomer the drop policy discards at once
        bus.drain(max_events=2048)
    bus.drain()
    stats = bus.stats()
    dropped = Counter(event.id for event in bus.dropped_events)

    assert stats.pending == 0 and stats.rejected == rejected
    assert stats.published + stats.rejected == total
    assert stats.published == stats.dispatched + stats.dropped
    assert (rejected > 0) == (when_full == "reject") and (stats.dropped > 0) == (when_full == "drop_lowest")
    # Every dispatched event reached count_all; ticks also reached count_ticks; every tenth failed once.
    assert sum(count for key, count in healthy.items() if key != "tick") == stats.dispatched
    assert stats.deliveries + stats.dead_lettered == 2 * stats.dispatched + healthy["tick"]
    assert stats.dead_lettered == sum(failures.values()) > 0
    assert len(bus.dead_letters) == stats.dead_lettered and stats.unrouted == 0
    assert sum(dropped.values()) == stats.dropped
    delivered = Counter({key: n for key, n in healthy.items() if key != "tick"})
    assert published == delivered + dropped
