"""The sovereign core of a trainer-driven ChronoMoE run: kernel, audit log and keeper processes.

``layer.chrono_lifecycle`` with ``kernel: {...}`` (:class:`~chronomoe.training_config.SovereignConfig`)
builds one :class:`SovereignCore` at attach:

- the **audit log** ``chrono_audit.jsonl`` in the run directory (hash chain + signed checkpoint,
  :mod:`mosaic.core.audit`); its signing key lives outside the run directory (``key_file``, else
  ``$MOSAIC_AUDIT_KEY_FILE``, else ``audit.key`` in the user key directory), so ``mosaic audit
  verify RUN/chrono_audit.jsonl`` finds it the same way;
- the **kernel** (:mod:`chronomoe.kernel`), through which every lasting write of the run passes;
- one **keeper process per clock** (:mod:`chronomoe.keepers`), offered plain-data snapshots at its
  clock's interval (fast: ``fast_interval``; mid: ``mid_interval``; slow: ``slow_interval``).

Keepers only propose. The trainer *vets* each proposal inside the kernel: the keeper's numbers are
replaced by the trainer's own reading (reflex gates recomputed, Ψ read again, a scar's Δloss looked
up in the trainer's record of its counterfactual trials) or the proposal is refused and audited. The
kernel's two-step commit then finalises it one window later if that evidence persists:

- **scar**: a trial whose realised ``Δloss > scar_delta_loss`` forbids that edit kind for that
  expert; later proposals of it are blocked (``blocked_by_scar``, audited ``kernel.block``);
- **reflex**: the expert's β coefficient ``k`` is frozen (escalation and the β update leave it);
- **epoch**: the trainer's before snapshot (taken when the proposal is accepted) and after snapshot
  (taken when it is finalised) are audited as ``identity.epoch.snapshots``.

None can be undone except by :meth:`SovereignCore.revert_identity` (audited ``identity.revert``).
A keeper that crashes or hangs is reported (``Degraded``: a ``degraded`` decision and an audited
``keeper.degraded``), its clock pauses and it is restarted; ``keepers.json`` in the run directory
names the live keeper processes. Every ``mid_interval`` steps each layer's load signature (the
mid-clock routing share, content-blind) and the geodesic dimensionality of the signatures so far are
appended to ``chrono_signatures.jsonl``.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path
from typing import Any

import torch

from chronomoe.config import CLOCK_NAMES
from chronomoe.expert_registry import LifecycleError
from chronomoe.geometry import fisher_rao_distance, geodesic_dimensionality
from chronomoe.identity import psi_mid_slow, reflex_evidence, reflex_gates
from chronomoe.keepers import KeeperSpec, KeeperSupervisor, Proposal
from chronomoe.kernel import Kernel
from chronomoe.system import ChronoSystem, StepReport
from chronomoe.training_config import SovereignConfig
from mosaic.core.atomic import append_text, atomic_write_bytes
from mosaic.core.audit import AuditLog
from mosaic.core.config import unstructure_config
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.keys import AUDIT_KEY_NAME, key_path, load_or_create_key

AUDIT_FILE = "chrono_audit.jsonl"
SIGNATURES_FILE = "chrono_signatures.jsonl"
KEEPERS_FILE = "keepers.json"
KEY_FILE_ENV = "MOSAIC_AUDIT_KEY_FILE"


def audit_key_path(config: SovereignConfig, run_dir: Path) -> Path:
    """Where the run's audit key lives; refused inside the run directory (beside the log)."""
    path = key_path(AUDIT_KEY_NAME, config.key_file or os.environ.get(KEY_FILE_ENV) or None)
    if path.resolve().is_relative_to(run_dir.resolve()):
        raise LifecycleError(
            f"layer.chrono_lifecycle.kernel: the audit key {path} lies inside the run directory {run_dir}; "
            f"keep it outside (kernel.key_file, ${KEY_FILE_ENV} or the user key directory)"
        )
    return path


class SovereignCore:
    def __init__(self, system: ChronoSystem, config: SovereignConfig, run_dir: Path) -> None:
        self.system, self.config, self.run_dir = system, config, run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog(run_dir / AUDIT_FILE, key=load_or_create_key(audit_key_path(config, run_dir)))
        self.kernel = Kernel(system.config.kernel, self.audit)
        self.kernel.vet = self._vet
        system.kernel, system.propose_identity = self.kernel, False
        lc = system.config.lifecycle
        intervals = {"fast": config.fast_interval, "mid": lc.mid_interval, "slow": lc.slow_interval}
        specs = [
            KeeperSpec(clock, config.logic[clock], intervals[clock], timeout_s=config.keeper_timeout_s)
            for clock in CLOCK_NAMES
        ]
        self.events: list[EventEnvelope] = []
        self.supervisor = KeeperSupervisor(specs, self.kernel.submit, self.events.append).start()
        self._finalizer = weakref.finalize(self, self.supervisor.close)
        self.plain_config = unstructure_config(system.config)
        self.epoch_before: dict[str, dict[str, Any]] = {}
        self.loads: list[list[list[float]]] = [[] for _ in system.layers]
        self._trials_offered = 0
        self._write_keepers()

    # --- each step ------------------------------------------------------------------------------

    def tick(self, report: StepReport) -> list[dict[str, Any]]:
        """After the system's step: audit the epochs it finalised, run the keepers' clocks and
        settle their proposals; returns the decision records of this step."""
        step = self.system.step_count
        records = [
            self._epoch_after(d.trigger, d.layer) for d in report.control if d.action == "epoch_boundary"
        ]
        for d in report.control:
            if d.action == "reflex_crystallised" and d.expert is not None:
                self.audit.append(
                    "identity.reflex.frozen",
                    {
                        "key": d.trigger,
                        "layer": d.layer,
                        "expert": d.expert,
                        "k": float(self.system.layers[d.layer].router.state.k[d.expert]),
                    },
                )
        restarts = self._restarts()
        for proposal, outcome in self.supervisor.tick(step, self._snapshot):
            if outcome != "duplicate":
                records.append(
                    self._plain(
                        step,
                        proposal.keeper,
                        f"{outcome}_{proposal.kind}",
                        proposal.payload.get("layer"),
                        proposal.payload.get("expert"),
                        proposal.key,
                    )
                )
        for event in self.events:
            self.audit.append("keeper.degraded", dict(event.payload))
            records.append(
                self._plain(
                    step,
                    event.payload["clock"],
                    "degraded",
                    None,
                    None,
                    f"{event.payload['component']}: {event.payload['reason']}; {event.payload['action']}",
                )
            )
        self.events.clear()
        if self._restarts() != restarts:
            self._write_keepers()
        if step % self.system.config.lifecycle.mid_interval == 0:
            self._signatures(step)
        return records

    def close(self) -> None:
        self._finalizer()

    # --- what keepers see ------------------------------------------------------------------------

    def _snapshot(self, clock: str) -> dict[str, Any]:
        system = self.system
        base = {"config": self.plain_config, "step": system.step_count}
        if clock == "fast":
            layers = []
            for layer, moe in enumerate(system.layers):
                crystallised = moe.router.state.crystallised.tolist()
                layers.append(
                    {
                        "layer": layer,
                        "experts": [
                            {
                                "expert": e,
                                "crystallised": crystallised[e],
                                "evidence": reflex_evidence(moe, e),
                            }
                            for e in system.registries[layer].live()
                        ],
                    }
                )
            return {**base, "layers": layers}
        if clock == "mid":
            return {
                **base,
                "layers": [
                    dict(zip(("psi_mid", "psi_slow"), psi_mid_slow(moe), strict=True), layer=layer)
                    for layer, moe in enumerate(system.layers)
                ],
            }
        trials, self._trials_offered = system.trial_log[self._trials_offered :], len(system.trial_log)
        return {**base, "trials": trials}

    # --- the trainer's check of a proposal -------------------------------------------------------

    def _vet(self, proposal: Proposal) -> dict[str, Any] | str:
        system, payload = self.system, proposal.payload
        layer, expert = payload.get("layer"), payload.get("expert")
        if not isinstance(layer, int) or not 0 <= layer < len(system.layers):
            return f"no layer {layer!r}"
        if proposal.kind == "reflex":
            if not isinstance(expert, int) or expert not in system.registries[layer].live():
                return f"expert {expert!r} is not live in layer {layer}"
            gates = reflex_gates(system.layers[layer], expert, system.config)
            if not all(gates.values()):
                return (
                    f"the trainer's reading fails the gates {sorted(g for g, ok in gates.items() if not ok)}"
                )
            return {
                "layer": layer,
                "expert": expert,
                "k": float(system.layers[layer].router.state.k[expert]),
                "gates": gates,
            }
        if proposal.kind == "epoch":
            if any(
                w.kind == "epoch" and w.payload.get("layer") == layer
                for w in self.kernel.pending + self.kernel.queue
            ):
                return f"an epoch boundary of layer {layer} is already awaiting finalisation"
            psi_mid, psi_slow = psi_mid_slow(system.layers[layer])
            if abs(psi_mid - psi_slow) < system.config.kernel.epoch_psi_shift:
                return f"the trainer reads |psi_mid - psi_slow| = {abs(psi_mid - psi_slow):.3f}: no shift"
            self.epoch_before[proposal.key] = self.layer_snapshot(layer)
            return {"layer": layer, "psi_mid": psi_mid, "psi_slow_before": psi_slow}
        if proposal.kind == "scar":
            action = payload.get("action")
            trials = [
                t
                for t in system.trial_log
                if (t["layer"], t["action"], t["expert"]) == (layer, action, expert)
            ]
            if not trials:
                return f"no trial of {action!r} on expert {expert!r} of layer {layer} on record"
            trial = trials[-1]
            return {
                "layer": layer,
                "action": action,
                "expert": expert,
                "delta_loss": trial["delta_loss"],
                "trial_step": trial["step"],
            }
        return (
            f"{proposal.kind!r} proposals are not enacted: the trainer takes lifecycle edits and "
            f"escalations on its own clocks"
        )

    # --- identity effects ------------------------------------------------------------------------

    def layer_snapshot(self, layer: int) -> dict[str, Any]:
        moe = self.system.layers[layer]
        psi = moe.router.coherence.psi().tolist()
        return {
            "step": self.system.step_count,
            "psi": dict(zip(CLOCK_NAMES, psi, strict=True)),
            "live": self.system.registries[layer].live(),
            "share": moe.router.coherence.routing_share("slow").tolist(),
            "k": moe.router.state.k.tolist(),
            "crystallised": moe.router.state.crystallised.tolist(),
        }

    def _epoch_after(self, key: str, layer: int) -> dict[str, Any]:
        before, after = self.epoch_before.pop(key, None), self.layer_snapshot(layer)
        compared: dict[str, Any] = {"key": key, "layer": layer, "before": before, "after": after}
        if before is not None:
            compared["fisher_rao_share"] = float(
                fisher_rao_distance(torch.tensor(before["share"]), torch.tensor(after["share"]), eps=1e-12)
            )
        self.audit.append("identity.epoch.snapshots", compared)
        trigger = (
            f"{key}: Fisher-Rao {compared.get('fisher_rao_share', float('nan')):.4f} between the slow "
            f"routing shares before and after"
        )
        return self._plain(self.system.step_count, "mid", "epoch_snapshots", layer, None, trigger)

    def revert_identity(self, key: str, *, authority: str, reason: str) -> None:
        """The identity-grade operation: revert a finalised identity event and undo its effect."""
        write = self.kernel.revert_identity(key, authority=authority, reason=reason)
        layer, expert = write.payload["layer"], write.payload.get("expert")
        if write.kind == "reflex":
            self.system.layers[layer].router.state.crystallised[expert] = False
        elif write.kind == "scar" and expert is None:
            self.system.scars.discard((layer, write.payload["action"]))
        elif write.kind == "scar":
            self.system.expert_scars.discard((layer, write.payload["action"], expert))

    # --- run-directory files ---------------------------------------------------------------------

    def _signatures(self, step: int) -> None:
        lines = []
        for layer, moe in enumerate(self.system.layers):
            load = moe.router.coherence.routing_share("mid").tolist()
            self.loads[layer].append(load)
            dimensionality = float(
                geodesic_dimensionality(torch.tensor(self.loads[layer]).clamp_min(0.0))
            )
            row = {
                "step": step,
                "layer": layer,
                "load": load,
                "phi_slow": moe.router.coherence.phi_slow().tolist(),
                "k": moe.router.state.k.tolist(),
                "geodesic_dimensionality": dimensionality,
                "signatures": len(self.loads[layer]),
            }
            lines.append(json.dumps(row, sort_keys=True) + "\n")
        # a log planted as a symbolic link or FIFO is refused, never written through or waited on
        append_text(self.run_dir / SIGNATURES_FILE, "".join(lines))

    def _write_keepers(self) -> None:
        keepers = {
            clock: {
                "pid": handle.process.pid if handle.process is not None else None,
                "restarts": handle.restarts,
                "paused_ticks": self.supervisor.paused.get(clock, 0),
                "may_propose": sorted(handle.capability.may_propose),
            }
            for clock, handle in self.supervisor.handles.items()
        }
        # replaced atomically: whatever is planted under the name (a link, a FIFO) is replaced, never
        # written through or waited on
        atomic_write_bytes(self.run_dir / KEEPERS_FILE, json.dumps(keepers, indent=1, sort_keys=True).encode())

    def _restarts(self) -> int:
        return sum(handle.restarts for handle in self.supervisor.handles.values())

    @staticmethod
    def _plain(step: int, clock: str, action: str, layer: Any, expert: Any, trigger: str) -> dict[str, Any]:
        """A decision record of the core: the fields of :class:`chronomoe.decisions.Decision` and
        ``source: "keepers"`` (a keeper's proposal settled, a keeper degraded, an epoch's snapshots),
        settled when the keeper answered, not at its clock's evaluation step."""
        return {
            "step": step,
            "clock": clock,
            "action": action,
            "layer": layer,
            "expert": expert,
            "other": None,
            "coherence": None,
            "free_energy": {},
            "competing": [],
            "trigger": trigger,
            "edit": False,
            "expert_delta": 0,
            "evidence": {},
            "source": "keepers",
        }
