"""The reactive event runtime behind ``mosaic events``: JSONL events in, JSONL events out.

Each non-blank input line is parsed strictly as one event (any JSON spacing or key order; the model
is fed its canonical bytes). A line that is not an event becomes an ``Error`` event naming the line
and the reason, and the loop goes on. Every accepted event is fed to the session and, when its type
is answered, followed by the model's response (or an ``Error`` for an invalid generation; the model's
tool requests are executed when a tool registry is attached, see :mod:`.tool_flow`). With
``trace_ledger`` a ``Ledger`` event after each consumed event shows the commitment head's delta and
the running open/close balance; a final ``LedgerSummary`` event reports the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mosaic.core.errors import EventError
from mosaic.core.events.codec import decode_event_bytes
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.events.lines import OversizedLine
from mosaic.runtime.agent.responder import EventSession, error_event
from mosaic.runtime.agent.tool_flow import ToolBridge, respond

LEDGER_EVENT_TYPE = "Ledger"
SUMMARY_EVENT_TYPE = "LedgerSummary"


def parse_line(line: bytes | str | OversizedLine, number: int,
               sender: str) -> tuple[EventEnvelope | None, EventEnvelope | None]:
    """One input line as ``(event, None)``, or ``(None, Error event)`` saying why it is not one
    (an :class:`OversizedLine` from :func:`~mosaic.core.events.lines.read_event_lines` never is)."""
    if isinstance(line, OversizedLine):
        return None, error_event(f"input line {number} is not an event: {line.message}", "input", sender,
                                 line=number)
    data = line.encode("utf-8", errors="surrogatepass") if isinstance(line, str) else bytes(line)
    try:
        return decode_event_bytes(data.strip()), None
    except EventError as exc:
        return None, error_event(f"input line {number} is not an event: {exc}", "input", sender, line=number)


class ReactiveRuntime:
    """Drives an :class:`EventSession` from lines of JSONL; emitted events go to ``emit``."""

    def __init__(self, session: EventSession, emit: Callable[[EventEnvelope], Any], *,
                 respond_to: frozenset[str] | None = None, trace_ledger: bool = False,
                 tools: ToolBridge | None = None) -> None:
        self.session = session
        self.tools = tools
        self.emit = emit
        self.respond_to = respond_to
        self.trace_ledger = trace_ledger
        self.lines = 0
        self.input_errors = 0

    def _ledger_event(self, event: EventEnvelope, delta: int | None) -> EventEnvelope:
        ledger = self.session.ledger
        payload = {"event_id": event.id, "event_type": event.type, "commitment_id": event.commitment_id,
                   "delta": event.commitment_delta if delta is None else delta,
                   "source": "event" if delta is None else "head",
                   "balance": ledger.balance, "open": ledger.open_count, "opened": ledger.opened,
                   "closed": ledger.closed}
        return EventEnvelope(LEDGER_EVENT_TYPE, payload, self.session.config.sender)

    def handle_event(self, event: EventEnvelope) -> None:
        delta = self.session.observe(event)
        if self.trace_ledger:
            self.emit(self._ledger_event(event, delta))
        if self.respond_to is not None and event.type not in self.respond_to:
            return
        respond(self.session, event, self._emit_response, self.tools)

    def _emit_response(self, event: EventEnvelope) -> None:
        self.emit(event)
        if self.trace_ledger and event.type != "Error":
            self.emit(self._ledger_event(event, self.session.last_head_delta))

    def handle_line(self, line: bytes | str | OversizedLine) -> None:
        self.lines += 1
        if not isinstance(line, OversizedLine) and not line.strip():
            return  # blank lines separate nothing in JSONL; they are not events
        event, error = parse_line(line, self.lines, self.session.config.sender)
        if error is not None:
            self.input_errors += 1
            self.emit(error)
            return
        assert event is not None  # parse_line returns exactly one of the two
        self.handle_event(event)

    def run(self, lines: Iterable[bytes | str | OversizedLine], *, stop_when: Callable[[], bool] | None = None) -> None:
        """Handle ``lines`` in order; stop early once ``stop_when()`` is true (e.g. the output closed)."""
        for line in lines:
            self.handle_line(line)
            if stop_when is not None and stop_when():
                return

    def summary_event(self) -> EventEnvelope:
        session = self.session
        payload = {**session.ledger.summary(), "lines": self.lines, "input_errors": self.input_errors,
                   "responses": session.responses, "invalid_generations": session.invalid_generations,
                   "tokens_seen": session.tokens_seen}
        return EventEnvelope(SUMMARY_EVENT_TYPE, payload, session.config.sender)
