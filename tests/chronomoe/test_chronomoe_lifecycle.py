import json

import pytest
import torch

from chronomoe.buffer import CoherenceBuffer, CoherenceSnapshot, ExpertCoherence, MultiLayerCoherence
from chronomoe.config import ChronoConfig, ClockConfig
from chronomoe.lifecycle import LifecycleCoordinator, effective_experts, saturation


def snapshot(phi_slow, tokens, share, psi_slow=0.8):
    experts = tuple(
        ExpertCoherence(e, p, p, p, 0.9, t, s)
        for e, (p, t, s) in enumerate(zip(phi_slow, tokens, share, strict=True))
    )
    return CoherenceSnapshot(
        layer=1, step=42, experts=experts, psi_fast=psi_slow, psi_mid=psi_slow, psi_slow=psi_slow
    )


def test_neff_and_saturation():
    assert effective_experts([1 / 8] * 8) == pytest.approx(8.0)
    assert effective_experts([1.0, 0, 0, 0]) == pytest.approx(1.0)
    assert effective_experts([0.5, 0.5, 0, 0]) == pytest.approx(2.0)
    assert saturation([0.7, 0.1, 0.1, 0.1]) == pytest.approx(0.7)


def test_low_coherence_after_enough_tokens_is_a_prune_candidate():
    coordinator = LifecycleCoordinator(ChronoConfig())
    snap = snapshot([0.8, 0.1, 0.2, 0.9], [5000, 5000, 10, 5000], [0.25] * 4)
    decisions = {d.expert: d for d in coordinator.evaluate(snap)}
    assert decisions[1].action == "prune_candidate"
    assert decisions[2].action == "too_few_tokens"  # low φ but not enough evidence yet
    assert decisions[0].action == decisions[3].action == "keep"
    record = decisions[1].to_json()
    assert record["step"] == 42 and record["layer"] == 1 and record["phi_slow"] == 0.1
    assert record["health"]["neff"] == pytest.approx(4.0)
    json.dumps(record)
    assert coordinator.prune_candidates(snap) == [1]


@pytest.mark.parametrize(
    ("share", "psi", "reason"),
    [
        ([0.25] * 4, 0.3, "psi_slow"),
        ([0.97, 0.01, 0.01, 0.01], 0.8, "neff"),
        ([0.6, 0.3, 0.05, 0.05], 0.8, "saturation"),
    ],
)
def test_a_starving_layer_blocks_every_prune(share, psi, reason):
    coordinator = LifecycleCoordinator(ChronoConfig())
    decisions = coordinator.evaluate(snapshot([0.8, 0.1, 0.8, 0.8], [5000] * 4, share, psi_slow=psi))
    assert decisions[1].action == "prune_blocked" and reason in decisions[1].reason
    assert decisions[1].health.starving


def test_dry_run_reads_a_real_buffer_and_changes_nothing():
    config = ChronoConfig(clocks=ClockConfig(0.5, 0.6, 0.7), prune_min_tokens=5)
    buffer = CoherenceBuffer(3, config, layer=0)
    for _ in range(10):
        buffer.update(
            torch.tensor([0.95, 0.1, 0.9]),
            torch.tensor([True, True, True]),
            torch.tensor([4.0, 4.0, 4.0]),
            torch.tensor([0.3, 0.3, 0.4]),
        )
    state = {k: v.clone() for k, v in buffer.state_dict().items()}
    snap = buffer.snapshot()
    assert snap.step == 10 and snap.experts[0].tokens_seen == 40
    assert snap.experts[1].phi_slow == pytest.approx(0.1, abs=1e-5)
    assert snap.psi_slow == pytest.approx(0.65, abs=1e-5)
    assert snap.experts[0].phi_delta == pytest.approx(0.0, abs=1e-5)
    assert LifecycleCoordinator(config).prune_candidates(snap) == [1]
    for key, value in buffer.state_dict().items():
        torch.testing.assert_close(value, state[key])
    multi = MultiLayerCoherence.create(2, 3, config)
    assert [s.layer for s in multi.snapshot()] == [0, 1] and len(multi) == 2
