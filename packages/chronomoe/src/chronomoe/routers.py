"""Token-to-expert routers: ``router.topk``, ``router.chrono`` and ``router.loss_free``.

Every router maps ``x (N, D)`` to a :class:`RouterOutput` and may keep slow state that the MoE layer
advances through ``observe`` once per training forward (on the device, no host sync). The two
biased routers add their bias to the *selection key only*; gates always come from clean scores.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from chronomoe.buffer import CoherenceBuffer
from chronomoe.coherence import MoETrace
from chronomoe.config import ChronoRouterConfig, LossFreeRouterConfig, TopKRouterConfig
from chronomoe.role import RoleState
from chronomoe.router_state import RouterState, biased_selection_key, expert_softmax, expert_veto_counts
from mosaic.core.errors import ModelError


@attrs.define
class RouterOutput:
    """One routing decision for ``N`` tokens over ``E`` experts, ``k`` per token."""

    expert_idx: torch.Tensor  # (N, k) int64
    gates: torch.Tensor  # (N, k) differentiable gate weights
    clean_logits: torch.Tensor  # (N, E) float32, -inf in inactive columns
    selection_key: torch.Tensor  # (N, E) what top-k ran on: clean logits + biases (detached)
    probs: torch.Tensor  # (N, E) softmax of the clean logits
    load_balance_loss: torch.Tensor  # 0-d, unweighted
    z_loss: torch.Tensor  # 0-d, unweighted
    aux_loss: torch.Tensor  # 0-d, the router's weighted sum of the two, to be added to the task loss
    bias: torch.Tensor  # (E,) the router's own selection bias (β, balancing bias; zeros for topk)
    metrics: dict[str, torch.Tensor] = attrs.Factory(dict)  # 0-d router-specific metrics
    # (2, E) per expert [veto mass of the tokens β won for it, tokens β selects it for] (chrono only)
    veto_counts: torch.Tensor | None = None


def expert_counts(expert_idx: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(E,) float assignments per expert, without a host sync (no bincount)."""
    flat = expert_idx.reshape(-1)
    ones = torch.ones_like(flat, dtype=torch.float32)
    return torch.zeros(n_experts, device=flat.device).scatter_add_(0, flat, ones)


def switch_load_balance_loss(
    probs: torch.Tensor, expert_idx: torch.Tensor, n_live: torch.Tensor | None = None
) -> torch.Tensor:
    """Switch Transformer: ``E · Σ_e f_e · P_e`` (1 when perfectly balanced), ``E`` the number of
    live columns (``n_live``, a 0-d tensor; all columns when None)."""
    n_experts = probs.shape[-1]
    fraction = expert_counts(expert_idx, n_experts) / expert_idx.numel()
    scale = n_experts if n_live is None else n_live.to(probs.dtype)
    return scale * (fraction * probs.mean(0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE z-loss: mean squared log-partition of the router logits."""
    return torch.logsumexp(logits, dim=-1).square().mean()


def select(
    clean_logits: torch.Tensor,
    key: torch.Tensor,
    top_k: int,
    normalize_gates: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k of ``key``; gates from the clean scores of the chosen experts. ``(idx, gates, probs)``."""
    probs = expert_softmax(clean_logits)
    expert_idx = key.topk(top_k, dim=-1).indices  # (N, k)
    if normalize_gates:
        gates = expert_softmax(clean_logits.gather(-1, expert_idx))
    else:
        gates = probs.gather(-1, expert_idx)
    return expert_idx, gates, probs


def _output(
    config: TopKRouterConfig | ChronoRouterConfig,
    columns: ExpertColumns,
    clean_logits: torch.Tensor,
    key: torch.Tensor,
    bias: torch.Tensor,
    metrics: dict[str, torch.Tensor],
    top_k: int,
) -> RouterOutput:
    expert_idx, gates, probs = select(clean_logits, key, top_k, config.normalize_gates)
    balance = switch_load_balance_loss(probs, expert_idx, columns.routable.sum())
    z_loss = router_z_loss(clean_logits)
    return RouterOutput(
        expert_idx=expert_idx,
        gates=gates,
        clean_logits=clean_logits,
        selection_key=key,
        probs=probs,
        load_balance_loss=balance,
        z_loss=z_loss,
        aux_loss=config.load_balance_weight * balance + config.z_loss_weight * z_loss,
        bias=bias,
        metrics=metrics,
    )


class TopKMixin:
    """``top_k`` may change at run time (the seed's capacity-whiplash protocol: top-4 → top-1 →
    top-4); the MoE layer reads the width of each decision, so capacities follow."""

    n_experts: int
    top_k: int
    columns: ExpertColumns

    def set_top_k(self, top_k: int) -> None:
        live = int(self.columns.active.sum())
        if not 1 <= top_k <= live:
            raise ModelError(f"top_k must be between 1 and the {live} live experts, got {top_k}")
        self.top_k = int(top_k)


#: the selection key of a column excluded by a sibling (chronomoe.routers.ExpertColumns.key)
EXCLUDED_KEY = -1e30


class ExpertColumns(nn.Module):
    """Which router columns are live, the entry offset of experts that are warming in, and families.

    Every router is fixed-width: an inactive column gets ``-inf`` clean logits (never selected, zero
    probability); a newly spawned or split expert enters with a negative offset on the selection
    key that the lifecycle relaxes to 0, so adding it does not change the layer's output at once.

    ``family`` (E,) names each column's family: its own index, or, for a clone made with
    ``preserving_growth``, its source's family. A token selects at most one expert of a family (the one
    with the highest key; the others are pushed below every live column), so a clone takes over part
    of its source's tokens instead of being selected beside it in place of the token's next expert.
    """

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    active: torch.Tensor
    entry_offset: torch.Tensor
    reachable: torch.Tensor
    family: torch.Tensor

    def __init__(self, n_experts: int) -> None:
        super().__init__()
        self.register_buffer("active", torch.ones(n_experts, dtype=torch.bool))
        self.register_buffer("entry_offset", torch.zeros(n_experts))
        self.register_buffer("family", torch.arange(n_experts))
        # whether a remote expert's server answers now (chronomoe.remote); transient, not in state_dict
        self.register_buffer("reachable", torch.ones(n_experts, dtype=torch.bool), persistent=False)
        self.exclusive = False  # host copy of "some family has two columns" (no sync in forward)

    @property
    def routable(self) -> torch.Tensor:
        """Columns routing may choose: live and reachable."""
        return self.active & self.reachable

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(~self.routable, float("-inf"))

    def key(self, key: torch.Tensor) -> torch.Tensor:
        key = key + self.entry_offset
        if not self.exclusive:
            return key
        family = self.family.expand_as(key)  # (N, E)
        best = torch.full_like(key, float("-inf")).scatter_reduce_(-1, family, key, "amax")  # (N, E) by family id
        # below every live column, above the -inf of inactive ones: with fewer families than top_k
        # a sibling is still chosen before a dead column
        return key.masked_fill(key < best.gather(-1, family), EXCLUDED_KEY)

    @torch.no_grad()
    def set_family(self, column: int, family: int) -> None:
        self.family[column] = family
        self.refresh()

    def refresh(self) -> None:
        """Recompute the host flag from the buffer (after an edit or a load; never in forward)."""
        self.exclusive = bool((self.family != torch.arange(len(self.family), device=self.family.device)).any())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # checkpoints from before families: every column its own family
        state_dict.setdefault(prefix + "family", torch.arange(len(self.family)))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self.refresh()


def masked_std(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Std of the logits over active columns only (0-d)."""
    finite = logits.masked_fill(~active, 0.0)
    count = (active.sum() * logits.shape[0]).clamp_min(2)
    centred = finite.sub_(finite.sum() / count).mul_(active)  # in place: router.chrono, every step
    return (centred.square_().sum() / (count - 1)).sqrt()


class TopKRouter(TopKMixin, nn.Module):
    """``router.topk``: softmax top-k over a linear gate (Mixtral)."""

    leave_one_out = True
    token_level = False

    def __init__(self, config: TopKRouterConfig) -> None:
        super().__init__()
        self.config = config
        self.n_experts = config.n_experts
        self.top_k = config.top_k
        self.needs_trace = False
        self.gate = nn.Linear(config.d_model, config.n_experts, bias=False)
        self.columns = ExpertColumns(config.n_experts)

    def forward(self, x: torch.Tensor, sequence_length: int | None = None) -> RouterOutput:
        logits = self.columns.mask(self.gate(x).float())  # (N, E)
        key = self.columns.key(logits.detach())
        return _output(
            self.config, self.columns, logits, key, logits.new_zeros(self.n_experts), {}, self.top_k
        )

    def observe(
        self, route: RouterOutput, trace: MoETrace | None, phi: torch.Tensor | None, seen: torch.Tensor | None
    ) -> None:
        """Plain top-k keeps no slow state."""


class ChronoRouter(TopKMixin, nn.Module):
    """``router.chrono``: top-k whose selection key carries the coherence-driven slow bias β, vetoed
    per token where it would move more than ``veto_full`` of the routing mass."""

    def __init__(self, config: ChronoRouterConfig, *, layer: int = 0) -> None:
        super().__init__()
        self.config = config
        self.n_experts = config.n_experts
        self.top_k = config.top_k
        self.needs_trace = True
        self.leave_one_out = config.chrono.leave_one_out
        self.token_level = config.chrono.token_level
        self.gate = nn.Linear(config.d_model, config.n_experts, bias=False)
        self.columns = ExpertColumns(config.n_experts)
        self.state = RouterState(config.n_experts, config.chrono)
        self.coherence = CoherenceBuffer(config.n_experts, config.chrono, layer=layer)
        self.role = RoleState(config.n_experts, config.d_model, config.chrono) if config.track_roles else None

    def forward(self, x: torch.Tensor, sequence_length: int | None = None) -> RouterOutput:
        # the temperature sharpens (< 1) or flattens (> 1) routing; β stays in units of logit std
        logits = self.gate(x).float()  # (N, E)
        if self.config.temperature != 1.0:  # (x / 1.0 is x: skip the op and its backward)
            logits = logits / self.config.temperature
        logits = self.columns.mask(logits)
        beta = self.state.beta_eff()
        with torch.no_grad():
            key, metrics, token_veto = biased_selection_key(logits.detach(), beta, self.config.chrono)
            metrics["degraded_experts"] = self.coherence.degraded_count()
        route = _output(self.config, self.columns, logits, self.columns.key(key), beta, metrics, self.top_k)
        with torch.no_grad():  # a rate, estimated on the metrics' token sample (js_token_stride)
            stride = self.config.chrono.js_token_stride
            clean_key = self.columns.key(logits.detach()[::stride])
            route.veto_counts = expert_veto_counts(clean_key, clean_key + beta, token_veto[::stride], self.top_k)
        return route

    @torch.no_grad()
    def observe(
        self, route: RouterOutput, trace: MoETrace | None, phi: torch.Tensor | None, seen: torch.Tensor | None
    ) -> None:
        """Coherence on three clocks, then β from the slow clock (the closed loop)."""
        if trace is None or phi is None or seen is None:
            raise ModelError("router.chrono.observe needs the forward's MoETrace and its coherence")
        self.state.observe_logit_std(masked_std(route.clean_logits.detach(), self.columns.routable))
        self.state.disagreement.update(torch.stack([route.metrics["flip_rate"], route.metrics["fisher_rao"]]))
        if route.veto_counts is None:
            raise ModelError("router.chrono.observe needs the veto counts its forward records")
        self.state.observe_veto(route.veto_counts)
        self.coherence.update(phi, seen, trace.expert_tokens, trace.routing_share())
        if self.role is not None:
            self.role.observe(trace)
        phi_now = self.coherence.phi()  # (3, E), read once: β and the next forward's degraded count
        self.coherence.degraded_count(phi_now)
        self.state.update_beta(phi_now[2], self.coherence.phi_evidence("slow"), self.columns.active)


class LossFreeRouter(TopKMixin, nn.Module):
    """``router.loss_free``: DeepSeek-V3's auxiliary-loss-free balancing.

    - Affinities are sigmoids ``s = σ(W x)`` in [0, 1] (inactive columns 0).
    - A per-expert bias ``b`` is added to the affinities for the top-k *selection only*; the gates
      are the unbiased affinities of the chosen experts, normalised to sum to 1.
    - After each optimizer step (:meth:`after_optimizer_step`), ``b_e`` moves by ``bias_rate`` (γ)
      down if expert e's load over that step's forwards was above the mean, up if below: a sign
      update, whatever the size of the imbalance, once per step even under gradient accumulation.
    - Optional sequence-wise balance loss (``sequence_balance_weight``, α): per sequence,
      ``Σ_e f_e P_e`` with ``f_e = E/(k·T)·#tokens choosing e`` and ``P_e`` the mean normalised
      affinity, averaged over sequences (1 when balanced).
    """

    leave_one_out = True
    token_level = False

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    bias: torch.Tensor

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    pending_load: torch.Tensor

    def __init__(self, config: LossFreeRouterConfig) -> None:
        super().__init__()
        self.config = config
        self.n_experts = config.n_experts
        self.top_k = config.top_k
        self.needs_trace = False
        self.gate = nn.Linear(config.d_model, config.n_experts, bias=False)
        self.columns = ExpertColumns(config.n_experts)
        self.register_buffer("bias", torch.zeros(config.n_experts))
        # assignments per expert since the last optimizer step (training forwards only)
        self.register_buffer("pending_load", torch.zeros(config.n_experts))

    def forward(self, x: torch.Tensor, sequence_length: int | None = None) -> RouterOutput:
        logits = self.gate(x).float()  # (N, E)
        active = self.columns.routable
        affinity = torch.sigmoid(logits) * active  # (N, E) in [0, 1], 0 in inactive columns
        key = (affinity.detach() + self.bias).masked_fill(~active, float("-inf"))
        key = self.columns.key(key)
        expert_idx = key.topk(self.top_k, dim=-1).indices  # (N, k)
        chosen = affinity.gather(-1, expert_idx)  # (N, k)
        gates = (
            chosen / chosen.sum(-1, keepdim=True).clamp_min(1e-9) if self.config.normalize_gates else chosen
        )
        probs = affinity / affinity.sum(-1, keepdim=True).clamp_min(1e-9)  # normalised affinities
        clean_logits = logits.masked_fill(~active, float("-inf"))
        balance = self._sequence_balance(probs, expert_idx, sequence_length)
        z_loss = router_z_loss(clean_logits)
        return RouterOutput(
            expert_idx=expert_idx,
            gates=gates,
            clean_logits=clean_logits,
            selection_key=key,
            probs=probs,
            load_balance_loss=balance,
            z_loss=z_loss,
            aux_loss=self.config.sequence_balance_weight * balance + self.config.z_loss_weight * z_loss,
            bias=self.bias.clone(),
            metrics={},
        )

    def _sequence_balance(
        self, probs: torch.Tensor, expert_idx: torch.Tensor, sequence_length: int | None
    ) -> torch.Tensor:
        n_tokens = probs.shape[0]
        length = sequence_length if sequence_length and n_tokens % sequence_length == 0 else n_tokens
        sequences = n_tokens // length
        one_hot = torch.zeros_like(probs).scatter_(-1, expert_idx, 1.0).view(sequences, length, -1)
        live = self.columns.routable.sum().to(probs.dtype)
        f = one_hot.sum(1) * live / (self.top_k * length)  # (S, E)
        p = probs.view(sequences, length, -1).mean(1)  # (S, E)
        return (f * p).sum(-1).mean()

    @torch.no_grad()
    def observe(
        self, route: RouterOutput, trace: MoETrace | None, phi: torch.Tensor | None, seen: torch.Tensor | None
    ) -> None:
        """Count this training forward's assignments; the bias moves at the optimizer step."""
        self.pending_load.add_(expert_counts(route.expert_idx, self.n_experts))

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        load, active = self.pending_load, self.columns.routable
        if load.sum() > 0:
            mean_load = (load * active).sum() / active.sum().clamp_min(1)
            self.bias.add_(self.config.bias_rate * torch.sign(mean_load - load) * active)
        load.zero_()


def build_topk_router(config: TopKRouterConfig) -> TopKRouter:
    return TopKRouter(config)


def build_chrono_router(config: ChronoRouterConfig) -> ChronoRouter:
    return ChronoRouter(config)


def build_loss_free_router(config: LossFreeRouterConfig) -> LossFreeRouter:
    return LossFreeRouter(config)
