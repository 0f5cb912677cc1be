"""Spawn/merge oscillation guard: a fresh clone is not merged straight back into its source, and a
merge survivor is not split straight away."""

import pytest
import torch

from chronomoe.config import ChronoConfig, LifecycleConfig
from chronomoe.expert_registry import LifecycleError
from chronomoe.system import ChronoSystem
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry

D = 16
SLOW = 10


def build(guard):
    config = ChronoConfig(
        lifecycle=LifecycleConfig(
            mid_interval=1000,
            slow_interval=SLOW,
            warmup_steps=5,
            cooldown_steps=0,
            min_delta_f=0.0, lambda_n=0.0,
            edit_guard_cycles=guard,
        )
    )
    torch.manual_seed(0)
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(config)},
        },
    )
    return moe, ChronoSystem([moe], config, n_active=6)


def rig_near_identical_clone(moe, live, source, clone):
    """A healthy, balanced layer whose only redundancy is ``clone``, a near-copy of ``source``."""
    coherence, role, width = moe.router.coherence, moe.router.role, moe.n_experts
    n = len(live)
    clocks = coherence.clocks
    clocks.weight.zero_()
    clocks.numerator.zero_()
    for e in live:
        clocks.weight[:, [e, width + e]] = 1.0
        clocks.numerator[:, e] = 0.9
        clocks.numerator[:, width + e] = 1.0 / n
    clocks.weight[:, 2 * width] = 1.0
    clocks.numerator[:, 2 * width] = 0.9
    directions = torch.eye(D)[:width]  # orthogonal roles: no redundancy between distinct experts
    directions[clone] = directions[source] + 0.01 * directions[(source + 1) % D]
    role.role.weight.fill_(1.0)
    role.role.numerator[0].copy_(directions)
    coactivation = torch.zeros(width, width)
    for e in live:
        coactivation[e, e] = 1.0 / n
    coactivation[source, clone] = coactivation[clone, source] = 1.0 / n  # always selected together
    role.coactivation.weight.fill_(1.0)
    role.coactivation.numerator[0].copy_(coactivation)


def run_slow_evaluations(moe, system, count, live, source, clone):
    merges = []
    for _ in range(count):
        for _ in range(SLOW):
            rig_near_identical_clone(moe, live, source, clone)
            merges += [a for a in system.step().actions if a.action == "merge"]
    return merges


def test_without_a_guard_the_clone_is_merged_back_at_once():
    moe, system = build(guard=0)
    clone = system.registries[0].spawn(0)
    merges = run_slow_evaluations(moe, system, 1, [*range(6), clone], 0, clone)
    assert [{m.expert, m.other} for m in merges] == [{0, clone}]  # the oscillation


def test_guard_keeps_the_clone_until_its_slow_cycles_have_passed():
    guard = 3
    moe, system = build(guard=guard)
    registry = system.registries[0]
    clone = registry.spawn(0)
    live = [*range(6), clone]
    assert run_slow_evaluations(moe, system, guard - 1, live, 0, clone) == []
    assert registry.states[clone] == "active"
    later = run_slow_evaluations(moe, system, 1, live, 0, clone)
    assert [{m.expert, m.other} for m in later] == [{0, clone}]  # allowed once the guard ran out


def test_split_children_and_merge_survivors_are_guarded_and_checkpointed():
    moe, system = build(guard=2)
    registry = system.registries[0]
    child = registry.split(1)
    assert not registry.can_merge(child) and not registry.can_merge(1)
    registry.merge(2, 3)
    assert not registry.can_split(2)
    assert registry.guarded("split", 2, None) and registry.guarded("merge", 4, child)
    assert not registry.guarded("merge", 4, 5) and not registry.guarded("prune", 1, None)
    with pytest.raises(LifecycleError, match="guarded"):
        registry.split(2)
    with pytest.raises(LifecycleError, match="guarded"):
        registry.merge(1, child)
    state = system.state_dict()
    _, system2 = build(guard=2)
    system2.load_state_dict(state)
    assert system2.registries[0].merge_guard == registry.merge_guard
    assert system2.registries[0].split_guard == registry.split_guard
    registry.slow_cycle()
    registry.slow_cycle()
    assert registry.can_merge(child) and registry.can_split(2)
