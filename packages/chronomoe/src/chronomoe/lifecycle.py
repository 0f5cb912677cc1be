"""Dry-run lifecycle coordinator: which experts *would* be pruned, and why not.

It reads host snapshots of coherence (taken at evaluation intervals, never in the forward) and
returns decision records carrying their full context; it changes nothing.

- Prune candidate: ``φ_slow < prune_phi`` after at least ``prune_min_tokens`` routed tokens.
- Starvation guard: while the layer as a whole is starving, every prune is blocked — removing an
  expert from a layer that cannot route well would remove capacity it needs. The layer starves
  when ``Ψ_slow < starvation_psi``, when routing has collapsed onto few experts
  (``Neff = exp(H(p̄)) < starvation_neff_fraction · E``), or when one expert saturates
  (``max p̄ > starvation_saturation``); ``p̄`` is the slow-clock mean routing probability.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

from chronomoe.buffer import CoherenceSnapshot
from chronomoe.config import ChronoConfig

Action = Literal["prune_candidate", "prune_blocked", "keep", "too_few_tokens"]


def effective_experts(share: list[float]) -> float:
    """``Neff = exp(H(p̄))``: E for uniform routing, 1 when one expert takes everything."""
    total = sum(share)
    if total <= 0:
        return 0.0
    entropy = -sum((p / total) * math.log(p / total) for p in share if p > 0)
    return math.exp(entropy)


def saturation(share: list[float]) -> float:
    """``max p̄`` (normalised)."""
    total = sum(share)
    return max(share) / total if total > 0 else 0.0


@attrs.frozen
class LayerHealth:
    """The layer-level signals the starvation guard reads."""

    psi_slow: float
    neff: float
    saturation: float
    n_experts: int
    starving: bool
    reasons: tuple[str, ...]


@attrs.frozen
class LifecycleDecision:
    """One expert's dry-run verdict with everything that led to it."""

    step: int
    layer: int
    expert: int
    action: Action
    reason: str
    phi_fast: float
    phi_slow: float
    tokens_seen: int
    health: LayerHealth

    def to_json(self) -> dict:
        return attrs.asdict(self)


def layer_health(snapshot: CoherenceSnapshot, config: ChronoConfig) -> LayerHealth:
    share = snapshot.routing_share
    neff = effective_experts(share)
    sat = saturation(share)
    n_experts = len(share)
    reasons = []
    if snapshot.psi_slow < config.starvation_psi:
        reasons.append(f"psi_slow {snapshot.psi_slow:.3f} < {config.starvation_psi}")
    if neff < config.starvation_neff_fraction * n_experts:
        reasons.append(f"neff {neff:.2f} < {config.starvation_neff_fraction} * {n_experts}")
    if sat > config.starvation_saturation:
        reasons.append(f"saturation {sat:.3f} > {config.starvation_saturation}")
    return LayerHealth(snapshot.psi_slow, neff, sat, n_experts, bool(reasons), tuple(reasons))


class LifecycleCoordinator:
    """Evaluates snapshots and keeps the log of its (dry-run) decisions."""

    def __init__(self, config: ChronoConfig) -> None:
        self.config = config
        self.decisions: list[LifecycleDecision] = []

    def evaluate(self, snapshot: CoherenceSnapshot) -> list[LifecycleDecision]:
        config = self.config
        health = layer_health(snapshot, config)
        decisions = []
        for expert in snapshot.experts:
            if expert.tokens_seen < config.prune_min_tokens:
                action: Action = "too_few_tokens"
                reason = f"tokens_seen {expert.tokens_seen} < {config.prune_min_tokens}"
            elif expert.phi_slow >= config.prune_phi:
                action, reason = "keep", f"phi_slow {expert.phi_slow:.3f} >= {config.prune_phi}"
            elif health.starving:
                action, reason = "prune_blocked", "layer starving: " + "; ".join(health.reasons)
            else:
                action, reason = "prune_candidate", f"phi_slow {expert.phi_slow:.3f} < {config.prune_phi}"
            decisions.append(
                LifecycleDecision(
                    step=snapshot.step,
                    layer=snapshot.layer,
                    expert=expert.expert,
                    action=action,
                    reason=reason,
                    phi_fast=expert.phi_fast,
                    phi_slow=expert.phi_slow,
                    tokens_seen=expert.tokens_seen,
                    health=health,
                )
            )
        self.decisions.extend(decisions)
        return decisions

    def prune_candidates(self, snapshot: CoherenceSnapshot) -> list[int]:
        return [d.expert for d in self.evaluate(snapshot) if d.action == "prune_candidate"]
