"""Session persistence: a session's streaming state, ledger and counters survive a restart.

A session named ``NAME`` of run ``RUN_DIR`` lives in ``RUN_DIR/sessions/NAME/``: ``session.pt``
(written atomically: the state's ``state_dict()``, the ledger, counters, and the config fingerprint
and checkpoint step it was recorded with) and ``events.jsonl`` (every event the runtime emitted, one
per line). Loading refuses a session recorded for another configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import torch

from mosaic.core.atomic import atomic_write
from mosaic.core.errors import CheckpointError, ConfigError, ConfigProblem
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.ledger import CommitmentAnomaly, CommitmentLedger
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.training.checkpoint import load_payload

SESSION_FORMAT = "mosaic-session/1"
SESSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def ledger_to_dict(ledger: CommitmentLedger) -> dict[str, Any]:
    return {
        "open": [attrs.asdict(commitment) for commitment in ledger.open_commitments()],
        "anomalies": [attrs.asdict(anomaly) for anomaly in ledger.anomalies],
        "counters": {"balance": ledger.balance, "opened": ledger.opened, "closed": ledger.closed,
                     "anomaly_count": ledger.anomaly_count, "events_seen": ledger.events_seen},
    }


def ledger_from_dict(data: dict[str, Any]) -> CommitmentLedger:
    """Rebuild a ledger: its open commitments (with their notes) are replayed through ``consume``,
    then the counters and the kept anomalies are restored as recorded."""
    ledger = CommitmentLedger()
    for item in data["open"]:
        opening = EventEnvelope("Commitment", None, item["sender"], id=item["event_id"], ts=item["opened_at"],
                                commitment_delta=1, commitment_id=item["commitment_id"])
        ledger.consume(opening)
        for _ in range(item["notes"]):
            ledger.consume(EventEnvelope("Commitment", None, item["sender"], ts=item["opened_at"],
                                         commitment_id=item["commitment_id"]))
    for item in data["anomalies"]:
        ledger.anomalies.append(CommitmentAnomaly(**item))
    for name, value in data["counters"].items():
        setattr(ledger, name, int(value))
    return ledger


class SessionStore:
    """The ``sessions/`` folder of a run directory."""

    def __init__(self, run_path: Path) -> None:
        self.root = Path(run_path) / "sessions"

    def directory(self, name: str) -> Path:
        if not isinstance(name, str) or not SESSION_NAME.match(name):
            raise ConfigError([ConfigProblem("--session", f"{name!r} is not a session name "
                                             "(letters, digits, '_', '.', '-'; at most 64 characters)")])
        return self.root / name

    def state_path(self, name: str) -> Path:
        return self.directory(name) / "session.pt"

    def events_path(self, name: str) -> Path:
        return self.directory(name) / "events.jsonl"

    def exists(self, name: str) -> bool:
        return self.state_path(name).is_file()

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
        if payload["config_fingerprint"] != config_fingerprint:
            raise CheckpointError(
                f"session {name!r} was recorded for another configuration ({payload['config_fingerprint']} != "
                f"{config_fingerprint}); start a fresh session with --fresh"
            )
        state_type = type(session.state)
        session.state = state_type.from_state_dict(payload["state"]).to(session.device)
        session.ledger = ledger_from_dict(payload["ledger"])
        for key, value in payload["counters"].items():
            setattr(session, key, int(value))
        session.recent.clear()
        session.recent.extend(payload["recent"])
        session.consolidations = list(payload.get("consolidations", []))  # sessions saved before they were recorded have none
        logits = payload["next_logits"]
        session.next_logits = None if logits is None else logits.to(session.device)
