"""Generation: the Transformer's preallocated KV cache agrees with its full forward, and generate()
streams the same tokens a naive full-recompute decoder would, for both model kinds."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import ModelError
from mosaic.layers.baseline import TransformerBaseline
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig, TransformerBaselineConfig
from mosaic.layers.model import MosaicLM

V = 37


def transformer(**kw) -> TransformerBaseline:
    torch.manual_seed(0)
    return TransformerBaseline(TransformerBaselineConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4,
                                                         max_seq_len=64, **kw)).eval()


def mosaic() -> MosaicLM:
    torch.manual_seed(0)
    block = MosaicBlockConfig(d_model=32, mem_buckets=4, mem_assoc=2, mem_key_dim=8, mem_dim=8, chunk_size=8)
    return MosaicLM(MosaicLMConfig(vocab_size=V, n_layers=2, block=block)).eval()


@torch.no_grad()
def test_kv_cache_prefill_chunks_and_steps_match_the_full_forward() -> None:
    model = transformer()
    ids = torch.randint(0, V, (3, 30))
    full = model({"input_ids": ids}).logits  # (B, T, V)
    cache = model.init_state(3)
    keys_storage = cache.keys.data_ptr()
    first = model.prefill(ids[:, :10], cache).logits
    second = model.prefill(ids[:, 10:17], cache).logits  # a second chunk after a non-empty cache
    steps = [model.step(ids[:, t], cache).logits for t in range(17, 30)]
    streamed = torch.cat([first, second, torch.stack(steps, dim=1)], dim=1)
    torch.testing.assert_close(streamed, full, rtol=1e-5, atol=1e-5)
    assert cache.position == 30 and cache.keys.data_ptr() == keys_storage  # written in place, never grown


def test_kv_cache_refuses_overflow_and_wrong_batch() -> None:
    model = transformer()
    cache = model.init_state(2, capacity=4)
    model.prefill(torch.zeros(2, 4, dtype=torch.int64), cache)
    with pytest.raises(ModelError, match="KV cache"):
        model.step(torch.zeros(2, dtype=torch.int64), cache)
    with pytest.raises(ModelError, match="KV cache"):
        model.step(torch.zeros(3, dtype=torch.int64), model.init_state(2))
    with pytest.raises(ModelError, match="capacity"):
        model.init_state(1, capacity=65)


@torch.no_grad()
def naive_greedy(model, prompt: torch.Tensor, steps: int) -> list[list[int]]:
    ids = prompt
    out = []
    for _ in range(steps):
        token = model({"input_ids": ids}).logits[:, -1].argmax(-1)
        out.append(token.tolist())
        ids = torch.cat([ids, token[:, None]], dim=1)
    return out


@pytest.mark.parametrize("build", [transformer, mosaic], ids=["transformer", "mosaic"])
def test_greedy_generation_matches_a_full_recompute_decoder(build) -> None:
    model = build()
    prompt = torch.randint(0, V, (2, 9))
    streamed = [t.tolist() for t in model.generate(prompt, 12, temperature=0.0)]
    assert streamed == naive_greedy(model, prompt, 12)
    top1 = [t.tolist() for t in model.generate(prompt, 12, temperature=0.7, top_k=1, seed=3)]
    assert top1 == streamed  # top-1 sampling is greedy


@pytest.mark.parametrize("build", [transformer, mosaic], ids=["transformer", "mosaic"])
def test_sampling_is_seeded_and_respects_top_k(build) -> None:
    model = build()
    prompt = torch.randint(0, V, (9,))
    a = [int(t) for t in model.generate(prompt, 20, temperature=1.5, top_k=5, seed=11)]
    b = [int(t) for t in model.generate(prompt, 20, temperature=1.5, top_k=5, seed=11)]
    c = [int(t) for t in model.generate(prompt, 20, temperature=1.5, top_k=5, seed=12)]
    assert a == b and a != c
    assert model.training is False


def test_generation_stops_at_the_stop_token_and_checks_arguments() -> None:
    model = transformer()
    prompt = torch.randint(0, V, (1, 5))
    greedy = [int(t) for t in model.generate(prompt, 10, temperature=0.0)]
    stopped = [int(t) for t in model.generate(prompt, 10, temperature=0.0, stop_token=greedy[2])]
    assert stopped == greedy[: greedy.index(greedy[2]) + 1]
    with pytest.raises(ModelError, match="temperature"):
        list(model.generate(prompt, 2, temperature=-1.0))
    with pytest.raises(ModelError, match="top_k"):
        list(model.generate(prompt, 2, top_k=0))
    with pytest.raises(ModelError, match="prompt_ids"):
        list(model.generate(torch.zeros(1, 0, dtype=torch.int64), 2))


@pytest.mark.parametrize("build", [transformer, mosaic], ids=["transformer", "mosaic"])
def test_a_tiny_temperature_is_greedy_and_non_finite_ones_or_wild_seeds_are_refused(build) -> None:
    model = build()
    prompt = torch.randint(0, V, (2, 5))
    greedy = torch.stack(list(model.generate(prompt, 6, temperature=0.0)))
    for tiny in (1e-40, 1e-300, 5e-324):  # logits / T overflowed to ±inf and the softmax was NaN
        assert torch.equal(torch.stack(list(model.generate(prompt, 6, temperature=tiny, seed=1))), greedy)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ModelError, match="finite"):
            list(model.generate(prompt, 2, temperature=bad))
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises(ModelError, match="seed must be between"):
            list(model.generate(prompt, 2, seed=seed))
    assert len(list(model.generate(prompt, 2, seed=2**64 - 1))) == 2


@pytest.mark.parametrize("build", [transformer, mosaic], ids=["transformer", "mosaic"])
def test_both_models_follow_one_step_and_prefill_convention(build) -> None:
    """step: logits (B, V), state advanced in place and returned; prefill: logits (B, T, V) for every
    prompt position, in pieces of chunk_tokens, whatever the piece size."""
    model = build()
    ids = torch.randint(0, V, (2, 11))
    with torch.no_grad():
        whole = model.prefill(ids, model.init_state(2)).logits
        state = model.init_state(2)
        pieces = model.prefill(ids, state, chunk_tokens=3)
        step = model.step(torch.tensor([1, 2]), pieces.state, with_aux=False)
    assert whole.shape == pieces.logits.shape == (2, 11, V)
    torch.testing.assert_close(pieces.logits, whole, rtol=1e-5, atol=1e-5)
    assert step.logits.shape == (2, V) and step.state is pieces.state and step.aux == {}
    with pytest.raises(ModelError, match="chunk_tokens"):
        model.prefill(ids, model.init_state(2), chunk_tokens=0)


def test_generation_leaves_the_callers_grad_mode_alone() -> None:
    model = mosaic()
    for token in model.generate(torch.randint(0, V, (1, 4)), 3, temperature=0.0):
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        assert token.shape == (1,)
