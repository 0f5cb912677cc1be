"""ChronoSystem: one ``step()`` per training step drives the three clocks of every MoE layer.

- every step (fast clock): coherence, β and roles already advanced inside each training forward;
  here cooling experts warm in (entry offsets relax);
- every ``mid_interval`` steps (mid clock): disagreement escalation per layer on the mid-clock
  top-1 flip rate between clean and biased routing — warn, decay β (``k ×= beta_decay``) or reset
  β (``k = 0``), at thresholds calibrated on the layer's own baseline (escalation.py);
- every ``slow_interval`` steps (slow clock): lifecycle — relaxation trials for split-ready
  experts, edit proposals ranked by predicted ΔF and, where the trainer lends a probe, decided on
  held-out evidence (chronomoe.evidence; none in the last ``freeze_final_fraction`` of the run), at
  most one edit per layer, cooldown, and the measured F after the previous edit.

Every decision is a typed :class:`~chronomoe.decisions.Decision` (``step, clock, action, layer,
expert, coherence, free_energy {before, predicted, after}, competing, trigger, edit,
expert_delta``), appended to a JSONL log and returned by ``step()``. Edits are handled by kind
through the table :data:`chronomoe.edit_kinds.EDIT_KINDS`. The host reads device state only at mid
and slow evaluations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch

from chronomoe.buffer import CoherenceSnapshot
from chronomoe.config import ChronoConfig
from chronomoe.decisions import Decision
from chronomoe.edit_kinds import EDIT_KINDS, Candidate, EditKind, edit_kind
from chronomoe.edits import choose, layer_view, propose_edits, split_candidates
from chronomoe.escalation import EscalationCalibrator, escalate_beta
from chronomoe.evidence import BaselineCache, best_on_evidence, editing_open, score
from chronomoe.expert_registry import ExpertRegistry, LifecycleError
from chronomoe.free_energy import free_energy
from chronomoe.identity import epoch_shift, is_scar, psi_mid_slow, reflex_candidates, reflex_gates
from chronomoe.kernel import Kernel, Write
from chronomoe.lifecycle import layer_health
from mosaic.core.atomic import append_text
from mosaic.core.contract.protocols import TrainingProbe


@attrs.define
class StepReport:
    step: int
    control: list[Decision] = attrs.Factory(list)  # mid-clock escalations
    actions: list[Decision] = attrs.Factory(list)  # slow-clock lifecycle decisions
    coherence: list[CoherenceSnapshot] | None = None  # snapshots taken at a slow evaluation


class ChronoSystem:
    def __init__(
        self,
        layers: list[Any],
        config: ChronoConfig,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        n_active: int | None = None,
        log_path: str | Path | None = None,
        kernel: Kernel | None = None,
        seed: int = 0,
        edit_kinds: dict[str, EditKind] | None = None,
        probe: TrainingProbe | None = None,
    ) -> None:
        for index, moe in enumerate(layers):
            if getattr(moe.router, "role", None) is None:
                raise LifecycleError(
                    f"layer {index}: the lifecycle needs router.chrono with track_roles: true"
                )
        self.layers = layers
        self.config = config
        self.edit_kinds = EDIT_KINDS if edit_kinds is None else edit_kinds
        self.registries = [
            ExpertRegistry(moe, config.lifecycle, n_active=n_active, optimizer=optimizer, seed=seed + i)
            for i, moe in enumerate(layers)
        ]
        self.log_path = Path(log_path) if log_path is not None else None
        self.step_count = 0
        self.trials: list[dict[int, int]] = [{} for _ in layers]  # expert -> step the trial began
        self.last_edit: list[int | None] = [None] * len(layers)
        self.pending: list[Decision | None] = [None] * len(layers)  # last edit awaiting its measured F
        self.kernel = kernel
        self.scars: set[tuple[int, str]] = set()  # (layer, edit kind) forbidden for good
        self.expert_scars: set[tuple[int, str, int]] = set()  # (layer, edit kind, expert) forbidden
        self.propose_identity = True  # False when keepers propose (chronomoe.sovereign)
        self.trial_log: list[dict[str, Any]] = []  # every scored trial with its realised dloss
        self.calibrators = [EscalationCalibrator(config.lifecycle) for _ in layers]
        self.probe = probe  # held-out trial losses (chronomoe.evidence); None: predicted dF alone
        self.baseline = BaselineCache()

    # --- the clocks ----------------------------------------------------------------------------

    def step(self) -> StepReport:
        self.step_count += 1
        report = StepReport(self.step_count)
        for registry in self.registries:
            registry.tick()
        if self.kernel is not None:
            for write in self.kernel.advance(self.step_count, self._evidence):
                report.control.append(self._log(self._enact(write)))
        lc = self.config.lifecycle
        if self.step_count % lc.mid_interval == 0:
            for layer in range(len(self.layers)):
                report.control.extend(self._log(r) for r in self._escalate(layer))
                if self.kernel is not None and self.propose_identity:
                    report.control.extend(self._log(r) for r in self._propose_identity(layer, self.kernel))
        if self.step_count % lc.slow_interval == 0:
            report.coherence = [moe.router.coherence.snapshot() for moe in self.layers]
            for layer, snapshot in enumerate(report.coherence):
                report.actions.extend(self._log(r) for r in self._lifecycle(layer, snapshot))
        return report

    def _escalate(self, layer: int) -> list[Decision]:
        lc = self.config.lifecycle
        state = self.layers[layer].router.state
        flip, fisher_rao = state.disagreement.estimate_at(0).cpu().tolist()
        calibrator = self.calibrators[layer]
        action, just_calibrated = calibrator.observe(flip)
        escalate_beta(state, action, lc.beta_decay)
        records = []
        if action is not None:
            records.append(
                self._record("mid", action, layer, None, trigger=f"mid flip rate {flip:.3f} (Fisher–Rao {fisher_rao:.4f})")
            )
        if just_calibrated:
            t = calibrator.thresholds()
            records.append(
                self._record(
                    "mid",
                    "escalation_calibrated",
                    layer,
                    None,
                    trigger=f"baseline of {len(calibrator.baseline)} readings: warn {t.warn:.4f}, "
                    f"decay {t.decay:.4f}, reset {t.reset:.4f}",
                )
            )
        return records

    def _lifecycle(self, layer: int, snapshot: CoherenceSnapshot) -> list[Decision]:
        registry = self.registries[layer]
        registry.slow_cycle()
        f_now = free_energy(layer_view(registry), self.config.lifecycle).total
        records = self._measure_pending(layer, snapshot, f_now)
        passed = self._relaxation_trials(layer, snapshot, records)
        return records + self._edit(layer, snapshot, passed)

    def _measure_pending(self, layer: int, snapshot: CoherenceSnapshot, f_now: float) -> list[Decision]:
        """The measured F after the previous edit, and a scar proposal when that edit raised it."""
        pending = self.pending[layer]
        if pending is None:
            return []
        records = [
            self._record("slow", "outcome", layer, pending.expert, snapshot=snapshot,
                         free_energy={**pending.free_energy, "after": f_now},
                         trigger=f"measured after {pending.action}")
        ]
        self.pending[layer] = None
        before = pending.free_energy["before"]
        if self.kernel is not None and self.propose_identity and is_scar(before, f_now, self.config):
            key = f"scar/layer{layer}/{pending.action}"
            self.kernel.propose(
                "scar",
                key,
                {"layer": layer, "action": pending.action, "f_before": before, "f_after": f_now},
            )
            records.append(
                self._record("slow", "propose_scar", layer, pending.expert,
                             trigger=f"{pending.action} raised F {before:.4f} -> {f_now:.4f}")
            )
        return records

    def _relaxation_trials(self, layer: int, snapshot: CoherenceSnapshot, records: list[Decision]) -> list[int]:
        """Hold β at 0 for split-ready experts; a split is real only if bimodality survives the trial.
        Appends the trial decisions to ``records``; returns the experts whose trial passed."""
        state = self.layers[layer].router.state
        trials = self.trials[layer]
        ready = split_candidates(self.registries[layer], snapshot, self.config)
        for expert in ready:
            if expert not in trials:
                trials[expert] = self.step_count
                state.held[expert] = True
                records.append(
                    self._record("slow", "relaxation_trial", layer, expert, snapshot=snapshot,
                                 trigger="split-ready: holding beta at 0")
                )
        passed = []
        for expert, began in sorted(trials.items()):
            if self.step_count - began < self.config.lifecycle.relaxation_steps:
                continue
            state.held[expert] = False
            del trials[expert]
            if expert in ready:
                passed.append(expert)
            else:
                records.append(
                    self._record("slow", "trial_rejected", layer, expert, snapshot=snapshot,
                                 trigger="bimodality vanished with beta held at 0: beta-induced")
                )
        return passed

    def _edit(self, layer: int, snapshot: CoherenceSnapshot, passed: list[int]) -> list[Decision]:
        """At most one edit: the proposal with the best predicted ΔF, outside cooldown and scars."""
        lc = self.config.lifecycle
        registry = self.registries[layer]
        health = layer_health(snapshot, self.config)
        f_before, proposals = propose_edits(registry, snapshot, health, passed, self.config, self.edit_kinds,
                                            explore=self.probe is not None)
        proposals, blocked = self._respect_scars(layer, proposals)
        competing = [p.to_json() for p in sorted(proposals, key=lambda p: (p.delta, p.action, p.expert))]
        last_edit = self.last_edit[layer]
        cooling_down = last_edit is not None and self.step_count - last_edit < lc.cooldown_steps
        closed = not editing_open(self.step_count, self.probe, lc)
        records: list[Decision] = blocked
        if cooling_down or closed:
            chosen = None
        elif self.probe is None:
            chosen = choose(proposals, lc.min_delta_f)
        else:
            scored = score(self, layer, proposals, self.probe, self.baseline)
            self.trial_log.extend({"step": self.step_count, "layer": layer, "action": s.proposal.action,
                                   "expert": s.proposal.expert, "delta_loss": s.delta_loss}
                                  for s in scored if s.delta_loss is not None)
            records = blocked + [
                self._record("slow", "scored", layer, s.proposal.expert, other=s.proposal.other,
                             free_energy={"before": s.proposal.f_before, "predicted": s.proposal.f_predicted},
                             evidence=s.to_json(), trigger=s.refused or f"trial of {s.proposal.action}")
                for s in scored
            ]
            best = best_on_evidence(scored, lc.evidence_margin)
            chosen = None if best is None else best.proposal
        if chosen is None:
            if closed:
                reason = f"final {lc.freeze_final_fraction:.0%} of training: no edits"
            elif cooling_down:
                reason = "cooldown"
            elif not proposals:
                reason = "no candidate"
            elif self.probe is None:
                reason = f"best predicted dF above -{lc.min_delta_f}"
            else:
                reason = f"no scored edit has a predicted dF (probe dloss + price) below -{lc.evidence_margin}"
            return records + [
                self._record("slow", "none", layer, None, snapshot=snapshot, free_energy={"before": f_before},
                             competing=competing, trigger=reason)
            ]
        self.last_edit[layer] = self.step_count
        free = {"before": chosen.f_before, "predicted": chosen.f_predicted}
        if self.kernel is not None:
            payload = {"layer": layer, **chosen.to_json()}
            if not self.kernel.write("edit", f"edit/step{self.step_count}/layer{layer}", payload):
                return [
                    self._record("slow", f"queued_{chosen.action}", layer, chosen.expert, snapshot=snapshot,
                                 free_energy=free, competing=competing,
                                 trigger="kernel write budget spent: queued", other=chosen.other)
                ]
        live_before = len(self.registries[layer].live())
        kind = self.apply_edit(layer, chosen.action, chosen.candidate)
        change = len(self.registries[layer].live()) - live_before
        self.baseline.invalidate()
        record = self._record("slow", chosen.action, layer, chosen.expert, snapshot=snapshot,
                              free_energy=free, competing=competing, trigger=chosen.trigger,
                              other=chosen.other, edit=kind, expert_delta=change)
        self.pending[layer] = record
        return records + [record]

    def _respect_scars(self, layer: int, proposals: list[Any]) -> tuple[list[Any], list[Decision]]:
        """The proposals no scar forbids, and a ``blocked_by_scar`` record (audited by the kernel)
        for each one a scar keeps from being tried."""
        kept, blocked = [], []
        for p in proposals:
            scar = (f"scar/layer{layer}/{p.action}" if (layer, p.action) in self.scars else
                    f"scar/layer{layer}/{p.action}/expert{p.expert}" if (layer, p.action, p.expert)
                    in self.expert_scars else None)
            if scar is None:
                kept.append(p)
                continue
            if self.kernel is not None:
                self.kernel.block(scar, layer, p.action, p.expert, self.step_count)
            blocked.append(self._record("slow", "blocked_by_scar", layer, p.expert, other=p.other,
                                        trigger=f"{p.action} forbidden by {scar}"))
        return kept, blocked

    # --- identity events and the kernel ----------------------------------------------------------

    def _propose_identity(self, layer: int, kernel: Kernel) -> list[Decision]:
        moe, records = self.layers[layer], []
        for expert, gates in reflex_candidates(moe, self.registries[layer].live(), self.config):
            kernel.propose(
                "reflex",
                f"reflex/layer{layer}/expert{expert}",
                {"layer": layer, "expert": expert, "k": float(moe.router.state.k[expert])},
            )
            records.append(
                self._record("mid", "propose_reflex", layer, expert, trigger=f"five gates pass: {gates}")
            )
        shifted, psi_mid, psi_slow = epoch_shift(moe, self.config)
        if shifted:
            kernel.propose(
                "epoch",
                f"epoch/layer{layer}/step{self.step_count}",
                {"layer": layer, "psi_mid": psi_mid, "psi_slow_before": psi_slow},
            )
            records.append(
                self._record("mid", "propose_epoch", layer, None,
                             trigger=f"psi_mid {psi_mid:.3f} vs psi_slow {psi_slow:.3f}")
            )
        return records

    def _evidence(self, write: Write) -> bool:
        """Does the evidence behind a proposal from the last window still hold?"""
        layer = write.payload["layer"]
        if write.kind == "reflex":
            expert = write.payload["expert"]
            return self.registries[layer].states[expert] != "archived" and all(
                reflex_gates(self.layers[layer], expert, self.config).values()
            )
        if write.kind == "epoch":
            psi_mid, _ = psi_mid_slow(self.layers[layer])
            return abs(psi_mid - write.payload["psi_slow_before"]) >= self.config.kernel.epoch_psi_shift
        if write.kind == "scar" and "delta_loss" in write.payload:  # the trainer's own trial record
            return write.payload["delta_loss"] > self.config.kernel.scar_delta_loss
        if write.kind == "scar":
            f_now = free_energy(layer_view(self.registries[layer]), self.config.lifecycle).total
            return is_scar(write.payload["f_before"], f_now, self.config)
        return True

    def _enact(self, write: Write) -> Decision:
        """Carry out a write the kernel has just finalised."""
        layer = write.payload["layer"]
        if write.kind == "reflex":
            self.layers[layer].router.state.crystallised[write.payload["expert"]] = True
            return self._record(
                "mid", "reflex_crystallised", layer, write.payload["expert"], trigger=write.key
            )
        if write.kind == "scar":
            if write.payload.get("expert") is None:
                self.scars.add((layer, write.payload["action"]))
            else:
                self.expert_scars.add((layer, write.payload["action"], int(write.payload["expert"])))
            return self._record("slow", "scar_formed", layer, write.payload.get("expert"), trigger=write.key)
        if write.kind == "epoch":
            return self._record("mid", "epoch_boundary", layer, None, trigger=write.key)
        action, candidate = write.payload["action"], Candidate(write.payload["expert"], write.payload["other"], "")
        stale = self.edit_guard(layer, action, candidate)
        if stale is not None:
            return self._record("slow", f"stale_{action}", layer, candidate.expert, trigger=stale)
        live_before = len(self.registries[layer].live())
        kind = self.apply_edit(layer, action, candidate)
        return self._record("slow", action, layer, candidate.expert, other=candidate.other,
                            trigger=f"queued edit finalised ({write.key})", edit=kind,
                            expert_delta=len(self.registries[layer].live()) - live_before)

    # --- edits, by kind ---------------------------------------------------------------------------

    def edit_guard(self, layer: int, action: str, candidate: Candidate) -> str | None:
        """Why an edit decided earlier (a queued kernel write) no longer applies, or None."""
        kind = edit_kind(action, self.edit_kinds)
        live = self.registries[layer].live()
        if candidate.expert not in live or (kind.expert_delta < 0 and candidate.other is not None
                                            and candidate.other not in live):
            return "queued edit no longer applies"
        return kind.guard(self.registries[layer], candidate)

    def apply_edit(self, layer: int, action: str, candidate: Candidate) -> EditKind:
        """Carry out the edit ``action`` (a row of the edit table) on ``layer``; returns the row.
        Raises :class:`LifecycleError` for an unknown kind or an edit the registry refuses."""
        kind = edit_kind(action, self.edit_kinds)
        kind.apply(self.registries[layer], candidate)
        self.registries[layer].sync_capacity()
        return kind

    # --- records --------------------------------------------------------------------------------

    def _record(
        self,
        clock: str,
        action: str,
        layer: int,
        expert: int | None,
        *,
        snapshot: CoherenceSnapshot | None = None,
        free_energy: dict | None = None,
        competing: list | None = None,
        trigger: str = "",
        other: int | None = None,
        edit: EditKind | None = None,
        evidence: dict[str, float] | None = None,
        expert_delta: int | None = None,
    ) -> Decision:
        """``expert_delta``: the change the edit made (default: its kind's ``expert_delta``)."""
        coherence = None
        if snapshot is not None:
            coherence = {"psi_slow": snapshot.psi_slow}
            if expert is not None:
                stats = snapshot.experts[expert]
                coherence.update(
                    phi_slow=stats.phi_slow, phi_fast=stats.phi_fast, tokens_seen=stats.tokens_seen
                )
        return Decision(
            step=self.step_count, clock=clock, action=action, layer=layer, expert=expert, other=other,
            coherence=coherence, free_energy=free_energy or {}, competing=competing or [], trigger=trigger,
            edit=edit is not None,
            expert_delta=0 if edit is None else (edit.expert_delta if expert_delta is None else expert_delta),
            evidence=evidence or {},
        )

    def _log(self, record: Decision) -> Decision:
        if self.log_path is not None:
            append_text(self.log_path, json.dumps(record.to_json(), sort_keys=True) + "\n")
        return record

    # --- checkpoint -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "scars": sorted([layer, action] for layer, action in self.scars),
            "expert_scars": sorted([layer, action, expert] for layer, action, expert in self.expert_scars),
            "kernel": self.kernel.state_dict() if self.kernel is not None else None,
            "step": self.step_count,
            "registries": [r.state_dict() for r in self.registries],
            "trials": [dict(t) for t in self.trials],
            "last_edit": list(self.last_edit),
            "pending": [None if p is None else p.to_json() for p in self.pending],
            "calibrators": [c.state_dict() for c in self.calibrators],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["registries"]) != len(self.registries):
            raise LifecycleError(
                f"checkpoint has {len(state['registries'])} layers, system has {len(self.registries)}"
            )
        self.step_count = int(state["step"])
        for registry, registry_state in zip(self.registries, state["registries"], strict=True):
            registry.load_state_dict(registry_state)
        self.trials = [{int(k): int(v) for k, v in t.items()} for t in state["trials"]]
        self.last_edit = list(state["last_edit"])
        self.pending = [None if p is None else Decision.from_json(p) for p in state["pending"]]
        self.scars = {(int(layer), str(action)) for layer, action in state["scars"]}
        self.expert_scars = {(int(la), str(a), int(e)) for la, a, e in state.get("expert_scars", [])}
        for calibrator, calibrator_state in zip(self.calibrators, state["calibrators"], strict=True):
            calibrator.load_state_dict(calibrator_state)
        if self.kernel is not None and state["kernel"] is not None:
            self.kernel.load_state_dict(state["kernel"])
