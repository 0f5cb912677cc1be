"""``layer.moe``: a mixture-of-experts MLP, ``(B, T, D) → (B, T, D)``, that drops in for a block's MLP.

After each forward, :meth:`MoE.aux_outputs` returns that forward's auxiliary losses and metrics as
tensors (0-d, or ``(E,)``), computed on the device — on an accelerator the forward never reads a
value back to the host (on the CPU, where that is free, capacity dispatch reads its per-expert
counts to skip empty slots; ``dispatch="sorted"`` reads them everywhere). Keys (fixed for a given
configuration):

- ``moe_aux_loss``: the weighted router losses, **to be added to the task loss**;
  ``moe_load_balance_loss`` (Switch, 1 = balanced) and ``moe_z_loss``, unweighted;
- ``moe_max_vio``: ``(max load − mean load) / mean load`` over live columns (the router is
  fixed-width: archived columns are masked with ``-inf``); ``moe_active_experts``: experts that got
  at least one assignment; ``moe_dropped_fraction``: share of assignments over capacity;
  ``moe_expert_load``: ``(E,)`` share of assignments per expert;
- ``moe_beta``: ``(E,)`` the selection-key bias (β_eff for router.chrono, the balancing bias for
  router.loss_free, zeros for router.topk);
- ``moe_psi``: this batch's layer coherence Ψ, present when a trace is computed (router.chrono, or
  ``emit_trace``); router.chrono adds ``moe_js``, ``moe_fisher_rao``, ``moe_flip_rate``, ``moe_tv`` and ``moe_veto``.
- ``moe_unreachable_experts``: with remote experts (``remote:``, chronomoe.remote) only, how many are
  masked because their server does not answer.

In training mode the router's slow state (coherence clocks, β) advances once per forward, and a
per-step balancer (router.loss_free's bias) once per optimizer step through
:meth:`MoE.after_optimizer_step`; in eval mode all of it is frozen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from chronomoe.coherence import MoETrace, expert_coherence, layer_coherence
from chronomoe.config import DISPATCH_MODES, ROUTER_SHAPE_FIELDS, MoEConfig
from chronomoe.experts import (
    SwiGLUExperts,
    capacity_dispatch_and_combine,
    expert_capacity,
    plan_dispatch,
    sorted_dispatch_and_combine,
)
from chronomoe.remote import ExpertsUnreachable, HybridExperts
from chronomoe.routers import ExpertColumns, RouterOutput, expert_counts
from mosaic.core.contract import keys
from mosaic.core.contract.protocols import Router, missing_members
from mosaic.core.errors import ModelError

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


class MoE(nn.Module):
    """Route tokens to SwiGLU experts through capacity-padded slots and mix their outputs."""

    _reachable_mask: torch.Tensor  # (E,) bool buffer, all True unless remote experts are masked

    def __init__(
        self,
        router: Any,  # a router component (router.*): see mosaic.core.contract.protocols.Router
        experts: SwiGLUExperts | HybridExperts,
        *,
        capacity_factor: float | None = 1.25,
        dispatch: str = "capacity",
        emit_trace: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(router, Router):
            raise ModelError(
                f"{type(router).__name__} is not a router: it lacks {', '.join(missing_members(router, Router))} "
                "(the router contract is mosaic.core.contract.protocols.Router; see docs/plugins.md)"
            )
        if router.n_experts != experts.n_experts:
            raise ModelError(
                f"router routes to {router.n_experts} experts but the layer has {experts.n_experts}"
            )
        self.router = router
        self.experts = experts
        if dispatch not in DISPATCH_MODES:
            raise ModelError(f"dispatch must be one of {', '.join(DISPATCH_MODES)}, got {dispatch!r}")
        self.capacity_factor = capacity_factor
        # live experts when a lifecycle keeps fewer than the columns (set by its registry, host int):
        # per-expert capacity is computed over them, as for a fixed MoE of that size
        self.live_experts: int | None = None
        self.dispatch = dispatch
        self.emit_trace = emit_trace
        self.last_trace: MoETrace | None = None
        self._aux: dict[str, torch.Tensor] = {}
        self._reachable: list[bool] = [True] * experts.n_experts  # host copy: columns whose server answers
        self.register_buffer(
            "_reachable_mask", torch.ones(experts.n_experts, dtype=torch.bool), persistent=False
        )
        if isinstance(experts, HybridExperts) and not hasattr(getattr(router, "columns", None), "reachable"):
            raise ModelError(
                f"{type(router).__name__} cannot mask unreachable experts (it has no ExpertColumns); "
                "remote experts need router.topk, router.chrono or router.loss_free"
            )

    @property
    def n_experts(self) -> int:
        return self.experts.n_experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.experts.d_model:
            raise ModelError(f"layer.moe expects (B, T, {self.experts.d_model}), got {tuple(x.shape)}")
        if not isinstance(self.experts, HybridExperts):
            return self._forward(x)
        self._sync_reachable(self.experts)
        try:
            return self._forward(x)
        except ExpertsUnreachable:  # the server went away during this step: route it again without it
            self._sync_reachable(self.experts)
            return self._forward(x)

    def _sync_reachable(self, experts: HybridExperts) -> None:
        """Remote experts only: mask the columns whose server does not answer (host-side state)."""
        reachable = experts.refresh()
        if reachable != self._reachable:
            cast(ExpertColumns, self.router.columns).reachable.copy_(torch.tensor(reachable))
            self._reachable_mask.copy_(torch.tensor(reachable))
            self._reachable = reachable

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, d_model = x.shape
        flat = x.reshape(batch * time, d_model)  # (N, D)
        route: RouterOutput = self.router(flat, sequence_length=time)
        wants_trace = self.emit_trace or self.router.needs_trace
        sums = None
        if self.dispatch == "sorted":
            mixture, outputs = sorted_dispatch_and_combine(flat, route.expert_idx, route.gates, self.experts)
            kept = torch.ones_like(route.expert_idx, dtype=torch.bool)
            expert_tokens = expert_counts(route.expert_idx, self.n_experts)
        else:
            top_k = route.expert_idx.shape[1]
            live = self.n_experts if self.live_experts is None else self.live_experts
            live = max(1, live - self._reachable.count(False))  # capacity over the reachable
            capacity = expert_capacity(flat.shape[0], live, top_k, self.capacity_factor)
            plan = plan_dispatch(route.expert_idx, self.n_experts, capacity)
            mixture, outputs, sums = capacity_dispatch_and_combine(
                flat, route.gates, plan, self.experts, expert_sums=wants_trace
            )
            kept = plan.kept.view(-1, flat.shape[0]).t()  # (N, k)
            expert_tokens = plan.expert_tokens
        trace = None
        if wants_trace:
            trace = MoETrace(
                mixture=mixture.detach(),
                clean_logits=route.clean_logits.detach(),
                selection_key=route.selection_key,
                probs=route.probs.detach(),
                expert_idx=route.expert_idx,
                gates=route.gates.detach(),
                kept=kept,
                assignment_outputs=outputs.detach(),
                expert_tokens=expert_tokens,
                expert_sums=sums,
            )
        self._aux = self._collect_aux(route, kept, trace)
        self.last_trace = trace
        return mixture.view(batch, time, d_model)

    def _collect_aux(
        self, route: RouterOutput, kept: torch.Tensor, trace: MoETrace | None
    ) -> dict[str, torch.Tensor]:
        load = expert_counts(route.expert_idx, self.n_experts)  # (E,)
        live = self.router.columns.active & self._reachable_mask
        mean_load = load.sum() / live.sum().clamp_min(1)  # over live columns of a fixed-width router
        aux = {
            keys.MOE_AUX_LOSS.name: route.aux_loss,
            keys.MOE_LOAD_BALANCE_LOSS.name: route.load_balance_loss,
            keys.MOE_Z_LOSS.name: route.z_loss,
            keys.MOE_MAX_VIO.name: (load.max() - mean_load) / mean_load.clamp_min(1e-9),
            keys.MOE_ACTIVE_EXPERTS.name: (load > 0).float().sum(),
            keys.MOE_DROPPED_FRACTION.name: 1.0 - kept.float().mean(),
            keys.MOE_EXPERT_LOAD.name: load / load.sum().clamp_min(1.0),
            keys.MOE_BETA.name: route.bias.detach(),
        }
        aux.update({f"moe_{name}": value for name, value in route.metrics.items()})
        if isinstance(self.experts, HybridExperts):
            aux[keys.MOE_UNREACHABLE_EXPERTS.name] = torch.tensor(float(self._reachable.count(False)))
        if trace is not None:
            with torch.no_grad():
                phi, seen = expert_coherence(
                    trace, leave_one_out=self.router.leave_one_out, token_level=self.router.token_level
                )
                aux[keys.MOE_PSI.name] = layer_coherence(phi, trace.expert_tokens)
            if self.training:
                self.router.observe(route, trace, phi, seen)
        elif self.training:
            self.router.observe(route, None, None, None)
        return aux

    def after_optimizer_step(self) -> None:
        """Called by the model's training hook once per optimizer step: routers that balance per
        step (router.loss_free) apply their update here."""
        hook = getattr(self.router, "after_optimizer_step", None)
        if callable(hook):
            hook()

    def drain_run_events(self) -> list[dict[str, Any]]:
        """Remote experts' ``Degraded`` / ``Restored`` events raised since the last call, for the
        run's ``decisions.jsonl`` (``RaisesRunEvents``); empty without remote experts."""
        if not isinstance(self.experts, HybridExperts):
            return []
        events = self.experts.client.events
        drained = []
        while events:
            event = events.popleft()
            drained.append(
                {
                    "action": event.type.lower(),
                    "source": "remote_experts",
                    "clock": "fast",
                    "ts": event.ts,
                    "event": dict(event.payload),
                }
            )
        return drained

    def aux_outputs(self) -> dict[str, torch.Tensor]:
        """The last forward's auxiliary losses and metrics (see the module docstring)."""
        return dict(self._aux)


def build_moe(config: MoEConfig, *, registry: Registry | None = None) -> MoE:
    """``layer.moe`` factory: the router is built from ``config.router`` through ``registry`` (the one
    ``Registry.build`` passes; the process-wide one when called directly)."""
    if registry is None:
        from mosaic.core.plugins import get_registry

        registry = get_registry()
    router_mapping: dict[str, Any] = {k: v for k, v in config.router.items() if k != "type"}
    shape = (config.d_model, config.n_experts, config.top_k)
    router_mapping.update(zip(ROUTER_SHAPE_FIELDS, shape, strict=True))
    router = registry.build(config.router["type"], router_mapping, path="$.router")
    experts: SwiGLUExperts | HybridExperts
    if config.remote is None:
        experts = SwiGLUExperts(config.n_experts, config.d_model, config.expert_hidden)
    else:
        experts = HybridExperts(config.n_experts, config.d_model, config.expert_hidden, config.remote)
    return MoE(
        router,
        experts,
        capacity_factor=config.capacity_factor,
        dispatch=config.dispatch,
        emit_trace=config.emit_trace,
    )
