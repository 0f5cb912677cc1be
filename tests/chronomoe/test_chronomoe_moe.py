import pytest
import torch

import chronomoe.experts
from chronomoe.coherence import expert_coherence
from chronomoe.config import MoEConfig
from chronomoe.experts import expert_capacity, reference_moe
from chronomoe.moe import MoE, build_moe
from mosaic.core.errors import ConfigError, ModelError
from mosaic.core.plugins import get_registry

ROUTERS = ["router.topk", "router.chrono", "router.loss_free"]


def make(router="router.topk", **kwargs):
    config = {"d_model": 8, "n_experts": 4, "top_k": 2, "router": {"type": router}, **kwargs}
    return get_registry().build("layer.moe", config)


@pytest.mark.parametrize("host_reads_are_free", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize(
    ("dispatch", "capacity_factor"),
    [("capacity", None), ("capacity", 1.0), ("capacity", 0.5), ("sorted", None)],
)
def test_dispatch_agrees_with_the_plain_loop_in_values_and_gradients(
    monkeypatch, dispatch, capacity_factor, host_reads_are_free
):
    # packed: the CPU execution of capacity dispatch; padded: the (E, C, D) one accelerators run
    monkeypatch.setattr(chronomoe.experts, "host_reads_are_free", lambda device: host_reads_are_free)
    torch.manual_seed(0)
    moe = make(capacity_factor=capacity_factor, dispatch=dispatch, emit_trace=True).eval()
    x = torch.randn(2, 5, 8, requires_grad=True)
    y = moe(x)
    route = moe.last_trace
    capacity = expert_capacity(10, 4, 2, capacity_factor if dispatch == "capacity" else None)
    x_ref = x.detach().clone().requires_grad_(True)
    gates = moe.router(x_ref.reshape(-1, 8)).gates
    expected, _ = reference_moe(x_ref.reshape(-1, 8), route.expert_idx, gates, moe.experts, capacity)
    torch.testing.assert_close(y.reshape(-1, 8), expected, rtol=1e-5, atol=1e-6)
    weights = [moe.experts.w_gate, moe.experts.w_up, moe.experts.w_down, moe.router.gate.weight]
    grads = torch.autograd.grad(y.square().sum(), [x, *weights])
    ref_grads = torch.autograd.grad(expected.square().sum(), [x_ref, *weights])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("capacity_factor", [0.5, 1.25, None])
def test_packed_and_padded_capacity_dispatch_give_the_same_layer(monkeypatch, capacity_factor):
    """The CPU's packed execution of capacity dispatch against the padded one: same output, same
    gradients, same trace (drops, counts, and every kept assignment's raw output)."""
    torch.manual_seed(3)
    moe = get_registry().build(
        "layer.moe",
        {"d_model": 16, "n_experts": 8, "top_k": 2, "capacity_factor": capacity_factor, "emit_trace": True},
    )
    x = torch.randn(4, 32, 16)
    results = []
    for free in (True, False):
        monkeypatch.setattr(chronomoe.experts, "host_reads_are_free", lambda device, free=free: free)
        xr = x.clone().requires_grad_(True)
        y = moe(xr)
        grads = torch.autograd.grad(y.square().sum(), [xr, *moe.experts.weights(), moe.router.gate.weight])
        results.append((y, grads, moe.last_trace))
    (y_packed, g_packed, t_packed), (y_padded, g_padded, t_padded) = results
    torch.testing.assert_close(y_packed, y_padded, rtol=1e-5, atol=1e-6)
    for got, want in zip(g_packed, g_padded, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert torch.equal(t_packed.kept, t_padded.kept) and torch.equal(
        t_packed.expert_tokens, t_padded.expert_tokens
    )
    assert bool((~t_packed.kept).any()) == (capacity_factor is not None)  # drops, or none
    kept = t_packed.assignment_kept()
    torch.testing.assert_close(t_packed.assignment_outputs[kept], t_padded.assignment_outputs[kept])
    # the packed path sums each expert's outputs for the trace; the padded one leaves it to the trace
    assert t_packed.expert_sums is not None and t_padded.expert_sums is None
    torch.testing.assert_close(t_packed.expert_means(), t_padded.expert_means(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        t_packed.expert_gated_sums(), t_padded.expert_gated_sums(), rtol=1e-5, atol=1e-6
    )
    phi_packed, phi_padded = expert_coherence(t_packed)[0], expert_coherence(t_padded)[0]
    torch.testing.assert_close(phi_packed, phi_padded, rtol=1e-5, atol=1e-6)


def test_packed_capacity_dispatch_declares_its_host_read(monkeypatch, no_host_sync):
    moe = make()
    with no_host_sync():
        moe(torch.randn(1, 4, 8))  # the guard holds the CPU to the padded, sync-free path
        monkeypatch.setattr(chronomoe.experts, "host_reads_are_free", lambda device: True)
        with pytest.raises(AssertionError, match="host synchronisation"):
            moe(torch.randn(1, 4, 8))


def test_capacity_drops_are_reported_and_contribute_nothing():
    torch.manual_seed(1)
    moe = make(capacity_factor=0.5, emit_trace=True)
    moe(torch.randn(1, 16, 8))
    aux = moe.aux_outputs()
    dropped = 1.0 - moe.last_trace.kept.float().mean()
    assert float(aux["moe_dropped_fraction"]) == pytest.approx(float(dropped)) and float(dropped) > 0.4
    trace = moe.last_trace
    kept = trace.assignment_kept()
    gates = trace.assignment_gates()
    assert torch.all(gates[~kept] == 0)
    mixture = (trace.assignment_outputs * gates.unsqueeze(-1)).view(2, 16, 8).sum(0)
    torch.testing.assert_close(mixture, trace.mixture)
    counts = torch.zeros(4).index_add_(0, trace.assignment_experts()[kept], torch.ones(int(kept.sum())))
    torch.testing.assert_close(trace.expert_tokens, counts)


@pytest.mark.parametrize("router", ROUTERS)
def test_layer_maps_btd_to_btd_and_exposes_aux(router):
    moe = make(router)
    x = torch.randn(3, 4, 8)
    y = moe(x)
    assert y.shape == x.shape
    aux = moe.aux_outputs()
    for key in (
        "moe_aux_loss",
        "moe_load_balance_loss",
        "moe_z_loss",
        "moe_max_vio",
        "moe_active_experts",
        "moe_dropped_fraction",
    ):
        assert aux[key].shape == ()
    assert aux["moe_beta"].shape == aux["moe_expert_load"].shape == (4,)
    assert ("moe_psi" in aux) == (router == "router.chrono")
    (y.sum() + aux["moe_aux_loss"]).backward()
    assert moe.router.gate.weight.grad is not None


def test_max_vio_and_active_experts_follow_their_definitions():
    moe = make("router.topk", emit_trace=True)
    moe(torch.randn(2, 8, 8))
    load = torch.bincount(moe.last_trace.expert_idx.reshape(-1), minlength=4).float()
    aux = moe.aux_outputs()
    assert float(aux["moe_max_vio"]) == pytest.approx(float((load.max() - load.mean()) / load.mean()))
    assert float(aux["moe_active_experts"]) == float((load > 0).sum())


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("training", [True, False])
def test_forward_makes_no_host_synchronisation(no_host_sync, router, training):
    moe = make(router, emit_trace=True).train(training)
    if router == "router.chrono":  # with the lifecycle's role tracking as well
        config = {"d_model": 8, "n_experts": 4, "top_k": 2, "router": {"type": router, "track_roles": True}}
        moe = get_registry().build("layer.moe", config).train(training)
    x = torch.randn(2, 6, 8)
    moe(x)  # warm-up outside the guard
    with no_host_sync():
        y = moe(x)
        aux = moe.aux_outputs()
        (y.square().mean() + aux["moe_aux_loss"]).backward()


def test_the_guard_catches_a_sync(no_host_sync):
    with pytest.raises(AssertionError, match="host synchronisation via"), no_host_sync():
        torch.ones(2).sum().item()
    with pytest.raises(AssertionError, match="boolean-mask"), no_host_sync():
        torch.ones(2)[torch.tensor([True, False])]
    with pytest.raises(AssertionError, match="one_hot"), no_host_sync():
        torch.nn.functional.one_hot(torch.tensor([1]), 3)
    assert torch.ones(1).item() == 1.0  # restored


def test_sorted_dispatch_declares_its_host_read(no_host_sync):
    moe = make(dispatch="sorted")
    with pytest.raises(AssertionError, match="host synchronisation"), no_host_sync():
        moe(torch.randn(1, 4, 8))


def test_slow_state_round_trips_through_state_dict_and_moves_with_to():
    torch.manual_seed(0)
    moe = make("router.chrono").train()
    for _ in range(5):
        moe(torch.randn(2, 6, 8))
    state = moe.state_dict()
    for key in (
        "router.state.k",
        "router.state.logit_std.numerator",
        "router.state.logit_std.weight",
        "router.coherence.clocks.numerator",
        "router.coherence.clocks.weight",
        "router.coherence.clocks.steps",
        "router.coherence.tokens_seen",
    ):
        assert key in state
    assert int(state["router.coherence.clocks.steps"]) == 5
    assert state["router.state.k"].abs().sum() > 0
    fresh = make("router.chrono")
    fresh.load_state_dict(state)
    x = torch.randn(2, 6, 8)
    moe.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), moe(x))
    torch.testing.assert_close(fresh.aux_outputs()["moe_beta"], moe.aux_outputs()["moe_beta"])
    assert fresh.router.coherence.snapshot() == moe.router.coherence.snapshot()
    moved = moe.to(torch.float64).to("meta")
    for name, buffer in moved.named_buffers():
        assert buffer.device.type == "meta", name
    assert moved.router.state.k.dtype == torch.float64
    lf = make("router.loss_free").train()
    lf(torch.randn(2, 6, 8))
    lf.after_optimizer_step()  # the balancing bias moves at the optimizer step
    assert "router.bias" in lf.state_dict() and lf.state_dict()["router.bias"].abs().sum() > 0


def test_registry_builds_the_layer_with_the_router_named_by_id():
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": 16,
            "n_experts": 6,
            "top_k": 1,
            "router": {"type": "router.chrono", "chrono": {"k_max": 0.5}},
        },
    )
    assert isinstance(moe, MoE)
    assert moe.router.config.chrono.k_max == 0.5 and moe.router.n_experts == 6 and moe.router.top_k == 1
    assert moe.experts.d_hidden == 32


def test_router_config_errors_name_their_path():
    def build(**overrides):
        return get_registry().build("layer.moe", {"d_model": 8, "n_experts": 4, "top_k": 2, **overrides})

    with pytest.raises(ConfigError, match=r"\$\.router\.chrono\.k_max"):
        build(router={"type": "router.chrono", "chrono": {"k_max": "big"}})
    with pytest.raises(ConfigError, match="unknown key"):
        build(router={"type": "router.topk", "bogus": 1})
    with pytest.raises(
        ConfigError, match=r"\$\.router\.n_experts: must not be set here: the owner sets n_experts"
    ):
        build(router={"type": "router.topk", "n_experts": 4})
    with pytest.raises(ConfigError, match=r"\$\.router\.type: must name a router"):
        build(router={"type": "layer.moe"})
    with pytest.raises(ConfigError, match="top_k"):
        build(top_k=5)
    with pytest.raises(ModelError, match="expects"):
        build()(torch.randn(2, 8))


def test_moe_config_default_router_is_topk():
    assert MoEConfig(d_model=4).router == {"type": "router.topk"}
    assert build_moe(MoEConfig(d_model=4)).router.__class__.__name__ == "TopKRouter"
