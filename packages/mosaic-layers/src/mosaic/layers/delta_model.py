"""``model.delta_baseline``: a recurrent baseline built on the gated delta rule.

The same pre-norm stack as ``model.transformer_baseline`` (embedding, blocks of mixer + GELU MLP,
final norm, tied head) with a gated-delta-rule mixer instead of attention, so that MOSAIC can be
compared with a strong recurrent model of the DeltaNet family at an equal, counted state size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.model_output import ModelOutput
from mosaic.layers.delta_config import DeltaBaselineConfig
from mosaic.layers.delta_rule import chunked_gated_delta_rule
from mosaic.layers.model import TARGET_IDS, check_input_ids, init_weights, vocabulary_logits


class CausalDepthwiseConv(nn.Module):
    """A short causal convolution over time, one filter per channel: ``(B, T, C) -> (B, T, C)``."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))  # (B, C, T + K - 1)
        return self.conv(padded).transpose(1, 2)


class GatedDeltaMixer(nn.Module):
    def __init__(self, config: DeltaBaselineConfig) -> None:
        super().__init__()
        d, heads = config.d_model, config.n_heads
        self.heads, self.d_head, self.chunk_size = heads, config.d_head, config.chunk_size
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.conv = CausalDepthwiseConv(3 * d, config.conv_kernel) if config.conv_kernel > 1 else None
        self.beta = nn.Linear(d, heads)
        self.alpha = nn.Linear(d, heads)
        self.gate = nn.Linear(d, d, bias=False)
        self.out_norm = nn.RMSNorm(self.d_head)
        self.proj = nn.Linear(d, d, bias=False)

    @torch.no_grad()
    def reset_decay(self) -> None:
        """Decay gates start slow and spread across heads: α = sigmoid(bias) with memory horizons
        ``1 / (1 − α)`` log-spaced from 10 to 1000 tokens (α 0.9 to 0.999); a single head starts in
        the middle, at 100 tokens (α 0.99), not at the fast end, where it would forget a pair ten
        tokens after reading it."""
        if self.heads == 1:
            forget = torch.tensor([0.01])
        else:
            forget = torch.logspace(-1.0, -3.0, self.heads)  # 1 − α, from 0.1 to 0.001
        self.alpha.bias.copy_(torch.logit(1.0 - forget))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, length, d = x.shape
        qkv = self.qkv(x)  # (B, T, 3D)
        if self.conv is not None:
            qkv = F.silu(self.conv(qkv))
        q, k, v = qkv.view(bsz, length, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)  # (B, H, T, d_head)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta(x)).transpose(1, 2)  # (B, H, T)
        alpha = torch.sigmoid(self.alpha(x)).transpose(1, 2)  # (B, H, T)
        o, _ = chunked_gated_delta_rule(q, k, v, alpha, beta, self.chunk_size)  # (B, H, T, d_head)
        o = self.out_norm(o).transpose(1, 2).reshape(bsz, length, d)
        return self.proj(o * F.silu(self.gate(x)))


class DeltaLayer(nn.Module):
    def __init__(self, config: DeltaBaselineConfig) -> None:
        super().__init__()
        d = config.d_model
        self.mix_norm = nn.RMSNorm(d)
        self.mixer = GatedDeltaMixer(config)
        self.mlp_norm = nn.RMSNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.mlp_mult * d, bias=False), nn.GELU(), nn.Linear(config.mlp_mult * d, d, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.mix_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class DeltaBaseline(nn.Module):
    def __init__(self, config: DeltaBaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(DeltaLayer(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        for layer in self.layers:  # after init_weights, which zeroes biases
            cast(DeltaLayer, layer).mixer.reset_decay()
        if config.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, batch: Mapping[str, torch.Tensor]) -> ModelOutput:
        ids = check_input_ids(batch)
        x = self.embed(ids)  # (B, T, D)
        for layer in self.layers:
            x = layer(x)
        logits, logit_targets = vocabulary_logits(
            self.head, self.norm(x), batch.get(TARGET_IDS), self.config.logits_at_labels_only
        )
        return ModelOutput(logits=logits, logit_targets=logit_targets)

    def recurrent_state_floats(self, context_length: int = 0) -> list[int]:
        """Floats of recurrent state per layer and sample: the ``H × d_head × d_head`` fast weights
        plus the convolution's tail of ``K − 1`` inputs."""
        c = self.config
        conv_tail = 3 * c.d_model * (c.conv_kernel - 1) if c.conv_kernel > 1 else 0
        return [c.n_heads * c.d_head * c.d_head + conv_tail for _ in range(c.n_layers)]


def build_delta_baseline(config: DeltaBaselineConfig) -> DeltaBaseline:
    """``model.delta_baseline`` factory."""
    return DeltaBaseline(config)
