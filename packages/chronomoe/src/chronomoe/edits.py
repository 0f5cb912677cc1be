"""Edit proposals for one layer at a slow evaluation, scored by predicted ΔF.

At most one edit per layer per evaluation; "do nothing" unless the best predicted ΔF is at most
``-min_delta_f``. Candidates come from the rows of :data:`chronomoe.edit_kinds.EDIT_KINDS`:

- prune: φ_slow below ``prune_phi`` after ``prune_min_tokens`` tokens, layer not starving;
- split: split-ready (bimodality with hysteresis) and ``φ_slow > split_min_phi``, after a passed
  relaxation trial (see :class:`chronomoe.system.ChronoSystem`);
- merge: the most redundant pair of experts (survivor = the one with the larger share), among
  experts whose oscillation guard has run out (see ``edit_guard_cycles``);
- spawn: only while the layer starves (Neff / saturation), cloning the most selected expert.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import torch

from chronomoe.buffer import CoherenceSnapshot
from chronomoe.config import ChronoConfig
from chronomoe.edit_kinds import EDIT_KINDS, Candidate, EditContext, EditKind
from chronomoe.expert_registry import ExpertRegistry, LifecycleError
from chronomoe.free_energy import LayerView, free_energy
from chronomoe.lifecycle import LayerHealth


@attrs.frozen
class EditProposal:
    """A candidate of one edit kind with its predicted free energy."""

    action: str  # a name in chronomoe.edit_kinds.EDIT_KINDS
    expert: int  # the expert acted on (the survivor of a merge, the source of a spawn)
    other: int | None  # absorbed expert of a merge, the new column of a split or spawn
    f_before: float
    f_predicted: float
    trigger: str

    @property
    def delta(self) -> float:
        return self.f_predicted - self.f_before

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.expert, self.other, self.trigger)

    def to_json(self) -> dict:
        return {**attrs.asdict(self), "delta": self.delta}


def layer_view(registry: ExpertRegistry) -> LayerView:
    """The slow-clock description of the registry's live experts (host copy)."""
    router = registry.moe.router
    if getattr(router, "role", None) is None:
        raise LifecycleError("the lifecycle needs router.chrono with track_roles: true")
    live = registry.live()
    index = torch.tensor(live, dtype=torch.long)
    role = router.role
    coact = role.coactivation.estimate_at(0).detach().cpu().double()[index][:, index]
    diagonal = coact.diagonal().clamp_min(0.0)
    share = (
        diagonal / diagonal.sum() if float(diagonal.sum()) > 0 else torch.full_like(diagonal, 1 / len(live))
    )
    return LayerView(
        experts=tuple(live),
        phi=router.coherence.phi_slow().detach().cpu().double()[index],
        share=share,
        role=role.role.estimate_at(0).detach().cpu().double()[index],
        coactivation=coact,
        bimodality=role.bimodality.detach().cpu().double()[index],
        centroids=role.centroids.detach().cpu().double()[index],
        centroid_mass=role.centroid_mass.detach().cpu().double()[index],
    )


def propose_edits(
    registry: ExpertRegistry,
    snapshot: CoherenceSnapshot,
    health: LayerHealth,
    split_passed: list[int],
    config: ChronoConfig,
    kinds: Mapping[str, EditKind] | None = None,
    explore: bool = False,
) -> tuple[float, list[EditProposal]]:
    """F now and every candidate edit of every kind in ``kinds`` (the edit table by default) with
    its predicted F (unsorted); ``explore``: edits are decided on evidence, so the kinds also
    propose what their thresholds would not (see :class:`chronomoe.edit_kinds.EditContext`)."""
    lc = config.lifecycle
    view = layer_view(registry)
    f_now = free_energy(view, lc).total
    settled = [e for e in view.experts if registry.states[e] == "active"]
    context = EditContext(registry, snapshot, health, split_passed, config, view, settled, explore)
    proposals = []
    for kind in (EDIT_KINDS if kinds is None else kinds).values():
        for candidate in kind.propose(context):
            predicted = free_energy(kind.predict(view, candidate), lc).total
            proposals.append(EditProposal(kind.name, candidate.expert, candidate.other, f_now, predicted,
                                          candidate.trigger))
    return f_now, proposals


def choose(proposals: list[EditProposal], min_delta_f: float) -> EditProposal | None:
    """The proposal with the lowest predicted ΔF if it improves F by at least ``min_delta_f``."""
    if not proposals:
        return None
    best = min(proposals, key=lambda p: (p.delta, p.action, p.expert))
    return best if best.delta <= -min_delta_f else None


def split_candidates(
    registry: ExpertRegistry, snapshot: CoherenceSnapshot, config: ChronoConfig
) -> list[int]:
    """Settled, unguarded experts whose bimodality is split-ready and whose φ_slow is high enough."""
    role = registry.moe.router.role
    ready = role.split_ready.detach().cpu().tolist()
    return [
        e
        for e in registry.live()
        if registry.states[e] == "active"
        and registry.can_split(e)
        and ready[e]
        and snapshot.experts[e].phi_slow > config.lifecycle.split_min_phi
    ]
