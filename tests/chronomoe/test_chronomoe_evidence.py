"""Edits decided on evidence (chronomoe.evidence): a candidate edit is tried on the model and taken
only when it lowers a held-out loss; no edits in the last quarter of training; the do-nothing margin
exceeds the complexity price of one expert."""

import copy

import attrs
import pytest
import torch

from chronomoe.config import ChronoConfig, ClockConfig, LifecycleConfig
from chronomoe.edits import EditProposal
from chronomoe.evidence import BaselineCache, ScoredEdit, best_on_evidence, candidates, score
from chronomoe.system import ChronoSystem
from mosaic.core.config import unstructure_config
from mosaic.core.contract.protocols import TrainingProbe
from mosaic.core.errors import MosaicError
from mosaic.core.plugins import get_registry

D = 16
CHRONO = ChronoConfig(
    clocks=ClockConfig(0.6, 0.8, 0.9),
    prune_min_tokens=50,
    lifecycle=LifecycleConfig(
        mid_interval=5, slow_interval=10, cooldown_steps=0, warmup_steps=5, relaxation_steps=10
    ),
)


def build_layer(seed=0):
    torch.manual_seed(seed)
    return get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "n_experts": 8,
            "top_k": 2,
            "capacity_factor": None,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(CHRONO)},
        },
    )


class OutputProbe:
    """A TrainingProbe over one MoE layer: held-out loss = squared error of the layer's output to a
    target on fixed inputs (no relaxation: the constructed losses are exact)."""

    def __init__(self, layer, target, total_steps=1000):
        self.layer, self.target, self._total = layer, target, total_steps
        self.inputs = torch.randn(4, 8, D, generator=torch.Generator().manual_seed(7))

    @property
    def total_steps(self):
        return self._total

    def output(self):
        self.layer.eval()
        with torch.no_grad():
            out = self.layer(self.inputs)
        self.layer.train()
        return out

    def trial_losses(self, edit, relax_steps):
        saved = copy.deepcopy(self.layer.state_dict())
        try:
            if edit is not None:
                edit()
            loss = float((self.output() - self.target).square().mean())
            return loss, 2.0 * loss  # a check set that agrees in rank with the probe set
        finally:
            self.layer.load_state_dict(saved)


def proposal(expert, predicted, action="prune", other=None):
    return EditProposal(action, expert, other, f_before=0.0, f_predicted=predicted, trigger="constructed")


def test_the_probe_satisfies_the_contract():
    layer = build_layer()
    assert isinstance(OutputProbe(layer, None), TrainingProbe)


def test_an_edit_that_hurts_held_out_loss_is_rejected_even_when_f_predicts_a_gain():
    layer = build_layer()
    system = ChronoSystem([layer], CHRONO, n_active=6)
    probe = OutputProbe(layer, None)
    probe.target = probe.output()  # the unedited layer is perfect: any edit hurts
    registry_before = system.registries[0].state_dict()
    scored = score(system, 0, [proposal(0, -1.0)], probe, BaselineCache())
    assert scored[0].delta_loss > 0
    assert best_on_evidence(scored, margin=0.0) is None
    # trying the edit left the layer and its registry as they were
    assert system.registries[0].live() == list(range(6))
    assert system.registries[0].state_dict()["states"] == registry_before["states"]
    assert torch.equal(probe.output(), probe.target)


def test_an_edit_that_helps_held_out_loss_is_taken_even_when_f_predicts_a_loss():
    layer = build_layer()
    system = ChronoSystem([layer], CHRONO, n_active=6)
    probe = OutputProbe(layer, None)
    saved_layer, saved_registry = copy.deepcopy(layer.state_dict()), system.registries[0].state_dict()
    system.apply_edit(0, "prune", proposal(3, 0.0).candidate)
    probe.target = probe.output()  # the layer without expert 3 is perfect
    layer.load_state_dict(saved_layer)
    system.registries[0].load_state_dict(saved_registry)
    spawn = proposal(1, -1.0, action="spawn", other=6)  # the coherence model prefers it
    scored = score(system, 0, [proposal(3, 0.5), spawn], probe, BaselineCache())
    best = best_on_evidence(scored, margin=0.0)
    assert best is not None and best.proposal.expert == 3
    assert best.delta_loss < 0
    assert [s.proposal.action for s in scored] == ["spawn", "prune"]  # ranked by the proxy, both scored
    # F is measured: predicted dF = probe dloss + evidence_lambda * the change in live experts
    price = CHRONO.lifecycle.evidence_lambda
    assert best.delta_f == pytest.approx(best.delta_loss - price)
    assert scored[0].delta_f == pytest.approx(scored[0].delta_loss + price)
    # the realised dloss comes from the probe's check set, which the decision never reads
    assert best.to_json()["delta_loss_realised"] == pytest.approx(2.0 * best.delta_loss)


def test_the_candidates_are_the_best_of_each_kind() -> None:
    proposals = [proposal(0, -0.3), proposal(1, -0.5), proposal(2, 0.1, "spawn", 6), proposal(3, -0.1, "merge", 4)]
    assert [(p.action, p.expert) for p in candidates(proposals, 3)] == [("prune", 1), ("merge", 3), ("spawn", 2)]
    assert [(p.action, p.expert) for p in candidates(proposals, 1)] == [("prune", 1)]


def test_predicted_df_is_the_probe_dloss_plus_the_price_of_the_experts() -> None:
    lc = CHRONO.lifecycle
    margin, price = lc.evidence_margin, lc.evidence_lambda  # 0.005 > 0.002
    prune = ScoredEdit(proposal(0, 0.0), loss_base=1.0, loss_edit=1.0, price=-price)
    assert best_on_evidence([prune], margin) is None  # a free prune (no loss change) is not enough
    # dloss -0.004: dF = -0.006 passes for a prune; the same dloss for a spawn (dF -0.002) does not
    helpful = attrs.evolve(prune, loss_edit=1.0 - 0.004)
    assert best_on_evidence([helpful], margin) is helpful
    spawn = ScoredEdit(proposal(0, 0.0, "spawn", 6), loss_base=1.0, loss_edit=1.0 - 0.004, price=price)
    assert best_on_evidence([spawn], margin) is None
    spawn_better = attrs.evolve(spawn, loss_edit=1.0 - 0.010)  # dF -0.008 beats the prune's -0.006
    assert best_on_evidence([spawn_better, helpful], margin) is spawn_better
    with pytest.raises(MosaicError, match="complexity price"):
        LifecycleConfig(evidence_lambda=0.01, evidence_margin=0.005)


class EagerProbe:
    """Every edit lowers the probe loss: the system edits whenever it may."""

    def __init__(self, total_steps):
        self.total_steps = total_steps

    def trial_losses(self, edit, relax_steps):
        return (1.0, None) if edit is None else (0.5, None)


def test_no_edits_in_the_last_quarter_of_training():
    layer = build_layer()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    probe = EagerProbe(total_steps=80)
    system = ChronoSystem([layer], CHRONO, optimizer=optimizer, n_active=6, probe=probe)
    target = torch.randn(D, D, generator=torch.Generator().manual_seed(99))
    records = []
    for step in range(80):
        x = torch.randn(4, 8, D, generator=torch.Generator().manual_seed(step))
        loss = (layer(x) - x @ target).square().mean() + layer.aux_outputs()["moe_aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        report = system.step()
        records += report.actions
    edits = [r for r in records if r.edit]
    scored = [r for r in records if r.action == "scored"]
    assert edits, "the eager probe should let the system edit before the last quarter"
    assert scored and all("delta_loss" in r.evidence and "delta_f_predicted" in r.evidence for r in scored)
    assert all("delta_loss_realised" not in r.evidence for r in scored)  # this probe has no check set
    assert max(r.step for r in edits) <= 60
    closed = [r for r in records if r.action == "none" and "no edits" in r.trigger]
    assert {r.step for r in closed} == {70, 80}


def test_the_do_nothing_margin_must_exceed_the_price_of_one_expert():
    with pytest.raises(MosaicError, match="complexity price"):
        LifecycleConfig(lambda_n=0.01, min_delta_f=0.01)
    with pytest.raises(MosaicError, match="complexity price"):
        LifecycleConfig(lambda_n=0.05, min_delta_f=0.02)
    assert LifecycleConfig().min_delta_f > LifecycleConfig().lambda_n


def test_capacity_follows_the_live_experts_not_the_columns():
    layer = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "n_experts": 8,
            "top_k": 2,
            "capacity_factor": 1.0,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(CHRONO)},
        },
    )
    system = ChronoSystem([layer], CHRONO, n_active=4)
    assert layer.live_experts == 4
    x = torch.randn(8, 16, D, generator=torch.Generator().manual_seed(3))
    layer(x)
    dropped_at_4 = float(layer.aux_outputs()["moe_dropped_fraction"])
    layer.live_experts = None  # capacity over all 8 columns: half the slots per live expert
    layer(x)
    assert float(layer.aux_outputs()["moe_dropped_fraction"]) > dropped_at_4
    system.registries[0].sync_capacity()
    system.apply_edit(0, "prune", proposal(2, 0.0).candidate)
    assert layer.live_experts == 3
    scored = score(system, 0, [proposal(1, 0.0)], OutputProbe(layer, torch.zeros(4, 8, D)), BaselineCache())
    assert scored and layer.live_experts == 3  # a trial's registry restore restores the capacity


class RoutedToProbe(OutputProbe):
    """The 'loss' of a trial is minus the share of routing the new column 6 receives."""

    def trial_losses(self, edit, relax_steps):
        saved = copy.deepcopy(self.layer.state_dict())
        try:
            if edit is not None:
                edit()
            with torch.no_grad():
                route = self.layer.router(self.inputs.view(-1, D))
            share = float((route.expert_idx == 6).float().mean())
            return -share, None
        finally:
            self.layer.load_state_dict(saved)


@pytest.mark.parametrize("warm", [False, True])
def test_a_warm_trial_tries_a_new_expert_without_its_entry_offset(warm) -> None:
    config = attrs.evolve(CHRONO, lifecycle=attrs.evolve(CHRONO.lifecycle, evidence_warm_trial=warm))
    layer = build_layer()
    system = ChronoSystem([layer], config, n_active=6)
    probe = RoutedToProbe(layer, None)
    scored = score(system, 0, [proposal(0, 0.0, "spawn", 6)], probe, BaselineCache())
    routed = -scored[0].loss_edit
    assert (routed > 0) if warm else (routed == 0)  # behind the entry offset the clone is never selected
    assert float(layer.router.columns.entry_offset[6]) == 0.0 and system.registries[0].live() == list(range(6))


class CountingProbe(OutputProbe):
    """An OutputProbe that records the relaxation length of every trial and its baseline."""

    def __init__(self, layer, target):
        super().__init__(layer, target)
        self.calls: list[tuple[str, int]] = []

    def trial_losses(self, edit, relax_steps):
        self.calls.append(("edit" if edit is not None else "baseline", relax_steps))
        return super().trial_losses(edit, relax_steps)


def test_growth_is_tried_over_its_own_horizon_against_a_baseline_relaxed_as_long():
    lifecycle = attrs.evolve(CHRONO.lifecycle, evidence_relax_steps=4, evidence_growth_relax_steps=300)
    config = attrs.evolve(CHRONO, lifecycle=lifecycle)
    layer = build_layer()
    system = ChronoSystem([layer], config, n_active=6)
    probe = CountingProbe(layer, None)
    probe.target = probe.output()
    scored = score(system, 0, [proposal(3, 0.5), proposal(1, -1.0, action="spawn", other=6)], probe, BaselineCache())
    assert [s.proposal.action for s in scored] == ["spawn", "prune"]
    # one baseline per relaxation length, each tried edit relaxed as long as its baseline
    assert probe.calls == [("baseline", 300), ("edit", 300), ("baseline", 4), ("edit", 4)]
    cache = BaselineCache()
    cache.get(10, probe, 4)
    cache.get(10, probe, 300)
    cache.get(10, probe, 4)
    assert probe.calls[-2:] == [("baseline", 4), ("baseline", 300)]  # cached per length, not re-run


def test_widen_clones_every_settled_expert_into_the_free_columns_and_prices_them_all():
    from chronomoe.edits import propose_edits
    from chronomoe.kernel import Write
    from chronomoe.lifecycle import layer_health

    lifecycle = attrs.evolve(CHRONO.lifecycle, widen=True)
    config = attrs.evolve(CHRONO, lifecycle=lifecycle)
    layer = build_layer()
    system = ChronoSystem([layer], config, n_active=3)
    layer(torch.randn(4, 8, D))  # some routing statistics
    snapshot = layer.router.coherence.snapshot()
    _, proposals = propose_edits(system.registries[0], snapshot, layer_health(snapshot, config), [], config,
                                 explore=True)
    widen = [p for p in proposals if p.action == "widen"]
    assert len(widen) == 1 and widen[0].other == 3 and widen[0].trigger.startswith("widen by 3")
    # without the switch the kind proposes nothing
    _, plain = propose_edits(system.registries[0], snapshot, layer_health(snapshot, CHRONO), [], CHRONO,
                             explore=True)
    assert not any(p.action == "widen" for p in plain)

    probe = OutputProbe(layer, None)
    probe.target = probe.output()
    scored = score(system, 0, widen, probe, BaselineCache())
    assert scored[0].price == pytest.approx(3 * lifecycle.evidence_lambda)  # three experts, three prices
    assert system.registries[0].live() == [0, 1, 2]  # the trial restored the registry

    # carried out (here as a finalised kernel write), it spawns three and its record says so
    record = system._enact(Write("edit", "edit/step10/layer0", {"layer": 0, "action": "widen", "expert": 0,
                                                                  "other": 3}, window=1))
    registry = system.registries[0]
    assert record.action == "widen" and record.edit and record.expert_delta == 3
    assert registry.live() == [0, 1, 2, 3, 4, 5] and layer.live_experts == 6
    assert [registry.states[e] for e in (3, 4, 5)] == ["cooling"] * 3
    # full: a second widen has no room past max_experts
    small = attrs.evolve(config, lifecycle=attrs.evolve(lifecycle, max_experts=7))
    system = ChronoSystem([build_layer()], small, n_active=5)
    widen_kind = system.edit_kinds["widen"]
    assert widen_kind.change(system.registries[0], widen[0].candidate) == 2
