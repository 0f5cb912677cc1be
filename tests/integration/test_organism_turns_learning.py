"""Small-budget learning test of turn taking (issue 16): event traces teach IDLE at the delimiter
after each event the agent does not answer (memory writes, noise) and RESPOND where the agent's
event follows (a query, an idle tick before a replay). A tiny event model in control learns both;
the event runtime reading the trained checkpoint stays silent under IDLE (not one byte stepped)
and starts emitting exactly at RESPOND. One tiny run (well under a minute of CPU on two cores)
serves both tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mosaic.core.contract import keys
from mosaic.core.events.codec import EVENT_DELIMITER, EVENT_PAD_ID, decode_event_bytes
from mosaic.core.events.envelope import EventEnvelope
from mosaic.data.config import EventTraceConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.runtime.agent.config import GenerationConfig
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.training.loading import load_trained_model
from mosaic.runtime.training.run import run_preset

#: mosaic_event_native shrunk to turn taking: one layer, one pair, two noise events and a replay per
#: trace (two IDLE and two RESPOND boundaries besides the writes), no negotiation, a short schedule.
TRACE = {
    "n_pairs": 1,
    "distractor_events": 2,
    "sleep_replay_per_pair": 1,
    "negotiation_pairs": 0,
    "value_digits": 2,
    "block_size": 960,
}
TINY_TURNS = [
    "vars.d_model=32",
    "vars.n_layers=1",
    "vars.mem_buckets=4",
    "vars.steps=72",  # 48 steps learned IDLE on 2 of 4 seeds; 72 on all 4 (0-3)
    "vars.batch_size=8",
    "vars.threads=1",
    "vars.negotiation_pairs=0",
    *(f"dataset.{name}={value}" for name, value in TRACE.items() if name != "negotiation_pairs"),
    "trainer.checkpoint_every=1000",
    "trainer.log_every=24",
    "trainer.warmup_steps=5",
    "curriculum.warmup_steps=5",
    "curriculum.cooldown_steps=20",
    "eval.samples=32",
    "eval.batch_size=16",
]
AGENT = "agent"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("turns")
    return run_preset("mosaic_event_native", out=out, overrides=TINY_TURNS, show_progress=False)


def heldout_events(index: int) -> list[EventEnvelope]:
    """The events of one held-out trace (the eval split's seed), decoded from its bytes."""
    dataset = EventTraceDataset(EventTraceConfig(split="eval", seed=1, mem_buckets=4, mem_hashes=1, **TRACE))
    ids = dataset[index][keys.INPUT_IDS.name]
    assert isinstance(ids, torch.Tensor)
    data = bytes(token for token in ids.tolist() if token != EVENT_PAD_ID)
    return [decode_event_bytes(chunk) for chunk in data.split(bytes([EVENT_DELIMITER])) if chunk]


def bytes_run_by(live: EventSession) -> list[int]:
    """Every byte ``live`` runs the model on by itself from now on (emitted or only stepped through)."""
    stepped: list[int] = []
    step = live._step

    def counted(byte: int) -> dict[str, torch.Tensor]:
        stepped.append(byte)
        return step(byte)

    live._step = counted  # type: ignore[method-assign]
    return stepped


def test_the_vm_decides_turns_where_taught(trained: dict[str, Any]) -> None:
    evaluation = trained["eval"]
    turns, off = evaluation["turns"], evaluation["ablations"]["opcode_off"]
    assert turns["boundaries"]["idle"] > 0 and turns["boundaries"]["respond"] > 0
    assert turns["silence"] >= 0.9 and turns["onset"] >= 0.9, turns
    assert turns["silence"] - off["IDLE"]["silence"] >= 0.3, (turns, off)
    assert turns["onset"] - off["RESPOND"]["onset"] >= 0.3, (turns, off)


def test_the_runtime_stays_silent_under_idle_and_starts_at_respond(trained: dict[str, Any]) -> None:
    model = load_trained_model(Path(trained["run_dir"])).model
    checked = {"idle": 0, "respond": 0}
    for index in range(4):
        events = heldout_events(index)
        live = EventSession(
            model,
            config=GenerationConfig(turn_taking="opcodes", commitment_source="event", max_new_bytes=160),
        )
        stepped = bytes_run_by(live)
        for event, following in zip(events, events[1:], strict=False):
            if event.sender == AGENT:
                live.observe(event)  # the agent's own event from the trace (the runtime generated it)
                continue
            if following.sender != AGENT:  # nobody answers: the runtime must not run a single byte
                assert live.handle(event) is None, (index, event.type)
                assert stepped == [], (index, event.type)
                checked["idle"] += 1
            else:  # the agent's event begins at the next byte: RESPOND dominates at the delimiter
                response = live.handle(event)
                assert response is not None, (index, event.type)
                # every byte the runtime ran is emitted (or the delimiter / resynchronisation after it)
                assert len(stepped) == response.generated_bytes + 1, (index, event.type, len(stepped))
                checked["respond"] += 1
                break  # the generated event, not the trace's, is now in the state
    assert checked["idle"] >= 8 and checked["respond"] == 4, checked
