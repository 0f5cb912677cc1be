"""SwiGLU experts and capacity-padded dispatch.

Dispatch is Switch-style: every expert gets ``C`` slots; assignments claim slots in priority order
(all first choices, then all second choices, each in token order) and those past ``C`` are dropped
(reported, and contribute nothing). All shapes are known from the input's shape, so dispatch needs
no host synchronisation: positions come from a cumulative sum, tokens move by gather, and the
experts run as one batched matmul over ``(E, C, D)``. On the CPU, where reading a count back costs
nothing, the same plan runs packed (:func:`capacity_dispatch_and_combine`): each expert only on the
assignments it kept, so empty slots cost no FLOPs. :func:`reference_moe` is the plain-loop twin.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import attrs
import torch
import torch.nn.functional as F
from torch import nn


class ExpertBank(Protocol):
    """What dispatch needs of a layer's experts: :class:`SwiGLUExperts`, or
    ``chronomoe.remote.HybridExperts`` when some are served by another process."""

    n_experts: int
    d_model: int

    def __call__(self, slots: torch.Tensor) -> Any: ...

    def expert(self, index: int, x: torch.Tensor) -> torch.Tensor: ...


class SwiGLUExperts(nn.Module):
    """``E`` independent SwiGLU MLPs ``D → H → D`` with stacked weights (no biases, so an empty
    slot's zero input gives a zero output)."""

    def __init__(self, n_experts: int, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.n_experts, self.d_model, self.d_hidden = n_experts, d_model, d_hidden
        # gate and up kept apart: a fused (D, 2H) matmul is split again by chunk(), whose backward
        # concatenates the two (E, C, H) gradients — a copy that costs more than it saves on CPU
        self.w_gate = nn.Parameter(torch.empty(n_experts, d_model, d_hidden))
        self.w_up = nn.Parameter(torch.empty(n_experts, d_model, d_hidden))
        self.w_down = nn.Parameter(torch.empty(n_experts, d_hidden, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.w_gate, std=self.d_model**-0.5)
        nn.init.normal_(self.w_up, std=self.d_model**-0.5)
        nn.init.normal_(self.w_down, std=self.d_hidden**-0.5)

    def weights(self) -> list[nn.Parameter]:
        """The per-expert parameters, each with the expert on its leading axis."""
        return [self.w_gate, self.w_up, self.w_down]

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        """``slots (E, C, D) → (E, C, D)``."""
        hidden = F.silu(torch.bmm(slots, self.w_gate)) * torch.bmm(slots, self.w_up)  # (E, C, H)
        return torch.bmm(hidden, self.w_down)

    def expert(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """One expert on ``x (M, D) → (M, D)``."""
        return (F.silu(x @ self.w_gate[index]) * (x @ self.w_up[index])) @ self.w_down[index]

    def packed(self, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Expert ``e`` on the ``e``-th run of ``x (M, D)`` cut by ``counts``; ``(M, D)``, same order.

        Each parameter is unbound once (its backward is one ``stack``), not indexed per expert
        (each index's backward fills and adds a full ``(E, D, H)`` zero gradient).
        """
        gate, up, down = self.w_gate.unbind(0), self.w_up.unbind(0), self.w_down.unbind(0)
        outputs = [
            (F.silu(run @ gate[e]) * (run @ up[e])) @ down[e]
            for e, run in enumerate(x.split(counts))
            if counts[e] > 0
        ]
        return torch.cat(outputs) if outputs else x.new_zeros(x.shape)


def expert_capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float | None) -> int:
    """Slots per expert: ``ceil(factor · N · k / E)`` (at most N); all N when the factor is None."""
    if capacity_factor is None:
        return n_tokens
    return max(1, min(n_tokens, math.ceil(capacity_factor * n_tokens * top_k / n_experts)))


@attrs.define
class DispatchPlan:
    """Where each of the ``k·N`` assignments (choice-major order) goes."""

    slot: torch.Tensor  # (k·N,) flat slot index e·C + position; E·C (a dump row) when dropped
    kept: torch.Tensor  # (k·N,) bool
    slot_token: torch.Tensor  # (E, C) token of each slot, N for an empty slot
    expert_tokens: torch.Tensor  # (E,) float tokens processed per expert
    capacity: int


def plan_dispatch(expert_idx: torch.Tensor, n_experts: int, capacity: int) -> DispatchPlan:
    """Assign slots to ``expert_idx (N, k)`` without leaving the device."""
    n_tokens, top_k = expert_idx.shape
    flat_expert = expert_idx.t().reshape(-1)  # (k·N,) first choices first
    # a comparison, not F.one_hot: on CUDA one_hot range-checks its input with a host sync
    one_hot = (
        flat_expert.unsqueeze(-1) == torch.arange(n_experts, device=flat_expert.device)
    ).long()  # (k·N, E)
    position = (one_hot.cumsum(0) * one_hot).sum(-1) - 1  # (k·N,) arrival order within the expert
    kept = position < capacity
    dump = n_experts * capacity
    slot = torch.where(kept, flat_expert * capacity + position, torch.full_like(position, dump))
    token = torch.arange(n_tokens, device=expert_idx.device).repeat(top_k)  # (k·N,)
    # scatter into one extra dump row that absorbs every dropped assignment, then cut it off
    slot_token = torch.full((dump + 1,), n_tokens, dtype=torch.int64, device=expert_idx.device)
    slot_token.index_put_((slot,), token)
    expert_tokens = one_hot.sum(0).clamp(max=capacity).float()
    return DispatchPlan(
        slot=slot,
        kept=kept,
        slot_token=slot_token[:dump].view(n_experts, capacity),
        expert_tokens=expert_tokens,
        capacity=capacity,
    )


def dispatch_and_combine(
    x: torch.Tensor, gates: torch.Tensor, plan: DispatchPlan, experts: ExpertBank
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (N, D)`` → ``(mixture (N, D), per-assignment raw outputs (k·N, D))``.

    Empty slots compute on an arbitrary token and are never read back; a dropped assignment reads an
    arbitrary slot and is zeroed by its gate. The per-assignment outputs of dropped assignments are
    therefore meaningless: ignore them where ``plan.kept`` is False (the trace does).
    """
    n_tokens, d_model = x.shape
    top_k = gates.shape[1]
    # index_select rather than x[idx]: its backward is index_add_, much cheaper on CPU than the
    # accumulating index_put_ behind advanced indexing
    slot_token = plan.slot_token.clamp(max=n_tokens - 1).reshape(-1)
    slots = x.index_select(0, slot_token).view(*plan.slot_token.shape, d_model)  # (E, C, D)
    slot_outputs = experts(slots)  # (E, C, D)
    slot = plan.slot.clamp(max=plan.slot_token.numel() - 1)
    per_assignment = slot_outputs.reshape(-1, d_model).index_select(0, slot)  # (k·N, D)
    live_gates = (gates.t().reshape(-1) * plan.kept).unsqueeze(-1).to(per_assignment.dtype)  # (k·N, 1)
    mixture = (per_assignment * live_gates).view(top_k, n_tokens, d_model).sum(0)  # (N, D)
    return mixture, per_assignment


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a tensor's value back to the host costs no synchronisation: on the CPU the
    host is the device. Tests patch it to False to hold the CPU to the accelerator contract."""
    return device.type == "cpu"


def capacity_dispatch_and_combine(
    x: torch.Tensor,
    gates: torch.Tensor,
    plan: DispatchPlan,
    experts: ExpertBank,
    *,
    expert_sums: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The capacity plan's result, computed the cheapest way for where it runs.

    On the CPU with local experts (:func:`host_reads_are_free`), the kept assignments are packed
    expert by expert and each expert runs on its own tokens only (:func:`packed_dispatch_and_combine`):
    an empty slot costs nothing, and a top-2 layer does the FLOPs of the FLOP-matched dense FFN
    instead of ``capacity_factor`` times them. Elsewhere, the padded ``(E, C, D)`` batch of
    :func:`dispatch_and_combine`, which never synchronises. Both give the same values and gradients.

    Returns ``(mixture, per-assignment outputs, sums)``; ``sums`` is :func:`expert_output_sums` of
    the packed outputs when ``expert_sums`` is asked for and the packed path ran (there they come
    almost free: the outputs are grouped by expert already), else None.
    """
    if isinstance(experts, SwiGLUExperts) and host_reads_are_free(x.device):
        return packed_dispatch_and_combine(x, gates, plan, experts, expert_sums=expert_sums)
    return (*dispatch_and_combine(x, gates, plan, experts), None)


def packed_dispatch_and_combine(
    x: torch.Tensor,
    gates: torch.Tensor,
    plan: DispatchPlan,
    experts: SwiGLUExperts,
    *,
    expert_sums: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Same contract and drops as :func:`dispatch_and_combine`, without padding: reads the kept
    count per expert to the host (free on the CPU, a synchronisation on an accelerator). With
    ``expert_sums``, also :func:`expert_output_sums` of the kept assignments (else None)."""
    n_tokens, d_model = x.shape
    top_k = gates.shape[1]
    capacity = plan.capacity
    counts = plan.expert_tokens.to(torch.int64)  # (E,) kept assignments per expert
    # an expert's kept assignments hold its first slots, so the occupied slots in row-major order
    # are the kept assignments grouped by expert, in arrival order
    tokens = plan.slot_token.reshape(-1)
    tokens = tokens[tokens < n_tokens]  # host read (boolean mask)
    host_counts = counts.tolist()
    packed = experts.packed(x.index_select(0, tokens), host_counts)  # (kept, D)
    start = counts.cumsum(0) - counts  # (E,) first packed row of each expert
    slot = plan.slot.clamp(max=plan.slot_token.numel() - 1)
    row = torch.where(plan.kept, start[slot // capacity] + slot % capacity, torch.zeros_like(slot))
    per_assignment = packed.index_select(0, row)  # (k·N, D); a dropped assignment reads row 0
    flat_gates = gates.t().reshape(-1)  # (k·N,)
    live_gates = (flat_gates * plan.kept).unsqueeze(-1).to(per_assignment.dtype)  # (k·N, 1)
    mixture = (per_assignment * live_gates).view(top_k, n_tokens, d_model).sum(0)  # (N, D)
    sums = None
    if expert_sums:
        with torch.no_grad():  # each kept assignment's gate at its packed row; dropped ones to a dump row
            dump = torch.full_like(row, packed.shape[0])
            packed_gates = flat_gates.new_zeros(packed.shape[0] + 1).index_copy_(
                0, torch.where(plan.kept, row, dump), flat_gates.detach()
            )[:-1]
            sums = expert_output_sums(packed.detach(), packed_gates, host_counts)
    return mixture, per_assignment, sums


def expert_output_sums(grouped: torch.Tensor, gates: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """``(2, E, D)``: per expert, the sum of its raw outputs and of its gated raw outputs, from
    outputs ``grouped (M, D)`` expert by expert (``counts`` rows each) and their gates ``(M,)``.

    One ``(2, n_e) @ (n_e, D)`` product per expert: on the CPU far cheaper than two ``index_add``
    over per-assignment outputs in token order (which also need a gated copy of them)."""
    weights = torch.stack([torch.ones_like(gates), gates]).to(grouped.dtype)  # (2, M)
    sums = [
        pair @ rows if rows.shape[0] else grouped.new_zeros(2, grouped.shape[1])
        for pair, rows in zip(weights.split(counts, dim=1), grouped.split(counts), strict=True)
    ]
    return torch.stack(sums, dim=1)


def sorted_dispatch_and_combine(
    x: torch.Tensor, expert_idx: torch.Tensor, gates: torch.Tensor, experts: ExpertBank
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dropless dispatch: assignments sorted by expert, one matmul chain per expert's contiguous run.

    Exact (no capacity), but the run lengths are read to the host once per call — free on CPU, a
    device synchronisation on an accelerator. Same return values as :func:`dispatch_and_combine`.
    """
    n_tokens, top_k = expert_idx.shape
    flat_expert = expert_idx.t().reshape(-1)  # (k·N,)
    order = torch.argsort(flat_expert, stable=True)
    counts = torch.bincount(flat_expert, minlength=experts.n_experts).tolist()  # host read
    token = torch.arange(n_tokens, device=x.device).repeat(top_k)
    grouped = x.index_select(0, token[order])  # (k·N, D), expert by expert
    if isinstance(experts, SwiGLUExperts):
        sorted_outputs = experts.packed(grouped, counts)
    else:
        sorted_outputs = torch.cat([experts.expert(e, run) for e, run in enumerate(grouped.split(counts))])
    per_assignment = torch.empty_like(sorted_outputs).index_copy(0, order, sorted_outputs)
    weighted = per_assignment * gates.t().reshape(-1, 1).to(per_assignment.dtype)
    return weighted.view(top_k, n_tokens, -1).sum(0), per_assignment


def reference_moe(
    x: torch.Tensor,
    expert_idx: torch.Tensor,
    gates: torch.Tensor,
    experts: SwiGLUExperts,
    capacity: int,
) -> tuple[torch.Tensor, list[tuple[int, int, float, torch.Tensor]]]:
    """Plain-loop twin of :func:`plan_dispatch` + :func:`dispatch_and_combine`.

    Returns the mixture and every processed assignment as ``(token, expert, gate, raw_output)``.
    """
    n_tokens, top_k = expert_idx.shape
    mixture = torch.zeros_like(x)
    used = [0] * experts.n_experts
    assignments = []
    for choice in range(top_k):
        for token in range(n_tokens):
            expert = int(expert_idx[token, choice])
            if used[expert] >= capacity:
                continue
            used[expert] += 1
            output = experts.expert(expert, x[token : token + 1])[0]
            gate = gates[token, choice]
            mixture[token] += gate * output
            assignments.append((token, expert, float(gate.detach()), output.detach()))
    return mixture, assignments
