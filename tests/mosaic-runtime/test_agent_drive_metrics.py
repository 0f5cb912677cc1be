"""Drives read metrics the runtime reports: every shipped drive's metric is reported, a drive on an
unknown metric is refused at load time naming it, and input_novelty lets drive.boredom fire."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from mosaic.core.contract import keys
from mosaic.core.drives import BUILTIN_DRIVES
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.homeostasis import DriveBand, HomeostasisError, HomeostaticLoop, IntrinsicDrive
from mosaic.runtime.agent.autonomous import AutonomousRuntime
from mosaic.runtime.agent.metrics import expert_load_entropy, output_aux_metrics, router_bits_entropy
from mosaic.runtime.agent.service import open_agent
from mosaic.runtime.testing.tiny_agent import REPLY, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return make_run(tmp_path_factory.mktemp("drives"), script=REPLY.to_json(), commit_bias=0)


def test_every_shipped_drive_reads_a_metric_the_runtime_reports(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    agent = open_agent(run_dir, registry=registry, session_name="metrics", fresh=True, output=io.StringIO())
    reported = agent.reported_metrics()
    drives = [registry.build(f"drive.{d.name}") for d in BUILTIN_DRIVES]
    assert all(set(drive.metrics) <= reported for drive in drives), (reported, [d.metrics for d in drives])
    assert "routing_entropy" not in reported and "memory_routing_entropy" in reported
    agent.session.observe(EventEnvelope("Note", {"n": 1}, "user", id="n1", ts=1.0))
    assert set(agent.metrics()) <= reported and {d.metric for d in drives} <= set(agent.metrics())
    AutonomousRuntime(agent, HomeostaticLoop(drives))  # loads
    agent.close()


def test_a_drive_on_an_unknown_metric_fails_at_load_time_naming_it(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    agent = open_agent(run_dir, registry=registry, session_name="unknown", fresh=True, output=io.StringIO())
    drive = IntrinsicDrive(name="curious", metric="surprise_level", band=DriveBand(0.0, 1.0))
    with pytest.raises(
        HomeostasisError, match="drive 'curious' reads metric 'surprise_level'.*never reports"
    ):
        AutonomousRuntime(agent, HomeostaticLoop([drive]))
    agent.close()


def test_input_novelty_falls_on_repeated_event_types_and_boredom_fires(run: tuple[Path, object]) -> None:
    run_dir, registry = run
    agent = open_agent(run_dir, registry=registry, session_name="bored", fresh=True, output=io.StringIO())
    # drive.boredom as the example plugin ships it: input_novelty, band [0.1, 1]
    boredom = IntrinsicDrive(name="boredom", metric="input_novelty", band=DriveBand(0.1, 1.0), gain=2.0)
    loop = HomeostaticLoop([boredom])
    AutonomousRuntime(agent, loop)  # the runtime reports input_novelty: the drive loads
    for i, kind in enumerate(["Note", "Weather", "Chat", "Alarm"]):
        agent.session.observe(EventEnvelope(kind, {"n": i}, "user", id=f"a{i}", ts=float(i)))
    assert agent.metrics()["input_novelty"] == 1.0  # every type new
    assert loop.impulse(agent.metrics(), now=0.0) is None
    for i in range(8):
        agent.session.observe(EventEnvelope("Note", {"n": i}, "user", id=f"b{i}", ts=float(i)))
    assert agent.metrics()["input_novelty"] == 0.0  # the same type over and over
    impulse = loop.impulse(agent.metrics(), now=1.0)
    assert impulse is not None and impulse.payload["drive"] == "boredom"
    agent.close()


def test_routing_entropies_measure_router_spread_not_opcodes() -> None:
    spread = torch.zeros(1, 1, 64, 1, 3)  # each bit at p = 0.5 on average: uniform bucket use
    spread[:, :, ::2] = 8.0
    spread[:, :, 1::2] = -8.0
    collapsed = torch.full((1, 1, 64, 1, 3), 8.0)  # every token to the same bucket
    assert router_bits_entropy(spread) > 0.99 and router_bits_entropy(collapsed) < 0.01
    assert expert_load_entropy(torch.tensor([[0.25, 0.25, 0.25, 0.25]])) == pytest.approx(1.0)
    assert expert_load_entropy(torch.tensor([[1.0, 0.0, 0.0, 0.0]])) < 0.01
    metrics = output_aux_metrics(
        {
            keys.READ_BIT_LOGITS.name: collapsed,
            keys.OPCODE_LOGITS.name: torch.zeros(1, 1, 4, 10),
            keys.MOE_EXPERT_LOAD.name: torch.tensor([[0.5, 0.5]]),
        }
    )
    assert metrics["memory_routing_entropy"] < 0.01 and metrics["opcode_entropy"] == pytest.approx(1.0)
    assert metrics["moe_routing_entropy"] == pytest.approx(1.0) and "routing_entropy" not in metrics
