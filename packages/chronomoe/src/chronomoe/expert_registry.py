"""Expert registry: the life states of a fixed-width MoE layer's columns and the structural edits.

The router keeps ``E = max`` columns; a column is ``active``, ``cooling`` (a new expert warming in:
selectable, with a negative entry offset on its selection key relaxed linearly to 0) or
``archived`` (masked with ``-inf``: never selected; unused columns start archived and are reused by
spawn and split).

Optimizer state is handled explicitly, per column slice of every per-expert parameter (the stacked
expert weights and the router row): children of a spawn or split start with fresh (zero) moments
(with ``preserving_growth``, the source's), the survivor of a merge keeps its moments, archived
experts' moments are dropped (zeroed). Adam's step counter is per parameter tensor, shared by all
columns, so zero moments are not bias-corrected as young ones: a fresh column's first update is a
full sign step per coordinate (``|m / √v| = (1 − β1) / √(1 − β2)``, 1 at the trainer's 0.9 / 0.99),
where an established expert with noisy gradients moves a fraction of that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from chronomoe.config import LifecycleConfig
from mosaic.core.errors import ModelError

State = Literal["active", "cooling", "archived"]


class LifecycleError(ModelError):
    """A structural edit is impossible (bounds, no free column, wrong state)."""


class ExpertRegistry:
    """Life states of one MoE layer's expert columns, and the edits that change them."""

    def __init__(
        self,
        moe,
        config: LifecycleConfig,
        *,
        n_active: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        seed: int = 0,
        audit: Callable[[str, dict], object] | None = None,
    ) -> None:
        width = moe.n_experts
        n_active = width if n_active is None else n_active
        if not config.min_experts <= n_active <= min(width, config.max_experts or width):
            raise LifecycleError(
                f"{n_active} active experts outside [{config.min_experts}, {min(width, config.max_experts or width)}]"
            )
        if moe.router.top_k > config.min_experts:
            raise LifecycleError(f"top_k {moe.router.top_k} exceeds min_experts {config.min_experts}")
        self.moe, self.config, self.optimizer = moe, config, optimizer
        active: list[State] = ["active"]
        archived: list[State] = ["archived"]
        self.states = active * n_active + archived * (width - n_active)
        self.cooling_left = [0] * width
        # oscillation guard, in slow evaluations left: new experts may not be merged, merge
        # survivors may not be split, until the guard has run out
        self.merge_guard = [0] * width
        self.split_guard = [0] * width
        self.generator = torch.Generator().manual_seed(seed)
        # identity belongs to an expert, not to its column: what an archived expert had earned
        # (crystallised β) is kept here, and a column reused by a new expert starts clean
        self.archive: list[dict] = []
        self.audit = audit
        with torch.no_grad():
            self.moe.router.columns.active.copy_(torch.tensor([s != "archived" for s in self.states]))
        self.sync_capacity()

    def sync_capacity(self) -> None:
        """The layer's per-expert capacity follows its live experts (a host int: no sync), counted
        by family: the halves of a preserving spawn or split share their source's tokens (a token
        selects at most one of them), so growing must not shrink every other expert's capacity.
        Counted by column, the untouched experts overflowed and dropped tokens until routing
        rebalanced, about 30 steps, which is all a trial of a few steps measured."""
        family = self.moe.router.columns.family.tolist()
        self.moe.live_experts = len({family[e] for e in self.live()})

    # --- queries --------------------------------------------------------------------------------

    def live(self) -> list[int]:
        return [e for e, s in enumerate(self.states) if s != "archived"]

    def free_column(self) -> int | None:
        return next((e for e, s in enumerate(self.states) if s == "archived"), None)

    def can_grow(self) -> bool:
        return (self.config.max_experts is None or len(self.live()) < self.config.max_experts) and self.free_column() is not None

    def can_shrink(self) -> bool:
        return len(self.live()) > self.config.min_experts

    def can_merge(self, expert: int) -> bool:
        return self.merge_guard[expert] <= 0

    def can_split(self, expert: int) -> bool:
        return self.split_guard[expert] <= 0

    # --- per-step -------------------------------------------------------------------------------

    @torch.no_grad()
    def tick(self) -> list[int]:
        """Advance cooling experts by one step; returns the ones that became active."""
        offset = self.moe.router.columns.entry_offset
        promoted = []
        for e, state in enumerate(self.states):
            if state != "cooling":
                continue
            self.cooling_left[e] -= 1
            offset[e] = self.config.entry_offset * self.cooling_left[e] / self.config.warmup_steps
            if self.cooling_left[e] <= 0:
                self.states[e], offset[e] = "active", 0.0
                promoted.append(e)
        return promoted

    def guarded(self, action: str, expert: int, other: int | None) -> bool:
        """Is this edit blocked by the oscillation guard?"""
        if action == "merge":
            return not (self.can_merge(expert) and (other is None or self.can_merge(other)))
        return action == "split" and not self.can_split(expert)

    def slow_cycle(self) -> None:
        """One slow evaluation has begun: the oscillation guards run down by one."""
        self.merge_guard = [max(0, g - 1) for g in self.merge_guard]
        self.split_guard = [max(0, g - 1) for g in self.split_guard]

    # --- edits ----------------------------------------------------------------------------------

    @torch.no_grad()
    def spawn(self, source: int) -> int:
        """Clone-and-perturb ``source`` into a free column, entering as ``cooling``."""
        self._require_live(source)
        if not self.can_grow():
            raise LifecycleError(f"cannot spawn: {len(self.live())} live experts, no room to grow")
        child = self.free_column()
        if child is None:
            raise LifecycleError("cannot spawn: no archived column to reuse")
        self._clone(source, child)
        if self.config.preserving_growth:
            self._copy_moments(source, child)
        else:
            self._reset_moments([child])
        self.merge_guard[child] = self.config.edit_guard_cycles
        return child

    @torch.no_grad()
    def split(self, expert: int) -> int:
        """Split ``expert`` into itself and a clone; both halves start with fresh optimizer moments
        and statistics (with ``preserving_growth``, both keep the source's moments and β). The clone
        enters cooling, so the layer's output is unchanged at the moment of the split."""
        if not self.can_split(expert):
            raise LifecycleError(f"cannot split expert {expert}: a merge survivor is still guarded")
        child = self.spawn(expert)
        if not self.config.preserving_growth:
            self._reset_moments([expert])
            self._reset_statistics(expert)
        self.merge_guard[expert] = self.config.edit_guard_cycles  # it has just changed as well
        return child

    @torch.no_grad()
    def prune(self, expert: int) -> None:
        self._require_live(expert)
        if not self.can_shrink():
            raise LifecycleError(f"cannot prune expert {expert}: at the minimum of {self.config.min_experts}")
        self._archive(expert)

    @torch.no_grad()
    def merge(self, survivor: int, absorbed: int, share: tuple[float, float] = (0.5, 0.5)) -> None:
        """Fold ``absorbed`` into ``survivor`` (weights and router rows averaged by ``share``); the
        survivor keeps its optimizer moments, the absorbed column is archived."""
        self._require_live(survivor)
        self._require_live(absorbed)
        if survivor == absorbed or not self.can_shrink():
            raise LifecycleError(f"cannot merge {absorbed} into {survivor}")
        if not (self.can_merge(survivor) and self.can_merge(absorbed)):
            raise LifecycleError(f"cannot merge {absorbed} into {survivor}: a new expert is still guarded")
        w_s, w_a = share[0] / sum(share), share[1] / sum(share)
        for weight in self._expert_weights():
            weight[survivor] = w_s * weight[survivor] + w_a * weight[absorbed]
        self._archive(absorbed)
        self.split_guard[survivor] = self.config.edit_guard_cycles

    # --- checkpoint ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "states": list(self.states),
            "cooling_left": list(self.cooling_left),
            "merge_guard": list(self.merge_guard),
            "split_guard": list(self.split_guard),
            "generator": self.generator.get_state(),
            "archive": [dict(entry) for entry in self.archive],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["states"]) != len(self.states):
            raise LifecycleError(
                f"registry of width {len(state['states'])} loaded into width {len(self.states)}"
            )
        self.states = list(state["states"])
        self.cooling_left = list(state["cooling_left"])
        self.merge_guard = [int(g) for g in state["merge_guard"]]
        self.split_guard = [int(g) for g in state["split_guard"]]
        self.generator.set_state(state["generator"])
        self.archive = [dict(entry) for entry in state.get("archive", [])]
        with torch.no_grad():
            self.moe.router.columns.active.copy_(torch.tensor([s != "archived" for s in self.states]))
        self.sync_capacity()

    # --- internals -----------------------------------------------------------------------------

    def _require_live(self, expert: int) -> None:
        if not 0 <= expert < len(self.states) or self.states[expert] == "archived":
            raise LifecycleError(f"expert {expert} is not live")

    def _expert_weights(self) -> list[torch.Tensor]:
        return [*self.moe.experts.weights(), self.moe.router.gate.weight]

    def _clone(self, source: int, child: int) -> None:
        for weight in self.moe.experts.weights():
            noise = torch.randn(weight[source].shape, generator=self.generator).to(
                weight.device, weight.dtype
            )
            weight[child] = weight[source] * (1.0 + self.config.perturb * noise)
        router_weight = self.moe.router.gate.weight
        columns = self.moe.router.columns
        if self.config.preserving_growth:
            # the clone and its source share a family (one per token) and their rows part along a
            # random direction: each takes the source's tokens on its side of it
            direction = torch.randn(router_weight.shape[1], generator=self.generator).to(router_weight)
            shift = direction * (self.config.perturb * router_weight[source].norm() / direction.norm().clamp_min(1e-12))
            router_weight[child] = router_weight[source] + shift
            router_weight[source] -= shift
            columns.set_family(child, int(columns.family[source]))
        else:
            router_weight[child] = router_weight[source]
        columns.active[child] = True
        columns.entry_offset[child] = self.config.entry_offset
        self.states[child] = "cooling"
        self.cooling_left[child] = self.config.warmup_steps
        self._reset_statistics(child)
        state = getattr(self.moe.router, "state", None)
        if self.config.preserving_growth and state is not None:
            state.k[child] = state.k[source]  # the same β: the halves part by their rows alone
        reused = any(entry["column"] == child for entry in self.archive)
        if reused and self.audit is not None:
            self.audit("lifecycle.column_reuse", {"column": child, "source": source,
                                                  "previous": [e for e in self.archive if e["column"] == child][-1]})

    def _archive(self, expert: int) -> None:
        state = getattr(self.moe.router, "state", None)
        crystallised = bool(state.crystallised[expert]) if state is not None else False
        self.archive.append({"column": expert, "crystallised": crystallised,
                             "k": float(state.k[expert]) if state is not None else 0.0})
        if state is not None:
            state.crystallised[expert] = False
        columns = self.moe.router.columns
        columns.active[expert] = False
        columns.entry_offset[expert] = 0.0
        if int(columns.family[expert]) != expert:
            columns.set_family(expert, expert)  # an archived column leaves its family
        self.states[expert] = "archived"
        self.cooling_left[expert] = 0
        self.merge_guard[expert] = self.split_guard[expert] = 0
        self._reset_moments([expert])
        self._reset_statistics(expert)

    def _reset_statistics(self, expert: int) -> None:
        router = self.moe.router
        if hasattr(router, "state"):
            router.state.reset_expert(expert)
        if hasattr(router, "coherence"):
            router.coherence.reset_expert(expert)
        if getattr(router, "role", None) is not None:
            router.role.reset_expert(expert)
        if hasattr(router, "bias"):
            router.bias[expert] = 0.0

    def _copy_moments(self, source: int, child: int) -> None:
        """The clone continues from its source's Adam moments (zero moments would make its first
        updates full sign steps: see the module docstring)."""
        for moment in self._per_column_moments():
            moment[child] = moment[source]

    def _reset_moments(self, experts: list[int]) -> None:
        for moment in self._per_column_moments():
            moment[experts] = 0.0

    def _per_column_moments(self) -> list[torch.Tensor]:
        """Every optimizer state tensor shaped like a per-expert weight (Adam's moments), indexed by
        column in its first dimension."""
        if self.optimizer is None:
            return []
        return [
            value
            for weight in self._expert_weights()
            for value in self.optimizer.state.get(weight, {}).values()
            if isinstance(value, torch.Tensor) and value.shape == weight.shape
        ]
