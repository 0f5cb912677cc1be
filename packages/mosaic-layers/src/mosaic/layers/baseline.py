"""``model.transformer_baseline``: a same-width causal Transformer for fair comparisons (pre-norm,
learned positions, ``scaled_dot_product_attention``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.errors import ModelError
from mosaic.core.model_output import ModelOutput
from mosaic.layers.config import TransformerBaselineConfig
from mosaic.layers.ffn import LifecycleHooks, TrainingHooksMixin, build_ffn, ffn_aux, model_registry
from mosaic.layers.generation import GenerationMixin
from mosaic.layers.model import (
    INPUT_IDS,
    TARGET_IDS,
    check_input_ids,
    init_weights,
    language_model_loss,
    stack_layer_aux,
    vocabulary_logits,
)

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


@attrs.define
class KVCache:
    """Keys and values of every layer, preallocated for ``capacity`` tokens: a decode step writes
    one slot in place and attends over the filled prefix, never concatenating."""

    keys: torch.Tensor  # (L, B, heads, capacity, d_head)
    values: torch.Tensor  # (L, B, heads, capacity, d_head)
    position: int = 0  # tokens consumed so far

    @property
    def batch_size(self) -> int:
        return int(self.keys.shape[1])

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[3])

    def copy(self) -> KVCache:
        return KVCache(self.keys.clone(), self.values.clone(), self.position)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerBaselineConfig) -> None:
        super().__init__()
        self.heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        bsz, length, d = x.shape
        q, k, v = self.qkv(x).view(bsz, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, d_head)
        else:
            start, end = cache.position, cache.position + length
            cache.keys[layer, :, :, start:end] = k
            cache.values[layer, :, :, start:end] = v
            keys, values = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]  # (B, heads, end, d_head)
            if length == 1:  # one new token sees the whole prefix: no mask
                y = F.scaled_dot_product_attention(q, keys, values)
            else:  # query i (at position start + i) sees keys up to start + i
                visible = torch.ones(length, end, dtype=torch.bool, device=x.device).tril(start)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible)
        return self.proj(y.transpose(1, 2).reshape(bsz, length, d))


class TransformerLayer(nn.Module):
    def __init__(self, config: TransformerBaselineConfig, registry: Registry | None = None) -> None:
        super().__init__()
        d = config.d_model
        self.attn_norm = nn.RMSNorm(d)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = nn.RMSNorm(d)
        if config.ffn is not None:
            self.mlp = build_ffn(config.ffn, d, model_registry(registry))
        else:
            self.mlp = nn.Sequential(
                nn.Linear(d, config.mlp_mult * d, bias=False), nn.GELU(), nn.Linear(config.mlp_mult * d, d, bias=False)
            )

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class TransformerBaseline(TrainingHooksMixin, GenerationMixin, nn.Module):
    def __init__(self, config: TransformerBaselineConfig, *, registry: Registry | None = None) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_seq_len, config.d_model)
        registry = model_registry(registry)
        self.layers = nn.ModuleList(TransformerLayer(config, registry) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        self.lifecycle = LifecycleHooks(config.lifecycle, registry)

    # --- training hooks (see mosaic.layers.ffn) -----------------------------------------------

    def ffn_layers(self) -> list[nn.Module]:
        return [cast(TransformerLayer, layer).mlp for layer in self.layers] if self.config.ffn is not None else []

    def forward(self, batch: Mapping[str, torch.Tensor], state: KVCache | None = None) -> ModelOutput:
        ids = check_input_ids(batch)
        length = ids.shape[1]
        start = 0 if state is None else state.position
        if state is not None and (state.batch_size != ids.shape[0] or start + length > state.capacity):
            raise ModelError(f"KV cache holds batch {state.batch_size} and {state.capacity} tokens "
                             f"({start} used); got batch {ids.shape[0]} and {length} more tokens (the Transformer "
                             f"attends over at most its {state.capacity}-token cache: prompt and new tokens "
                             "together must fit)")
        if start + length > self.config.max_seq_len:
            raise ModelError(f"sequence of {start + length} tokens exceeds max_seq_len {self.config.max_seq_len}")
        x = self.embed(ids) + self.position(torch.arange(start, start + length, device=ids.device))
        for index, layer in enumerate(self.layers):
            x = layer(x, state, index)
        logits, logit_targets = vocabulary_logits(
            self.head, self.norm(x), batch.get(TARGET_IDS), self.config.logits_at_labels_only
        )
        per_layer = [ffn_aux(ffn) for ffn in self.ffn_layers()]
        aux = stack_layer_aux(per_layer) if per_layer and per_layer[0] else {}
        if state is not None:
            state.position = start + length
        loss = language_model_loss(logits, batch.get(TARGET_IDS), logit_targets)
        return ModelOutput(logits=logits, aux=aux, logit_targets=logit_targets, state=state, loss=loss)

    # --- streaming (same calls as MosaicLM's) --------------------------------------------------

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   capacity: int | None = None) -> KVCache:
        """An empty KV cache for ``capacity`` tokens (default ``max_seq_len``), allocated once."""
        capacity = self.config.max_seq_len if capacity is None else capacity
        if not 0 < capacity <= self.config.max_seq_len:
            raise ModelError(f"KV cache capacity must be in [1, max_seq_len={self.config.max_seq_len}], got {capacity}")
        weight = self.embed.weight
        device = weight.device if device is None else torch.device(device)
        c = self.config
        shape = (c.n_layers, batch_size, c.n_heads, capacity, c.d_model // c.n_heads)
        return KVCache(torch.zeros(shape, device=device, dtype=weight.dtype),
                       torch.zeros(shape, device=device, dtype=weight.dtype))

    def step(self, ids: torch.Tensor, state: KVCache, *, with_aux: bool = True) -> ModelOutput:
        """One token per sample: ``ids (B,)`` -> logits ``(B, V)``; ``state`` advances in place
        (``out.state`` is ``state``). ``with_aux`` is accepted for MosaicLM's signature; the only aux
        are a configured feed-forward's."""
        if ids.dim() != 1:
            raise ModelError(f"step: expected ids of shape (B,), got {tuple(ids.shape)}")
        out = self.forward({INPUT_IDS: ids[:, None]}, state)
        out.logits = out.logits[:, 0]
        if not with_aux:
            out.aux = {}
        return out

    def prefill(self, ids: torch.Tensor, state: KVCache | None = None, chunk_tokens: int = 512) -> ModelOutput:
        """Consume ``ids (B, T)`` in pieces of ``chunk_tokens`` (each attends to the cache and itself):
        logits ``(B, T, V)`` and the filled cache (aux outputs of the last piece only)."""
        if chunk_tokens < 1:
            raise ModelError(f"prefill: chunk_tokens must be >= 1, got {chunk_tokens}")
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ModelError(f"prefill: expected ids of shape (B, T) with T >= 1, got {tuple(ids.shape)}")
        state = self.init_state(ids.shape[0], ids.device) if state is None else state
        pieces = [self.forward({INPUT_IDS: ids[:, start : start + chunk_tokens]}, state)
                  for start in range(0, ids.shape[1], chunk_tokens)]
        out = pieces[-1]
        out.logits = torch.cat([piece.logits for piece in pieces], dim=1)
        return out

    def recurrent_state_floats(self, context_length: int) -> list[int]:
        """Floats of KV cache per layer for one sample at ``context_length`` tokens (keys and values),
        counted the way the recurrent models' state is."""
        return [2 * context_length * self.config.d_model for _ in self.layers]


def build_transformer_baseline(config: TransformerBaselineConfig, *,
                               registry: Registry | None = None) -> TransformerBaseline:
    """``model.transformer_baseline`` factory; ``registry`` (passed by ``Registry.build``) builds its ffn."""
    return TransformerBaseline(config, registry=registry)
