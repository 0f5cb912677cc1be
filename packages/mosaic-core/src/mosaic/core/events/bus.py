"""``EventBus``: an in-memory, priority-ordered event dispatcher.

Delivery is by priority (higher first) and FIFO within a priority. Every event is accounted for:
it is delivered to its handlers, counted as unrouted when nobody subscribed, rejected or dropped by
the full-queue policy, and a handler that raises sends (event, handler, error) to the dead-letter
record while the other handlers still receive the event. Runtimes on asyncio await the next event
with :meth:`EventBus.next_event` (or ``async for``) without polling.

The bus is single-threaded: publish from the thread that runs it (from another thread use
``loop.call_soon_threadsafe(bus.publish, event)``).
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

import attrs

from mosaic.core.errors import BusFullError, ConfigError, ConfigProblem, EventValidationError
from mosaic.core.events.envelope import EventEnvelope

WILDCARD = "*"
WHEN_FULL_POLICIES = ("reject", "drop_lowest")


@runtime_checkable
class EventHandler(Protocol):
    """Anything with ``handle(event)``; a plain ``callable(event)`` is accepted as well."""

    def handle(self, event: EventEnvelope) -> None: ...


@attrs.frozen
class Subscription:
    """Returned by :meth:`EventBus.subscribe`; pass it to :meth:`EventBus.unsubscribe`."""

    event_type: str
    name: str
    callback: Callable[[EventEnvelope], Any] = attrs.field(repr=False, eq=False)
    serial: int = attrs.field(repr=False)


@attrs.frozen
class DeadLetter:
    """An event a handler failed on, with the handler's name and the error it raised."""

    event: EventEnvelope
    handler: str
    error: BaseException = attrs.field(eq=False)

    @property
    def message(self) -> str:
        return f"{self.handler} failed on {self.event.type} {self.event.id}: {type(self.error).__name__}: {self.error}"


@attrs.frozen
class BusStats:
    """Counters since the bus was created.

    ``published`` = ``dispatched`` + ``dropped`` + ``pending`` + ``popped``; ``rejected`` events
    were never accepted. Each dispatched event reached each of its handlers as one ``deliveries``
    or one ``dead_lettered``; ``unrouted`` counts dispatched events that had no subscriber.
    """

    published: int
    rejected: int
    dropped: int
    dispatched: int
    popped: int
    deliveries: int
    dead_lettered: int
    unrouted: int
    pending: int


def _handler_name(handler: Any) -> str:
    name = getattr(handler, "name", None)
    if isinstance(name, str) and name:
        return name
    if not isinstance(handler, EventHandler):
        qualname = getattr(handler, "__qualname__", None)
        if isinstance(qualname, str):
            return qualname
    return type(handler).__qualname__


class EventBus:
    """Priority queue of events plus subscriptions by event type (or ``"*"`` for every type).

    ``capacity`` bounds the queue; when it is full ``when_full`` decides: ``"reject"`` raises
    :class:`BusFullError`, ``"drop_lowest"`` drops the lowest-priority, most recently queued event
    (the incoming one when it ranks there) and records it in ``dropped_events``.
    """

    def __init__(
        self, *, capacity: int = 100_000, when_full: str = "reject", dead_letter_limit: int = 1000
    ) -> None:
        problems = []
        if type(capacity) is not int or capacity < 1:
            problems.append(ConfigProblem("$.capacity", f"expected a positive integer, got {capacity!r}"))
        if when_full not in WHEN_FULL_POLICIES:
            problems.append(ConfigProblem("$.when_full", f"expected one of {WHEN_FULL_POLICIES}, got {when_full!r}"))
        if type(dead_letter_limit) is not int or dead_letter_limit < 0:
            problems.append(
                ConfigProblem("$.dead_letter_limit", f"expected an integer >= 0, got {dead_letter_limit!r}")
            )
        if problems:
            raise ConfigError(problems, source="EventBus")
        self.capacity = capacity
        self.when_full = when_full
        #: The latest ``dead_letter_limit`` failures (all are counted in ``stats().dead_lettered``).
        self.dead_letters: deque[DeadLetter] = deque(maxlen=dead_letter_limit)
        #: The latest ``dead_letter_limit`` events dropped by the ``drop_lowest`` policy.
        self.dropped_events: deque[EventEnvelope] = deque(maxlen=dead_letter_limit)
        # One FIFO per priority that has queued events, found through heaps of priorities: a max-heap
        # (negated) for dispatch and, for drop_lowest only, a min-heap. Entries whose FIFO emptied
        # are left in a heap until they surface (lazy deletion), so every operation is O(log n) in
        # the number of distinct priorities; a sorted list made each new priority O(n).
        self._queues: dict[int, deque[EventEnvelope]] = {}
        self._highest_first: list[int] = []  # heap of -priority
        self._lowest_first: list[int] | None = [] if when_full == "drop_lowest" else None
        self._size = 0
        self._subscriptions: list[Subscription] = []
        self._targets: dict[str, tuple[Subscription, ...]] = {}  # per event type, built on first use
        self._serial = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._published = self._rejected = self._dropped = self._dispatched = self._popped = 0
        self._deliveries = self._dead_lettered = self._unrouted = 0

    # --- subscriptions ----------------------------------------------------------------------------

    def subscribe(
        self, event_type: str, handler: EventHandler | Callable[[EventEnvelope], Any], *, name: str | None = None
    ) -> Subscription:
        """Deliver events of ``event_type`` (``"*"``: all) to ``handler``, in subscription order."""
        if type(event_type) is not str or not event_type:
            raise EventValidationError("type", f"subscribe expects an event type or '*', got {event_type!r}")
        callback: Callable[[EventEnvelope], Any]
        if isinstance(handler, EventHandler):
            callback = handler.handle
        elif callable(handler):
            callback = handler
        else:
            raise EventValidationError("handler", f"expected a callable or an EventHandler, got {handler!r}")
        self._serial += 1
        subscription = Subscription(event_type, name or _handler_name(handler), callback, self._serial)
        self._subscriptions.append(subscription)
        self._targets.clear()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> bool:
        """Remove a subscription; False if it was not active."""
        kept = [sub for sub in self._subscriptions if sub.serial != subscription.serial]
        removed = len(kept) != len(self._subscriptions)
        self._subscriptions = kept
        self._targets.clear()
        return removed

    def _targets_for(self, event_type: str) -> tuple[Subscription, ...]:
        targets = tuple(sub for sub in self._subscriptions if sub.event_type in (event_type, WILDCARD))
        self._targets[event_type] = targets
        return targets

    # --- queue ------------------------------------------------------------------------------------

    def publish(self, event: EventEnvelope) -> None:
        """Queue ``event``; apply the full-queue policy when the bus is at capacity."""
        if type(event) is not EventEnvelope:
            raise EventValidationError("event", f"publish expects an EventEnvelope, got {type(event).__name__}")
        if self._size >= self.capacity:
            if self.when_full == "reject":
                self._rejected += 1
                raise BusFullError(
                    f"event bus full ({self.capacity} events queued); rejected {event.type} {event.id}"
                )
            lowest = self._lowest()
            if event.priority <= lowest:
                self._published += 1
                self._dropped += 1
                self.dropped_events.append(event)
                return
            queue = self._queues[lowest]
            self.dropped_events.append(queue.pop())
            self._dropped += 1
            self._size -= 1
            if not queue:
                del self._queues[lowest]
                heapq.heappop(self._lowest_first)  # type: ignore[arg-type]  # its top is ``lowest``
        priority = event.priority
        target = self._queues.get(priority)
        if target is None:
            target = self._queues[priority] = deque()
            self._add_priority(priority)
        target.append(event)
        self._size += 1
        self._published += 1
        if self._waiters:
            self._wake_waiters()

    def _add_priority(self, priority: int) -> None:
        high, low = self._highest_first, self._lowest_first
        # Stale entries are dropped in one O(n) rebuild once they outnumber the live ones.
        if len(high) > 2 * len(self._queues) + 64:
            high[:] = [-p for p in self._queues if p != priority]
            heapq.heapify(high)
        heapq.heappush(high, -priority)
        if low is not None:
            if len(low) > 2 * len(self._queues) + 64:
                low[:] = [p for p in self._queues if p != priority]
                heapq.heapify(low)
            heapq.heappush(low, priority)

    def _highest(self) -> int:
        high, queues = self._highest_first, self._queues
        while -high[0] not in queues:
            heapq.heappop(high)
        return -high[0]

    def _lowest(self) -> int:
        low, queues = self._lowest_first, self._queues
        while low[0] not in queues:  # type: ignore[index]
            heapq.heappop(low)  # type: ignore[arg-type]
        return low[0]  # type: ignore[index]

    def has_pending(self) -> bool:
        return self._size > 0

    def __len__(self) -> int:
        return self._size

    def _take(self) -> EventEnvelope:
        priority = self._highest()
        queue = self._queues[priority]
        event = queue.popleft()
        if not queue:
            del self._queues[priority]
            heapq.heappop(self._highest_first)  # its top is ``priority``
        self._size -= 1
        return event

    def pop(self) -> EventEnvelope | None:
        """Remove and return the next event without dispatching it (None when empty)."""
        if not self._size:
            return None
        self._popped += 1
        return self._take()

    # --- dispatch -------------------------------------------------------------------------------

    def _deliver(self, event: EventEnvelope) -> None:
        targets = self._targets.get(event.type)
        if targets is None:
            targets = self._targets_for(event.type)
        self._dispatched += 1
        if not targets:
            self._unrouted += 1
            return
        failures = 0
        for subscription in targets:
            try:
                subscription.callback(event)
            except Exception as error:  # noqa: BLE001 — isolation: any handler bug is dead-lettered
                failures += 1
                self.dead_letters.append(DeadLetter(event, subscription.name, error))
        self._deliveries += len(targets) - failures
        self._dead_lettered += failures

    def dispatch_next(self) -> EventEnvelope | None:
        """Deliver the next event to its handlers; the event, or None when nothing was pending."""
        if not self._size:
            return None
        event = self._take()
        self._deliver(event)
        return event

    def drain(self, max_events: int | None = None) -> int:
        """Dispatch until the queue is empty (or ``max_events`` were dispatched); how many were."""
        count = 0
        limit = -1 if max_events is None else max_events
        take, deliver = self._take, self._deliver
        while self._size and count != limit:
            deliver(take())
            count += 1
        return count

    def stats(self) -> BusStats:
        return BusStats(
            published=self._published,
            rejected=self._rejected,
            dropped=self._dropped,
            dispatched=self._dispatched,
            popped=self._popped,
            deliveries=self._deliveries,
            dead_lettered=self._dead_lettered,
            unrouted=self._unrouted,
            pending=self._size,
        )

    # --- asyncio --------------------------------------------------------------------------------

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_pending(self) -> None:
        """Return once an event is queued (immediately if one already is); never polls."""
        while not self._size:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def next_event(self) -> EventEnvelope:
        """Await and remove the next event (like :meth:`pop`). Cancelling loses no event: the event
        is taken only after the wait completes."""
        await self.wait_pending()
        self._popped += 1
        return self._take()

    async def dispatch_next_async(self) -> EventEnvelope:
        """Await the next event and deliver it to its handlers."""
        await self.wait_pending()
        event = self._take()
        self._deliver(event)
        return event

    def __aiter__(self) -> AsyncIterator[EventEnvelope]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[EventEnvelope]:
        while True:
            yield await self.next_event()
