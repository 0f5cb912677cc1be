"""The autonomous runtime behind ``mosaic live``: an asyncio loop that wakes itself.

Each tick, in this order: an external event waiting on the :class:`EventBus` is answered; otherwise
the :class:`HomeostaticLoop` reads the live model metrics (see :mod:`.metrics`: memory occupancy and write rate,
memory-router entropy, input novelty, commitment balance, output confidence) and, when a drive is out of band, the ``Impulse``
event is fed to the model, which generates in response; otherwise the tick is idle and, every
``consolidate_every_ticks`` idle ticks, consolidation prunes and refreshes the live session's memory
(computed on a copy that replaces the live state only when it succeeds; recorded in the session and
emitted as a ``Consolidation`` event; skipped when the session has consumed nothing since the last
consolidation). The bus
works with no subscriber (events are popped, never dispatched into the void). SIGINT/SIGTERM stop
the loop after the current tick and the session is saved; ``max_ticks`` bounds a run. With a tool
bridge, the model's tool requests are executed and their replies fed back (:mod:`.tool_flow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import stat
import threading
from collections.abc import Callable
from typing import IO, Any

import attrs

from mosaic.core.errors import RuntimeStateError
from mosaic.core.events.bus import EventBus
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.events.lines import SKIP_CHUNK_BYTES, LineSplitter, OversizedLine, read_event_lines
from mosaic.core.homeostasis import HomeostaticLoop, check_drive_metrics
from mosaic.runtime.agent.config import ConsolidationConfig, LiveConfig
from mosaic.runtime.agent.consolidation import (
    CONSOLIDATION_EVENT_TYPE,
    ConsolidationReport,
    consolidate_session,
)
from mosaic.runtime.agent.reactive import parse_line
from mosaic.runtime.agent.service import Agent
from mosaic.runtime.agent.tool_flow import ToolBridge, respond

SHUTDOWN_EVENT_TYPE = "Shutdown"


@attrs.define
class LiveCounters:
    ticks: int = 0
    external: int = 0
    impulses: int = 0
    consolidations: int = 0
    idle: int = 0
    input_errors: int = 0


class AutonomousRuntime:
    """Runs an :class:`Agent` under homeostasis; feed it with :meth:`submit` / :meth:`submit_line`."""

    def __init__(self, agent: Agent, homeostasis: HomeostaticLoop, *, config: LiveConfig | None = None,
                 consolidation: ConsolidationConfig | None = None, bus: EventBus | None = None,
                 tools: ToolBridge | None = None) -> None:
        self.agent = agent
        self.tools = tools
        self.homeostasis = homeostasis
        self.config = config or LiveConfig()
        self.consolidation = consolidation or ConsolidationConfig()
        self.bus = bus if bus is not None else EventBus()
        self.counters = LiveCounters()
        self.last_consolidation: ConsolidationReport | None = None
        self.rng = random.Random(self.consolidation.seed)
        self._stop_reason: str | None = None
        self._wake: asyncio.Event | None = None
        self._lines_seen = 0
        self._consolidated_at = -1  # session.tokens_seen at the last consolidation
        agent.metrics()  # a model whose state has no readable metrics is refused now, not mid-loop
        # a drive on a metric this runtime never reports could never fire: refused now, by name
        check_drive_metrics(homeostasis.drives, agent.reported_metrics(), runtime=f"the live runtime of {agent.loaded.model_id}")

    # --- input ------------------------------------------------------------------------------------

    def submit(self, event: EventEnvelope) -> None:
        self.bus.publish(event)

    def submit_line(self, line: bytes | str | OversizedLine) -> None:
        """One JSONL line from outside: queued as an event, or emitted as an input Error event."""
        self._lines_seen += 1
        if not isinstance(line, OversizedLine) and not line.strip():
            return
        event, error = parse_line(line, self._lines_seen, self.agent.session.config.sender)
        if error is not None:
            self.counters.input_errors += 1
            self.agent.emit(error)
            return
        assert event is not None  # parse_line returns exactly one of the two
        self.submit(event)

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to finish after the current tick (safe from a signal handler)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._wake is not None:
            self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    # --- the loop -----------------------------------------------------------------------------------

    async def _wait_for_event(self) -> None:
        """Return when an event is queued, a stop is requested, or ``poll_ms`` has passed."""
        if self.bus.has_pending() or self.stopping:
            return
        wake = self._wake
        assert wake is not None  # run() creates it before the loop starts
        pending = asyncio.ensure_future(self.bus.wait_pending())
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({pending, woken}, timeout=self.config.poll_ms / 1000,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pending, woken):
                task.cancel()
            await asyncio.gather(pending, woken, return_exceptions=True)

    async def tick(self) -> str:
        """One tick; what it did: ``external``, ``impulse``, ``consolidation`` or ``idle``."""
        self.counters.ticks += 1
        await self._wait_for_event()
        session = self.agent.session
        event = self.bus.pop()
        if event is not None:
            self.counters.external += 1
            session.observe(event)
            respond(session, event, self.agent.emit, self.tools)
            return "external"
        impulse = self.homeostasis.impulse(self.agent.metrics())
        if impulse is not None:
            self.counters.impulses += 1
            self.agent.emit(impulse)
            session.observe(impulse)
            respond(session, impulse, self.agent.emit, self.tools)
            return "impulse"
        self.counters.idle += 1
        changed = session.tokens_seen != self._consolidated_at
        if changed and self.counters.idle % self.config.consolidate_every_ticks == 0:
            self._consolidated_at = session.tokens_seen
            report = consolidate_session(session, self.consolidation, self.rng, self.agent.online)
            self.last_consolidation = report
            self.counters.consolidations += 1
            self.agent.emit(EventEnvelope(CONSOLIDATION_EVENT_TYPE, report.to_payload(), session.config.sender))
            return "consolidation"
        return "idle"

    async def run(self, *, handle_signals: bool = True) -> LiveCounters:
        """Tick until ``max_ticks`` or a stop; then save the session. Returns the counters."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
                installed.append(signum)
        try:
            while not self.stopping:
                if self.config.max_ticks is not None and self.counters.ticks >= self.config.max_ticks:
                    self.stop("max_ticks")
                    break
                await self.tick()
                if self.agent.output_closed:
                    self.stop("output_closed")
                if self.config.save_every_ticks and self.counters.ticks % self.config.save_every_ticks == 0:
                    self.agent.save()
                await asyncio.sleep(0)  # let input readers run between ticks
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.agent.save()
            payload = {"reason": self._stop_reason or "error", **attrs.asdict(self.counters),
                       "session": self.agent.session_name}
            self.agent.emit(EventEnvelope(SHUTDOWN_EVENT_TYPE, payload, self.agent.session.config.sender))
        return self.counters


def read_lines_in_thread(stream: IO[bytes], runtime: AutonomousRuntime, loop: asyncio.AbstractEventLoop) -> threading.Thread:
    """Feed ``stream``'s lines to ``runtime`` from a daemon thread (works for pipes, files and ttys)."""

    def pump() -> None:
        for line in read_event_lines(stream):
            with contextlib.suppress(RuntimeError):  # the loop closed while we were blocked reading
                loop.call_soon_threadsafe(runtime.submit_line, line)

    thread = threading.Thread(target=pump, name="mosaic-live-stdin", daemon=True)
    thread.start()
    return thread


async def serve_unix_socket(path: str, runtime: AutonomousRuntime) -> asyncio.AbstractServer:
    """Accept JSONL events on a Unix socket; each line is submitted like a line from stdin."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = LineSplitter()  # bounded lines: a client cannot make the loop hold a huge line
        try:
            while chunk := await reader.read(SKIP_CHUNK_BYTES):
                for line in splitter.feed(chunk):
                    runtime.submit_line(line)
            for line in splitter.finish():
                runtime.submit_line(line)
        finally:
            writer.close()

    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        # asyncio replaces a stale socket file, never anything else; say so before it fails to bind
        raise RuntimeStateError(f"socket {path}: a file that is not a socket is in the way; choose another path")
    try:
        return await asyncio.start_unix_server(client, path=path)
    except OSError as exc:
        raise RuntimeStateError(f"socket {path}: cannot listen there ({exc.strerror or exc})") from None


async def live(agent: Agent, homeostasis: HomeostaticLoop, *, config: LiveConfig,
               consolidation: ConsolidationConfig, stdin: IO[bytes] | None = None, socket_path: str | None = None,
               tools: ToolBridge | None = None,
               on_ready: Callable[[AutonomousRuntime], Any] | None = None) -> LiveCounters:
    """Run the autonomous loop with its input sources until it stops."""
    runtime = AutonomousRuntime(agent, homeostasis, config=config, consolidation=consolidation, tools=tools)
    loop = asyncio.get_running_loop()
    if stdin is not None:
        read_lines_in_thread(stdin, runtime, loop)
    server = await serve_unix_socket(socket_path, runtime) if socket_path else None
    if on_ready is not None:
        on_ready(runtime)
    try:
        return await runtime.run()
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
