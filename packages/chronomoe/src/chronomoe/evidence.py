"""Edits decided on evidence: a candidate is scored by its effect on held-out loss.

With a :class:`~mosaic.core.contract.protocols.TrainingProbe` lent by the trainer, up to
``evidence_candidates`` proposals of a layer — the best of each edit kind by the coherence model's
ΔF, which only picks what to try — are each tried: the probe applies the edit to the live model,
relaxes it for ``evidence_relax_steps`` optimizer steps on training batches, measures the loss on
two disjoint held-out sets and restores the model and the optimizer; the registry's own bookkeeping
is restored here. The unedited model is relaxed on the same batches (``baseline``).

F_l is measured here, not modelled: ``F = L_probe + evidence_lambda · N`` (nats), so an edit's
predicted ``ΔF = ΔL_probe + evidence_lambda · expert_delta``. The coherence-based F
(chronomoe.free_energy) predicted the opposite sign of the loss change (its Ψ falls as experts
specialise while the loss falls); it is kept as ``delta_f_proxy`` in the record. The best scored
edit is taken only when its predicted ΔF < −``evidence_margin``. Its realised effect is the Δloss
on the check set (``delta_loss_realised``), which the decision never reads: the benchmark's rank
correlation between predicted ΔF and realised Δloss is computed on disjoint data.

A trial of an edit that adds experts (spawn, split, widen) relaxes ``evidence_growth_relax_steps``
when set: a new expert costs loss for its first few hundred steps and pays after, so a few steps of
relaxation see only the cost (the unedited baseline is relaxed as long, on the same batches).

A new expert (spawn, split) enters behind an entry offset that the slow clock relaxes over
``warmup_steps``; a trial of a few relaxation steps therefore sees it barely routed. With
``evidence_warm_trial`` the trial removes the offset of the new column, so growth is judged with the
expert in (the model, offsets included, is restored after the trial either way).

No edit is taken in the last ``freeze_final_fraction`` of training (the probe says how long the run
is): an edit needs steps after it to pay for itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch

from chronomoe.config import LifecycleConfig
from chronomoe.edit_kinds import edit_kind
from chronomoe.edits import EditProposal
from chronomoe.expert_registry import LifecycleError
from mosaic.core.contract.protocols import TrainingProbe

if TYPE_CHECKING:
    from chronomoe.system import ChronoSystem


@attrs.frozen
class ScoredEdit:
    proposal: EditProposal
    loss_base: float  # probe-set loss of the unedited model after the relaxation
    loss_edit: float | None  # None: the registry refused the edit inside the trial
    refused: str = ""
    price: float = 0.0  # evidence_lambda · the edit's change in live experts
    check_base: float | None = None  # check-set losses (None: the probe has no check set)
    check_edit: float | None = None

    @property
    def delta_loss(self) -> float | None:
        """Probe-set Δloss (what the decision reads)."""
        return None if self.loss_edit is None else self.loss_edit - self.loss_base

    @property
    def delta_f(self) -> float | None:
        """Predicted ΔF = probe Δloss + the price of the experts the edit adds or removes."""
        delta = self.delta_loss
        return None if delta is None else delta + self.price

    @property
    def delta_loss_realised(self) -> float | None:
        """Check-set Δloss: disjoint from the probe set, never read by the decision."""
        if self.check_edit is None or self.check_base is None:
            return None
        return self.check_edit - self.check_base

    def to_json(self) -> dict[str, float]:
        record = {"delta_f_proxy": self.proposal.delta, "loss_base": self.loss_base, "price": self.price}
        if self.loss_edit is not None:
            record.update(loss_edit=self.loss_edit, delta_loss=self.loss_edit - self.loss_base,
                          delta_f_predicted=self.loss_edit - self.loss_base + self.price)
        realised = self.delta_loss_realised
        if realised is not None:
            record["delta_loss_realised"] = realised
        return record


def editing_open(step: int, probe: TrainingProbe | None, config: LifecycleConfig) -> bool:
    """False in the last ``freeze_final_fraction`` of a run of known length."""
    if probe is None:
        return True
    return step <= (1.0 - config.freeze_final_fraction) * probe.total_steps


class BaselineCache:
    """The unedited model's relaxed (probe, check) losses at this step, per relaxation length, until
    an edit changes the model."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.losses: dict[int, tuple[float, float | None]] = {}

    def get(self, step: int, probe: TrainingProbe, relax_steps: int) -> tuple[float, float | None]:
        if self.step != step:
            self.losses, self.step = {}, step
        if relax_steps not in self.losses:
            self.losses[relax_steps] = probe.trial_losses(None, relax_steps)
        return self.losses[relax_steps]

    def invalidate(self) -> None:
        self.step = None


def relaxation_of(expert_delta: int, config: LifecycleConfig) -> int:
    """Trial length of an edit: ``evidence_growth_relax_steps`` for one that adds experts."""
    if expert_delta > 0 and config.evidence_growth_relax_steps is not None:
        return config.evidence_growth_relax_steps
    return config.evidence_relax_steps


def candidates(proposals: list[EditProposal], count: int) -> list[EditProposal]:
    """The best proposal of each edit kind by the coherence model's ΔF, best first, at most ``count``."""
    ranked = sorted(proposals, key=lambda p: (p.delta, p.action, p.expert))
    best: dict[str, EditProposal] = {}
    for proposal in ranked:
        best.setdefault(proposal.action, proposal)
    return list(best.values())[:count]


def score(
    system: ChronoSystem,
    layer: int,
    proposals: list[EditProposal],
    probe: TrainingProbe,
    baseline: BaselineCache,
) -> list[ScoredEdit]:
    """The candidates (:func:`candidates`), each tried on the model."""
    lc = system.config.lifecycle
    ranked = candidates(proposals, lc.evidence_candidates)
    if not ranked:
        return []
    registry = system.registries[layer]
    scored = []
    for proposal in ranked:
        kind = edit_kind(proposal.action, system.edit_kinds)
        relax_steps = relaxation_of(kind.expert_delta, lc)
        base, check_base = baseline.get(system.step_count, probe, relax_steps)
        saved = registry.state_dict()
        price = lc.evidence_lambda * kind.change(registry, proposal.candidate)

        def edit(proposal: EditProposal = proposal) -> None:
            before = set(registry.live())
            system.apply_edit(layer, proposal.action, proposal.candidate)
            if lc.evidence_warm_trial:  # a new expert is tried fully in, not behind its entry offset
                offset = system.layers[layer].router.columns.entry_offset
                with torch.no_grad():
                    for column in set(registry.live()) - before:
                        offset[column] = 0.0

        try:
            loss, check = probe.trial_losses(edit, relax_steps)
        except LifecycleError as exc:
            scored.append(ScoredEdit(proposal, base, None, refused=str(exc), price=price))
            continue
        finally:
            registry.load_state_dict(saved)
        scored.append(ScoredEdit(proposal, base, loss, price=price, check_base=check_base, check_edit=check))
    return scored


def best_on_evidence(scored: list[ScoredEdit], margin: float) -> ScoredEdit | None:
    """The scored edit with the lowest predicted ΔF, if it is below ``-margin``."""
    tried = [(delta, s) for s in scored if (delta := s.delta_f) is not None]
    if not tried:
        return None
    delta, best = min(tried, key=lambda pair: (pair[0], pair[1].proposal.action, pair[1].proposal.expert))
    return best if delta < -margin else None
