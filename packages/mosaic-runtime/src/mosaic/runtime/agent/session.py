"""Session persistence: a session's streaming state, ledger and counters survive a restart.

A session named ``NAME`` of run ``RUN_DIR`` lives in ``RUN_DIR/sessions/NAME/``: ``session.pt``
(written atomically: the state's ``state_dict()``, the ledger, counters, and the config fingerprint
and checkpoint step it was recorded with) and ``events.jsonl`` (every event the runtime emitted, one
per line). Loading refuses a session recorded for another configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import attrs
import torch

from mosaic.core.atomic import atomic_write, open_plain_file
from mosaic.core.errors import CheckpointError, ConfigError, ConfigProblem, EventError, NotPlainFileError
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.ledger import CommitmentAnomaly, CommitmentLedger
from mosaic.core.validators import is_path_component
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.training.checkpoint import load_payload

SESSION_FORMAT = "mosaic-session/1"
#: The longest line a torn ``events.jsonl`` is searched back through (an event is at most 1 MiB).
MAX_EVENT_LINE_BYTES = 2 << 20


def ledger_to_dict(ledger: CommitmentLedger) -> dict[str, Any]:
    return {
        "open": [attrs.asdict(commitment) for commitment in ledger.open_commitments()],
        "anomalies": [attrs.asdict(anomaly) for anomaly in ledger.anomalies],
        "counters": {"balance": ledger.balance, "opened": ledger.opened, "closed": ledger.closed,
                     "anomaly_count": ledger.anomaly_count, "events_seen": ledger.events_seen},
    }


def ledger_from_dict(data: dict[str, Any]) -> CommitmentLedger:
    """Rebuild a ledger: its open commitments (with their notes) are replayed through ``consume``,
    then the counters and the kept anomalies are restored as recorded. The data comes from a file:
    its shape, the counter names and the note counts are checked (``TypeError``/``ValueError``)."""
    ledger = CommitmentLedger()
    for item in _items(data["open"], "ledger.open"):
        notes = _count(item["notes"], "ledger.open[].notes")
        if notes > MAX_NOTES:
            raise ValueError(f"ledger.open[].notes: {notes} is more than the {MAX_NOTES} a session replays")
        opening = EventEnvelope("Commitment", None, item["sender"], id=item["event_id"], ts=item["opened_at"],
                                commitment_delta=1, commitment_id=item["commitment_id"])
        ledger.consume(opening)
        for _ in range(notes):
            ledger.consume(EventEnvelope("Commitment", None, item["sender"], ts=item["opened_at"],
                                         commitment_id=item["commitment_id"]))
    for item in _items(data["anomalies"], "ledger.anomalies"):
        ledger.anomalies.append(CommitmentAnomaly(**item))
    for name, value in _counters(data["counters"], LEDGER_COUNTERS, "ledger.counters").items():
        setattr(ledger, name, value)
    return ledger


#: The counters a session file may restore, and no other attribute (a file could otherwise
#: overwrite any field or method of the session or its ledger).
SESSION_COUNTERS = ("tokens_seen", "events_observed", "responses", "invalid_generations")
LEDGER_COUNTERS = ("balance", "opened", "closed", "anomaly_count", "events_seen")
#: Notes replayed per open commitment at most (each is one ``consume``).
MAX_NOTES = 100_000


def _items(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError(f"{where} is not a list of objects")
    return value


def _count(value: Any, where: str, *, signed: bool = False) -> int:
    if type(value) is not int or (value < 0 and not signed):
        raise TypeError(f"{where} is not a count: {value!r}"[:200])
    return value


def _counters(value: Any, names: tuple[str, ...], where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not set(value) <= set(names):
        raise TypeError(f"{where}: expected counters among {', '.join(names)}")
    return {name: _count(count, f"{where}.{name}", signed=name == "balance") for name, count in value.items()}


class SessionStore:
    """The ``sessions/`` folder of a run directory."""

    def __init__(self, run_path: Path) -> None:
        self.root = Path(run_path) / "sessions"

    def directory(self, name: str) -> Path:
        if not is_path_component(name, 64):
            raise ConfigError([ConfigProblem("--session", f"{name!r} is not a session name "
                                             "(letters, digits, '_', '.', '-'; at most 64 characters)")])
        for path in (self.root, self.root / name):  # a file planted there fails only when the session saves
            if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
                raise CheckpointError(f"session directory {path} is not a directory; move it aside or use "
                                      "another --session")
        return self.root / name

    def state_path(self, name: str) -> Path:
        return self.directory(name) / "session.pt"

    def events_path(self, name: str) -> Path:
        return self.directory(name) / "events.jsonl"

    def exists(self, name: str) -> bool:
        path = self.state_path(name)
        if os.path.lexists(path) and not path.is_file():  # a directory in its place would fail only at save
            raise CheckpointError(f"session file {path} is not a regular file; move it aside or use another --session")
        return path.is_file()

    def open_events_log(self, name: str) -> IO[str]:
        """The session's ``events.jsonl``, for appending: never followed as a symbolic link, and a
        torn last line (a kill in the middle of a write) is cut off, as the trainer trims its own
        logs, so the next event starts a line of its own instead of being glued to the fragment."""
        path = self.events_path(name)
        try:
            descriptor = open_plain_file(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except NotPlainFileError as exc:
            raise CheckpointError(f"session log: {exc}") from None
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            start = max(0, size - MAX_EVENT_LINE_BYTES)
            cut = os.pread(descriptor, size - start, start).rfind(b"\n")
            if cut < 0 and start > 0:
                os.close(descriptor)
                raise CheckpointError(f"session log {path} ends in a line longer than {MAX_EVENT_LINE_BYTES} bytes")
            os.ftruncate(descriptor, start + cut + 1)  # cut == -1 and start == 0: the file was one torn line
        return os.fdopen(descriptor, "a", encoding="utf-8")

    def save(self, name: str, session: EventSession, *, config_fingerprint: str, checkpoint_step: int) -> Path:
        target = self.state_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": SESSION_FORMAT,
            "config_fingerprint": config_fingerprint,
            "checkpoint_step": checkpoint_step,
            "state": session.state.state_dict(),
            "ledger": ledger_to_dict(session.ledger),
            "counters": {"tokens_seen": session.tokens_seen, "events_observed": session.events_observed,
                         "responses": session.responses, "invalid_generations": session.invalid_generations},
            "recent": [pattern.clone() for pattern in session.recent],
            "consolidations": list(session.consolidations),
            "next_logits": None if session.next_logits is None else session.next_logits.detach().cpu().clone(),
        }
        return atomic_write(target, lambda file: torch.save(payload, file))

    def restore(self, name: str, session: EventSession, *, config_fingerprint: str) -> None:
        """Load session ``name`` into ``session`` (its state type rebuilds the saved state)."""
        path = self.state_path(name)
        payload = load_payload(path, file_format=SESSION_FORMAT, what="session file",
                               missing=f"session {name!r} does not exist ({path})")
        if payload.get("config_fingerprint") != config_fingerprint:
            raise CheckpointError(
                f"session {name!r} was recorded for another configuration ({payload.get('config_fingerprint')} != "
                f"{config_fingerprint}); start a fresh session with --fresh"
            )
        try:  # everything rebuilt first: a damaged file leaves the session as it was
            state = type(session.state).from_state_dict(payload["state"]).to(session.device)
            ledger = ledger_from_dict(payload["ledger"])
            counters = _counters(payload["counters"], SESSION_COUNTERS, "counters")
            recent = payload["recent"]
            if not isinstance(recent, list) or not all(isinstance(pattern, torch.Tensor) for pattern in recent):
                raise TypeError("recent is not a list of tensors")
            consolidations = payload.get("consolidations", [])  # sessions saved before they were recorded have none
            if not isinstance(consolidations, list):
                raise TypeError("consolidations is not a list")
            logits = payload["next_logits"]
            if logits is not None and not isinstance(logits, torch.Tensor):
                raise TypeError("next_logits is not a tensor")
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, OverflowError, EventError) as exc:
            raise CheckpointError(f"session file {path} is corrupt: {type(exc).__name__}: {str(exc)[:300]}") from None
        session.state, session.ledger = state, ledger
        for key, value in counters.items():
            setattr(session, key, value)
        session.recent.clear()
        session.recent.extend(recent)
        session.consolidations = list(consolidations)
        session.next_logits = None if logits is None else logits.to(session.device)
