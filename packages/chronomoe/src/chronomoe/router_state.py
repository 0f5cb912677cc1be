"""The slow routing bias β and the measures of how far it moves routing.

``β_eff = clamp(k, ±k_max) · logit_std`` is scale-free: ``k`` is in units of the (debiased EMA of
the) standard deviation of the clean router logits. β is added to the top-k *selection key* only;
gate weights come from the clean scores (DeepSeek-V3's way), which removes the original's
rich-get-richer loop where β also inflated the gate of the experts it favoured.
"""

from __future__ import annotations

import torch
from torch import nn

from chronomoe.clocks import DebiasedEMA
from chronomoe.config import ChronoConfig


class RouterState(nn.Module):
    """Slow bias coefficients ``k`` (E,) and the logit-std EMA, as buffers."""

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    k: torch.Tensor
    held: torch.Tensor
    crystallised: torch.Tensor

    def __init__(self, n_experts: int, config: ChronoConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("k", torch.zeros(n_experts))
        # experts on a relaxation trial: β held at 0 to tell β-induced from real bimodality
        self.register_buffer("held", torch.zeros(n_experts, dtype=torch.bool))
        # crystallised reflexes: k frozen for good (an identity event finalised by the kernel)
        self.register_buffer("crystallised", torch.zeros(n_experts, dtype=torch.bool))
        # mid-clock disagreement [top-1 flip rate, Fisher–Rao distance] for escalation
        self.disagreement = DebiasedEMA((config.clocks.alpha_mid,), (2,))
        # mid-clock per-expert veto rate (expert_veto_counts): how much of what β claims for the
        # expert is vetoed
        self.expert_veto = DebiasedEMA((config.clocks.alpha_mid,), (n_experts,))
        self.logit_std = DebiasedEMA((config.logit_std_alpha,))

    def beta_eff(self) -> torch.Tensor:
        """(E,) the bias added to the selection key."""
        std = self.logit_std.estimate_at(0)
        return self.k.clamp(-self.config.k_max, self.config.k_max) * std

    @torch.no_grad()
    def observe_veto(self, veto_counts: torch.Tensor) -> None:
        """Per-expert veto rate from one forward's ``veto_counts`` (2, E) (see
        :func:`expert_veto_counts`); experts β selected for no token age without an observation."""
        proposed = veto_counts[1]
        self.expert_veto.update(veto_counts[0] / proposed.clamp_min(1.0), proposed > 0)

    @torch.no_grad()
    def reset_expert(self, expert: int) -> None:
        """Forget one column's bias, veto history and crystallisation (a new or archived expert:
        a crystallised reflex belongs to the expert that earned it, not to its column)."""
        self.k[expert] = 0.0
        self.held[expert] = False
        self.crystallised[expert] = False
        self.expert_veto.numerator[:, expert] = 0.0
        self.expert_veto.weight[:, expert] = 0.0

    @torch.no_grad()
    def observe_logit_std(self, std: torch.Tensor) -> None:
        self.logit_std.update(std)

    @torch.no_grad()
    def update_beta(
        self, phi_slow: torch.Tensor, evidence: torch.Tensor, active: torch.Tensor | None = None
    ) -> None:
        """``k ← clip((1 − leak)·k + η·(φ_slow − τ))`` with deadband and centring over the active
        experts; only experts with slow-clock evidence (ever routed) are pushed; experts on a
        relaxation trial (``held``) and inactive columns keep ``k = 0``; crystallised experts keep
        their k unchanged. Device-only."""
        c = self.config
        live = torch.ones_like(self.held) if active is None else active
        error = phi_slow - c.tau
        # push η·error where |error| > deadband and the expert has evidence (few, in-place ops: every step)
        push = (error * c.eta).masked_fill_((error.abs() <= c.deadband) | (evidence <= 0), 0.0)
        k = torch.add(push, self.k, alpha=1.0 - c.beta_leak)
        live_f = live.to(k.dtype)
        k = k.sub_(torch.dot(k, live_f) / live_f.sum().clamp_min(1.0))  # a common shift selects nothing
        k = k.masked_fill_(~live | self.held, 0.0).clamp_(-c.k_max, c.k_max)
        self.k.copy_(torch.where(self.crystallised, self.k, k))


def expert_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the (small) last axis of ``(N, E)`` logits.

    Same values as ``F.softmax(logits, -1)``; computed along the token axis of the transposed view
    because CPU softmax over a last axis of a few experts is an order of magnitude slower than over
    a long one (measured on torch 2.13: ~400 µs vs ~30 µs at N = 2048, E = 8). The result is made
    contiguous again: reductions over the expert axis of a transposed layout are slow too.
    """
    return torch.softmax(logits.t(), dim=0).t().contiguous()


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row ``½ Σ |p − q|`` (the original's "overlap-only mass" ``Σ (q − p)⁺`` is this)."""
    return 0.5 * (p - q).abs().sum(-1)


def overlap_only_mass(p_clean: torch.Tensor, p_biased: torch.Tensor) -> torch.Tensor:
    """The original's formula, kept as the reference twin of :func:`total_variation`."""
    return (p_biased - p_clean).clamp(min=0).sum(-1)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen-Shannon divergence (nats) of two probability tensors."""
    m = 0.5 * (p + q)
    log_m = m.clamp_min(1e-12).log()
    kl_pm = (p * (p.clamp_min(1e-12).log() - log_m)).sum(-1)
    kl_qm = (q * (q.clamp_min(1e-12).log() - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm)


def bridge_relevance(tv: torch.Tensor, config: ChronoConfig) -> torch.Tensor:
    """Veto factor ``r``: 1 while β moves at most ``veto_full`` of the mass, falling linearly to 0
    at ``veto_zero`` — β may break ties, it may not invent support the clean router lacks."""
    span = config.veto_zero - config.veto_full
    return (1.0 - (tv - config.veto_full) / span).clamp(0.0, 1.0)


def biased_selection_key(
    clean_logits: torch.Tensor, beta: torch.Tensor, config: ChronoConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """The vetoed selection key ``z + r·β`` (N, E), disagreement metrics (0-d tensors) and the
    per-token veto ``1 − r`` (N,).

    ``tv``, ``js`` and ``fisher_rao`` (the geodesic distance of :mod:`chronomoe.geometry`, the
    disagreement the escalation and the report read) compare the clean distribution with the
    distribution of the vetoed key, and ``flip_rate`` counts top-1 changes, on every
    ``js_token_stride``-th token (rates of a layer's routing, estimated on a sample because they
    cost more than the routing they describe); ``veto`` (mean ``1 − r``) uses every token.

    Computed expert-major, on ``(E, N)``: every softmax and reduction over the few experts then runs
    along the long token axis (see :func:`expert_softmax`); the key is returned as an ``(N, E)`` view
    of that layout (top-k over it costs what it costs on a contiguous key).
    """
    logits = clean_logits.float().t().contiguous()  # (E, N)
    beta = beta.unsqueeze(-1)  # (E, 1)
    p_clean = torch.softmax(logits, dim=0)
    # bridge_relevance of TV(clean, proposed) = ½ Σ |p − q|, in two ops: (veto_zero − tv) / span
    span = config.veto_zero - config.veto_full
    distance = (p_clean - torch.softmax(logits + beta, dim=0)).abs_().sum(0)  # (N,) 2·TV
    relevance = torch.add(config.veto_zero / span, distance, alpha=-0.5 / span).clamp_(0.0, 1.0)
    key = torch.addcmul(logits, relevance, beta)  # (E, N) z + r·β
    stride = config.js_token_stride
    # the sample token-major again, clean and biased stacked (2, n, E): few tokens, and sums over the
    # expert axis round as they always did, which matters at distance 0, where the Fisher–Rao arccos
    # is ill-conditioned
    pair = (
        torch.stack([p_clean[:, ::stride], torch.softmax(key[:, ::stride], dim=0)])
        .transpose(1, 2)
        .contiguous()
    )
    metrics = {
        "js": _js_of_pair(pair).mean(),
        "tv": total_variation(pair[0], pair[1]).mean(),
        "fisher_rao": _fisher_rao_of_pair(pair).mean(),
        # max(0) returns the first maximal index, as argmax does
        "flip_rate": (logits[:, ::stride].max(0).indices != key[:, ::stride].max(0).indices).float().mean(),
        "veto": 1.0 - relevance.mean(),
    }
    return key.t(), metrics, 1.0 - relevance


def _fisher_rao_of_pair(pair: torch.Tensor) -> torch.Tensor:
    """:func:`~chronomoe.geometry.fisher_rao_distance` of ``pair[0]`` and ``pair[1]``, in fewer ops."""
    unit = pair / pair.sum(-1, keepdim=True)
    return 2.0 * torch.arccos((unit[0] * unit[1]).sqrt().sum(-1).clamp(0.0, 1.0))


def _js_of_pair(pair: torch.Tensor) -> torch.Tensor:
    """:func:`js_divergence` of ``pair[0]`` and ``pair[1]`` (stacked ``(2, ..., E)``), in fewer ops."""
    log_m = pair.mean(0).clamp_min(1e-12).log()
    return (pair * (pair.clamp_min(1e-12).log() - log_m)).sum(-1).mean(0)


def selection_mask(key: torch.Tensor, top_k: int) -> torch.Tensor:
    """(N, E) 1.0 where the expert is among the token's top-k of ``key`` (no one_hot: no sync)."""
    index = key.topk(top_k, dim=-1).indices
    return torch.zeros_like(key, dtype=torch.float32).scatter_(-1, index, 1.0)


def expert_veto_counts(
    clean_key: torch.Tensor, biased_key: torch.Tensor, token_veto: torch.Tensor, top_k: int
) -> torch.Tensor:
    """(2, E): per expert, the veto mass ``Σ (1 − r)`` over the tokens that β *adds* it to (in the
    top-k of the unvetoed biased key, not in the clean top-k), and the number of tokens whose
    biased key selects it. Their ratio is the expert's veto rate: the fraction of its routed
    (β-proposed) tokens whose bias for it was vetoed. A veto is charged only to the experts β
    promoted, so a neighbour that was selected anyway is not blamed for another expert's β."""
    # both selections by one top-k over the stacked keys: (2, N, E) [proposed, clean]
    selected = selection_mask(torch.stack([biased_key, clean_key]), top_k)
    proposed = selected[0]
    gained = proposed - proposed * selected[1]  # in the biased top-k, not in the clean one
    vetoed = (gained * token_veto.float().unsqueeze(-1)).sum(0)
    return torch.stack([vetoed, proposed.sum(0)])
