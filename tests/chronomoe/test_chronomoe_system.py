import copy
import json

import pytest
import torch

from chronomoe.config import ChronoConfig, ClockConfig, LifecycleConfig
from chronomoe.system import ChronoSystem
from mosaic.core.config import unstructure_config
from mosaic.core.errors import MosaicError
from mosaic.core.plugins import get_registry

D = 16
CHRONO = ChronoConfig(
    clocks=ClockConfig(0.6, 0.8, 0.9),
    prune_min_tokens=50,
    lifecycle=LifecycleConfig(
        mid_interval=5,
        slow_interval=10,
        cooldown_steps=10,
        warmup_steps=5,
        relaxation_steps=10,
        min_delta_f=0.0, lambda_n=0.0,
    ),
)


def build(seed=0):
    torch.manual_seed(seed)
    layers = [
        get_registry().build(
            "layer.moe",
            {
                "d_model": D,
                "n_experts": 8,
                "top_k": 2,
                "capacity_factor": None,
                "router": {
                    "type": "router.chrono",
                    "track_roles": True,
                    "chrono": unstructure_config(CHRONO),
                },
            },
        )
        for _ in range(2)
    ]
    params = [p for layer in layers for p in layer.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    return layers, optimizer


def train(layers, optimizer, system, steps, start):
    decisions = []
    target = torch.randn(D, D, generator=torch.Generator().manual_seed(99))
    for step in range(start, start + steps):
        x = torch.randn(4, 8, D, generator=torch.Generator().manual_seed(step))
        h = x
        aux = 0.0
        for layer in layers:
            h = h + layer(h)
            aux = aux + layer.aux_outputs()["moe_aux_loss"]
        loss = (h - x @ target).square().mean() + aux
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        report = system.step()
        decisions += [decision.to_json() for decision in report.control + report.actions]
    return decisions


def strip(records):
    return json.loads(json.dumps(records, sort_keys=True))


def test_checkpoint_restore_gives_the_same_subsequent_decisions(tmp_path):
    layers, optimizer = build()
    system = ChronoSystem(layers, CHRONO, optimizer=optimizer, n_active=6, log_path=tmp_path / "log.jsonl")
    first = train(layers, optimizer, system, 40, 0)
    checkpoint = copy.deepcopy(
        {
            "model": [layer.state_dict() for layer in layers],
            "optimizer": optimizer.state_dict(),
            "system": system.state_dict(),
        }
    )
    later = train(layers, optimizer, system, 40, 40)

    layers2, optimizer2 = build(seed=123)  # different init: everything must come from the checkpoint
    system2 = ChronoSystem(layers2, CHRONO, optimizer=optimizer2, n_active=6)
    for layer, state in zip(layers2, checkpoint["model"], strict=True):
        layer.load_state_dict(state)
    optimizer2.load_state_dict(checkpoint["optimizer"])
    system2.load_state_dict(checkpoint["system"])
    replay = train(layers2, optimizer2, system2, 40, 40)
    assert strip(replay) == strip(later)
    assert any(r["clock"] == "slow" for r in later)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(lines) == len(first) + len(later)
    for record in lines:
        assert {
            "step",
            "clock",
            "action",
            "layer",
            "expert",
            "coherence",
            "free_energy",
            "competing",
            "trigger",
        } <= set(record)
    slow = [r for r in lines if r["clock"] == "slow" and r["action"] not in ("outcome",)]
    assert all(
        "before" in r["free_energy"]
        for r in slow
        if r["action"] not in ("relaxation_trial", "trial_rejected")
    )


def test_one_edit_per_layer_per_evaluation_and_cooldown(tmp_path):
    layers, optimizer = build()
    system = ChronoSystem(layers, CHRONO, optimizer=optimizer, n_active=6)
    records = train(layers, optimizer, system, 60, 0)
    edits = [r for r in records if r["action"] in ("prune", "split", "merge", "spawn")]
    seen = set()
    for r in edits:
        assert (r["step"], r["layer"]) not in seen
        seen.add((r["step"], r["layer"]))
        assert r["free_energy"]["predicted"] - r["free_energy"]["before"] <= 0.0
    for layer in range(2):
        steps = [r["step"] for r in edits if r["layer"] == layer]
        assert all(b - a >= CHRONO.lifecycle.cooldown_steps for a, b in zip(steps, steps[1:], strict=False))
    for registry in system.registries:
        assert 2 <= len(registry.live()) <= 8


def test_escalation_resets_a_beta_that_flips_most_routing():
    config = ChronoConfig(
        clocks=ClockConfig(0.5, 0.6, 0.9),
        veto_full=0.98,
        veto_zero=0.99,
        k_max=5.0,
        lifecycle=LifecycleConfig(mid_interval=3, slow_interval=1000),
    )
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(config)},
        },
    )
    system = ChronoSystem([moe], config)
    moe.train()
    records = []
    for _ in range(6):
        moe.router.state.k.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0, 5.0, -5.0, 5.0, -5.0]))
        moe(torch.randn(2, 16, D))
        records += system.step().control
    assert records and records[-1].action in ("reset_beta", "decay_beta")
    assert float(moe.router.state.k.abs().max()) < 5.0


def test_lifecycle_refuses_a_router_without_roles():
    moe = get_registry().build("layer.moe", {"d_model": D, "router": {"type": "router.chrono"}})
    with pytest.raises(MosaicError, match="track_roles"):
        ChronoSystem([moe], ChronoConfig())


def _rig_split_ready(moe, expert, live=6, phi=0.9, bimodality=1.0):
    """A healthy layer (coherent, balanced) with one bimodal expert, set directly in the buffers."""
    coherence, role, width = moe.router.coherence, moe.router.role, moe.n_experts
    clocks = coherence.clocks
    clocks.weight[:, : 2 * width + 1] = 1.0
    clocks.numerator[:, :live] = phi  # φ of the live experts
    clocks.numerator[:, width : width + live] = 1.0 / live  # balanced routing share
    clocks.numerator[:, 2 * width] = phi  # Ψ
    role.coactivation.weight.fill_(1.0)
    role.coactivation.numerator.copy_(torch.eye(width) / live)
    role.centroid_mass[expert] = torch.tensor([1.0, 1.0])
    role.bimodality[expert] = bimodality
    role.split_ready[expert] = True


@pytest.mark.parametrize("real", [True, False])
def test_relaxation_trial_tells_real_from_beta_induced_bimodality(real):
    config = ChronoConfig(
        lifecycle=LifecycleConfig(
            mid_interval=1000, slow_interval=10, relaxation_steps=10, min_delta_f=0.0, lambda_n=0.0, cooldown_steps=0
        ),
    )
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(config)},
        },
    )
    system = ChronoSystem([moe], config, n_active=6)
    moe.router.state.k[2] = 0.2
    _rig_split_ready(moe, 2)
    actions = []
    for _ in range(10):
        actions += system.step().actions
    assert [a.action for a in actions if a.expert == 2][:1] == ["relaxation_trial"]
    assert bool(moe.router.state.held[2])
    moe.router.state.update_beta(torch.zeros(8), torch.ones(8))
    assert float(moe.router.state.k[2]) == 0.0  # beta held at zero during the trial
    if not real:  # with beta gone, the second mode disappears
        moe.router.role.split_ready[2] = False
        moe.router.role.bimodality[2] = 0.0
    later = []
    for _ in range(10):
        later += system.step().actions
    assert not bool(moe.router.state.held[2])
    names = [a.action for a in later]
    if real:
        assert "split" in names and system.registries[0].states[6] == "cooling"
        split = next(a for a in later if a.action == "split")
        assert split.expert == 2 and split.other == 6 and split.edit and split.expert_delta == 1
        assert split.free_energy["predicted"] < split.free_energy["before"]
    else:
        assert "trial_rejected" in names and "split" not in names
        assert system.registries[0].states[6] == "archived"
