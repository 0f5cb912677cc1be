"""``CommitmentLedger``: the promises an agent has opened and not yet closed.

An event with ``commitment_delta = +1`` opens the commitment named by its ``commitment_id``
("I will look for that file"), ``-1`` closes it ("Here is the content"), ``0`` with an id is a
progress note on it ("Working on it"). The ledger reports the open count, the balance (the sum of
all deltas seen), the age of the oldest open commitment, and anomalies — a close without an open, a
second open of an id that is already open, a non-zero delta without an id, a note on an id that is
not open — which are recorded and counted, never raised. ``metrics()`` feeds the
``drive.commitment_balance`` drive of a homeostatic loop.

The ledger is an :class:`~mosaic.core.events.bus.EventHandler`: ``bus.subscribe("*", ledger)``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from mosaic.core.errors import EventValidationError
from mosaic.core.events.envelope import EventEnvelope

CLOSE_WITHOUT_OPEN = "close_without_open"
DUPLICATE_OPEN = "duplicate_open"
MISSING_COMMITMENT_ID = "missing_commitment_id"
NOTE_WITHOUT_OPEN = "note_without_open"


@attrs.frozen
class OpenCommitment:
    """A commitment that was opened and not yet closed."""

    commitment_id: str
    opened_at: float  # the opening event's ts (unix seconds)
    event_id: str
    sender: str
    notes: int = 0  # progress notes (delta 0) received since it was opened


@attrs.frozen
class CommitmentAnomaly:
    """An event that does not fit the open/close protocol."""

    kind: str
    commitment_id: str | None
    event_id: str
    ts: float

    @property
    def message(self) -> str:
        return f"{self.kind}: commitment {self.commitment_id!r} (event {self.event_id})"


class CommitmentLedger:
    """Tracks commitments by id from the events it consumes.

    ``clock`` gives the current unix time for ages (events carry unix ``ts``); ``anomaly_limit``
    bounds the anomalies kept in ``anomalies`` (all are counted in ``anomaly_count``).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, anomaly_limit: int = 1000) -> None:
        if type(anomaly_limit) is not int or anomaly_limit < 0:
            raise EventValidationError("anomaly_limit", f"expected an integer >= 0, got {anomaly_limit!r}")
        self.clock = clock
        self._open: dict[str, OpenCommitment] = {}  # insertion order = opening order
        self.anomalies: deque[CommitmentAnomaly] = deque(maxlen=anomaly_limit)
        self.anomaly_count = 0
        self.balance = 0
        self.opened = 0
        self.closed = 0
        self.events_seen = 0

    # --- consuming --------------------------------------------------------------------------------

    def consume(self, event: EventEnvelope) -> CommitmentAnomaly | None:
        """Apply one event; the anomaly it caused, if any."""
        if type(event) is not EventEnvelope:
            raise EventValidationError("event", f"the ledger consumes EventEnvelopes, got {type(event).__name__}")
        self.events_seen += 1
        delta, commitment_id = event.commitment_delta, event.commitment_id
        self.balance += delta
        if commitment_id is None:
            return self._anomaly(MISSING_COMMITMENT_ID, event) if delta else None
        current = self._open.get(commitment_id)
        if delta == 1:
            if current is not None:
                return self._anomaly(DUPLICATE_OPEN, event)
            self._open[commitment_id] = OpenCommitment(commitment_id, event.ts, event.id, event.sender)
            self.opened += 1
            return None
        if delta == -1:
            if current is None:
                return self._anomaly(CLOSE_WITHOUT_OPEN, event)
            del self._open[commitment_id]
            self.closed += 1
            return None
        if current is None:
            return self._anomaly(NOTE_WITHOUT_OPEN, event)
        self._open[commitment_id] = attrs.evolve(current, notes=current.notes + 1)
        return None

    def consume_many(self, events: Iterable[EventEnvelope]) -> list[CommitmentAnomaly]:
        return [anomaly for event in events if (anomaly := self.consume(event)) is not None]

    def handle(self, event: EventEnvelope) -> None:
        """EventHandler protocol: lets the ledger subscribe to an event bus."""
        self.consume(event)

    def _anomaly(self, kind: str, event: EventEnvelope) -> CommitmentAnomaly:
        anomaly = CommitmentAnomaly(kind, event.commitment_id, event.id, event.ts)
        self.anomalies.append(anomaly)
        self.anomaly_count += 1
        return anomaly

    # --- reporting --------------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        return len(self._open)

    def is_open(self, commitment_id: str) -> bool:
        return commitment_id in self._open

    def open_commitments(self) -> list[OpenCommitment]:
        """Open commitments, oldest first."""
        return sorted(self._open.values(), key=lambda commitment: commitment.opened_at)

    def oldest_open_age(self, now: float | None = None) -> float | None:
        """Seconds since the oldest open commitment was opened (None when none is open)."""
        if not self._open:
            return None
        now = self.clock() if now is None else now
        return max(0.0, now - min(commitment.opened_at for commitment in self._open.values()))

    def metrics(self, now: float | None = None) -> dict[str, float]:
        """Numbers for a homeostatic loop (``commitment_balance`` is the built-in drive's metric)."""
        age = self.oldest_open_age(now)
        return {
            "commitment_balance": float(self.balance),
            "commitment_open": float(self.open_count),
            "commitment_oldest_age_s": 0.0 if age is None else age,
            "commitment_anomalies": float(self.anomaly_count),
        }

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready report (for ``summary.json`` and the CLI)."""
        return {
            "open": self.open_count,
            "opened": self.opened,
            "closed": self.closed,
            "balance": self.balance,
            "oldest_open_age_s": self.oldest_open_age(now),
            "anomalies": self.anomaly_count,
            "anomaly_kinds": sorted({anomaly.kind for anomaly in self.anomalies}),
            "events_seen": self.events_seen,
        }
