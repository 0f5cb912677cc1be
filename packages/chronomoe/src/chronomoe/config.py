"""Configuration of ChronoMoE: one ``ChronoConfig`` for everything clock-, coherence- and
bias-related, plus the small configs of the three routers and the MoE layer.

This module is torch-free on purpose: the plugin registers these classes by import path and listing
plugins must never import torch.

Choices that resolve contradictions of the original documents (REFERENCE §2) are made once, here:

- Clock retentions 0.9 / 0.99 / 0.999 (half-lives ~6.6 / 69 / 693 global steps).
- β acts on the top-k *selection key* only; gate weights always come from the clean scores.
- β update ``k ← clip((1 − leak)·k + η·(φ_slow − τ))`` with a deadband around τ and centring
  (mean of k over experts removed). The leak gives β an equilibrium ``k* = η(φ_slow − τ)/leak``
  inside the clamp, which the original lacked.
- Bridge veto on the per-token total-variation distance between clean and biased distributions:
  ``r = 1`` below ``veto_full``, linear to 0 at ``veto_zero``.
- Prune candidates: ``φ_slow < prune_phi`` after ``prune_min_tokens`` routed tokens; every prune is
  blocked while the layer starves (``Ψ_slow < starvation_psi``, ``Neff < starvation_neff_fraction·E``
  or ``max p̄ > starvation_saturation``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from mosaic.core.component_slots import component_field
from mosaic.core.errors import ConfigError, ConfigProblem
from mosaic.core.validators import (
    Rule,
    at_least,
    at_most,
    between,
    each,
    greater_than,
    one_of,
    open_unit,
    optional,
    positive,
    reject,
)

CLOCK_NAMES = ("fast", "mid", "slow")


def half_life_of(alpha: float) -> float:
    """Steps after which an EMA with retention ``alpha`` weighs an observation half as much."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError([ConfigProblem("$.alpha", f"retention must lie in (0, 1), got {alpha}")])
    return math.log(0.5) / math.log(alpha)


def alpha_of(half_life: float) -> float:
    """Retention ``alpha`` whose half-life is ``half_life`` steps (``alpha ** half_life == 0.5``)."""
    if not half_life > 0.0:
        raise ConfigError([ConfigProblem("$.half_life", f"half-life must be > 0 steps, got {half_life}")])
    return 0.5 ** (1.0 / half_life)


@attrs.frozen
class ClockConfig:
    """Retentions of the fast, mid and slow clocks (per global step, strictly increasing)."""

    alpha_fast: float = attrs.field(default=0.9, validator=open_unit)
    alpha_mid: float = attrs.field(default=0.99, validator=open_unit)
    alpha_slow: float = attrs.field(default=0.999, validator=open_unit)

    def __attrs_post_init__(self) -> None:
        if not self.alpha_fast < self.alpha_mid < self.alpha_slow:
            reject("alpha_mid", "clock retentions must satisfy alpha_fast < alpha_mid < alpha_slow, got "
                                f"{self.alpha_fast}, {self.alpha_mid}, {self.alpha_slow}")

    @property
    def alphas(self) -> tuple[float, float, float]:
        return (self.alpha_fast, self.alpha_mid, self.alpha_slow)

    @property
    def half_lives(self) -> tuple[float, float, float]:
        return tuple(half_life_of(a) for a in self.alphas)  # type: ignore[return-value]

    @classmethod
    def from_half_lives(cls, fast: float, mid: float, slow: float) -> ClockConfig:
        return cls(alpha_of(fast), alpha_of(mid), alpha_of(slow))


@attrs.frozen
class LifecycleConfig:
    """Structural edits at slow evaluations (issue #8). Choices made once, here:

    - Bimodality: two output centroids per expert (EMA ``centroid_alpha``), score =
      ``(1 − cos(c1, c2)) · min(n1, n2)/max(n1, n2)``; an expert becomes split-ready above
      ``split_on`` and stops being so only below ``split_off`` (hysteresis), and only with
      ``φ_slow > split_min_phi`` (a bimodal expert that is also incoherent is pruned, not split).
    - ``F_l = (1 − Ψ_l) + λ·N_l + ρ·R_l + κ·I_l`` with λ 0.01, ρ 0.1, κ 0.1 (see free_energy.py).
    - An edit must improve predicted F by ``min_delta_f`` (0.01), one per layer per slow evaluation,
      ``cooldown_steps`` (500) between edits of a layer, ``min_experts``..``max_experts`` (2 .. the layer's columns).
    - New experts (spawn, split) are clone-and-perturb (``perturb`` 0.01 relative noise) and enter
      "cooling" with selection offset ``entry_offset`` relaxed linearly to 0 over ``warmup_steps``.
      With ``preserving_growth`` the clone joins its source's family (a token selects at most one
      expert of a family; capacity is counted by family), the two router rows are pushed apart by
      ``±perturb·‖row‖`` along a random direction, so each takes part of the source's tokens, and
      both halves keep the source's Adam moments and β. Without it the clone's row is an exact copy
      (a token whose first choice was the source selects both and drops its second expert) and
      the halves start with zero moments and statistics.
    - A split candidate first runs a relaxation trial: its β is held at 0 for ``relaxation_steps``;
      only if it is still bimodal afterwards is the split real (else it was β-induced).
    - Mid clock every ``mid_interval`` steps: escalation on the mid-clock top-1 flip rate between
      clean and biased routing — warn, multiply k by ``beta_decay``, reset k to 0. Thresholds are
      calibrated per layer (see escalation.py): the first ``calibration_evals`` mid readings are the
      layer's baseline; afterwards level i fires at ``max(floor_i, mean + escalation_sigmas[i]·std)``
      with floors ``warn_floor < decay_floor < reset_floor`` (so a quiet baseline with std 0 does not
      escalate on every blip). We chose mean + k·std over quantiles because a window of ~10 readings
      gives no usable tail quantile. During calibration the floors alone apply.
      Slow clock every ``slow_interval`` steps: lifecycle edits.
    - Oscillation guard: a spawned or split child (and the parent of a split, whose statistics were
      reset) cannot be merged, and a merge survivor cannot be split, for ``edit_guard_cycles`` slow
      evaluations after the edit.
    """

    centroid_alpha: float = attrs.field(default=0.95, validator=open_unit)
    split_on: float = attrs.field(default=0.6, validator=between(0.0, 1.0, low_open=True))
    split_off: float = attrs.field(default=0.5, validator=between(0.0, 1.0))
    split_min_phi: float = attrs.field(default=0.5, validator=between(-1.0, 1.0))
    lambda_n: float = attrs.field(default=0.01, validator=at_least(0.0))
    rho: float = attrs.field(default=0.1, validator=at_least(0.0))
    kappa: float = attrs.field(default=0.1, validator=at_least(0.0))
    min_delta_f: float = attrs.field(default=0.02, validator=at_least(0.0))
    cooldown_steps: int = attrs.field(default=500, validator=at_least(0))
    min_experts: int = attrs.field(default=2, validator=at_least(1))
    # None: as many as the layer has columns (a 64-column layer may hold 64 experts)
    max_experts: int | None = attrs.field(default=None, validator=optional(at_least(1)))
    perturb: float = attrs.field(default=0.01, validator=at_least(0.0))
    preserving_growth: bool = False
    # propose "widen": every settled expert spawns once, the most selected first, while free columns
    # last (chronomoe.edit_kinds); a trial sees its cost long before its gain (docs/chronomoe.md)
    widen: bool = False
    entry_offset: float = attrs.field(default=-10.0, validator=at_most(0.0))
    warmup_steps: int = attrs.field(default=200, validator=at_least(1))
    relaxation_steps: int = attrs.field(default=200, validator=at_least(1))
    mid_interval: int = attrs.field(default=100, validator=at_least(1))
    slow_interval: int = attrs.field(default=1000, validator=at_least(1))
    calibration_evals: int = attrs.field(default=10, validator=at_least(0))
    warn_floor: float = attrs.field(default=0.1, validator=between(0.0, 1.0))
    decay_floor: float = attrs.field(default=0.3, validator=between(0.0, 1.0))
    reset_floor: float = attrs.field(default=0.5, validator=between(0.0, 1.0))
    escalation_sigmas: tuple[float, float, float] = attrs.field(
        default=(3.0, 6.0, 9.0), converter=tuple, validator=each(at_least(0.0))
    )
    edit_guard_cycles: int = attrs.field(default=3, validator=at_least(0))
    beta_decay: float = attrs.field(default=0.5, validator=between(0.0, 1.0, high_open=True))
    # edits decided on evidence (chronomoe.evidence, where the trainer lends a TrainingProbe): up to
    # ``evidence_candidates`` proposals (the best of each edit kind) are each applied to the model,
    # relaxed ``evidence_relax_steps`` optimizer steps and compared with the unedited model under
    # the same relaxation. With a probe, F_l is measured, not modelled: ``F = probe loss +
    # evidence_lambda · N`` (nats), so an edit's predicted ΔF is its probe Δloss plus the price of
    # the experts it adds or removes; it is taken if ΔF < -evidence_margin. The margin exceeds the
    # price, so a prune must also lower the probe loss. No edit in the last
    # ``freeze_final_fraction`` of training.
    evidence_candidates: int = attrs.field(default=3, validator=at_least(1))
    evidence_relax_steps: int = attrs.field(default=4, validator=at_least(1))
    # the relaxation of a trial of an edit that adds experts (spawn, split, widen); None: the same
    # as evidence_relax_steps. A new expert costs loss for its first few hundred steps and pays
    # after (the scheduled-growth study in docs/chronomoe.md), so a short trial only sees the cost
    evidence_growth_relax_steps: int | None = attrs.field(default=None, validator=optional(at_least(1)))
    evidence_margin: float = attrs.field(default=0.005, validator=at_least(0.0))
    evidence_lambda: float = attrs.field(default=0.002, validator=at_least(0.0))
    # try a spawned or split expert without its entry offset (see chronomoe.evidence)
    evidence_warm_trial: bool = False
    freeze_final_fraction: float = attrs.field(default=0.25, validator=between(0.0, 1.0, high_open=True))

    def __attrs_post_init__(self) -> None:
        if self.lambda_n > 0 and not self.min_delta_f > self.lambda_n:
            reject("min_delta_f", f"the do-nothing margin must exceed the complexity price of one expert "
                                  f"(lambda_n {self.lambda_n}), else pruning an average expert always passes; "
                                  f"got {self.min_delta_f}")
        if self.evidence_lambda > 0 and not self.evidence_margin > self.evidence_lambda:
            reject("evidence_margin", f"the do-nothing margin must exceed the complexity price of one expert "
                                      f"(evidence_lambda {self.evidence_lambda}), else an edit that removes an "
                                      f"expert passes without lowering the loss; got {self.evidence_margin}")
        if not self.split_off < self.split_on:
            reject("split_off", f"must be < split_on ({self.split_on}), got {self.split_off}")
        if self.max_experts is not None and not self.min_experts <= self.max_experts:
            reject("min_experts", f"must be <= max_experts ({self.max_experts}), got {self.min_experts}")
        if not self.warn_floor < self.decay_floor < self.reset_floor:
            reject("decay_floor", "escalation floors must satisfy warn_floor < decay_floor < reset_floor, got "
                                  f"{self.warn_floor}, {self.decay_floor}, {self.reset_floor}")
        sigmas = self.escalation_sigmas
        if len(sigmas) != 3 or not sigmas[0] <= sigmas[1] <= sigmas[2]:
            reject("escalation_sigmas", f"must be three non-decreasing values, got {sigmas}")


@attrs.frozen
class KernelConfig:
    """The kernel that every lasting write passes through (seed 003, "Sovereign Router").

    - Windows of ``window_steps`` global steps; per window at most ``write_budget`` ordinary writes
      (lifecycle edits) and ``identity_budget`` identity events are finalised; the rest queue, FIFO.
    - Identity events are two-step: proposed in window N, finalised at the start of window N+1 only
      if their evidence still holds; they are irreversible (everything else may be reverted).
    - Scar (slow clock): an edit whose measured F after is worse than F before by ``scar_delta_f``
      forbids that kind of edit on that layer from then on; with keepers (``chronomoe.sovereign``),
      an edit whose counterfactual trial (``chronomoe.evidence``) realised ``Δloss >
      scar_delta_loss`` (nats of held-out probe loss) forbids that kind of edit for that expert.
    - Flooding: a keeper may make at most ``proposal_budget`` proposals per window; the rest are
      refused and audited.
    - Reflex crystallisation (fast clock): an expert's β coefficient is frozen when all five gates
      pass — (1) persistence: ``|k| ≥ reflex_k_fraction · k_max``; (2) coherence:
      ``φ_slow ≥ reflex_min_phi``; (3) agreement: mid-clock flip rate ``≤ reflex_max_flip``;
      (4) evidence: ``tokens_seen ≥ reflex_min_tokens``; (5) anti-gaming: the expert's own bias is
      not being vetoed — its veto rate (mid-clock debiased EMA of the mean veto ``1 − r`` over the
      tokens routed to it) ``≤ reflex_max_veto`` — so a β that invents support cannot crystallise.
    - Epoch boundary (mid clock): ``|Ψ_mid − Ψ_slow| ≥ epoch_psi_shift`` marks a before/after.
    """

    window_steps: int = attrs.field(default=1000, validator=at_least(1))
    write_budget: int = attrs.field(default=4, validator=at_least(0))
    identity_budget: int = attrs.field(default=1, validator=at_least(0))
    scar_delta_f: float = attrs.field(default=0.05, validator=greater_than(0.0))
    scar_delta_loss: float = attrs.field(default=0.05, validator=greater_than(0.0))
    proposal_budget: int = attrs.field(default=32, validator=at_least(1))
    reflex_k_fraction: float = attrs.field(default=0.9, validator=between(0.0, 1.0, low_open=True))
    reflex_min_phi: float = attrs.field(default=0.7, validator=between(-1.0, 1.0))
    reflex_max_flip: float = attrs.field(default=0.1, validator=between(0.0, 1.0))
    reflex_min_tokens: int = attrs.field(default=10000, validator=at_least(0))
    reflex_max_veto: float = attrs.field(default=0.05, validator=between(0.0, 1.0))
    epoch_psi_shift: float = attrs.field(default=0.2, validator=greater_than(0.0))


@attrs.frozen
class ChronoConfig:
    """The single source of truth for coherence, slow bias, veto and the dry-run lifecycle."""

    clocks: ClockConfig = attrs.Factory(ClockConfig)
    # coherence φ_e = cos(ȳ_e, ȳ_mix): remove the expert's own gated contribution from the mixture
    leave_one_out: bool = True
    # per-token cosines averaged over the expert's tokens instead of a cosine of batch means
    token_level: bool = False
    # φ estimates shrink towards phi_prior with weight phi_prior_weight (in units of a clock's full
    # evidence): an expert that stops being routed sees its φ decay to the prior, not freeze
    phi_prior: float = attrs.field(default=0.0, validator=between(-1.0, 1.0))
    phi_prior_weight: float = attrs.field(default=0.05, validator=at_least(0.0))
    # an expert is flagged degraded when φ_fast − φ_slow < −degradation_delta (reported per step
    # as moe_degraded_experts and in snapshots)
    degradation_delta: float = attrs.field(default=0.15, validator=greater_than(0.0))
    # slow bias β_eff = clamp(k, ±k_max) · logit_std
    k_max: float = attrs.field(default=0.3, validator=greater_than(0.0))
    eta: float = attrs.field(default=0.01, validator=greater_than(0.0))
    tau: float = attrs.field(default=0.5, validator=between(-1.0, 1.0))
    deadband: float = attrs.field(default=0.02, validator=between(0.0, 1.0, high_open=True))
    beta_leak: float = attrs.field(default=0.02, validator=between(0.0, 1.0, high_open=True))
    logit_std_alpha: float = attrs.field(default=0.99, validator=open_unit)
    # bridge veto on per-token TV(p_clean, p_biased): full β below veto_full, none from veto_zero
    veto_full: float = attrs.field(default=0.1, validator=between(0.0, 1.0))
    veto_zero: float = attrs.field(default=0.3, validator=between(0.0, 1.0))
    # JS divergence and TV metrics on every n-th token only (1 = all tokens)
    js_token_stride: int = attrs.field(default=8, validator=at_least(1))
    # dry-run lifecycle
    prune_phi: float = attrs.field(default=0.3, validator=between(-1.0, 1.0))
    prune_min_tokens: int = attrs.field(default=1000, validator=at_least(0))
    starvation_psi: float = attrs.field(default=0.5, validator=between(-1.0, 1.0))
    starvation_neff_fraction: float = attrs.field(default=0.5, validator=between(0.0, 1.0))
    starvation_saturation: float = attrs.field(default=0.5, validator=between(0.0, 1.0, low_open=True))
    lifecycle: LifecycleConfig = attrs.Factory(LifecycleConfig)
    kernel: KernelConfig = attrs.Factory(KernelConfig)

    def __attrs_post_init__(self) -> None:
        if not self.veto_full < self.veto_zero:
            reject("veto_full", f"must be < veto_zero ({self.veto_zero}), got {self.veto_full}")


def _check_shape(config: Any) -> None:
    if config.top_k > config.n_experts:
        reject("top_k", f"must be <= n_experts ({config.n_experts}), got {config.top_k}")


@attrs.frozen
class TopKRouterConfig:
    """``router.topk``: softmax top-k (Mixtral) with optional Switch balance loss and z-loss."""

    d_model: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(validator=positive)
    top_k: int = attrs.field(validator=positive)
    load_balance_weight: float = attrs.field(default=0.01, validator=at_least(0.0))
    z_loss_weight: float = attrs.field(default=0.001, validator=at_least(0.0))
    # renormalise the k selected probabilities to sum to one (Mixtral) instead of raw softmax mass
    normalize_gates: bool = True

    def __attrs_post_init__(self) -> None:
        _check_shape(self)


@attrs.frozen
class ChronoRouterConfig:
    """``router.chrono``: top-k whose selection key carries the coherence-driven slow bias β."""

    d_model: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(validator=positive)
    top_k: int = attrs.field(validator=positive)
    chrono: ChronoConfig = attrs.Factory(ChronoConfig)
    # router logits are divided by this before softmax and selection (< 1 sharper, > 1 flatter)
    temperature: float = attrs.field(default=1.0, validator=greater_than(0.0))
    # keep a RoleState (output roles, co-activation, bimodality) — needed by the lifecycle (ChronoSystem)
    track_roles: bool = False
    load_balance_weight: float = attrs.field(default=0.01, validator=at_least(0.0))
    z_loss_weight: float = attrs.field(default=0.001, validator=at_least(0.0))
    normalize_gates: bool = True

    def __attrs_post_init__(self) -> None:
        _check_shape(self)


@attrs.frozen
class LossFreeRouterConfig:
    """``router.loss_free``: DeepSeek-V3 auxiliary-loss-free balancing: sigmoid affinities, a
    selection-only bias moved by ±``bias_rate`` (γ, 1e-3 as in DeepSeek-V3) after each optimizer
    step, gates from the unbiased normalised affinities, and an optional sequence-wise balance loss
    of weight ``sequence_balance_weight`` (α; DeepSeek-V3 used 1e-4)."""

    d_model: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(validator=positive)
    top_k: int = attrs.field(validator=positive)
    bias_rate: float = attrs.field(default=1e-3, validator=greater_than(0.0))
    sequence_balance_weight: float = attrs.field(default=1e-4, validator=at_least(0.0))
    z_loss_weight: float = attrs.field(default=0.0, validator=at_least(0.0))
    normalize_gates: bool = True

    def __attrs_post_init__(self) -> None:
        _check_shape(self)


#: ``capacity``: Switch-style slots, no host sync (the default); ``sorted``: dropless, reads the
#: per-expert run lengths to the host once per forward (free on CPU, a sync on an accelerator).
DISPATCH_MODES = ("capacity", "sorted")

#: Router config fields the MoE layer sets itself; a router mapping inside a layer must not set them.
ROUTER_SHAPE_FIELDS = ("d_model", "n_experts", "top_k")


#: an address a gRPC channel dials: ``host:port``
HOST_PORT = Rule("host:port", lambda value: isinstance(value, str) and value.rpartition(":")[2].isdigit()
                 and bool(value.rpartition(":")[0]))


@attrs.frozen
class RemoteExpertsConfig:
    """Experts of a ``layer.moe`` served by another process over gRPC (the ``remote`` extra;
    ``python -m chronomoe.remote_server`` serves them). The router, the clocks and the kernel stay
    local; remote experts are served frozen (forward only, see chronomoe.remote).

    ``experts`` are the layer's columns served remotely, in the server's expert order. A call that
    fails or passes ``call_timeout_s`` masks them until a health probe (``probe_timeout_s``, retried
    after ``retry_initial_s`` doubling to ``retry_max_s``) finds the server again.
    """

    address: str = attrs.field(validator=HOST_PORT)
    experts: tuple[int, ...] = attrs.field(converter=tuple, validator=each(at_least(0)))
    call_timeout_s: float = attrs.field(default=2.0, validator=between(0.0, 60.0, low_open=True))
    probe_timeout_s: float = attrs.field(default=0.25, validator=between(0.0, 10.0, low_open=True))
    retry_initial_s: float = attrs.field(default=0.5, validator=greater_than(0.0))
    retry_max_s: float = attrs.field(default=30.0, validator=greater_than(0.0))

    def __attrs_post_init__(self) -> None:
        if not self.experts:
            reject("experts", "must name at least one column served remotely, got none")
        if len(set(self.experts)) != len(self.experts):
            reject("experts", f"must not repeat a column, got {list(self.experts)}")
        if self.retry_max_s < self.retry_initial_s:
            reject("retry_max_s", f"must be >= retry_initial_s ({self.retry_initial_s}), got {self.retry_max_s}")


@attrs.frozen
class MoEConfig:
    """``layer.moe``: a drop-in MLP replacement ``(B, T, D) → (B, T, D)``.

    ``router`` is the router's semantic ID under ``type`` plus that router's own config fields,
    resolved through the registry when the layer is built (``{type: router.chrono, chrono: {...}}``);
    ``d_model``, ``n_experts`` and ``top_k`` come from this config.
    """

    d_model: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(default=8, validator=positive)
    top_k: int = attrs.field(default=2, validator=positive)
    # hidden width of one SwiGLU expert; None = 2·d_model (top-2 then matches a 4·d dense FFN's FLOPs)
    d_hidden: int | None = attrs.field(default=None, validator=optional(positive))
    # Switch capacity per expert = ceil(capacity_factor · tokens · top_k / n_experts);
    # None = dropless (capacity = all tokens: exact, costs n_experts/top_k times the expert FLOPs)
    capacity_factor: float | None = attrs.field(default=1.25, validator=optional(greater_than(0.0)))
    dispatch: Literal["capacity", "sorted"] = attrs.field(default="capacity", validator=one_of(*DISPATCH_MODES))
    router: dict[str, Any] = component_field("router", injected=ROUTER_SHAPE_FIELDS, default={"type": "router.topk"})
    # compute a MoETrace (coherence inputs) every forward even if the router does not need one
    emit_trace: bool = False
    # experts served by another process (None: every expert is a local parameter)
    remote: RemoteExpertsConfig | None = None

    def __attrs_post_init__(self) -> None:
        _check_shape(self)
        if self.remote is not None:
            if max(self.remote.experts) >= self.n_experts:
                reject("remote", f"experts must be columns below n_experts ({self.n_experts}), "
                                 f"got {list(self.remote.experts)}")
            if self.n_experts - len(self.remote.experts) < self.top_k:
                reject("remote", f"must leave at least top_k ({self.top_k}) local experts, so that routing stays "
                                 f"defined while the server is unreachable; got {len(self.remote.experts)} remote "
                                 f"of {self.n_experts}")

    @property
    def expert_hidden(self) -> int:
        return self.d_hidden if self.d_hidden is not None else 2 * self.d_model
