"""Free energy of a MoE layer and the predicted effect of each structural edit.

``F_l = (1 − Ψ_l) + λ·N_l + ρ·R_l + κ·I_l`` over the layer's live experts, from slow-clock state:

- ``Ψ_l = Σ_e s_e φ_e``: misfit term, with ``s_e`` the expert's share of selections (the diagonal of
  the co-activation EMA, normalised) and ``φ_e`` its slow coherence;
- ``N_l``: the number of live experts (complexity tax);
- ``R_l`` (redundancy, functional): the mean over expert pairs of
  ``max(0, cos(role_i, role_j)) · C_ij / min(C_ii, C_jj)`` — two experts are redundant when they
  push the output the same way *and* are selected for the same tokens (``C`` the co-activation EMA);
- ``I_l`` (instability) ``= Σ_e s_e·b_e`` with ``b_e`` the bimodality score of the expert.

Each edit is predicted by transforming the layer description and recomputing F (``ΔF = F_after −
F_before``; negative is better):

- prune e: e disappears; its tokens are assumed to spread over the rest in proportion to their shares;
- merge j into i: one expert with the summed share, share-weighted φ and role, and bimodality
  ``(1 − cos(role_i, role_j)) · min(s_i, s_j)/max(s_i, s_j)`` (it now serves both roles);
- split e: two children whose roles are e's centroids, shares in proportion to the centroid masses,
  φ_e each, bimodality 0, never co-selected with each other;
- spawn (clone of the most selected expert e*): e*'s share is halved between parent and clone; the
  clone's φ is predicted optimistically as the best φ in the layer (a fresh expert fitting what the
  overloaded one does not). An optimistic heuristic, guarded by ``min_delta_f`` and by the fact that
  spawn is only proposed when the layer starves.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import torch
import torch.nn.functional as F

from chronomoe.config import LifecycleConfig


@attrs.frozen
class LayerView:
    """Slow-clock description of a layer's live experts (host tensors, float64)."""

    experts: tuple[int, ...]  # column ids
    phi: torch.Tensor  # (n,)
    share: torch.Tensor  # (n,) sums to 1
    role: torch.Tensor  # (n, D)
    coactivation: torch.Tensor  # (n, n), diagonal = selection frequency
    bimodality: torch.Tensor  # (n,)
    centroids: torch.Tensor  # (n, 2, D)
    centroid_mass: torch.Tensor  # (n, 2)

    @property
    def n(self) -> int:
        return len(self.experts)

    def index(self, expert: int) -> int:
        return self.experts.index(expert)

    def most_selected(self, experts: Iterable[int] | None = None) -> list[int]:
        """``experts`` (default: every live one), most selected first (slow-clock share), ties by
        column id: the order growth clones them in."""
        chosen = self.experts if experts is None else experts
        return sorted(chosen, key=lambda e: (-float(self.share[self.index(e)]), e))


@attrs.frozen
class FreeEnergy:
    misfit: float
    n_experts: int
    redundancy: float
    instability: float
    total: float

    def to_json(self) -> dict:
        return attrs.asdict(self)


def free_energy(view: LayerView, config: LifecycleConfig) -> FreeEnergy:
    misfit = 1.0 - float((view.share * view.phi).sum())
    redundancy = layer_redundancy(view)
    instability = float((view.share * view.bimodality).sum())
    total = misfit + config.lambda_n * view.n + config.rho * redundancy + config.kappa * instability
    return FreeEnergy(misfit, view.n, redundancy, instability, total)


def pair_redundancy(view: LayerView) -> torch.Tensor:
    """(n, n) ``max(0, cos(role_i, role_j)) · C_ij / min(C_ii, C_jj)``, zero diagonal, in [0, 1]."""
    unit = F.normalize(view.role, dim=-1)
    similarity = (unit @ unit.t()).clamp_min(0.0)
    diagonal = view.coactivation.diagonal()
    overlap = view.coactivation / torch.minimum(diagonal[:, None], diagonal[None, :]).clamp_min(1e-12)
    pairs = (similarity * overlap.clamp(0.0, 1.0)).fill_diagonal_(0.0)
    return pairs


def layer_redundancy(view: LayerView) -> float:
    if view.n < 2:
        return 0.0
    return float(pair_redundancy(view).sum() / (view.n * (view.n - 1)))


def _keep(view: LayerView, rows: list[int]) -> LayerView:
    index = torch.tensor(rows, dtype=torch.long)
    share = view.share[index]
    return LayerView(
        experts=tuple(view.experts[r] for r in rows),
        phi=view.phi[index],
        share=share / share.sum().clamp_min(1e-12),
        role=view.role[index],
        coactivation=view.coactivation[index][:, index],
        bimodality=view.bimodality[index],
        centroids=view.centroids[index],
        centroid_mass=view.centroid_mass[index],
    )


def after_prune(view: LayerView, expert: int) -> LayerView:
    e = view.index(expert)
    return _keep(view, [r for r in range(view.n) if r != e])


def after_merge(view: LayerView, survivor: int, absorbed: int) -> LayerView:
    i, j = view.index(survivor), view.index(absorbed)
    s_i, s_j = float(view.share[i]), float(view.share[j])
    total = max(s_i + s_j, 1e-12)
    phi, share, role = view.phi.clone(), view.share.clone(), view.role.clone()
    phi[i] = (s_i * view.phi[i] + s_j * view.phi[j]) / total
    role[i] = (s_i * view.role[i] + s_j * view.role[j]) / total
    share[i] = s_i + s_j
    coact = view.coactivation.clone()
    coact[i] = (coact[i] + coact[j]).clamp(max=1.0)
    coact[:, i] = coact[i]
    coact[i, i] = (view.coactivation[i, i] + view.coactivation[j, j]).clamp(max=1.0)
    bimodality = view.bimodality.clone()
    separation = 1.0 - float(F.cosine_similarity(view.role[i], view.role[j], dim=0))
    bimodality[i] = separation * min(s_i, s_j) / max(s_i, s_j, 1e-12)
    merged = attrs.evolve(view, phi=phi, share=share, role=role, coactivation=coact, bimodality=bimodality)
    return _keep(merged, [r for r in range(view.n) if r != j])


def after_split(view: LayerView, expert: int, child: int) -> LayerView:
    e = view.index(expert)
    mass = view.centroid_mass[e]
    fraction = mass / mass.sum().clamp_min(1e-12)  # (2,)
    n = view.n
    share = torch.cat([view.share, view.share[e : e + 1] * fraction[1]])
    share[e] = view.share[e] * fraction[0]
    coact = torch.zeros(n + 1, n + 1, dtype=view.coactivation.dtype)
    coact[:n, :n] = view.coactivation
    coact[e, :n] = view.coactivation[e] * fraction[0]
    coact[n, :n] = view.coactivation[e] * fraction[1]
    coact[:, e], coact[:, n] = coact[e], coact[n]
    coact[e, e] = view.coactivation[e, e] * fraction[0]
    coact[n, n] = view.coactivation[e, e] * fraction[1]
    coact[e, n] = coact[n, e] = 0.0
    role = torch.cat([view.role, view.centroids[e, 1:2]])
    role[e] = view.centroids[e, 0]
    bimodality = torch.cat([view.bimodality, view.bimodality.new_zeros(1)])
    bimodality[e] = 0.0
    return LayerView(
        experts=(*view.experts, child),
        phi=torch.cat([view.phi, view.phi[e : e + 1]]),
        share=share,
        role=role,
        coactivation=coact,
        bimodality=bimodality,
        centroids=torch.cat([view.centroids, view.centroids[e : e + 1]]),
        centroid_mass=torch.cat([view.centroid_mass, view.centroid_mass[e : e + 1] / 2]),
    )


def after_spawn(view: LayerView, source: int, child: int) -> LayerView:
    e = view.index(source)
    n = view.n
    share = torch.cat([view.share, view.share[e : e + 1] / 2])
    share[e] = view.share[e] / 2
    coact = torch.zeros(n + 1, n + 1, dtype=view.coactivation.dtype)
    coact[:n, :n] = view.coactivation
    coact[e, :n] = coact[n, :n] = view.coactivation[e] / 2
    coact[:, e], coact[:, n] = coact[e], coact[n]
    coact[e, e] = coact[n, n] = view.coactivation[e, e] / 2
    coact[e, n] = coact[n, e] = 0.0
    return LayerView(
        experts=(*view.experts, child),
        phi=torch.cat([view.phi, view.phi.max().view(1)]),
        share=share,
        role=torch.cat([view.role, view.role[e : e + 1]]),
        coactivation=coact,
        bimodality=torch.cat([view.bimodality, view.bimodality[e : e + 1]]),
        centroids=torch.cat([view.centroids, view.centroids[e : e + 1]]),
        centroid_mass=torch.cat([view.centroid_mass, view.centroid_mass[e : e + 1]]),
    )
