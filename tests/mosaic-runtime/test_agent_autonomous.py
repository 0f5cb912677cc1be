"""The autonomous runtime: impulses wake the model, idle time consolidates the live memory, shutdown saves."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import signal
from pathlib import Path

import pytest
import torch

from mosaic.core.errors import RuntimeStateError
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.homeostasis import DriveBand, HomeostaticLoop, IntrinsicDrive
from mosaic.runtime.agent.autonomous import AutonomousRuntime
from mosaic.runtime.agent.config import ConsolidationConfig, LiveConfig
from mosaic.runtime.agent.consolidation import consolidate, consolidate_session
from mosaic.runtime.agent.metrics import memory_occupancy
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.agent.service import open_agent
from mosaic.runtime.testing.tiny_agent import REPLY, TinyStreamConfig, TinyStreamLM, make_run

NOTE = EventEnvelope("Note", {"n": 1}, "user", id="n1", ts=1.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return make_run(tmp_path_factory.mktemp("live"), script=REPLY.to_json(), commit_bias=0)


def drive(metric: str, low: float, high: float) -> IntrinsicDrive:
    return IntrinsicDrive(name=metric, metric=metric, band=DriveBand(low, high), refractory_s=3600.0)


def emitted_types(output: io.StringIO) -> list[str]:
    return [json.loads(line)["type"] for line in output.getvalue().splitlines()]


def snapshot(state: object) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in state.state_dict().items()}


def identical(before: dict[str, torch.Tensor], state: object) -> bool:
    after = state.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def live(agent: object, drives: list[IntrinsicDrive], **config: object) -> AutonomousRuntime:
    consolidation = config.pop("consolidation", ConsolidationConfig())
    return AutonomousRuntime(agent, HomeostaticLoop(drives), config=LiveConfig(poll_ms=0, **config),
                             consolidation=consolidation)


def test_an_out_of_band_metric_wakes_the_model_which_responds(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    output = io.StringIO()
    agent = open_agent(run_dir, registry=registry, session_name="impulse", fresh=True, output=output)
    agent.session.observe(NOTE)
    # One event fills the tiny model's few memory cells: a band asking pressure <= 0.5 is out of band.
    assert agent.metrics()["memory_pressure"] > 0.5
    runtime = live(agent, [drive("memory_pressure", 0.0, 0.5)], max_ticks=2)
    counters = asyncio.run(runtime.run(handle_signals=False))
    assert counters.impulses == 1  # the refractory period keeps the second tick from firing again
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [line["type"] for line in lines[:2]] == ["Impulse", "Reply"]
    assert lines[0]["payload"]["metric"] == "memory_pressure" and lines[0]["payload"]["deviation"] > 0
    assert agent.session.responses == 1 and agent.session.events_observed == 3  # note, impulse, reply
    agent.close()


def test_external_events_come_before_impulses(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    output = io.StringIO()
    agent = open_agent(run_dir, registry=registry, session_name="external", fresh=True, output=output)
    runtime = live(agent, [drive("memory_pressure", 0.0, 0.5)], max_ticks=3)
    runtime.submit_line(NOTE.to_bytes())
    runtime.submit_line(b"not an event")
    asyncio.run(runtime.run(handle_signals=False))
    assert emitted_types(output) == ["Error", "Reply", "Impulse", "Reply", "Consolidation", "Shutdown"]
    assert runtime.counters.external == 1 and runtime.counters.input_errors == 1
    agent.close()


def test_idle_consolidation_changes_the_live_state_and_the_session_records_it(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    output = io.StringIO()
    agent = open_agent(run_dir, registry=registry, session_name="idle", fresh=True, output=output)
    for i in range(3):
        agent.session.handle(NOTE.replace(id=f"n{i}", payload={"n": i}))
    before = snapshot(agent.session.state)
    assert memory_occupancy(agent.session.model, agent.session.state) > 0
    # No events and every drive in band: the ticks are idle, and consolidation clears the live memory.
    runtime = live(agent, [drive("memory_pressure", 0.0, 1.0)], max_ticks=3,
                   consolidation=ConsolidationConfig(prune_below=1.0, replay_samples=2))
    counters = asyncio.run(runtime.run(handle_signals=False))
    # Consolidation runs once: with no new tokens since, another pass would find the same.
    assert counters.consolidations == 1 and counters.idle == 3 and counters.impulses == 0
    report = runtime.last_consolidation
    assert report.pruned_cells > 0 and report.occupancy_after == 0.0
    assert report.utility_before > 0.0 == report.utility_after
    assert not identical(before, agent.session.state)  # the live state is what consolidation changed
    assert memory_occupancy(agent.session.model, agent.session.state) == 0.0
    assert agent.session.consolidations == [report.to_payload()]
    assert emitted_types(output) == ["Consolidation", "Shutdown"]
    agent.close()
    # the record survives the session's save and restore
    reopened = open_agent(run_dir, registry=registry, session_name="idle")
    assert reopened.session.consolidations == [report.to_payload()]
    reopened.close()


def test_a_failed_consolidation_leaves_the_live_state_as_it_was() -> None:
    torch.manual_seed(0)
    model = TinyStreamLM(TinyStreamConfig(commit_bias=0)).eval()
    session = EventSession(model)
    session.observe(NOTE)
    before = snapshot(session.state)

    def broken(*args: object) -> int:
        raise RuntimeError("refresh failed half-way")

    (cells,) = model.memory_cells(session.state)
    threshold = float(cells.utility[cells.occupancy >= 0.05].median())  # prunes some cells, refreshes the rest
    model.refresh_memory_cells = broken  # fails after pruning has cleared cells of the working copy
    with pytest.raises(RuntimeError, match="half-way"):
        consolidate_session(session, ConsolidationConfig(prune_below=threshold, refresh_above=0.0), random.Random(0))
    assert identical(before, session.state) and session.consolidations == []


def test_consolidation_replays_memory_contents_and_prunes_by_utility() -> None:
    torch.manual_seed(0)
    model = TinyStreamLM(TinyStreamConfig(commit_bias=0)).eval()
    session = EventSession(model)
    session.observe(NOTE)
    session.recent.clear()  # nothing but the memory itself is left to replay from
    (cells,) = model.memory_cells(session.state)
    cells_before = cells.values.clone(), cells.utility.clone()
    used = cells.utility[cells.occupancy >= 0.05]
    threshold = float(used.median())
    weak = int(((cells.occupancy >= 0.05) & (cells.utility <= threshold)).sum())
    assert 0 < weak < int((cells.occupancy > 0).sum())
    report = consolidate_session(session, ConsolidationConfig(prune_below=threshold, replay_samples=3),
                                 random.Random(0))
    # replay came from the memory: each replayed byte is the argmax of a stored cell's readout
    assert report.replayed == 3 == len(report.replayed_tokens)
    stored = model.head(cells_before[0][cells.occupancy >= 0.05]).argmax(-1).tolist()
    # exactly the low-utility cells were cleared in the live state, the rest kept bit for bit
    assert report.pruned_cells == weak
    (after,) = model.memory_cells(session.state)
    kept = cells_before[1] > threshold
    assert torch.equal(after.values[kept], cells_before[0][kept])
    assert bool((after.occupancy[~kept] == 0).all())
    assert set(report.replayed_tokens) <= set(stored)
    assert report.utility_after > report.utility_before  # only the more useful cells are left


def test_consolidation_refuses_a_model_without_the_memory_api() -> None:
    class NoReadBack:
        def __init__(self, model: TinyStreamLM) -> None:
            self.model = model

    model = TinyStreamLM(TinyStreamConfig()).eval()
    with pytest.raises(RuntimeStateError, match="memory_cells"):
        consolidate(NoReadBack(model), model.init_state(1), ConsolidationConfig(), random.Random(0))


def test_sigterm_stops_the_loop_and_saves_the_session(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    output = io.StringIO()
    agent = open_agent(run_dir, registry=registry, session_name="signal", fresh=True, output=output)
    runtime = live(agent, [drive("memory_pressure", 0.0, 1.0)], consolidate_every_ticks=10_000)
    runtime.config = LiveConfig(poll_ms=20, consolidate_every_ticks=10_000)
    runtime.submit(NOTE)

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)
        await runtime.run()

    asyncio.run(main())
    shutdown = json.loads(output.getvalue().splitlines()[-1])
    assert shutdown["type"] == "Shutdown" and shutdown["payload"]["reason"] == "SIGTERM"
    assert shutdown["payload"]["external"] == 1 and shutdown["payload"]["ticks"] > 1
    agent.close()
    restarted = open_agent(run_dir, registry=registry, session_name="signal")
    assert restarted.resumed and restarted.session.events_observed == 2
    assert identical(snapshot(agent.session.state), restarted.session.state)
    restarted.close()


def test_events_arrive_on_a_unix_socket(run: tuple[Path, object]) -> None:
    import tempfile

    from mosaic.runtime.agent.autonomous import live as run_live

    run_dir, registry = run
    output = io.StringIO()
    agent = open_agent(run_dir, registry=registry, session_name="socket", fresh=True, output=output)
    socket_path = str(Path(tempfile.mkdtemp(prefix="mosaic-", dir="/tmp")) / "live.sock")  # AF_UNIX paths are short
    ready: list[AutonomousRuntime] = []

    async def main() -> None:
        task = asyncio.create_task(run_live(
            agent, HomeostaticLoop([drive("memory_pressure", 0.0, 1.0)]),
            config=LiveConfig(poll_ms=20, max_ticks=500, consolidate_every_ticks=10_000),
            consolidation=ConsolidationConfig(), socket_path=socket_path, on_ready=ready.append))
        while not ready:
            await asyncio.sleep(0.01)
        _, writer = await asyncio.open_unix_connection(socket_path)
        writer.write(NOTE.to_bytes() + b"\nnot an event\n")
        await writer.drain()
        writer.close()
        while ready[0].counters.external < 1:
            await asyncio.sleep(0.01)
        ready[0].stop("test")
        await task

    asyncio.run(main())
    types = emitted_types(output)
    assert sorted(types[:2]) == ["Error", "Reply"] and types[2:] == ["Shutdown"]
    assert ready[0].counters.input_errors == 1
    agent.close()
