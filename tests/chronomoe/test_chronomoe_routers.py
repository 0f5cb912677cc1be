import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from chronomoe.config import ChronoConfig, ChronoRouterConfig, LossFreeRouterConfig, TopKRouterConfig
from chronomoe.router_state import (
    RouterState,
    biased_selection_key,
    bridge_relevance,
    expert_softmax,
    js_divergence,
    overlap_only_mass,
    total_variation,
)
from chronomoe.routers import ChronoRouter, LossFreeRouter, TopKRouter, switch_load_balance_loss
from mosaic.core.errors import ModelError


@given(st.integers(2, 12), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_overlap_only_mass_is_exactly_total_variation(n_experts, n_rows, seed):
    generator = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n_rows, n_experts, generator=generator) * 3, -1)
    q = torch.softmax(torch.randn(n_rows, n_experts, generator=generator) * 3, -1)
    torch.testing.assert_close(overlap_only_mass(p, q), total_variation(p, q), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total_variation(p, q), total_variation(q, p))


def test_js_divergence_bounds():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    js = js_divergence(p, q)
    assert float(js[0]) == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-4)
    assert float(js[1]) == pytest.approx(0.0, abs=1e-7)


def test_veto_is_one_below_full_zero_above_zero_and_linear_between():
    config = ChronoConfig()
    tv = torch.tensor([0.0, 0.05, 0.1, 0.2, 0.3, 0.6])
    torch.testing.assert_close(bridge_relevance(tv, config), torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.0]))


def test_veto_stops_beta_from_inventing_support_the_clean_router_lacks():
    clean = torch.tensor([[4.0, 3.9, -6.0, -6.0], [0.0, 0.1, 0.0, 0.05]])
    beta = torch.tensor([0.0, 0.0, 12.0, 0.0])
    key, metrics, _ = biased_selection_key(clean, beta, ChronoConfig(js_token_stride=1))
    # token 0: beta would move nearly all mass to an expert the clean router gives ~1e-5; vetoed
    assert key[0].argmax() == clean[0].argmax()
    torch.testing.assert_close(key[0], clean[0])
    # the same beta without a veto flips both tokens
    lax = ChronoConfig(veto_full=0.98, veto_zero=0.99, js_token_stride=1)
    key_lax, metrics_lax, _ = biased_selection_key(clean, beta, lax)
    assert key_lax.argmax(-1).tolist() == [2, 2]
    assert float(metrics_lax["flip_rate"]) == 1.0 and float(metrics["flip_rate"]) < 1.0
    assert float(metrics["veto"]) > 0.5 and float(metrics_lax["veto"]) == 0.0


def test_small_beta_passes_the_veto_and_breaks_ties():
    clean = torch.tensor([[1.0, 1.0, -2.0]])
    beta = torch.tensor([0.0, 0.05, 0.0])
    key, metrics, _ = biased_selection_key(clean, beta, ChronoConfig(js_token_stride=1))
    assert key.argmax(-1).item() == 1 and float(metrics["veto"]) == 0.0
    assert float(metrics["tv"]) > 0 and float(metrics["js"]) > 0


def test_chrono_router_biases_selection_but_gates_come_from_clean_scores():
    torch.manual_seed(0)
    router = ChronoRouter(
        ChronoRouterConfig(
            d_model=8, n_experts=4, top_k=2, chrono=ChronoConfig(veto_full=0.98, veto_zero=0.99)
        )
    )
    x = torch.randn(32, 8)
    clean = router(x)
    router.state.k.copy_(torch.tensor([-0.3, -0.3, 0.3, 0.3]))
    router.state.logit_std.update(torch.tensor(2.0))
    biased = router(x)
    assert not torch.equal(biased.expert_idx, clean.expert_idx)
    expected = torch.softmax(biased.clean_logits.gather(-1, biased.expert_idx), -1)
    torch.testing.assert_close(biased.gates, expected)
    torch.testing.assert_close(biased.bias, torch.tensor([-0.6, -0.6, 0.6, 0.6]))
    assert biased.gates.requires_grad and not biased.selection_key.requires_grad


def test_beta_is_scale_free_clamped_centred_and_has_a_deadband():
    config = ChronoConfig(eta=0.1, tau=0.5, deadband=0.05, beta_leak=0.0, k_max=0.3)
    state = RouterState(4, config)
    evidence = torch.ones(4)
    for _ in range(50):
        state.update_beta(torch.tensor([0.9, 0.52, 0.1, 0.5]), evidence)
    k = state.k
    assert float(k.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(k[0]) == pytest.approx(0.3) and float(k[2]) == pytest.approx(-0.3)
    assert float(k.abs().max()) <= 0.3 + 1e-7
    state.logit_std.update(torch.tensor(3.0))
    torch.testing.assert_close(state.beta_eff(), k * 3.0)
    # experts inside the deadband and experts never routed are not pushed
    fresh = RouterState(3, config)
    fresh.update_beta(torch.tensor([0.53, 0.9, 0.1]), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.all(fresh.k == 0)


def test_leak_gives_beta_an_equilibrium_inside_the_clamp():
    config = ChronoConfig(eta=0.01, tau=0.5, deadband=0.0, beta_leak=0.02, k_max=0.3)
    state = RouterState(2, config)
    for _ in range(2000):
        state.update_beta(torch.tensor([0.7, 0.3]), torch.ones(2))
    # fixed point of k = (1 - leak) k + eta (phi - tau) - mean: k* = eta (phi - tau) / leak
    torch.testing.assert_close(state.k, torch.tensor([0.1, -0.1]), atol=1e-4, rtol=0)


def _skewed_loss_free(bias_rate: float = 0.01, top_k: int = 1) -> LossFreeRouter:
    torch.manual_seed(0)
    router = LossFreeRouter(LossFreeRouterConfig(d_model=4, n_experts=4, top_k=top_k, bias_rate=bias_rate))
    with torch.no_grad():
        router.gate.weight.copy_(torch.tensor([[5.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    return router


def test_loss_free_bias_moves_once_per_optimizer_step_by_sign_of_load() -> None:
    router = _skewed_loss_free()
    x = torch.rand(64, 4)
    route = router(x)
    load = torch.bincount(route.expert_idx.reshape(-1), minlength=4)
    assert load[0] > 16
    for _ in range(3):  # three forwards of one accumulated optimizer step
        router.observe(router(x), None, None, None)
    assert torch.all(router.bias == 0)  # nothing moves before the optimizer step
    router.after_optimizer_step()
    # one sign step of γ, however large the imbalance and however many forwards
    assert float(router.bias[0]) == pytest.approx(-0.01)
    assert router.bias[load < 16].tolist() == pytest.approx([0.01] * int((load < 16).sum()))
    router.after_optimizer_step()  # no forwards since: no evidence, no move
    assert float(router.bias[0]) == pytest.approx(-0.01)
    for _ in range(400):
        router.observe(router(x), None, None, None)
        router.after_optimizer_step()
    balanced = torch.bincount(router(x).expert_idx.reshape(-1), minlength=4)
    assert balanced.max() - balanced.min() < load.max() - load.min()


def test_loss_free_bias_acts_on_selection_only_and_gates_are_normalised_sigmoid_affinities() -> None:
    router = _skewed_loss_free(top_k=2)
    x = torch.rand(32, 4)
    with torch.no_grad():
        router.bias.copy_(torch.tensor([-5.0, 0.0, 0.0, 5.0]))  # forces expert 3 in, expert 0 out
    route = router(x)
    assert torch.all((route.expert_idx == 3).any(-1)) and not torch.any(route.expert_idx == 0)
    affinity = torch.sigmoid(router.gate(x))
    chosen = affinity.gather(-1, route.expert_idx)
    torch.testing.assert_close(route.gates, chosen / chosen.sum(-1, keepdim=True))
    torch.testing.assert_close(route.probs, affinity / affinity.sum(-1, keepdim=True))
    # gradients reach the gate through the unbiased affinities
    (route.gates[:, 0] * 2.0).sum().backward()
    assert router.gate.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0


def test_sequence_wise_balance_loss_is_one_when_every_sequence_is_balanced() -> None:
    router = LossFreeRouter(LossFreeRouterConfig(d_model=4, n_experts=4, top_k=1))
    probs = torch.full((8, 4), 0.25)
    balanced = torch.arange(8).remainder(4).view(8, 1)
    assert float(router._sequence_balance(probs, balanced, 4)) == pytest.approx(1.0)
    # balanced over the batch, but each sequence of 4 uses only two experts: the sequence loss sees it
    skewed = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3]).view(8, 1)
    peaked = torch.tensor([[0.5, 0.5, 0, 0]] * 4 + [[0, 0, 0.5, 0.5]] * 4)
    assert float(router._sequence_balance(peaked, skewed, 4)) == pytest.approx(2.0)
    assert float(router._sequence_balance(peaked, skewed, None)) == pytest.approx(1.0)


def test_top_k_changes_at_run_time_within_the_live_experts() -> None:
    for router in (_skewed_loss_free(top_k=2), TopKRouter(TopKRouterConfig(d_model=4, n_experts=4, top_k=2))):
        x = torch.rand(10, 4)
        assert router(x).expert_idx.shape == (10, 2)
        router.set_top_k(1)
        assert router(x).expert_idx.shape == (10, 1)
        router.set_top_k(4)
        assert router(x).expert_idx.shape == (10, 4)
        with pytest.raises(ModelError, match="top_k"):
            router.set_top_k(5)


def test_chrono_router_temperature_sharpens_routing() -> None:
    torch.manual_seed(0)
    hot = ChronoRouter(ChronoRouterConfig(d_model=4, n_experts=4, top_k=1, temperature=4.0))
    cold = ChronoRouter(ChronoRouterConfig(d_model=4, n_experts=4, top_k=1, temperature=0.25))
    cold.gate.load_state_dict(hot.gate.state_dict())
    x = torch.randn(50, 4)
    assert cold(x).probs.max(-1).values.mean() > hot(x).probs.max(-1).values.mean()
    torch.testing.assert_close(cold(x).expert_idx, hot(x).expert_idx)  # the same order, sharper


def test_switch_balance_loss_is_one_when_uniform():
    probs = torch.full((8, 4), 0.25)
    expert_idx = torch.arange(8).remainder(4).view(8, 1)
    assert float(switch_load_balance_loss(probs, expert_idx)) == pytest.approx(1.0)


def test_topk_router_without_normalisation_uses_softmax_mass():
    torch.manual_seed(0)
    router = TopKRouter(TopKRouterConfig(d_model=4, n_experts=5, top_k=2, normalize_gates=False))
    out = router(torch.randn(3, 4))
    torch.testing.assert_close(out.gates, out.probs.gather(-1, out.expert_idx))
    assert torch.all(out.bias == 0)
    torch.testing.assert_close(out.selection_key, out.clean_logits.detach())


def test_balance_loss_counts_only_live_columns():
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0]] * 4)
    expert_idx = torch.tensor([[0], [1], [0], [1]])
    assert float(switch_load_balance_loss(probs, expert_idx, torch.tensor(2))) == pytest.approx(1.0)
    router = TopKRouter(TopKRouterConfig(d_model=4, n_experts=4, top_k=1))
    router.columns.active.copy_(torch.tensor([True, True, False, False]))
    out = router(torch.randn(64, 4))
    assert torch.all(out.probs[:, 2:] == 0) and not (out.expert_idx >= 2).any()
    fraction = torch.bincount(out.expert_idx.reshape(-1), minlength=4).float() / 64
    expected = 2 * (fraction * out.probs.detach().mean(0)).sum()
    assert float(out.load_balance_loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@given(st.integers(1, 64), st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_expert_softmax_agrees_with_torch_softmax_in_values_and_gradients(n_rows, n_experts, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n_rows, n_experts, generator=generator) * 4).requires_grad_()
    weights = torch.randn(n_rows, n_experts, generator=generator)
    fast = expert_softmax(logits)
    plain = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(fast, plain)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), logits)
    (grad_plain,) = torch.autograd.grad((plain * weights).sum(), logits)
    torch.testing.assert_close(grad_fast, grad_plain)
