"""Sampling tokens from any streaming model (``init_state`` / ``prefill`` / ``step``).

``generate`` consumes the prompt once with ``prefill``, then feeds each sampled token back through
``step(token, state, with_aux=False)``, yielding the tokens as they come: the cost per new token is one recurrent step for
MosaicLM and one cached attention step for the Transformer baseline, never a forward over the
whole context.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from mosaic.core.errors import ModelError

#: The seeds ``torch.Generator.manual_seed`` takes.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of ``logits (B, V)``: greedy at temperature 0, else sampled from the
    softmax at ``temperature`` over the ``top_k`` most likely tokens (all when None)."""
    if not math.isfinite(temperature) or temperature < 0:
        raise ModelError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ModelError(f"top_k must be >= 1, got {top_k}")
    if temperature == 0:
        return logits.argmax(-1)
    scaled = tempered_logits(logits, temperature)
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.multinomial(scaled.softmax(-1), 1, generator=generator)[:, 0]


def tempered_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (float64) over the last axis, shifted so each row's largest is 0
    first: the same softmax as the plain quotient, but a tiny temperature then sends the other
    logits towards -inf instead of overflowing every one of them to ±inf (a NaN softmax). In float64
    so that any positive Python float divides without underflowing to 0 (0 / 0 is NaN too)."""
    logits = logits.double()
    return (logits - logits.amax(-1, keepdim=True)) / temperature


def check_seed(seed: int) -> None:
    """Raise :class:`ModelError` unless ``torch.Generator.manual_seed`` takes ``seed``."""
    if not SEED_MIN <= seed <= SEED_MAX:
        raise ModelError(f"seed must be between {SEED_MIN} and {SEED_MAX}, got {seed}")


def generate(model: Any, prompt_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None, stop_token: int | None = None,
             state: Any = None) -> Iterator[torch.Tensor]:
    """Yield ``max_new_tokens`` tokens ``(B,)`` continuing ``prompt_ids`` (``(T,)`` or ``(B, T)``).

    Deterministic for a given ``seed``. Stops early once every row has produced ``stop_token``.
    ``state`` continues a stream that earlier calls left off (the prompt is appended to it, in place).
    A stream that ``generate`` starts itself runs under ``torch.inference_mode`` (cheaper per step);
    a caller's ``state`` is advanced under ``torch.no_grad``, so it stays usable for training.
    """
    # as decorators, both modes wrap each resumption of the generator, never the caller's code in between
    inner = torch.inference_mode()(_generate) if state is None else torch.no_grad()(_generate)
    return inner(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                 stop_token=stop_token, state=state)


def _generate(model: Any, prompt_ids: torch.Tensor, max_new_tokens: int, *, temperature: float,
              top_k: int | None, seed: int | None, stop_token: int | None, state: Any) -> Iterator[torch.Tensor]:
    if max_new_tokens < 0:
        raise ModelError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ids = prompt_ids[None] if prompt_ids.dim() == 1 else prompt_ids
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ModelError(f"prompt_ids: expected a non-empty (T,) or (B, T) tensor, got {tuple(prompt_ids.shape)}")
    device = next(model.parameters()).device
    ids = ids.to(device)
    generator = None
    if seed is not None:
        check_seed(seed)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        out = model.prefill(ids, state)
        logits, state = out.logits[:, -1], out.state  # (B, V)
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
        for index in range(max_new_tokens):
            token = sample_next(logits, temperature, top_k, generator)
            yield token
            if stop_token is not None:
                finished |= token == stop_token
                if bool(finished.all()):
                    return
            if index + 1 < max_new_tokens:
                out = model.step(token, state, with_aux=False)
                logits, state = out.logits, out.state
    finally:
        model.train(was_training)


class GenerationMixin:
    """``model.generate(prompt_ids, max_new_tokens, temperature, top_k, seed)`` for streaming models."""

    def generate(self, prompt_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None,
                 stop_token: int | None = None) -> Iterator[torch.Tensor]:
        return generate(self, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                        stop_token=stop_token)
