"""Edits decided on evidence: a candidate is scored by its effect on held-out loss.

With a :class:`~mosaic.core.contract.protocols.TrainingProbe` lent by the trainer, the best
``evidence_candidates`` proposals of a layer (by predicted ΔF) are each tried: the probe applies the
edit to the live model, relaxes it for ``evidence_relax_steps`` optimizer steps on training batches,
measures the loss on its held-out probe batch and restores the model and the optimizer; the
registry's own bookkeeping is restored here. The unedited model is relaxed on the same batches
(``baseline``). Realised ``Δloss = loss_edit − loss_base``; the best scored edit is taken only when
``Δloss < −evidence_margin``. Every scored edit is recorded with its predicted ΔF and realised Δloss.

No edit is taken in the last ``freeze_final_fraction`` of training (the probe says how long the run
is): an edit needs steps after it to pay for itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from chronomoe.config import LifecycleConfig
from chronomoe.edits import EditProposal
from chronomoe.expert_registry import LifecycleError
from mosaic.core.contract.protocols import TrainingProbe

if TYPE_CHECKING:
    from chronomoe.system import ChronoSystem


@attrs.frozen
class ScoredEdit:
    proposal: EditProposal
    loss_base: float
    loss_edit: float | None  # None: the registry refused the edit inside the trial
    refused: str = ""

    @property
    def delta_loss(self) -> float | None:
        return None if self.loss_edit is None else self.loss_edit - self.loss_base

    def to_json(self) -> dict[str, float]:
        record = {"delta_f_predicted": self.proposal.delta, "loss_base": self.loss_base}
        if self.loss_edit is not None:
            record.update(loss_edit=self.loss_edit, delta_loss=self.loss_edit - self.loss_base)
        return record


def editing_open(step: int, probe: TrainingProbe | None, config: LifecycleConfig) -> bool:
    """False in the last ``freeze_final_fraction`` of a run of known length."""
    if probe is None:
        return True
    return step <= (1.0 - config.freeze_final_fraction) * probe.total_steps


class BaselineCache:
    """The unedited model's relaxed probe loss at this step, until an edit changes the model."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.loss = 0.0

    def get(self, step: int, probe: TrainingProbe, relax_steps: int) -> float:
        if self.step != step:
            self.loss = probe.trial_loss(None, relax_steps)
            self.step = step
        return self.loss

    def invalidate(self) -> None:
        self.step = None


def score(
    system: ChronoSystem,
    layer: int,
    proposals: list[EditProposal],
    probe: TrainingProbe,
    baseline: BaselineCache,
) -> list[ScoredEdit]:
    """The best ``evidence_candidates`` proposals by predicted ΔF, each tried on the model."""
    lc = system.config.lifecycle
    ranked = sorted(proposals, key=lambda p: (p.delta, p.action, p.expert))[: lc.evidence_candidates]
    if not ranked:
        return []
    base = baseline.get(system.step_count, probe, lc.evidence_relax_steps)
    registry = system.registries[layer]
    scored = []
    for proposal in ranked:
        saved = registry.state_dict()

        def edit(proposal: EditProposal = proposal) -> None:
            system.apply_edit(layer, proposal.action, proposal.candidate)

        try:
            loss = probe.trial_loss(edit, lc.evidence_relax_steps)
        except LifecycleError as exc:
            scored.append(ScoredEdit(proposal, base, None, refused=str(exc)))
            continue
        finally:
            registry.load_state_dict(saved)
        scored.append(ScoredEdit(proposal, base, loss))
    return scored


def best_on_evidence(scored: list[ScoredEdit], margin: float) -> ScoredEdit | None:
    """The scored edit with the lowest realised Δloss, if it is below ``-margin``."""
    tried = [(delta, s) for s in scored if (delta := s.delta_loss) is not None]
    if not tried:
        return None
    delta, best = min(tried, key=lambda pair: (pair[0], pair[1].proposal.action, pair[1].proposal.expert))
    return best if delta < -margin else None
