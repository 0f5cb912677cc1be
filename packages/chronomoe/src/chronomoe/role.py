"""RoleState: what each expert *does*, kept apart from coherence ("am I aligned?") and from the
router's bias ("what biases exist?").

- ``role``: slow debiased EMA of each expert's mean output direction;
- ``coactivation``: slow debiased EMA of how often two experts are selected for the same token
  (diagonal: how often each is selected);
- bimodality: two output centroids per expert, updated as online 2-means — each output joins the
  centroid it is closer to in cosine, each centroid moves toward its batch mean by EMA — and
  ``score = (1 − cos(c1, c2)) · min(n1, n2) / max(n1, n2)`` (separation × balance, ``n`` the EMA
  of the per-step counts). ``split_ready`` switches on above ``split_on`` and off below
  ``split_off`` (hysteresis).

Everything is a buffer updated on the device without host synchronisation.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from chronomoe.clocks import DebiasedEMA
from chronomoe.coherence import MoETrace
from chronomoe.config import ChronoConfig


@attrs.frozen
class RoleSnapshot:
    """Host copy of one layer's role state."""

    role: tuple[tuple[float, ...], ...]  # (E, D)
    coactivation: tuple[tuple[float, ...], ...]  # (E, E)
    centroids: tuple[tuple[tuple[float, ...], ...], ...]  # (E, 2, D)
    bimodality: tuple[float, ...]  # (E,)
    split_ready: tuple[bool, ...]  # (E,)


class RoleState(nn.Module):
    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    init_direction: torch.Tensor
    centroids: torch.Tensor
    centroid_mass: torch.Tensor
    initialised: torch.Tensor
    bimodality: torch.Tensor
    split_ready: torch.Tensor

    def __init__(self, n_experts: int, d_model: int, config: ChronoConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.n_experts, self.d_model = n_experts, d_model
        slow = config.clocks.alpha_slow
        self.role = DebiasedEMA((slow,), (n_experts, d_model))
        self.coactivation = DebiasedEMA((slow,), (n_experts, n_experts))
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "init_direction", F.normalize(torch.randn(n_experts, d_model, generator=generator), dim=-1)
        )
        self.register_buffer("centroids", torch.zeros(n_experts, 2, d_model))
        self.register_buffer("centroid_mass", torch.zeros(n_experts, 2))
        self.register_buffer("initialised", torch.zeros(n_experts, dtype=torch.bool))
        self.register_buffer("bimodality", torch.zeros(n_experts))
        self.register_buffer("split_ready", torch.zeros(n_experts, dtype=torch.bool))

    @torch.no_grad()
    def observe(self, trace: MoETrace) -> None:
        seen = trace.expert_tokens > 0  # (E,)
        means = trace.expert_means()  # (E, D)
        self.role.update(means, seen.unsqueeze(-1).expand_as(means))
        selected = torch.zeros_like(trace.probs).scatter_(
            1, trace.expert_idx, trace.kept.to(trace.probs.dtype)
        )
        self.coactivation.update(selected.t() @ selected / trace.n_tokens)  # (E, E)
        self._update_centroids(trace, seen, means)

    def _update_centroids(self, trace: MoETrace, seen: torch.Tensor, means: torch.Tensor) -> None:
        lc = self.config.lifecycle
        # a new expert's centroids start either side of its mean along a fixed random direction
        spread = 0.1 * means.norm(dim=-1, keepdim=True).clamp_min(1e-6) * self.init_direction  # (E, D)
        start = torch.stack([means + spread, means - spread], dim=1)  # (E, 2, D)
        fresh = (seen & ~self.initialised).view(-1, 1, 1)
        self.centroids.copy_(torch.where(fresh, start, self.centroids))
        self.initialised.logical_or_(seen)

        experts = trace.assignment_experts()  # (M,)
        outputs = trace.assignment_outputs  # (M, D), meaningless where dropped: member weight 0 there
        kept = trace.kept.t().reshape(-1).to(outputs.dtype)  # (M,)
        cosines = F.cosine_similarity(
            outputs.unsqueeze(1), self.centroids[experts], dim=-1, eps=1e-8
        )  # (M, 2)
        nearer_second = (cosines[:, 1] > cosines[:, 0]).to(outputs.dtype)  # (M,)
        member = torch.stack([1.0 - nearer_second, nearer_second], dim=-1) * kept.unsqueeze(-1)  # (M, 2)
        sums = outputs.new_zeros(self.n_experts, 2, self.d_model).index_add_(
            0, experts, member.unsqueeze(-1) * outputs.unsqueeze(1)
        )  # (E, 2, D)
        counts = outputs.new_zeros(self.n_experts, 2).index_add_(0, experts, member)  # (E, 2)
        batch_means = sums / counts.clamp_min(1.0).unsqueeze(-1)
        alpha = lc.centroid_alpha
        moved = alpha * self.centroids + (1 - alpha) * batch_means
        self.centroids.copy_(torch.where((counts > 0).unsqueeze(-1), moved, self.centroids))
        observed = seen.unsqueeze(-1).to(counts.dtype)
        self.centroid_mass.copy_(
            torch.where(observed > 0, alpha * self.centroid_mass + (1 - alpha) * counts, self.centroid_mass)
        )
        self.bimodality.copy_(bimodality_score(self.centroids, self.centroid_mass))
        on = self.bimodality > lc.split_on
        off = self.bimodality < lc.split_off
        self.split_ready.copy_(
            torch.where(on, torch.ones_like(on), torch.where(off, torch.zeros_like(off), self.split_ready))
        )

    @torch.no_grad()
    def reset_expert(self, expert: int) -> None:
        """Forget everything about one expert (a new or repurposed column)."""
        for ema in (self.role,):
            ema.numerator[:, expert] = 0
            ema.weight[:, expert] = 0
        self.coactivation.numerator[:, expert] = 0
        self.coactivation.numerator[:, :, expert] = 0
        self.coactivation.weight[:, expert] = 0
        self.coactivation.weight[:, :, expert] = 0
        self.centroids[expert] = 0
        self.centroid_mass[expert] = 0
        self.initialised[expert] = False
        self.bimodality[expert] = 0
        self.split_ready[expert] = False

    def snapshot(self) -> RoleSnapshot:
        role = self.role.estimate_at(0).cpu()
        coact = self.coactivation.estimate_at(0).cpu()
        return RoleSnapshot(
            role=tuple(map(tuple, role.tolist())),
            coactivation=tuple(map(tuple, coact.tolist())),
            centroids=tuple(tuple(map(tuple, c)) for c in self.centroids.cpu().tolist()),
            bimodality=tuple(self.bimodality.cpu().tolist()),
            split_ready=tuple(bool(b) for b in self.split_ready.cpu().tolist()),
        )


def bimodality_score(centroids: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """``(1 − cos(c1, c2)) · min(n1, n2)/max(n1, n2)`` per expert, from (E, 2, D) and (E, 2)."""
    separation = 1.0 - F.cosine_similarity(centroids[:, 0], centroids[:, 1], dim=-1, eps=1e-8)
    balance = mass.min(-1).values / mass.max(-1).values.clamp_min(1e-12)
    return separation * balance
