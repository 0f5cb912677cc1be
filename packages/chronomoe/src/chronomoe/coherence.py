"""Expert coherence: does an expert push the layer's output the way the mixture goes?

``φ_e = cos(ȳ_e, ȳ_mix)`` where ``ȳ_e`` is the mean raw output of expert ``e`` over the tokens it
processed this step and ``ȳ_mix`` the mean mixture over all tokens. Two corrections over the
original (REFERENCE §2, defect 1):

- *leave-one-out*: the expert's own gated contribution is removed from the mixture before the
  cosine, so an expert is not rewarded for agreeing with itself;
- *token-level*: the cosine is taken per token (expert output vs that token's mixture) and averaged
  over the expert's tokens, instead of a cosine of batch means.

Layer coherence ``Ψ = Σ_e n_e φ_e / Σ_e n_e`` weights experts by their routed token counts.
"""

from __future__ import annotations

from typing import cast

import attrs
import torch
import torch.nn.functional as F


@attrs.define
class MoETrace:
    """What one MoE forward exposes to coherence tracking; every tensor is detached and already
    computed by the forward (no copy is made for the trace).

    ``N`` tokens, ``E`` experts, ``k`` selected per token, ``D`` width. Assignments are in
    choice-major order: assignment ``j·N + t`` is token ``t``'s ``j``-th choice.
    """

    mixture: torch.Tensor  # (N, D) layer output per token
    clean_logits: torch.Tensor  # (N, E) router scores without slow bias
    selection_key: torch.Tensor  # (N, E) what top-k ran on (clean logits + the router's biases)
    probs: torch.Tensor  # (N, E) softmax of the clean logits
    expert_idx: torch.Tensor  # (N, k) selected experts
    gates: torch.Tensor  # (N, k) gate weights applied to the selected experts' outputs
    kept: torch.Tensor  # (N, k) bool, False where the assignment overflowed capacity
    assignment_outputs: torch.Tensor  # (k·N, D) raw expert output per assignment; ignore where not kept
    expert_tokens: torch.Tensor  # (E,) float tokens each expert actually processed
    # (2, E, D) per expert [Σ raw output, Σ gated raw output] over kept assignments, when the
    # dispatch had them for free (chronomoe.experts.expert_output_sums); None: summed here
    expert_sums: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return self.mixture.shape[0]

    @property
    def n_experts(self) -> int:
        return self.expert_tokens.shape[0]

    def assignment_experts(self) -> torch.Tensor:
        return self.expert_idx.t().reshape(-1)  # (k·N,)

    def assignment_gates(self) -> torch.Tensor:
        """(k·N,) gate per assignment, 0 where dropped."""
        return (self.gates * self.kept).t().reshape(-1)

    def assignment_tokens(self) -> torch.Tensor:
        top_k = self.expert_idx.shape[1]
        return torch.arange(self.n_tokens, device=self.mixture.device).repeat(top_k)  # (k·N,)

    def assignment_kept(self) -> torch.Tensor:
        return self.kept.t().reshape(-1)  # (k·N,)

    def kept_expert_index(self) -> torch.Tensor:
        """(k·N,) each assignment's expert, ``E`` (an extra row, cut off) where it was dropped."""
        return torch.where(self.assignment_kept(), self.assignment_experts(), self.n_experts)

    def _per_expert(self, values: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Sum ``values`` (k·N, ...) per expert over kept assignments; a dropped assignment lands in
        an extra row that is cut off (cheaper than masking the values). ``index``: a
        :meth:`kept_expert_index` already computed."""
        index = self.kept_expert_index() if index is None else index
        out = values.new_zeros(self.n_experts + 1, *values.shape[1:])
        return out.index_add_(0, index, values)[: self.n_experts]

    def expert_means(self) -> torch.Tensor:
        """``ȳ_e``: (E, D) mean raw output per expert (0 for an expert without tokens)."""
        sums = self._per_expert(self.assignment_outputs) if self.expert_sums is None else self.expert_sums[0]
        return sums / self.expert_tokens.clamp_min(1.0).unsqueeze(-1)

    def expert_gated_sums(self) -> torch.Tensor:
        """(E, D) each expert's summed gated contribution to the mixture."""
        if self.expert_sums is not None:
            return self.expert_sums[1]
        return self._per_expert(self.assignment_outputs * self.assignment_gates().unsqueeze(-1))

    def routing_share(self) -> torch.Tensor:
        """``p̄``: (E,) mean clean routing probability."""
        return self.probs.mean(0)


def expert_coherence(
    trace: MoETrace, *, leave_one_out: bool = True, token_level: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(φ (E,), seen (E,) bool)``; φ is 0 where the expert processed no token. No host sync."""
    seen = trace.expert_tokens > 0
    if token_level:
        phi = _token_level(trace, leave_one_out)
    elif trace.expert_sums is not None:  # summed by the dispatch
        target = trace.mixture.mean(0).expand(trace.n_experts, -1)  # (E, D)
        if leave_one_out:
            target = target - trace.expert_sums[1] / trace.n_tokens
        phi = F.cosine_similarity(trace.expert_means(), target, dim=-1, eps=1e-8)
    else:  # expert_means() and expert_gated_sums(), sharing one index; dropped rows fall off it
        index, outputs = trace.kept_expert_index(), trace.assignment_outputs
        means = trace._per_expert(outputs, index) / trace.expert_tokens.clamp_min(1.0).unsqueeze(-1)
        target = trace.mixture.mean(0).expand(trace.n_experts, -1)  # (E, D)
        if leave_one_out:
            gates = trace.gates.t().reshape(-1, 1).to(outputs.dtype)  # (k·N, 1)
            target = target - trace._per_expert(outputs * gates, index) / trace.n_tokens
        phi = F.cosine_similarity(means, target, dim=-1, eps=1e-8)
    return torch.where(seen, phi, torch.zeros_like(phi)), seen


def _token_level(trace: MoETrace, leave_one_out: bool) -> torch.Tensor:
    outputs = trace.assignment_outputs  # (k·N, D)
    target = trace.mixture[trace.assignment_tokens()]  # (k·N, D)
    if leave_one_out:
        target = target - trace.assignment_gates().unsqueeze(-1) * outputs
    cosines = F.cosine_similarity(outputs, target, dim=-1, eps=1e-8)  # (k·N,)
    return trace._per_expert(cosines) / trace.expert_tokens.clamp_min(1.0)


def layer_coherence(phi: torch.Tensor, expert_tokens: torch.Tensor) -> torch.Tensor:
    """``Ψ``: routing-share-weighted mean of φ (0-d; 0 when no token was routed)."""
    total = expert_tokens.sum()
    return (phi * expert_tokens).sum() / total.clamp_min(1.0)


def reference_coherence(
    mixture: torch.Tensor,
    assignments: list[tuple[int, int, float, torch.Tensor]],
    n_experts: int,
    *,
    leave_one_out: bool,
    token_level: bool,
) -> tuple[list[float | None], float]:
    """Plain-loop twin of :func:`expert_coherence` and :func:`layer_coherence`.

    ``assignments``: ``(token, expert, gate, raw_output (D,))`` for every processed assignment.
    Returns φ per expert (None for an expert without tokens) and Ψ.
    """
    n_tokens = mixture.shape[0]
    phis: list[float | None] = []
    counts = []
    for expert in range(n_experts):
        mine = [(t, g, y) for t, e, g, y in assignments if e == expert]
        counts.append(len(mine))
        if not mine:
            phis.append(None)
            continue
        if token_level:
            cosines = []
            for token, gate, output in mine:
                target = mixture[token] - gate * output if leave_one_out else mixture[token]
                cosines.append(_cos(output, target))
            phis.append(sum(cosines) / len(cosines))
        else:
            mean_output = cast(torch.Tensor, sum(y for _, _, y in mine)) / len(mine)
            target = mixture.sum(0)
            if leave_one_out:
                target = target - sum(g * y for _, g, y in mine)
            phis.append(_cos(mean_output, target / n_tokens))
    total = sum(counts)
    psi = sum(c * p for c, p in zip(counts, phis, strict=True) if p is not None) / total if total else 0.0
    return phis, psi


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    denominator = max(float(a.norm()) * float(b.norm()), 1e-8)
    return float(a @ b) / denominator
