"""Session state survives a restart: state, ledger, counters and what the model does next."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import CheckpointError, ConfigError
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.ledger import CommitmentLedger
from mosaic.runtime.agent.config import GenerationConfig
from mosaic.runtime.agent.service import open_agent
from mosaic.runtime.agent.session import ledger_from_dict, ledger_to_dict
from mosaic.runtime.testing.tiny_agent import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return make_run(tmp_path_factory.mktemp("session"), script="", commit_bias=1)


def events(count: int, start: int = 0) -> list[EventEnvelope]:
    return [EventEnvelope("Note", {"n": i}, "user", id=f"n{i}", ts=float(i), commitment_id=f"c{i}")
            for i in range(start, start + count)]


def state_equal(a: object, b: object) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_session_state_survives_a_restart(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    generation = GenerationConfig(max_new_bytes=16, temperature=0.0)
    first = open_agent(run_dir, registry=registry, session_name="s1", fresh=True, generation=generation)
    for event in events(3):
        first.session.handle(event)
    first.save()
    first.close()

    restarted = open_agent(run_dir, registry=registry, session_name="s1", generation=generation)
    assert restarted.resumed
    assert state_equal(restarted.session.state, first.session.state)
    assert restarted.session.ledger.summary(now=100.0) == first.session.ledger.summary(now=100.0)
    assert restarted.session.tokens_seen == first.session.tokens_seen
    assert restarted.session.responses == 3 and len(restarted.session.recent) == len(first.session.recent)

    # The restarted session continues exactly as the uninterrupted one does.
    follow_up = events(2, start=3)
    continued = [first.session.handle(event).event.payload for event in follow_up]
    resumed = [restarted.session.handle(event).event.payload for event in follow_up]
    assert continued == resumed
    assert state_equal(restarted.session.state, first.session.state)
    restarted.close()


def test_fresh_ignores_and_other_names_are_separate(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    agent = open_agent(run_dir, registry=registry, session_name="s2", fresh=True)
    agent.session.observe(events(1)[0])
    agent.save()
    agent.close()
    again = open_agent(run_dir, registry=registry, session_name="s2", fresh=True)
    assert not again.resumed and again.session.tokens_seen == 0
    other = open_agent(run_dir, registry=registry, session_name="s3")
    assert not other.resumed
    for name in ("../escape", "s1\n", ".hidden", "x" * 65):  # "s1\n" made a directory with a newline
        with pytest.raises(ConfigError, match="not a session name"):
            open_agent(run_dir, registry=registry, session_name=name)


def test_a_session_from_another_configuration_is_refused(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    agent = open_agent(run_dir, registry=registry, session_name="s4", fresh=True, output=io.StringIO())
    agent.session.observe(events(1)[0])
    agent.store.save("s4", agent.session, config_fingerprint="something-else", checkpoint_step=0)
    with pytest.raises(CheckpointError, match="another configuration"):
        open_agent(run_dir, registry=registry, session_name="s4")
    (run_dir / "sessions" / "s4" / "session.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        open_agent(run_dir, registry=registry, session_name="s4")


def test_ledger_round_trips_through_its_saved_form() -> None:
    ledger = CommitmentLedger()
    ledger.consume(EventEnvelope("M", None, "a", ts=1.0, commitment_delta=1, commitment_id="x"))
    ledger.consume(EventEnvelope("M", None, "a", ts=2.0, commitment_id="x"))
    ledger.consume(EventEnvelope("M", None, "a", ts=3.0, commitment_delta=1, commitment_id="y"))
    ledger.consume(EventEnvelope("M", None, "a", ts=4.0, commitment_delta=-1, commitment_id="y"))
    ledger.consume(EventEnvelope("M", None, "a", ts=5.0, commitment_delta=-1, commitment_id="z"))
    restored = ledger_from_dict(ledger_to_dict(ledger))
    assert restored.summary(now=10.0) == ledger.summary(now=10.0)
    assert restored.open_commitments()[0].notes == 1
    assert list(restored.anomalies) == list(ledger.anomalies)
    assert restored.metrics(now=10.0) == ledger.metrics(now=10.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.sampled_from([None, "a", "b", "c"])), max_size=30))
def test_any_ledger_history_round_trips(history: list[tuple[int, str | None]]) -> None:
    ledger = CommitmentLedger()
    for step, (delta, commitment_id) in enumerate(history):
        ledger.consume(EventEnvelope("M", None, "s", ts=float(step), commitment_delta=delta,
                                     commitment_id=commitment_id))
    restored = ledger_from_dict(ledger_to_dict(ledger))
    assert restored.summary(now=100.0) == ledger.summary(now=100.0)
    assert restored.open_commitments() == ledger.open_commitments()
    assert list(restored.anomalies) == list(ledger.anomalies)
