"""ChronoMoE's edits are data: a new edit kind is one row of chronomoe.edit_kinds.EDIT_KINDS, and
every decision is a typed record whose JSON says whether it edited the layer and by how much."""

from __future__ import annotations

import attrs
import pytest
import torch

from chronomoe.config import ChronoConfig, ClockConfig, LifecycleConfig
from chronomoe.decisions import Decision
from chronomoe.edit_kinds import EDIT_KINDS, Candidate, EditContext, EditKind
from chronomoe.expert_registry import LifecycleError
from chronomoe.free_energy import LayerView, after_prune
from chronomoe.training import build_chrono_lifecycle
from chronomoe.training_config import ChronoLifecycleConfig
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry

D, SLOW = 16, 4
CHRONO = ChronoConfig(clocks=ClockConfig(0.6, 0.8, 0.9),
                      lifecycle=LifecycleConfig(mid_interval=2, slow_interval=SLOW, warmup_steps=2))


def layers_and_optimizer() -> tuple[list[torch.nn.Module], torch.optim.Optimizer]:
    torch.manual_seed(0)
    router = {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(CHRONO)}
    layers = [get_registry().build("layer.moe", {"d_model": D, "n_experts": 8, "top_k": 2, "router": router})
              for _ in range(2)]
    return layers, torch.optim.AdamW([p for layer in layers for p in layer.parameters()], lr=1e-2)


def train_step(layers: list[torch.nn.Module], optimizer: torch.optim.Optimizer, step: int) -> None:
    x = torch.randn(4, 8, D, generator=torch.Generator().manual_seed(step))
    h = x
    for layer in layers:
        h = h + layer(h)
    loss = h.square().mean() + sum(layer.aux_outputs()["moe_aux_loss"] for layer in layers)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_a_new_edit_kind_is_one_table_row(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[tuple[int, int]] = []

    def propose(context: EditContext) -> list[Candidate]:
        return [Candidate(min(context.settled), None, "retire the oldest expert")] if context.settled else []

    def apply(registry, candidate: Candidate) -> None:
        applied.append((id(registry), candidate.expert))
        registry.prune(candidate.expert)

    row = EditKind("retire", propose, lambda view, c: after_prune(view, c.expert), apply,
                   guard=lambda registry, c: None, expert_delta=-1, adhoc_rank=-1)
    monkeypatch.setitem(EDIT_KINDS, "retire", row)  # the whole change: one row

    layers, optimizer = layers_and_optimizer()
    lifecycle = build_chrono_lifecycle(ChronoLifecycleConfig(trigger="adhoc", n_active=6))
    lifecycle.attach(layers, optimizer)
    records = []
    for step in range(SLOW):
        train_step(layers, optimizer, step)
        records += lifecycle.step()
    retired = [r for r in records if r["action"] == "retire"]
    assert [r["layer"] for r in retired] == [0, 1]  # the ad-hoc controller ranks it first
    assert all(r["edit"] and r["expert_delta"] == -1 and r["expert"] == 0 for r in retired)
    assert len(applied) == 2
    system = lifecycle.system
    assert all(registry.states[0] == "archived" for registry in system.registries)
    # the free-energy clock proposes and scores it too
    from chronomoe.edits import propose_edits
    from chronomoe.lifecycle import layer_health

    snapshot = layers[0].router.coherence.snapshot()
    _, proposals = propose_edits(system.registries[0], snapshot, layer_health(snapshot, CHRONO), [], CHRONO)
    assert any(p.action == "retire" for p in proposals)


def test_apply_edit_is_public_and_refuses_an_unknown_kind() -> None:
    from chronomoe.system import ChronoSystem

    layers, optimizer = layers_and_optimizer()
    system = ChronoSystem(layers, CHRONO, optimizer=optimizer, n_active=6)
    kind = system.apply_edit(1, "prune", Candidate(2, None, "test"))
    assert kind is EDIT_KINDS["prune"] and system.registries[1].states[2] == "archived"
    with pytest.raises(LifecycleError, match="unknown edit 'teleport'.*prune, merge, split, spawn"):
        system.apply_edit(1, "teleport", Candidate(3, None, "test"))
    # a queued edit of an expert that is gone is stale, by the same table
    assert system.edit_guard(1, "prune", Candidate(2, None, "")) == "queued edit no longer applies"


def test_decision_records_are_typed_and_round_trip() -> None:
    record = Decision(step=3, clock="slow", action="split", layer=1, expert=2, other=6, edit=True, expert_delta=1)
    assert Decision.from_json(record.to_json()) == record
    with pytest.raises(ValueError):
        Decision(step=3, clock="hourly", action="none", layer=0, expert=None)
    old = {k: v for k, v in record.to_json().items() if k not in ("edit", "expert_delta")}
    assert Decision.from_json(old) == attrs.evolve(record, edit=False, expert_delta=0)


def test_trigger_none_keeps_the_columns_and_capacity_but_never_edits() -> None:
    layers, optimizer = layers_and_optimizer()
    lifecycle = build_chrono_lifecycle(ChronoLifecycleConfig(trigger="none", n_active=6))
    lifecycle.attach(layers, optimizer)
    records = []
    for step in range(2 * SLOW):
        train_step(layers, optimizer, step)
        records += lifecycle.step()
    assert records == []
    assert all(layer.live_experts == 6 for layer in layers)
    assert all(registry.live() == list(range(6)) for registry in lifecycle.system.registries)


def test_trigger_schedule_grows_every_live_expert_once_at_grow_at_and_never_before() -> None:
    layers, optimizer = layers_and_optimizer()
    lifecycle = build_chrono_lifecycle(ChronoLifecycleConfig(trigger="schedule", n_active=3, grow_at=5))
    lifecycle.attach(layers, optimizer)
    records = []
    for step in range(3 * SLOW):
        train_step(layers, optimizer, step)
        new = lifecycle.step()
        edits = [r for r in new if r["edit"]]
        if step + 1 < 5:
            assert edits == [] and all(layer.live_experts == 3 for layer in layers)
        records += edits
    # 3 live of 8 columns: each of the 3 spawns once, into columns 3-5, in both layers, at step 5 only
    assert [(r["step"], r["layer"], r["action"], r["expert_delta"]) for r in records] == (
        [(5, 0, "spawn", 1)] * 3 + [(5, 1, "spawn", 1)] * 3)
    for layer, registry in zip(layers, lifecycle.system.registries, strict=True):
        assert sorted(r["expert"] for r in records if r["layer"] == 0) == [0, 1, 2]
        assert registry.live() == list(range(6)) and layer.live_experts == 6
    # the slow clock makes no evidence-gated decision of its own
    assert not any(r["action"] in ("prune", "merge", "split") for r in records)


def test_growth_clones_the_most_selected_experts_first_ties_by_column() -> None:
    """Scheduled growth and widen spawn in this order, so a layer short of room grows its busiest
    experts (LayerView.most_selected)."""
    n = 4
    view = LayerView(experts=(0, 2, 5, 7), phi=torch.zeros(n), share=torch.tensor([0.2, 0.4, 0.2, 0.2]),
                     role=torch.zeros(n, D), coactivation=torch.zeros(n, n), bimodality=torch.zeros(n),
                     centroids=torch.zeros(n, 2, D), centroid_mass=torch.zeros(n, 2))
    assert view.most_selected() == [2, 0, 5, 7]
    assert view.most_selected([7, 5, 2]) == [2, 5, 7]


def test_grow_at_belongs_to_the_schedule_trigger_only() -> None:
    from mosaic.core.config import structure_config
    from mosaic.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\$\.grow_at: trigger 'schedule' needs grow_at"):
        structure_config({"trigger": "schedule"}, ChronoLifecycleConfig)
    with pytest.raises(ConfigError, match=r"\$\.grow_at: .*no other trigger takes one.*'adhoc'"):
        structure_config({"trigger": "adhoc", "grow_at": 10}, ChronoLifecycleConfig)
    with pytest.raises(ConfigError, match=r"\$\.grow_at"):
        structure_config({"trigger": "schedule", "grow_at": 0}, ChronoLifecycleConfig)
