"""``router.cosine``: a worked example of the router contract (X-MoE's cosine routing).

Chi et al. (2022) score a token against each expert by the cosine between a low-dimensional
projection of the token and a learned expert embedding, divided by a learned temperature. Cosine
scores are bounded, so no expert's logits can run away from the others (the "representation
collapse" they describe).

What ``layer.moe`` asks of a router is ``mosaic.core.contract.protocols.Router``: ``n_experts``,
``top_k``, ``columns`` (which experts are live), ``needs_trace`` / ``leave_one_out`` /
``token_level`` (coherence inputs), ``forward(x, sequence_length)`` returning a
``chronomoe.routers.RouterOutput``, and ``observe(...)`` once per training forward. This router keeps
no slow state, so ``observe`` does nothing and it asks for no trace. The layer injects ``d_model``,
``n_experts`` and ``top_k`` into the config, and ``top_k`` may change at run time (``set_top_k``).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from chronomoe.routers import (
    ExpertColumns,
    RouterOutput,
    TopKMixin,
    router_z_loss,
    select,
    switch_load_balance_loss,
)
from mosaic.core.validators import at_least, positive, reject


@attrs.frozen
class CosineRouterConfig:
    # set by layer.moe: a router mapping inside a layer must not set these three
    d_model: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(validator=positive)
    top_k: int = attrs.field(validator=positive)
    # width of the routing space the token is projected into (X-MoE uses a small one)
    routing_dim: int = attrs.field(default=16, validator=positive)
    # initial temperature; learned in log space so it stays positive
    temperature: float = attrs.field(default=0.3, validator=at_least(1e-3))
    load_balance_weight: float = attrs.field(default=0.01, validator=at_least(0.0))

    def __attrs_post_init__(self) -> None:
        if self.top_k > self.n_experts:
            reject("top_k", f"must be <= n_experts ({self.n_experts}), got {self.top_k}")


class CosineRouter(TopKMixin, nn.Module):
    needs_trace = False  # no coherence state: the layer need not build a MoETrace for this router
    leave_one_out = True
    token_level = False

    def __init__(self, config: CosineRouterConfig) -> None:
        super().__init__()
        self.config = config
        self.n_experts = config.n_experts
        self.top_k = config.top_k
        self.columns = ExpertColumns(config.n_experts)
        self.project = nn.Linear(config.d_model, config.routing_dim, bias=False)
        self.expert_embedding = nn.Parameter(torch.randn(config.n_experts, config.routing_dim) / math.sqrt(config.routing_dim))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))

    def forward(self, x: torch.Tensor, sequence_length: int | None = None) -> RouterOutput:
        token = F.normalize(self.project(x).float(), dim=-1)  # (N, R)
        expert = F.normalize(self.expert_embedding.float(), dim=-1)  # (E, R)
        logits = self.columns.mask(token @ expert.t() / self.log_temperature.exp())  # (N, E)
        key = self.columns.key(logits.detach())
        expert_idx, gates, probs = select(logits, key, self.top_k, normalize_gates=True)
        balance = switch_load_balance_loss(probs, expert_idx, self.columns.active.sum())
        z_loss = router_z_loss(logits)
        return RouterOutput(
            expert_idx=expert_idx,
            gates=gates,
            clean_logits=logits,
            selection_key=key,
            probs=probs,
            load_balance_loss=balance,
            z_loss=z_loss,
            aux_loss=self.config.load_balance_weight * balance,
            bias=logits.new_zeros(self.n_experts),
            metrics={"cosine_temperature": self.log_temperature.detach().exp()},
        )

    def observe(self, route: RouterOutput, trace: Any, phi: Any, seen: Any) -> None:
        """No slow state to advance (``router.chrono`` updates its clocks here)."""


def build_cosine_router(config: CosineRouterConfig) -> CosineRouter:
    return CosineRouter(config)
