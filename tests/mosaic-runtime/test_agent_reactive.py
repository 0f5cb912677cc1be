"""The reactive runtime: responses, validation into Error events, ledger from the commitment head."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import RuntimeStateError
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.config import GenerationConfig
from mosaic.runtime.agent.loading import check_streaming_model
from mosaic.runtime.agent.reactive import ReactiveRuntime, parse_line
from mosaic.runtime.agent.responder import EventSession, text_span
from mosaic.runtime.agent.service import open_agent
from mosaic.runtime.loading import load_run
from mosaic.runtime.testing.tiny_agent import REPLY, TinyStreamConfig, TinyStreamLM, make_run

ASK = EventEnvelope("Ask", {"text": "find the file", "q": 1}, "user", id="a1", ts=2.0, commitment_id="c1")


def scripted(script: str = REPLY.to_json(), **config: object) -> TinyStreamLM:
    torch.manual_seed(0)
    return TinyStreamLM(TinyStreamConfig(script=script, **config)).eval()


def run_lines(session: EventSession, lines: list[bytes], **options: object) -> list[EventEnvelope]:
    emitted: list[EventEnvelope] = []
    ReactiveRuntime(session, emitted.append, **options).run(lines)
    return emitted


def test_the_model_answers_each_event_with_its_generated_event() -> None:
    session = EventSession(scripted())
    emitted = run_lines(session, [ASK.to_bytes() + b"\n", ASK.replace(id="a2").to_bytes()])
    assert emitted == [REPLY, REPLY]
    assert session.responses == 2 and session.invalid_generations == 0
    # Both inputs, both responses and their delimiters went through the model.
    assert session.tokens_seen == 2 * (len(ASK.to_bytes()) + 1) + 2 * (len(REPLY.to_bytes()) + 1)


def test_sampling_with_a_seed_is_reproducible() -> None:
    config = GenerationConfig(temperature=1.0, seed=7, max_new_bytes=24)
    runs = [EventSession(scripted(script=""), config=config).handle(ASK).event.payload["preview"] for _ in range(2)]
    other = EventSession(scripted(script=""), config=GenerationConfig(temperature=1.0, seed=8, max_new_bytes=24))
    assert runs[0] == runs[1] != other.handle(ASK).event.payload["preview"]


def test_malformed_lines_become_error_events_and_the_loop_goes_on() -> None:
    session = EventSession(scripted())
    lines = [b"{not json\n", b"\n", b'{"type": "Ask", "payload": 1}\n', b"\xff\xfe\n", b"[1, 2]\n",
             ASK.to_bytes() + b"\n"]
    emitted = run_lines(session, lines)
    errors = [event for event in emitted if event.type == "Error"]
    assert [error.payload["line"] for error in errors] == [1, 3, 4, 5]  # the blank line 2 is skipped
    assert all(error.payload["stage"] == "input" for error in errors)
    assert "invalid JSON" in errors[0].payload["reason"]
    assert "sender" in errors[1].payload["reason"]  # the missing required field is named
    assert "UTF-8" in errors[2].payload["reason"]
    assert emitted[-1] == REPLY  # the valid line after the bad ones is still answered


def test_an_invalid_generation_is_an_error_event_and_the_stream_resynchronises() -> None:
    session = EventSession(scripted(script='{"type":"Reply","payload":'))
    first = session.handle(ASK)
    assert not first.valid and first.event.type == "Error"
    assert first.event.payload["stage"] == "generation"
    assert "not a valid event" in first.event.payload["reason"]
    assert first.event.payload["in_reply_to"] == ASK.id
    assert first.event.payload["preview"] == '{"type":"Reply","payload":'
    second = session.handle(ASK.replace(id="a2"))
    assert second.event.type == "Error" and session.invalid_generations == 2
    short = EventSession(scripted(script='{"type":"Reply","payload":'), config=GenerationConfig(preview_bytes=8))
    assert short.handle(ASK).event.payload["preview"] == '{"type":'  # the preview length is configurable


def test_a_generation_without_delimiter_is_cut_and_the_delimiter_fed() -> None:
    session = EventSession(scripted(script="x" * 100), config=GenerationConfig(max_new_bytes=10))
    response = session.handle(ASK)
    assert response.event.type == "Error" and "no event delimiter within 10" in response.event.payload["reason"]
    assert int(session.state.since_delimiter[0]) == 0  # the runtime closed the event for the model
    assert session.handle(ASK).event.type == "Error"  # and keeps going


def test_the_ledger_follows_the_commitment_head_not_the_written_delta() -> None:
    session = EventSession(scripted(commit_bias=1))
    session.observe(ASK)  # written delta 0, the head says +1: commitment c1 opens
    assert session.ledger.is_open("c1") and session.ledger.balance == 1
    closing = EventSession(scripted(commit_bias=-1))
    closing.observe(ASK.replace(commitment_delta=1))
    assert closing.ledger.balance == -1 and closing.ledger.summary()["anomaly_kinds"] == ["close_without_open"]


def test_the_head_is_read_over_the_text_characters_only() -> None:
    data = ASK.to_bytes()
    span = text_span(data, ASK)
    assert data[span.start : span.stop] == b"find the file"
    quoted = ASK.replace(payload={"text": 'say "hi" \u00e9'})
    span = text_span(quoted.to_bytes(), quoted)
    assert quoted.to_bytes()[span.start : span.stop].decode() == 'say \\"hi\\" \u00e9'
    assert text_span(data, ASK.replace(payload={"q": 1})) is None
    assert text_span(b"{}", ASK) is None  # not found in non-canonical bytes


def test_an_event_without_text_keeps_its_written_delta() -> None:
    session = EventSession(scripted(commit_bias=-1))
    assert session.observe(ASK.replace(payload={"q": 1}, commitment_delta=1)) is None
    assert session.ledger.is_open("c1")


def test_the_ledger_can_follow_the_events_when_asked() -> None:
    session = EventSession(scripted(commit_bias=-1), config=GenerationConfig(commitment_source="event"))
    session.observe(ASK.replace(commitment_delta=1))
    assert session.ledger.is_open("c1")


def test_trace_ledger_reports_the_running_balance() -> None:
    session = EventSession(scripted(commit_bias=1))
    emitted = run_lines(session, [ASK.to_bytes()], trace_ledger=True, respond_to=frozenset({"Other"}))
    assert [event.type for event in emitted] == ["Ledger"]
    assert emitted[0].payload["delta"] == 1 and emitted[0].payload["balance"] == 1 and emitted[0].payload["open"] == 1
    assert emitted[0].payload["source"] == "head"


def test_a_model_without_commitment_head_is_refused_for_head_commitments() -> None:
    model = scripted(commitment_head=False)
    with pytest.raises(RuntimeStateError, match="mosaic_commitment_logits"):
        EventSession(model)
    EventSession(model, config=GenerationConfig(commitment_source="event"))


def test_a_model_without_streaming_methods_is_named() -> None:
    with pytest.raises(RuntimeStateError, match="init_state, step, prefill"):
        check_streaming_model(torch.nn.Linear(2, 2), "model.plain")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_parse_line_never_raises(data: bytes) -> None:
    event, error = parse_line(data, 1, "runtime")
    assert (event is None) != (error is None)
    if error is not None:
        assert error.type == "Error" and error.payload["line"] == 1


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5), max_size=3))
def test_parse_line_accepts_every_valid_event(payload: dict) -> None:
    event = EventEnvelope("T", payload, "s")
    spaced = json.dumps(event.to_json_dict(), indent=1).replace("\n", " ").encode()
    assert parse_line(spaced, 1, "runtime") == (event, None)


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return make_run(tmp_path_factory.mktemp("reactive"), script=REPLY.to_json(), commit_bias=1)


def test_a_run_directory_loads_and_logs_every_emitted_event(scripted_run: tuple[Path, object]) -> None:
    run, registry = scripted_run
    loaded = load_run(run, registry=registry)
    assert loaded.step == 2 and loaded.model_id == "model.agent_tiny_stream"
    output = io.StringIO()
    agent = open_agent(run, registry=registry, session_name="log", fresh=True, output=output)
    runtime = ReactiveRuntime(agent.session, agent.emit)
    runtime.run([ASK.to_bytes(), b"oops"])
    agent.emit(runtime.summary_event())
    agent.close()
    lines = output.getvalue().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["Reply", "Error", "LedgerSummary"]
    assert (run / "sessions" / "log" / "events.jsonl").read_text().splitlines() == lines
    summary = json.loads(lines[-1])["payload"]
    assert summary["input_errors"] == 1 and summary["responses"] == 1 and summary["open"] == 1


def test_a_long_event_is_fed_in_pieces_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import mosaic.runtime.agent.responder as responder

    long_event = ASK.replace(payload={"text": "I will " + "really " * 30 + "do it"})
    whole = EventSession(scripted(commit_bias=None))
    whole_delta = whole.observe(long_event)
    monkeypatch.setattr(responder, "PREFILL_TOKENS", 16)
    pieces = EventSession(scripted(commit_bias=None))
    assert pieces.observe(long_event) == whole_delta
    for key, value in whole.state.state_dict().items():
        torch.testing.assert_close(pieces.state.state_dict()[key], value)
    torch.testing.assert_close(pieces.next_logits, whole.next_logits)
