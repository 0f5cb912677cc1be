"""Live model metrics for homeostasis, read from a model's outputs and its streaming state.

Memory metrics read a model's memory back through the contract's ``MemoryReadBack`` protocol
(``model.memory_cells(state)``, one cells record per layer with an ``occupancy`` tensor); the
runtime never reads a model's state layout itself. A model without that protocol is refused with a
:class:`RuntimeStateError` naming what it lacks, never silently reported as zeros. Output metrics
read the contract's aux keys (write gate and opcode logits), per layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.protocols import MemoryReadBack, missing_members
from mosaic.core.errors import RuntimeStateError

#: A cell whose occupancy is at least this counts as in use.
OCCUPIED_AT = 0.05


def cell_occupancy(model: Any, state: Any) -> list[torch.Tensor]:
    """Each layer's cell occupancy (any shape, 0 empty), read back through the model."""
    if not isinstance(model, MemoryReadBack):
        raise RuntimeStateError(
            f"{type(model).__name__} reports no memory: memory metrics read it back with "
            f"{', '.join(missing_members(model, MemoryReadBack))} (mosaic.core.contract.protocols.MemoryReadBack)"
        )
    layers = [cells.occupancy for cells in model.memory_cells(state)]
    if not layers:
        raise RuntimeStateError(f"{type(model).__name__}.memory_cells(state) returned no layers")
    return layers


def memory_occupancy(model: Any, state: Any) -> float:
    """Fraction of memory cells (all layers, hashes, samples) whose occupancy is >= OCCUPIED_AT."""
    used = total = 0
    for cells in cell_occupancy(model, state):
        used += int((cells >= OCCUPIED_AT).sum())
        total += cells.numel()
    return used / total


def memory_strength(model: Any, state: Any) -> float:
    """Mean occupancy of all memory cells (0 empty, 1 every cell fully written)."""
    return float(torch.cat([cells.float().flatten() for cells in cell_occupancy(model, state)]).mean())


#: Metrics computed from a model output's aux tensors, and the aux key each needs.
AUX_METRICS = {
    "memory_write_rate": keys.WRITE_GATE_LOGITS.name,
    "memory_routing_entropy": keys.READ_BIT_LOGITS.name,
    "moe_routing_entropy": keys.MOE_EXPERT_LOAD.name,
    "opcode_entropy": keys.OPCODE_LOGITS.name,
}


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * torch.log(p) + (1 - p) * torch.log(1 - p))


def router_bits_entropy(bit_logits: torch.Tensor) -> float:
    """Entropy of the memory routers' bucket choice over the tokens of one output, normalised to
    [0, 1] (1: buckets used uniformly; 0: every token routed to the same bucket, a collapse).

    ``bit_logits (L, B, T, H, bits)``: each bit's probability is averaged over the tokens, and the
    binary entropies of the bits (the bucket entropy when bits are independent) divided by
    ``bits * log 2``, averaged over layers and hashes."""
    mean = torch.sigmoid(bit_logits.float()).mean(dim=(1, 2))  # (L, H, bits)
    return float(_binary_entropy(mean).mean() / math.log(2))


def expert_load_entropy(load: torch.Tensor) -> float:
    """Entropy of the MoE routers' share of tokens per expert ``(L, E)`` (or ``(E,)``) over
    ``log E``, averaged over layers (1: balanced, 0: every token to one expert)."""
    load = load.float().reshape(-1, load.shape[-1]).clamp_min(0)
    share = load / load.sum(-1, keepdim=True).clamp_min(1e-12)
    entropy = -(share * torch.log(share.clamp_min(1e-12))).sum(-1)
    return float(entropy.mean() / math.log(load.shape[-1])) if load.shape[-1] > 1 else 0.0


def output_aux_metrics(aux: dict[str, torch.Tensor]) -> dict[str, float]:
    """Write rate and routing entropies from one output's aux tensors (absent keys: not reported).

    ``memory_routing_entropy`` is that of the memory read routers (:func:`router_bits_entropy`),
    ``moe_routing_entropy`` that of MoE routers where the model has them (:func:`expert_load_entropy`),
    ``opcode_entropy`` the opcode head's mean per-token entropy over ``log(opcodes)``."""
    metrics: dict[str, float] = {}
    gate = aux.get(keys.WRITE_GATE_LOGITS.name)
    if gate is not None:
        metrics["memory_write_rate"] = float(torch.sigmoid(gate.float()).mean())
    bits = aux.get(keys.READ_BIT_LOGITS.name)
    if bits is not None and bits.dim() == 5:
        metrics["memory_routing_entropy"] = router_bits_entropy(bits)
    load = aux.get(keys.MOE_EXPERT_LOAD.name)
    if load is not None:
        metrics["moe_routing_entropy"] = expert_load_entropy(load)
    opcodes = aux.get(keys.OPCODE_LOGITS.name)
    if opcodes is not None and opcodes.shape[-1] > 1:
        probs = torch.softmax(opcodes.float(), dim=-1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        metrics["opcode_entropy"] = float(entropy.mean() / math.log(opcodes.shape[-1]))
    return metrics


def aux_metric_names(aux: dict[str, torch.Tensor]) -> set[str]:
    """The names :func:`output_aux_metrics` reports for outputs with these aux keys."""
    return set(output_aux_metrics(aux))


class NoveltyWindow:
    """``input_novelty``: the fraction of the last ``recent`` observed events whose type did not occur
    among the ``window`` events observed before it (1: every event is of a new type; 0: the same
    types over and over). None until an event has been observed."""

    def __init__(self, window: int = 32, recent: int = 8) -> None:
        self.window, self.recent = window, recent
        self.types: list[str] = []
        self.novel: list[bool] = []

    def observe(self, event_type: str) -> None:
        self.novel = (self.novel + [event_type not in self.types[-self.window :]])[-self.recent :]
        self.types = (self.types + [event_type])[-self.window :]

    def value(self) -> float | None:
        return sum(self.novel) / len(self.novel) if self.novel else None


def confidence(logits: torch.Tensor) -> float:
    """Max softmax probability of one next-byte distribution ``(V,)``."""
    return float(torch.softmax(logits.float(), dim=-1).max())
