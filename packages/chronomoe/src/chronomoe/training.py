"""``layer.chrono_lifecycle``: ChronoSystem driven by a trainer through the model's training hooks.

The MOSAIC trainer never imports chronomoe: a model whose config names this component builds it
through the registry and calls :meth:`ChronoLifecycle.attach` with its ``layer.moe`` feed-forwards
and the optimizer at the first optimizer step, then :meth:`ChronoLifecycle.step` after every step
(see ``mosaic.layers.ffn``). Decisions come back as the JSON-able records of ChronoSystem's log.

With ``trigger: adhoc`` the slow clock of ChronoSystem is switched off and replaced by the
original's fixed thresholds (prune φ_slow < ``prune_phi``, split when split-ready, spawn when the
layer starves), one edit per layer per slow evaluation, without the F_l check, relaxation trial or
cooldown — the control condition of the phase 8 comparison. With ``trigger: schedule`` there is no
decision either: at train step ``grow_at`` every live expert spawns once into the free columns, so
the phase 8 growth study can measure what the growth edit is worth against the no-edit control.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from chronomoe.decisions import Decision
from chronomoe.edit_kinds import Candidate
from chronomoe.edits import layer_view, propose_edits, split_candidates
from chronomoe.evidence import editing_open
from chronomoe.expert_registry import LifecycleError
from chronomoe.lifecycle import layer_health
from chronomoe.moe import MoE
from chronomoe.routers import ChronoRouter
from chronomoe.system import ChronoSystem
from chronomoe.training_config import ChronoLifecycleConfig
from mosaic.core.contract.protocols import KnowsRunDir, TrainingProbe

if TYPE_CHECKING:
    from chronomoe.sovereign import SovereignCore

_NEVER = 10**12


class ChronoLifecycle:
    def __init__(self, config: ChronoLifecycleConfig) -> None:
        self.config = config
        self.system: ChronoSystem | None = None
        self.core: SovereignCore | None = None
        self.slow_interval = 0

    def attach(
        self,
        layers: list[Any],
        optimizer: torch.optim.Optimizer | None,
        probe: TrainingProbe | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        """``run_dir`` holds the kernel's audit log (``kernel`` set); default: the probe's run
        directory (:class:`~mosaic.core.contract.protocols.KnowsRunDir`)."""
        if not layers:
            raise LifecycleError("layer.chrono_lifecycle: the model has no layer.moe feed-forward")
        if not all(isinstance(moe, MoE) and isinstance(moe.router, ChronoRouter) for moe in layers):
            raise LifecycleError("layer.chrono_lifecycle needs router.chrono (with track_roles: true) in every layer")
        config = layers[0].router.config.chrono
        self.slow_interval = config.lifecycle.slow_interval
        if self.config.trigger in ("adhoc", "schedule"):  # no evidence-gated slow clock
            config = attrs.evolve(config, lifecycle=attrs.evolve(config.lifecycle, slow_interval=_NEVER))
        self.system = ChronoSystem(
            layers, config, optimizer=optimizer, n_active=self.config.n_active, seed=self.config.seed, probe=probe
        )
        if self.config.kernel is not None and self.config.trigger != "none":  # "none": no clock to keep
            if run_dir is None and isinstance(probe, KnowsRunDir):
                run_dir = probe.run_dir
            if run_dir is None:
                raise LifecycleError(
                    "layer.chrono_lifecycle.kernel: the kernel's audit log needs a run directory "
                    "(train with `mosaic run`, or pass run_dir to attach)"
                )
            from chronomoe.sovereign import SovereignCore

            self.core = SovereignCore(self.system, self.config.kernel, Path(run_dir))

    def step(self) -> list[dict]:
        system = self._attached()
        if self.config.trigger == "none":
            return []
        report = system.step()
        decisions = report.control + report.actions
        core_records = [] if self.core is None else self.core.tick(report)
        if self.config.trigger == "adhoc" and system.step_count % self.slow_interval == 0:
            lc = system.config.lifecycle
            if editing_open(system.step_count, system.probe, lc):
                decisions.extend(self._adhoc_edits(system))
            else:
                decisions.extend(
                    system._log(system._record("slow", "none", layer, None,
                                               trigger=f"final {lc.freeze_final_fraction:.0%} of training: no edits"))
                    for layer in range(len(system.layers))
                )
        if self.config.trigger == "schedule" and system.step_count == self.config.grow_at:
            decisions.extend(self._scheduled_growth(system))
        return [decision.to_json() for decision in decisions] + core_records

    def close(self) -> None:
        """Stop the keeper processes (also done when the lifecycle is garbage-collected)."""
        if self.core is not None:
            self.core.close()

    def _adhoc_edits(self, system: ChronoSystem) -> list[Decision]:
        """The ad-hoc controller prefers the edit kinds by their table's ``adhoc_rank`` (prune an
        incoherent expert, then split, then spawn)."""
        rank = {name: kind.adhoc_rank for name, kind in system.edit_kinds.items() if kind.adhoc_rank is not None}
        records = []
        for layer, (moe, registry) in enumerate(zip(system.layers, system.registries, strict=True)):
            snapshot = moe.router.coherence.snapshot()
            health = layer_health(snapshot, system.config)
            ready = split_candidates(registry, snapshot, system.config)
            _, proposals = propose_edits(registry, snapshot, health, ready, system.config)
            triggered = [p for p in proposals if p.action in rank]
            if not triggered:
                records.append(system._log(system._record(
                    "slow", "none", layer, None, snapshot=snapshot, trigger="adhoc: no threshold crossed")))
                continue
            chosen = min(triggered, key=lambda p: (rank[p.action], p.expert))
            kind = system.apply_edit(layer, chosen.action, chosen.candidate)
            records.append(system._log(system._record(
                "slow", chosen.action, layer, chosen.expert, snapshot=snapshot,
                free_energy={"before": chosen.f_before, "predicted": chosen.f_predicted},
                trigger=f"adhoc: {chosen.trigger}", other=chosen.other, edit=kind)))
        return records

    def _scheduled_growth(self, system: ChronoSystem) -> list[Decision]:
        """Every live expert spawns once, the most selected first, while free columns last (the
        same spawn edit the evidence gate judges, taken without a decision)."""
        records = []
        for layer, (moe, registry) in enumerate(zip(system.layers, system.registries, strict=True)):
            snapshot = moe.router.coherence.snapshot()
            for source in layer_view(registry).most_selected():
                child = registry.free_column()
                if child is None or not registry.can_grow():
                    break
                kind = system.apply_edit(layer, "spawn", Candidate(source, child, "scheduled growth"))
                records.append(system._log(system._record(
                    "slow", "spawn", layer, source, snapshot=snapshot, other=child,
                    trigger=f"scheduled growth at step {system.step_count}", edit=kind)))
        return records

    def state_dict(self) -> dict:
        return self._attached().state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._attached().load_state_dict(state)

    def _attached(self) -> ChronoSystem:
        if self.system is None:
            raise LifecycleError("layer.chrono_lifecycle: attach(layers, optimizer) before stepping")
        return self.system


def build_chrono_lifecycle(config: ChronoLifecycleConfig) -> ChronoLifecycle:
    """``layer.chrono_lifecycle`` factory (unattached: the model attaches it at the first step)."""
    return ChronoLifecycle(config)
