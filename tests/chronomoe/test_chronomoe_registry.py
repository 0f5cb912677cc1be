import pytest
import torch

from chronomoe.config import LifecycleConfig
from chronomoe.expert_registry import ExpertRegistry, LifecycleError
from mosaic.core.plugins import get_registry

D = 16


def trained_moe(steps=30, n_active=6, router="router.chrono"):
    torch.manual_seed(0)
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "n_experts": 8,
            "top_k": 2,
            "capacity_factor": None,
            "router": {"type": router, **({"track_roles": True} if router == "router.chrono" else {})},
        },
    )
    optimizer = torch.optim.AdamW(moe.parameters(), lr=1e-2)
    registry = ExpertRegistry(moe, LifecycleConfig(warmup_steps=10), n_active=n_active, optimizer=optimizer)
    target = torch.randn(D, D)
    for _ in range(steps):
        x = torch.randn(4, 8, D)
        loss = (moe(x) - x @ target).square().mean() + moe.aux_outputs()["moe_aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        registry.tick()
    return moe, optimizer, registry


def moments(optimizer, weight, expert):
    state = optimizer.state[weight]
    return state["exp_avg"][expert].clone(), state["exp_avg_sq"][expert].clone()


def test_split_keeps_the_output_and_gives_children_fresh_moments():
    moe, optimizer, registry = trained_moe()
    x = torch.randn(4, 8, D)
    moe.eval()
    with torch.no_grad():
        before = moe(x)
    parent = 0
    other_before = moments(optimizer, moe.experts.w_gate, 1)
    child = registry.split(parent)
    assert child == 6 and registry.states[child] == "cooling"
    with torch.no_grad():
        after = moe(x)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)
    for weight in (moe.experts.w_gate, moe.experts.w_up, moe.experts.w_down, moe.router.gate.weight):
        for expert in (parent, child):
            m, v = moments(optimizer, weight, expert)
            assert torch.all(m == 0) and torch.all(v == 0)
    torch.testing.assert_close(moments(optimizer, moe.experts.w_gate, 1), other_before)
    # the clone is a perturbed copy and warms in: after its cooling period it is selected
    assert not torch.equal(moe.experts.w_gate[child], moe.experts.w_gate[parent])
    torch.testing.assert_close(moe.experts.w_gate[child], moe.experts.w_gate[parent], rtol=0.1, atol=0.05)
    for _ in range(10):
        registry.tick()
    assert registry.states[child] == "active" and float(moe.router.columns.entry_offset[child]) == 0.0
    with torch.no_grad():
        moe(torch.randn(8, 16, D))
    assert (moe.last_trace.expert_idx == child).any()


def test_merge_keeps_the_survivors_moments_and_archives_the_other():
    moe, optimizer, registry = trained_moe()
    kept = [moments(optimizer, w, 2) for w in (moe.experts.w_gate, moe.router.gate.weight)]
    registry.merge(2, 3, share=(0.6, 0.4))
    for (m, v), weight in zip(kept, (moe.experts.w_gate, moe.router.gate.weight), strict=True):
        m_after, v_after = moments(optimizer, weight, 2)
        torch.testing.assert_close(m_after, m)
        torch.testing.assert_close(v_after, v)
        assert torch.all(optimizer.state[weight]["exp_avg"][3] == 0)
    assert registry.states[3] == "archived" and not moe.router.columns.active[3]


@pytest.mark.parametrize("router", ["router.chrono", "router.topk", "router.loss_free"])
def test_pruned_expert_is_never_selected_again(router):
    moe, optimizer, registry = trained_moe(router=router)
    registry.prune(4)
    assert registry.states[4] == "archived"
    moe.train()
    for _ in range(20):
        x = torch.randn(4, 16, D)
        y = moe(x)
        (y.square().mean() + moe.aux_outputs()["moe_aux_loss"]).backward()
        optimizer.step()
        optimizer.zero_grad()
        chosen = moe.router(x.reshape(-1, D)).expert_idx
        assert not (chosen == 4).any()
        assert float(moe.aux_outputs()["moe_expert_load"][4]) == 0.0
    # never-used columns stay unselected too
    assert not (chosen >= 6).any()


def test_bounds_and_states_are_enforced():
    moe, _, registry = trained_moe(n_active=2)
    with pytest.raises(LifecycleError, match="minimum"):
        registry.prune(0)
    with pytest.raises(LifecycleError, match="not live"):
        registry.split(5)
    for _ in range(6):
        registry.spawn(0)
    with pytest.raises(LifecycleError, match="no room"):
        registry.spawn(1)
    with pytest.raises(LifecycleError, match="active experts outside"):
        ExpertRegistry(moe, LifecycleConfig(), n_active=1)


def test_registry_state_round_trips():
    moe, optimizer, registry = trained_moe()
    registry.split(1)
    registry.tick()
    other = ExpertRegistry(moe, LifecycleConfig(warmup_steps=10), optimizer=optimizer)
    other.load_state_dict(registry.state_dict())
    assert other.states == registry.states and other.cooling_left == registry.cooling_left
    assert other.spawn(0) == registry.spawn(0)


def test_the_default_lifecycle_config_accepts_a_64_expert_layer() -> None:
    """Seed 003's checkpoint scenario: 64 experts under the default LifecycleConfig."""
    moe = get_registry().build("layer.moe", {"d_model": D, "n_experts": 64, "top_k": 2,
                                             "router": {"type": "router.chrono"}})
    registry = ExpertRegistry(moe, LifecycleConfig())
    assert len(registry.live()) == 64
    assert not registry.can_grow()  # every column is live
    roomy = ExpertRegistry(moe, LifecycleConfig(), n_active=40)
    assert len(roomy.live()) == 40 and roomy.can_grow()
    assert not ExpertRegistry(moe, LifecycleConfig(max_experts=40), n_active=40).can_grow()


def test_a_column_reused_after_archive_starts_clean_and_its_new_expert_is_not_frozen() -> None:
    moe, _, registry = trained_moe()
    audits = []
    registry.audit = lambda kind, data: audits.append((kind, data))
    state = moe.router.state
    with torch.no_grad():
        state.crystallised[2] = True  # expert 2 earned a reflex: its k is frozen
        state.k[2] = 0.25
    registry.prune(2)
    assert registry.archive[-1]["column"] == 2 and registry.archive[-1]["crystallised"] is True
    assert not bool(state.crystallised[2])
    child = registry.spawn(0)
    assert child == 2  # the archived column is reused
    assert not bool(state.crystallised[2]) and float(state.k[2]) == 0.0
    assert [kind for kind, _ in audits] == ["lifecycle.column_reuse"]
    assert audits[0][1]["previous"]["crystallised"] is True
    # the new expert's β moves with its own coherence, unlike a crystallised one
    active = moe.router.columns.active
    phi = torch.full((8,), 0.5)
    phi[2] = 1.0
    for _ in range(20):
        state.update_beta(phi, torch.ones(8), active)
    assert float(state.k[2]) > 0.0
    assert registry.state_dict()["archive"] == registry.archive


def warm_split(preserving_growth: bool, seed: int = 0):
    """A trained layer split, with the clone's entry offset already gone: (moe, parent, child,
    output before, output after) on the same tokens."""
    moe, _optimizer, registry = trained_moe()
    registry.config = LifecycleConfig(warmup_steps=10, preserving_growth=preserving_growth)
    moe.eval()
    x = torch.randn(8, 16, D, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        before = moe(x)
        parent = int(moe.last_trace.expert_idx[:, 0].mode().values)  # the most common first choice
        child = registry.split(parent)
        moe.router.columns.entry_offset[child] = 0.0
        after = moe(x)
    return moe, parent, child, before, after


def test_an_exclusive_split_keeps_the_output_once_the_clone_is_in():
    # without families, the clone's router row is an exact copy: every token whose first choice is
    # the parent selects the parent and the clone and loses its second expert
    moe, parent, child, before, after = warm_split(preserving_growth=False)
    chosen = moe.last_trace.expert_idx
    both = ((chosen == parent).any(-1) & (chosen == child).any(-1)).float().mean()
    assert both > 0.1
    copied_error = (after - before).abs().mean() / before.abs().mean()
    # with preserving_growth, no token selects both, the clone takes part of the parent's tokens, and the
    # output changes by no more than the 1 % perturbation of the clone's weights
    moe, parent, child, before, after = warm_split(preserving_growth=True)
    chosen = moe.last_trace.expert_idx
    assert not ((chosen == parent).any(-1) & (chosen == child).any(-1)).any()
    assert (chosen == child).any() and (chosen == parent).any()
    exclusive_error = (after - before).abs().mean() / before.abs().mean()
    assert exclusive_error < 0.02 < copied_error, (exclusive_error, copied_error)
    assert int(moe.router.columns.family[child]) == int(moe.router.columns.family[parent])


def test_families_survive_a_state_dict_and_leave_with_an_archived_column():
    moe, parent, child, _before, _after = warm_split(preserving_growth=True)
    columns = moe.router.columns
    assert columns.exclusive
    state = {k: v.clone() for k, v in moe.state_dict().items()}
    fresh, _optimizer, _registry = trained_moe()
    assert not fresh.router.columns.exclusive
    fresh.load_state_dict(state)
    assert fresh.router.columns.exclusive and torch.equal(fresh.router.columns.family, columns.family)
    # a checkpoint from before families loads with every column its own family
    old = {k: v for k, v in state.items() if not k.endswith("columns.family")}
    fresh.load_state_dict(old)
    assert not fresh.router.columns.exclusive and torch.equal(fresh.router.columns.family, torch.arange(8))


def test_pruning_a_sibling_dissolves_the_family():
    moe, _optimizer, registry = trained_moe()
    registry.config = LifecycleConfig(warmup_steps=10, preserving_growth=True)
    child = registry.spawn(0)
    assert moe.router.columns.exclusive
    registry.prune(child)
    assert not moe.router.columns.exclusive and int(moe.router.columns.family[child]) == child


@pytest.mark.parametrize(("preserving_growth", "capacity_groups"), [(False, 7), (True, 6)])
def test_capacity_is_shared_by_a_family(preserving_growth: bool, capacity_groups: int):
    # per-expert capacity is computed over capacity groups: an exclusive split's halves take one slot
    # of a token between them, so the other experts keep the capacity they had before the split
    moe, _optimizer, registry = trained_moe()
    registry.config = LifecycleConfig(warmup_steps=10, preserving_growth=preserving_growth)
    assert moe.live_experts == 6
    registry.split(0)
    registry.sync_capacity()
    assert moe.live_experts == capacity_groups


def test_preserving_growth_keeps_the_sources_moments_and_beta():
    moe, optimizer, registry = trained_moe(router="router.chrono")
    registry.config = LifecycleConfig(warmup_steps=10, preserving_growth=True)
    moe.router.state.k[0] = 0.2
    parent_moments = [moments(optimizer, w, 0) for w in (moe.experts.w_gate, moe.router.gate.weight)]
    child = registry.split(0)
    for (m, v), weight in zip(parent_moments, (moe.experts.w_gate, moe.router.gate.weight), strict=True):
        for expert in (0, child):  # both halves continue from the source's moments
            m_after, v_after = moments(optimizer, weight, expert)
            assert torch.equal(m_after, m) and torch.equal(v_after, v)
    assert float(moe.router.state.k[0]) == float(moe.router.state.k[child]) == pytest.approx(0.2)
