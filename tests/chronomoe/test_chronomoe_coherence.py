import pytest
import torch

from chronomoe.coherence import MoETrace, expert_coherence, layer_coherence, reference_coherence
from chronomoe.config import MoEConfig
from chronomoe.experts import expert_capacity, reference_moe
from chronomoe.moe import build_moe

U = torch.tensor([1.0, 0.0, 0.0, 0.0])
V = torch.tensor([0.0, 1.0, 0.0, 0.0])


def make_trace(expert_idx, gates, outputs, n_experts):
    """A top-k trace from per-assignment raw outputs (N, k, D); the mixture is their gated sum."""
    expert_idx = torch.as_tensor(expert_idx)
    gates = torch.as_tensor(gates, dtype=torch.float32)
    outputs = torch.stack([torch.stack(row) for row in outputs])  # (N, k, D)
    n_tokens, top_k = expert_idx.shape
    mixture = (gates.unsqueeze(-1) * outputs).sum(1)
    logits = torch.zeros(n_tokens, n_experts)
    return MoETrace(
        mixture=mixture,
        clean_logits=logits,
        selection_key=logits,
        probs=logits.softmax(-1),
        expert_idx=expert_idx,
        gates=gates,
        kept=torch.ones(n_tokens, top_k, dtype=torch.bool),
        assignment_outputs=outputs.transpose(0, 1).reshape(-1, outputs.shape[-1]),
        expert_tokens=torch.bincount(expert_idx.reshape(-1), minlength=n_experts).float(),
    )


@pytest.mark.parametrize("token_level", [False, True])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_perfectly_aligned_experts_have_coherence_one(leave_one_out, token_level):
    trace = make_trace(
        [[0, 1], [1, 2], [2, 0]], [[0.5, 0.5]] * 3, [[U, 2 * U], [3 * U, U], [0.5 * U, U]], n_experts=3
    )
    phi, seen = expert_coherence(trace, leave_one_out=leave_one_out, token_level=token_level)
    torch.testing.assert_close(phi, torch.ones(3))
    assert seen.all()
    assert float(layer_coherence(phi, trace.expert_tokens)) == pytest.approx(1.0)


@pytest.mark.parametrize(("leave_one_out", "token_level"), [(True, False), (False, False), (False, True)])
def test_opposite_expert_has_coherence_minus_one(leave_one_out, token_level):
    # experts 0 and 1 push +u on every token, expert 2 pushes -u on one token
    # (token-level leave-one-out is excluded: there expert 0's partner on token 2 *is* the -u expert)
    trace = make_trace(
        [[0, 1], [0, 1], [0, 2]], [[0.5, 0.5]] * 3, [[U, U], [U, U], [2 * U, -0.5 * U]], n_experts=3
    )
    phi, _ = expert_coherence(trace, leave_one_out=leave_one_out, token_level=token_level)
    torch.testing.assert_close(phi, torch.tensor([1.0, 1.0, -1.0]))


@pytest.mark.parametrize("token_level", [False, True])
def test_orthogonal_expert_has_coherence_zero_once_its_own_output_is_left_out(token_level):
    trace = make_trace([[0, 2], [0, 2], [1, 0]], [[0.5, 0.5]] * 3, [[U, V], [U, V], [U, U]], n_experts=3)
    phi, _ = expert_coherence(trace, leave_one_out=True, token_level=token_level)
    assert float(phi[2]) == pytest.approx(0.0, abs=1e-6)
    # the original's definition credits the orthogonal expert with agreeing with itself
    biased, _ = expert_coherence(trace, leave_one_out=False, token_level=token_level)
    assert float(biased[2]) > 0.3


def test_unrouted_expert_is_marked_unseen_and_psi_weights_by_tokens():
    trace = make_trace([[0], [0], [0], [1]], [[1.0]] * 4, [[U], [U], [U], [-U]], n_experts=3)
    phi, seen = expert_coherence(trace, leave_one_out=False)
    assert seen.tolist() == [True, True, False]
    assert float(phi[2]) == 0.0
    # phi = [1, -1]: psi weighs them 3:1
    assert float(layer_coherence(phi, trace.expert_tokens)) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("token_level", [False, True])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_fast_coherence_agrees_with_plain_loop_on_a_real_forward(seed, leave_one_out, token_level):
    torch.manual_seed(seed)
    moe = build_moe(MoEConfig(d_model=8, n_experts=4, top_k=2, capacity_factor=0.75, emit_trace=True)).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        moe(x)
        trace = moe.last_trace
        capacity = expert_capacity(12, 4, 2, 0.75)
        assert capacity == 5 and not trace.kept.all()  # binding: some assignments are dropped
        mixture, assignments = reference_moe(
            x.reshape(-1, 8), trace.expert_idx, trace.gates, moe.experts, capacity=capacity
        )
    torch.testing.assert_close(trace.mixture, mixture, rtol=1e-5, atol=1e-5)
    phi, seen = expert_coherence(trace, leave_one_out=leave_one_out, token_level=token_level)
    ref_phi, ref_psi = reference_coherence(
        mixture, assignments, 4, leave_one_out=leave_one_out, token_level=token_level
    )
    for e in range(4):
        if ref_phi[e] is None:
            assert not seen[e]
        else:
            assert float(phi[e]) == pytest.approx(ref_phi[e], abs=1e-5)
    assert float(layer_coherence(phi, trace.expert_tokens)) == pytest.approx(ref_psi, abs=1e-5)


def test_unrouted_expert_phi_decays_to_the_prior_and_a_falling_phi_raises_the_degradation_flag() -> None:
    import torch

    from chronomoe.buffer import CoherenceBuffer
    from chronomoe.config import ChronoConfig

    buffer = CoherenceBuffer(2, ChronoConfig())
    both = torch.tensor([True, True])
    for _ in range(200):  # both experts routed and coherent
        buffer.update(torch.tensor([0.8, 0.8]), both, torch.tensor([5, 5]), torch.tensor([0.5, 0.5]))
    assert float(buffer.phi("fast")[1]) == pytest.approx(0.8, abs=1e-5)  # exact while routed every step
    assert float(buffer.phi("slow")[1]) == pytest.approx(0.8, abs=1e-5)
    assert not buffer.degraded().any()
    only_first = torch.tensor([True, False])
    for _ in range(60):  # expert 1 is no longer routed; expert 0 turns incoherent
        buffer.update(torch.tensor([0.2, 0.0]), only_first, torch.tensor([10, 0]), torch.tensor([1.0, 0.0]))
    fast = buffer.phi("fast")
    assert fast[1] < 0.1  # decayed towards the prior 0 instead of freezing at 0.8
    assert buffer.phi("slow")[1] > fast[1]  # at each clock's own rate
    assert buffer.degraded().tolist() == [True, True]
    snapshot = buffer.snapshot()
    assert [e.degraded for e in snapshot.experts] == [True, True]
    assert snapshot.experts[0].phi_delta < -0.15


def test_the_degraded_count_the_router_reports_follows_every_change_of_the_state() -> None:
    """router.chrono reports the degraded-expert count on every forward from a cache; the cache must
    go stale with the state: after updates, an expert reset and a state load."""
    from chronomoe.buffer import CoherenceBuffer
    from chronomoe.config import ChronoConfig

    buffer = CoherenceBuffer(2, ChronoConfig())
    both = torch.tensor([True, True])
    for _ in range(200):
        buffer.update(torch.tensor([0.8, 0.8]), both, torch.tensor([5, 5]), torch.tensor([0.5, 0.5]))
    assert float(buffer.degraded_count()) == 0.0
    fresh_state = CoherenceBuffer(2, ChronoConfig()).state_dict()
    for _ in range(60):  # expert 0 turns incoherent: degraded
        buffer.update(torch.tensor([0.2, 0.8]), both, torch.tensor([5, 5]), torch.tensor([0.5, 0.5]))
        assert float(buffer.degraded_count()) == float(buffer.degraded().sum())
    assert float(buffer.degraded_count()) == 1.0
    buffer.reset_expert(0)  # a new expert in the column has no baseline to degrade from
    assert float(buffer.degraded_count()) == 0.0
    for _ in range(60):
        buffer.update(torch.tensor([0.8, 0.2]), both, torch.tensor([5, 5]), torch.tensor([0.5, 0.5]))
    assert float(buffer.degraded_count()) == 1.0
    buffer.load_state_dict(fresh_state)
    assert float(buffer.degraded_count()) == 0.0
