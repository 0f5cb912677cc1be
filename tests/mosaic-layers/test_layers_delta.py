"""model.delta_baseline: the chunked gated delta rule agrees with its step-by-step twin."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core.plugins import get_registry
from mosaic.layers.delta_config import DeltaBaselineConfig
from mosaic.layers.delta_model import DeltaBaseline
from mosaic.layers.delta_rule import chunked_gated_delta_rule, gated_delta_rule_reference


def inputs(seed: int, bsz: int, heads: int, length: int, d_k: int, d_v: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(bsz, heads, length, d_k, generator=g, dtype=dtype)
    k = torch.nn.functional.normalize(torch.randn(bsz, heads, length, d_k, generator=g, dtype=dtype), dim=-1)
    v = torch.randn(bsz, heads, length, d_v, generator=g, dtype=dtype)
    alpha = 0.5 + 0.5 * torch.rand(bsz, heads, length, generator=g, dtype=dtype)
    beta = torch.rand(bsz, heads, length, generator=g, dtype=dtype)
    state = torch.randn(bsz, heads, d_v, d_k, generator=g, dtype=dtype)
    return q, k, v, alpha, beta, state


@given(
    seed=st.integers(0, 2**16), bsz=st.integers(1, 2), heads=st.integers(1, 3), length=st.integers(1, 40),
    d_k=st.integers(1, 6), d_v=st.integers(1, 5), chunk=st.integers(1, 17), with_state=st.booleans(),
)
def test_chunked_matches_the_reference(seed, bsz, heads, length, d_k, d_v, chunk, with_state) -> None:
    q, k, v, alpha, beta, state = inputs(seed, bsz, heads, length, d_k, d_v)
    start = state if with_state else None
    o_ref, s_ref = gated_delta_rule_reference(q, k, v, alpha, beta, start)
    o, s = chunked_gated_delta_rule(q, k, v, alpha, beta, chunk, start)
    torch.testing.assert_close(o, o_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(s, s_ref, rtol=1e-9, atol=1e-9)


def test_float32_and_strong_decay_stay_close() -> None:
    q, k, v, alpha, beta, _ = inputs(3, 2, 2, 150, 8, 8, dtype=torch.float32)
    alpha = alpha * 0.02  # γ within a chunk reaches ~1e-250: ratios must not overflow
    o_ref, s_ref = gated_delta_rule_reference(q, k, v, alpha, beta)
    o, s = chunked_gated_delta_rule(q, k, v, alpha, beta, 64)
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, o_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(s, s_ref, rtol=1e-4, atol=1e-4)


def test_gradients_agree_with_the_reference() -> None:
    tensors = [t.requires_grad_() for t in inputs(5, 1, 2, 19, 4, 3)[:5]]
    weights = torch.randn(1, 2, 19, 3, dtype=torch.float64)
    (gated_delta_rule_reference(*tensors)[0] * weights).sum().backward()
    expected = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    (chunked_gated_delta_rule(*tensors, chunk_size=6)[0] * weights).sum().backward()
    for got, want in zip((t.grad for t in tensors), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)


def test_state_carries_across_calls() -> None:
    q, k, v, alpha, beta, _ = inputs(7, 2, 2, 30, 4, 4)
    whole, s_whole = chunked_gated_delta_rule(q, k, v, alpha, beta, 8)
    first, s_first = chunked_gated_delta_rule(q[:, :, :13], k[:, :, :13], v[:, :, :13], alpha[:, :, :13],
                                              beta[:, :, :13], 8)
    second, s_second = chunked_gated_delta_rule(q[:, :, 13:], k[:, :, 13:], v[:, :, 13:], alpha[:, :, 13:],
                                                beta[:, :, 13:], 8, s_first)
    torch.testing.assert_close(torch.cat([first, second], dim=2), whole)
    torch.testing.assert_close(s_second, s_whole)


def test_a_key_written_with_full_strength_is_read_back_exactly() -> None:
    """The delta rule replaces what is stored along k: write v1 then v2 under one key, read v2."""
    k = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64), dim=0)
    keys = k.expand(1, 1, 2, 3)
    values = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)  # (1, 1, 2, 2)
    ones = torch.ones(1, 1, 2, dtype=torch.float64)
    out, _ = chunked_gated_delta_rule(keys, keys, values, ones, ones, 4)
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_model_forward_registry_and_state_size() -> None:
    model = get_registry().build("model.delta_baseline", {"vocab_size": 50, "d_model": 32, "n_layers": 2,
                                                          "n_heads": 4, "chunk_size": 8})
    ids = torch.randint(0, 50, (3, 21))
    out = model({"input_ids": ids})
    assert out.logits.shape == (3, 21, 50)
    # causal: changing a later token leaves earlier logits alone
    changed = ids.clone()
    changed[:, 15] = (changed[:, 15] + 1) % 50
    torch.testing.assert_close(model({"input_ids": changed}).logits[:, :15], out.logits[:, :15])
    assert model.recurrent_state_floats() == [4 * 8 * 8 + 3 * 32 * 3] * 2
    targets = torch.full_like(ids, -100)
    targets[:, -1] = ids[:, 0]
    labelled = DeltaBaseline(DeltaBaselineConfig(vocab_size=50, d_model=32, logits_at_labels_only=True))
    out = labelled({"input_ids": ids, "target_ids": targets})
    assert out.logits.shape == (3, 50) and out.logit_targets.tolist() == ids[:, 0].tolist()


def test_config_rejects_indivisible_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        DeltaBaselineConfig(d_model=30, n_heads=4)


def test_state_floats_of_the_three_model_kinds() -> None:
    """State is counted the same way for every model: floats carried per layer for one sample."""
    from mosaic.layers.baseline import TransformerBaseline
    from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig, TransformerBaselineConfig
    from mosaic.layers.model import MosaicLM

    transformer = TransformerBaseline(TransformerBaselineConfig(vocab_size=40, d_model=16, n_layers=3, n_heads=2))
    assert transformer.recurrent_state_floats(100) == [2 * 100 * 16] * 3
    block = MosaicBlockConfig(d_model=16, mem_buckets=4, mem_assoc=2, mem_hashes=1, mem_key_dim=8, mem_dim=8)
    mosaic = MosaicLM(MosaicLMConfig(vocab_size=40, n_layers=2, block=block))
    per_layer = mosaic.recurrent_state_floats()
    state = mosaic.init_state(1).layers[0]
    cell = 8 + 8 + 1
    assert state.memory.numel() == 1 * (4 * 2 + 1) * cell  # the table and its scratch row
    assert per_layer == [sum(t.numel() for t in state.tensors().values() if t.is_floating_point())] * 2
    assert per_layer[0] >= state.memory.numel() + state.bank.numel()
    assert mosaic.recurrent_state_floats(10_000) == per_layer  # constant in the context length


@pytest.mark.parametrize(("heads", "want"), [(1, [0.99]), (2, [0.9, 0.999]), (4, [0.9, 0.9785, 0.9954, 0.999])])
def test_decay_gates_start_with_memory_horizons_from_ten_to_a_thousand_tokens(heads, want) -> None:
    """A single head starts at a 100-token horizon: at the fast end (α 0.9) it would forget a pair
    about ten tokens after reading it, and could not recall across an MQAR sequence from the start."""
    model = DeltaBaseline(DeltaBaselineConfig(vocab_size=16, d_model=16, n_heads=heads, n_layers=1))
    alpha = torch.sigmoid(model.layers[0].mixer.alpha.bias)
    torch.testing.assert_close(alpha, torch.tensor(want), atol=2e-4, rtol=0)
