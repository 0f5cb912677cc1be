"""The closed loop: a real MoE forward → φ on three clocks → β → routing → the next forward."""

import torch

from mosaic.core.plugins import get_registry

D, E, H = 8, 6, 16
COHERENT, INCOHERENT = [0, 1, 2, 3], [4, 5]


def rig_experts(moe) -> None:
    """Experts whose output direction is fixed: gate and up weights equal, so the SwiGLU hidden
    ``g·silu(g) ≥ 0``, and a rank-one output matrix — experts 0-3 push +u, experts 4-5 push −u."""
    u = torch.zeros(D)
    u[0] = 1.0
    with torch.no_grad():
        gate = torch.randn(E, D, H) / D**0.5
        moe.experts.w_gate.copy_(gate)
        moe.experts.w_up.copy_(gate)
        for e in range(E):
            sign = 1.0 if e in COHERENT else -1.0
            moe.experts.w_down[e].copy_(sign * torch.ones(H, 1) @ u.view(1, D) / H)


def routed_share(moe, x, experts) -> float:
    moe.eval()
    with torch.no_grad():
        moe(x)
    chosen = moe.last_trace.expert_idx.reshape(-1)
    return float(sum((chosen == e).sum() for e in experts)) / chosen.numel()


def test_beta_promotes_coherent_and_demotes_incoherent_experts():
    torch.manual_seed(0)
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "n_experts": E,
            "top_k": 2,
            "d_hidden": H,
            "capacity_factor": None,
            "router": {
                "type": "router.chrono",
                "chrono": {
                    "clocks": {"alpha_fast": 0.5, "alpha_mid": 0.7, "alpha_slow": 0.9},
                    "eta": 0.05,
                    "beta_leak": 0.02,
                    "k_max": 1.0,
                    "veto_full": 0.3,
                    "veto_zero": 0.6,
                },
            },
        },
    )
    rig_experts(moe)
    probe = torch.randn(4, 32, D)
    share_before = routed_share(moe, probe, INCOHERENT)
    moe.train()
    for _ in range(150):
        moe(torch.randn(4, 16, D))
    buffer = moe.router.coherence
    phi_slow = buffer.phi_slow()
    # φ is measured from the forward, not injected: +1 for the +u experts, -1 for the -u experts
    assert torch.all(phi_slow[COHERENT] > 0.9) and torch.all(phi_slow[INCOHERENT] < -0.9)
    assert int(buffer.steps) == 150 and torch.all(buffer.tokens_seen > 0)
    k = moe.router.state.k
    assert torch.all(k[COHERENT] > 0) and torch.all(k[INCOHERENT] < 0)
    beta = moe.aux_outputs()["moe_beta"]
    assert torch.all(beta[COHERENT] > 0) and torch.all(beta[INCOHERENT] < 0)
    # and routing follows: the incoherent experts receive fewer tokens than before the loop ran
    share_after = routed_share(moe, probe, INCOHERENT)
    print(f"incoherent share {share_before:.3f} -> {share_after:.3f}, k={k.tolist()}")
    assert share_after < share_before - 0.05
    assert float(moe.aux_outputs()["moe_psi"]) > 0.0


def test_eval_mode_freezes_the_slow_state():
    torch.manual_seed(0)
    config = {"d_model": D, "n_experts": E, "router": {"type": "router.chrono"}}
    moe = get_registry().build("layer.moe", config)
    moe.train()
    moe(torch.randn(2, 8, D))
    before = {k: v.clone() for k, v in moe.state_dict().items()}
    moe.eval()
    moe(torch.randn(2, 8, D))
    for key, value in moe.state_dict().items():
        torch.testing.assert_close(value, before[key])
