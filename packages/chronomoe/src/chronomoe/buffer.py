"""Coherence state of one MoE layer on the three clocks, kept on the device.

Everything is a registered buffer, so the state is in ``state_dict`` (checkpointed with the model),
moves with ``.to()`` and is updated in place without reading anything back to the host. A host
copy is made only by :meth:`CoherenceBuffer.snapshot`, which callers use at evaluation intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import attrs
import torch
from torch import nn

from chronomoe.clocks import ThreeClockEMA
from chronomoe.coherence import MoETrace, expert_coherence, layer_coherence
from chronomoe.config import CLOCK_NAMES, ChronoConfig


@attrs.frozen
class ExpertCoherence:
    """Host copy of one expert's coherence state."""

    expert: int
    phi_fast: float
    phi_mid: float
    phi_slow: float
    slow_evidence: float  # the slow clock's evidence weight: 0 never routed, → 1 routed every step
    tokens_seen: int
    routing_share_slow: float
    # the seed's degradation flag: φ_fast fell below φ_slow by more than degradation_delta
    degraded: bool = False

    @property
    def phi_delta(self) -> float:
        """Fast minus slow: negative when the expert is degrading."""
        return self.phi_fast - self.phi_slow


@attrs.frozen
class CoherenceSnapshot:
    """Host copy of one layer's coherence state at ``step``."""

    layer: int
    step: int
    experts: tuple[ExpertCoherence, ...]
    psi_fast: float
    psi_mid: float
    psi_slow: float

    @property
    def routing_share(self) -> list[float]:
        return [e.routing_share_slow for e in self.experts]


class CoherenceBuffer(nn.Module):
    """φ per expert, the routing share p̄ per expert and Ψ of one layer on the fast/mid/slow clocks.

    The three signals share one :class:`ThreeClockEMA` of width ``2E + 1`` (``[φ | p̄ | Ψ]``) so a
    step is a handful of fused in-place ops, whatever ``E``.
    """

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    tokens_seen: torch.Tensor
    _always_seen: torch.Tensor

    def __init__(self, n_experts: int, config: ChronoConfig, *, layer: int = 0) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.config = config
        self.layer = layer
        self.clocks = ThreeClockEMA(config.clocks, (2 * n_experts + 1,))
        self.register_buffer("tokens_seen", torch.zeros(n_experts, dtype=torch.int64))
        self.register_buffer("_always_seen", torch.ones(n_experts + 1, dtype=torch.bool), persistent=False)
        self._degraded_count: torch.Tensor | None = None  # degraded_count's cache
        self.register_load_state_dict_post_hook(_forget_degraded_count)

    @torch.no_grad()
    def update(
        self, phi: torch.Tensor, seen: torch.Tensor, expert_tokens: torch.Tensor, share: torch.Tensor
    ) -> None:
        """One global step: ``phi``/``seen``/``expert_tokens``/``share`` are (E,). Device-only."""
        psi = layer_coherence(phi, expert_tokens)
        self._degraded_count = None
        value = torch.cat([phi.float(), share.float(), psi.float().view(1)])
        self.clocks.update(value, torch.cat([seen, self._always_seen]))
        self.tokens_seen.add_(expert_tokens.to(torch.int64))

    @torch.no_grad()
    def observe(self, trace: MoETrace) -> torch.Tensor:
        """Compute φ from a forward's trace, update, and return this step's Ψ (0-d tensor)."""
        phi, seen = expert_coherence(
            trace, leave_one_out=self.config.leave_one_out, token_level=self.config.token_level
        )
        self.update(phi, seen, trace.expert_tokens, trace.routing_share())
        return layer_coherence(phi, trace.expert_tokens)

    @torch.no_grad()
    def reset_expert(self, expert: int) -> None:
        """Forget one expert's φ, share and token count (a new or archived column)."""
        for column in (expert, self.n_experts + expert):
            self.clocks.numerator[:, column] = 0.0
            self.clocks.weight[:, column] = 0.0
        self.tokens_seen[expert] = 0
        self._degraded_count = None

    def phi(self, clock: str | None = None) -> torch.Tensor:
        """Debiased φ, ``(3, E)`` or ``(E,)`` for one clock, shrunk towards ``phi_prior`` by
        ``phi_prior_weight`` so that the φ of an expert that stops being routed decays to the prior
        at its clock's rate instead of freezing (``phi_prior`` for experts never routed)."""
        index = None if clock is None else CLOCK_NAMES.index(clock)
        estimate = self.clocks.estimate_at(index, prior=self.config.phi_prior,
                                           prior_weight=self.config.phi_prior_weight)
        return estimate[..., : self.n_experts]

    def phi_slow(self) -> torch.Tensor:
        return self.phi("slow")

    def degraded(self, phi: torch.Tensor | None = None) -> torch.Tensor:
        """(E,) bool: the seed's degradation flag, ``φ_fast − φ_slow < −degradation_delta``, for
        experts with slow-clock evidence (a fresh expert has no baseline to degrade from). ``phi``:
        this state's :meth:`phi` when the caller has it already."""
        phi = self.phi() if phi is None else phi
        return (phi[0] - phi[2] < -self.config.degradation_delta) & (self.phi_evidence("slow") > 0)

    def degraded_count(self, phi: torch.Tensor | None = None) -> torch.Tensor:
        """0-d float: how many experts are :meth:`degraded`. router.chrono reports it on every
        forward, and it changes only when the state does, so it is kept until the next
        :meth:`update`, :meth:`reset_expert` or state load; passing ``phi`` (this state's
        :meth:`phi`) recomputes it from that."""
        if phi is not None or self._degraded_count is None:
            self._degraded_count = self.degraded(phi).float().sum()
        return self._degraded_count

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> CoherenceBuffer:
        self._degraded_count = None  # moved or cast: recompute from the moved state
        return cast(CoherenceBuffer, super()._apply(fn, recurse))

    def phi_evidence(self, clock: str = "slow") -> torch.Tensor:
        """(E,) the clock's evidence weight per expert: 0 never routed, → 1 routed every step."""
        return self.clocks.evidence(clock)[: self.n_experts]

    def routing_share(self, clock: str | None = None) -> torch.Tensor:
        """Debiased mean routing probability p̄, ``(3, E)`` or ``(E,)``."""
        return self.clocks.estimate(clock)[..., self.n_experts : 2 * self.n_experts]

    def psi(self, clock: str | None = None) -> torch.Tensor:
        """Debiased layer coherence Ψ, ``(3,)`` or 0-d."""
        return self.clocks.estimate(clock)[..., 2 * self.n_experts]

    @property
    def steps(self) -> torch.Tensor:
        return self.clocks.steps

    def snapshot(self) -> CoherenceSnapshot:
        """Copy the state to the host (the only place this module synchronises)."""
        estimate = self.clocks.estimate().cpu()  # (3, 2E+1)
        evidence = self.phi_evidence("slow").cpu().tolist()
        tokens = self.tokens_seen.cpu().tolist()
        n = self.n_experts
        phi = self.phi().cpu().tolist()  # (3, E), shrunk towards the prior as the router sees it
        degraded = self.degraded().cpu().tolist()
        share = estimate[2, n : 2 * n].tolist()
        psi = estimate[:, 2 * n].tolist()
        experts = tuple(
            ExpertCoherence(
                expert=e,
                phi_fast=phi[0][e],
                phi_mid=phi[1][e],
                phi_slow=phi[2][e],
                slow_evidence=evidence[e],
                tokens_seen=int(tokens[e]),
                routing_share_slow=share[e],
                degraded=bool(degraded[e]),
            )
            for e in range(n)
        )
        return CoherenceSnapshot(
            layer=self.layer,
            step=int(self.clocks.steps.cpu()),
            experts=experts,
            psi_fast=psi[0],
            psi_mid=psi[1],
            psi_slow=psi[2],
        )


class MultiLayerCoherence(nn.Module):
    """The coherence buffers of several MoE layers under one module (one snapshot call for all)."""

    def __init__(self, buffers: list[CoherenceBuffer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(buffers)

    @classmethod
    def create(cls, n_layers: int, n_experts: int, config: ChronoConfig) -> MultiLayerCoherence:
        return cls([CoherenceBuffer(n_experts, config, layer=i) for i in range(n_layers)])

    def __getitem__(self, layer: int) -> CoherenceBuffer:
        return self.layers[layer]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.layers)

    def snapshot(self) -> list[CoherenceSnapshot]:
        return [cast(CoherenceBuffer, buffer).snapshot() for buffer in self.layers]


def _forget_degraded_count(module: nn.Module, incompatible_keys: object) -> None:
    """After a state load the cached count belongs to the old state."""
    cast(CoherenceBuffer, module)._degraded_count = None
