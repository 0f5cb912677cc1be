"""Keepers: one untrusted OS process per clock that reads snapshots and proposes writes.

Seed 003's Sovereign Router separates *who notices* from *who decides*. Each clock's keeper
(fast, mid, slow) runs in its own process and talks to the trainer over two bounded queues:

- in: ``(step, snapshot)`` at its clock's interval only, never every step; a snapshot is plain
  data (numbers, lists, dicts), so nothing of the model crosses the boundary;
- out: proposals ``{kind, key, payload}`` and a heartbeat per snapshot.

A keeper holds a :class:`Capability` naming the proposal kinds it may make (fast: reflex
crystallisation; mid: epoch boundaries and escalation; slow: scars and lifecycle edits). Keepers only
propose: the :class:`KeeperSupervisor` hands each proposal to the kernel, which enforces the
capability and the write budgets and audits every refusal; identity proposals are then settled by
the kernel's two-step commit against the trainer's own evidence.

Training never blocks on a keeper: snapshots are offered with ``put_nowait`` (a full inbox drops
the snapshot and counts it), proposals are drained with ``get_nowait``. A keeper that crashes, or
that sends no heartbeat for ``timeout_s`` while it owes one, has its clock paused: a ``Degraded``
event is emitted, the process is killed and restarted, and the run goes on.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.registry import resolve_import_path

#: clock -> the proposal kinds its keeper may make
KEEPER_CAPABILITIES: Mapping[str, frozenset[str]] = {
    "fast": frozenset({"reflex"}),
    "mid": frozenset({"epoch", "escalation"}),
    "slow": frozenset({"scar", "edit"}),
}
DEGRADED = "Degraded"
#: the kind given to keeper output that is not a well-formed proposal; no capability names it
MALFORMED = "<malformed>"


@attrs.frozen
class Capability:
    """What one keeper may propose. Issued by the supervisor; a keeper never holds another's."""

    keeper: str
    may_propose: frozenset[str]

    @classmethod
    def for_clock(cls, clock: str) -> Capability:
        return cls(keeper=clock, may_propose=KEEPER_CAPABILITIES[clock])


@attrs.frozen
class Proposal:
    """A keeper's suggestion of one write; the kernel decides."""

    keeper: str
    kind: str
    key: str
    payload: dict[str, Any]
    step: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class KeeperSpec:
    """A keeper: its clock, the import path of its logic ``(snapshot) -> [ {kind, key, payload} ]``,
    and how often (in steps) it is offered a snapshot."""

    clock: str = attrs.field(validator=attrs.validators.in_(tuple(KEEPER_CAPABILITIES)))
    logic: str
    interval: int = attrs.field(validator=attrs.validators.ge(1))
    timeout_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    inbox_size: int = attrs.field(default=2, validator=attrs.validators.ge(1))


def keeper_main(clock: str, logic_path: str, inbox: Any, outbox: Any) -> None:
    """The keeper process: read snapshots until ``None``, send proposals and a heartbeat for each."""
    logic = resolve_import_path(logic_path)
    while True:
        message = inbox.get()
        if message is None:
            return
        step, snapshot = message
        for proposal in logic(snapshot):
            outbox.put(("proposal", step, dict(proposal)))
        outbox.put(("heartbeat", step, None))


class KeeperHandle:
    """The trainer's side of one keeper process."""

    def __init__(self, spec: KeeperSpec, context: Any | None = None) -> None:
        self.spec = spec
        self.capability = Capability.for_clock(spec.clock)
        self._context = context or multiprocessing.get_context("spawn")
        self.process: Any = None
        self.dropped = 0  # snapshots not delivered because the inbox was full
        self.restarts = 0
        self._owed_since: float | None = None  # when the oldest unanswered snapshot was sent
        self._outstanding = 0

    def start(self) -> None:
        self.inbox = self._context.Queue(self.spec.inbox_size)
        self.outbox = self._context.Queue()
        self.process = self._context.Process(
            target=keeper_main, args=(self.spec.clock, self.spec.logic, self.inbox, self.outbox),
            name=f"mosaic-keeper-{self.spec.clock}", daemon=True,
        )
        self.process.start()
        self._owed_since, self._outstanding = None, 0

    def health(self) -> str | None:
        """None when healthy, else why not ("crashed (exit code …)", "hung …")."""
        if self.process is None or not self.process.is_alive():
            code = None if self.process is None else self.process.exitcode
            return f"crashed (exit code {code})"
        if self._owed_since is not None and time.monotonic() - self._owed_since > self.spec.timeout_s:
            return f"hung (no heartbeat for {self.spec.timeout_s:g} s)"
        return None

    def offer(self, step: int, snapshot: Mapping[str, Any]) -> bool:
        try:
            self.inbox.put_nowait((step, dict(snapshot)))
        except queue.Full:
            self.dropped += 1
            return False
        if self._owed_since is None:
            self._owed_since = time.monotonic()
        self._outstanding += 1
        return True

    def drain(self) -> list[Proposal]:
        proposals: list[Proposal] = []
        while True:
            try:
                tag, step, body = self.outbox.get_nowait()
            except queue.Empty:
                return proposals
            if tag == "heartbeat":
                self._outstanding = max(0, self._outstanding - 1)
                self._owed_since = time.monotonic() if self._outstanding else None
            else:
                proposals.append(_proposal(self.spec.clock, step, body))

    def restart(self) -> None:
        self.stop(grace_s=0.0)
        self.restarts += 1
        self.start()

    def stop(self, grace_s: float = 2.0) -> None:
        if self.process is None:
            return
        if self.process.is_alive() and grace_s > 0:
            try:
                self.inbox.put_nowait(None)
            except queue.Full:
                pass
            self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        for q in (self.inbox, self.outbox):
            q.cancel_join_thread()
            q.close()
        self.process = None


def _proposal(clock: str, step: int, body: Any) -> Proposal:
    """A proposal from untrusted keeper output; a malformed one becomes an unknown-kind proposal
    that the kernel refuses (and audits) rather than an exception in the trainer."""
    kind, key, payload = (body.get("kind"), body.get("key"), body.get("payload", {})) if isinstance(body, dict) \
        else (None, None, None)
    if not isinstance(kind, str) or not isinstance(key, str) or not isinstance(payload, dict):
        return Proposal(clock, MALFORMED, MALFORMED, {"got": repr(body)[:200]}, step)
    return Proposal(clock, kind, key, payload, step)


class KeeperSupervisor:
    """Runs the keepers beside training: offers snapshots on each keeper's clock, hands their
    proposals to ``submit`` (the kernel's), and pauses, reports and restarts failed keepers."""

    def __init__(
        self,
        specs: list[KeeperSpec],
        submit: Callable[[Capability, Proposal], str],
        on_event: Callable[[EventEnvelope], None],
        context: Any | None = None,
    ) -> None:
        self.handles = {spec.clock: KeeperHandle(spec, context) for spec in specs}
        self.submit = submit
        self.on_event = on_event
        self.paused: dict[str, int] = {}  # clock -> steps at which it was paused

    def start(self) -> KeeperSupervisor:
        for handle in self.handles.values():
            handle.start()
        return self

    def tick(self, step: int, snapshot: Callable[[str], Mapping[str, Any]]) -> list[tuple[Proposal, str]]:
        """One training step: returns ``(proposal, outcome)`` for every proposal settled now."""
        outcomes = []
        for clock, handle in self.handles.items():
            outcomes += [(p, self.submit(handle.capability, p)) for p in handle.drain()]
            if step % handle.spec.interval:
                continue
            problem = handle.health()
            if problem is not None:
                self.paused[clock] = self.paused.get(clock, 0) + 1
                self.on_event(EventEnvelope(
                    type=DEGRADED, sender="chronomoe.keepers",
                    payload={"component": f"keeper.{clock}", "clock": clock, "step": step,
                             "reason": problem, "action": "clock paused; keeper restarted"},
                ))
                handle.restart()
                continue
            handle.offer(step, snapshot(clock))
        return outcomes

    def close(self) -> None:
        for handle in self.handles.values():
            handle.stop()

    def __enter__(self) -> KeeperSupervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
