"""Per-expert veto rate and reflex gate 5 (anti-gaming)."""

import torch

from chronomoe.config import ChronoConfig, KernelConfig
from chronomoe.identity import reflex_gates
from chronomoe.router_state import expert_veto_counts
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry

D = 16


def reference_veto_counts(clean, biased, token_veto, top_k):
    """Plain-Python twin of expert_veto_counts."""
    n_experts = clean.shape[1]
    vetoed, proposed = [0.0] * n_experts, [0.0] * n_experts
    for row in range(clean.shape[0]):
        clean_top = set(clean[row].topk(top_k).indices.tolist())
        for e in biased[row].topk(top_k).indices.tolist():
            proposed[e] += 1.0
            if e not in clean_top:
                vetoed[e] += float(token_veto[row])
    return torch.tensor([vetoed, proposed])


def test_veto_counts_match_the_reference_and_make_no_host_sync(no_host_sync):
    torch.manual_seed(0)
    clean = torch.randn(64, 6)
    biased = clean + torch.tensor([2.0, 0.0, -1.0, 0.5, 0.0, 0.0])
    token_veto = torch.rand(64)
    with no_host_sync():
        counts = expert_veto_counts(clean, biased, token_veto, 2)
    torch.testing.assert_close(counts, reference_veto_counts(clean, biased, token_veto, 2))


def build(config):
    torch.manual_seed(0)
    return get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "n_experts": 8,
            "top_k": 2,
            "router": {"type": "router.chrono", "chrono": unstructure_config(config)},
        },
    )


def run(moe, k, steps=20):
    moe.train()
    for step in range(steps):
        moe.router.state.k.copy_(k)
        moe(torch.randn(2, 16, D, generator=torch.Generator().manual_seed(step)))


def test_gaming_expert_has_a_high_veto_rate_and_fails_gate_five_alone():
    config = ChronoConfig(
        k_max=20.0,
        kernel=KernelConfig(
            reflex_min_tokens=0, reflex_min_phi=-1.0, reflex_max_flip=1.0, reflex_k_fraction=0.0005
        ),
    )
    moe = build(config)
    k = torch.zeros(8)
    k[0] = 20.0  # β drags every token to expert 0, whatever the clean router says: vetoed
    k[1] = 0.02  # a tie-breaker: passes the veto
    run(moe, k)
    moe.router.state.k.copy_(k)
    rate = moe.router.state.expert_veto.estimate_at(0)
    assert float(rate[0]) > 0.5
    assert float(rate[1:].max()) < config.kernel.reflex_max_veto
    assert not reflex_gates(moe, 0, config)["anti_gaming"]
    gates = reflex_gates(moe, 1, config)
    assert gates["anti_gaming"] and all(gates.values())


def test_veto_rate_stays_zero_without_beta_and_is_reset_with_the_column():
    config = ChronoConfig(k_max=20.0)
    moe = build(config)
    run(moe, torch.zeros(8), steps=5)
    assert float(moe.router.state.expert_veto.estimate_at(0).abs().max()) == 0.0
    k = torch.zeros(8)
    k[3] = 20.0
    run(moe, k, steps=5)
    rate = moe.router.state.expert_veto.estimate_at(0)
    assert float(rate[3]) > 0.1
    assert float(rate[torch.arange(8) != 3].abs().max()) == 0.0  # a veto is charged to 3 alone
    moe.router.state.reset_expert(3)
    assert float(moe.router.state.expert_veto.estimate_at(0)[3]) == 0.0
