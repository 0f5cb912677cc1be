"""``model.transformer_baseline``: a same-width causal Transformer for fair comparisons (pre-norm,
learned positions, ``scaled_dot_product_attention``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.errors import ModelError
from mosaic.core.model_output import ModelOutput
from mosaic.layers.config import TransformerBaselineConfig
from mosaic.layers.ffn import LifecycleHooks, TrainingHooksMixin, build_ffn, ffn_aux
from mosaic.layers.model import check_input_ids, init_weights, stack_layer_aux, vocabulary_logits


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerBaselineConfig) -> None:
        super().__init__()
        self.heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, length, d = x.shape
        q, k, v = self.qkv(x).view(bsz, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, d_head)
        return self.proj(y.transpose(1, 2).reshape(bsz, length, d))


class TransformerLayer(nn.Module):
    def __init__(self, config: TransformerBaselineConfig) -> None:
        super().__init__()
        d = config.d_model
        self.attn_norm = nn.RMSNorm(d)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = nn.RMSNorm(d)
        if config.ffn is not None:
            self.mlp = build_ffn(config.ffn, d)
        else:
            self.mlp = nn.Sequential(
                nn.Linear(d, config.mlp_mult * d, bias=False), nn.GELU(), nn.Linear(config.mlp_mult * d, d, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TransformerBaseline(TrainingHooksMixin, nn.Module):
    def __init__(self, config: TransformerBaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_seq_len, config.d_model)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        self.lifecycle = LifecycleHooks(config.lifecycle)

    # --- training hooks (see mosaic.layers.ffn) -----------------------------------------------

    def ffn_layers(self) -> list[nn.Module]:
        return [layer.mlp for layer in self.layers] if self.config.ffn is not None else []

    def forward(self, batch: Mapping[str, torch.Tensor]) -> ModelOutput:
        ids = check_input_ids(batch)
        length = ids.shape[1]
        if length > self.config.max_seq_len:
            raise ModelError(f"sequence of {length} tokens exceeds max_seq_len {self.config.max_seq_len}")
        x = self.embed(ids) + self.position(torch.arange(length, device=ids.device))
        for layer in self.layers:
            x = layer(x)
        logits, logit_targets = vocabulary_logits(
            self.head, self.norm(x), batch.get("target_ids"), self.config.logits_at_labels_only
        )
        per_layer = [ffn_aux(ffn) for ffn in self.ffn_layers()]
        aux = stack_layer_aux(per_layer) if per_layer and per_layer[0] else {}
        return ModelOutput(logits=logits, aux=aux, logit_targets=logit_targets)

    def recurrent_state_floats(self, context_length: int) -> list[int]:
        """Floats of KV cache per layer for one sample at ``context_length`` tokens (keys and values),
        counted the way the recurrent models' state is."""
        return [2 * context_length * self.config.d_model for _ in self.layers]


def build_transformer_baseline(config: TransformerBaselineConfig) -> TransformerBaseline:
    """``model.transformer_baseline`` factory."""
    return TransformerBaseline(config)
