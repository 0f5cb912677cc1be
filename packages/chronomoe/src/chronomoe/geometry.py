"""Information geometry of routing distributions.

Routing distributions live on the probability simplex. Its Fisher information metric is, through
``p ↦ √p``, four times the round metric of the unit sphere's positive orthant, so:

- the Fisher–Rao (geodesic) distance between two distributions is ``2·arccos(Σ_i √(p_i q_i))``
  (twice the angle between ``√p`` and ``√q``): bounded by π, symmetric, zero only for ``p = q``,
  and unlike KL or JS it is a true metric that weighs a change near the simplex's edge (an expert
  going from 1 % to 0 %) more than the same change in the middle;
- a set of distributions can be measured in those coordinates: the *geodesic dimensionality* of
  ``{p_n}`` is the participation ratio ``(Σλ)² / Σλ²`` of the covariance eigenvalues ``λ`` of the
  points ``√p_n``, i.e. how many directions the distributions really spread in (1 when they move
  along one line, k when they spread evenly over k directions).
"""

from __future__ import annotations

import torch


def fisher_rao_distance(p: torch.Tensor, q: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Fisher–Rao distance between distributions along the last axis (``(..., E) -> (...)``).

    ``p`` and ``q`` must be non-negative; each is renormalised to sum to 1 (``eps`` is added first,
    to keep gradients finite at 0 when wanted)."""
    p = (p + eps) / (p + eps).sum(-1, keepdim=True)
    q = (q + eps) / (q + eps).sum(-1, keepdim=True)
    affinity = (p * q).sqrt().sum(-1).clamp(0.0, 1.0)  # Bhattacharyya coefficient
    return 2.0 * torch.arccos(affinity)


def sphere_coordinates(distributions: torch.Tensor) -> torch.Tensor:
    """``√p`` of each row of ``(N, E)`` (renormalised), the points the Fisher metric makes round."""
    p = distributions / distributions.sum(-1, keepdim=True)
    return p.clamp_min(0.0).sqrt()


def participation_ratio(points: torch.Tensor) -> torch.Tensor:
    """``(Σλ)² / Σλ²`` of the covariance of ``(N, D)`` points (0-d); 0 when they do not spread."""
    centred = points - points.mean(0, keepdim=True)
    covariance = centred.T @ centred / max(points.shape[0] - 1, 1)
    eigenvalues = torch.linalg.eigvalsh(covariance).clamp_min(0.0)
    total = eigenvalues.sum()
    if total <= 0:
        return total
    return total.square() / eigenvalues.square().sum()


def geodesic_dimensionality(distributions: torch.Tensor) -> torch.Tensor:
    """Participation ratio of ``√p`` over the rows of ``(N, E)`` distributions (0-d)."""
    return participation_ratio(sphere_coordinates(distributions))
