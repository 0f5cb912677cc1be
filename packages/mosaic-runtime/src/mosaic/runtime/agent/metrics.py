"""Live model metrics for homeostasis, read from a model's outputs and its streaming state.

Memory metrics rely on the documented layout of a MOSAIC streaming state (mosaic-layers'
``BlockState.memory``): ``state.layers[i].memory`` is a ``(B, H, cells + 1, key_dim + mem_dim + 1)``
table whose last channel is a cell's occupancy (strength) and whose last row is a scratch cell that
is never read. A state without that layout is refused with a :class:`RuntimeStateError` naming what
is missing, never silently reported as zeros. Output metrics read the standard aux keys
(``mosaic_write_gate_logits``, ``mosaic_opcode_logits``, ``mosaic_commitment_logits``), per layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mosaic.core.errors import RuntimeStateError

#: A cell whose occupancy is at least this counts as in use.
OCCUPIED_AT = 0.05


def memory_tables(state: Any) -> list[torch.Tensor]:
    """Each layer's memory table ``(B, H, cells + 1, dim)`` (scratch row included)."""
    layers = getattr(state, "layers", None)
    if not isinstance(layers, (list, tuple)) or not layers:
        raise RuntimeStateError(
            f"{type(state).__name__} has no 'layers' list; memory metrics and consolidation need a state "
            "whose layers carry a 'memory' table (B, H, cells + 1, key_dim + mem_dim + 1)"
        )
    tables = []
    for index, layer in enumerate(layers):
        table = getattr(layer, "memory", None)
        if not isinstance(table, torch.Tensor) or table.dim() != 4 or table.shape[2] < 2 or table.shape[3] < 2:
            shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
            raise RuntimeStateError(
                f"state.layers[{index}].memory is {shape}; expected a (B, H, cells + 1, dim) table with the "
                "occupancy in the last channel and a scratch last row"
            )
        tables.append(table)
    return tables


def occupancy(table: torch.Tensor) -> torch.Tensor:
    """Occupancy of the real cells of one table: ``(B, H, cells)``."""
    return table[:, :, :-1, -1]


def memory_occupancy(state: Any) -> float:
    """Fraction of memory cells (all layers, hashes, samples) whose occupancy is >= OCCUPIED_AT."""
    used = total = 0
    for table in memory_tables(state):
        cells = occupancy(table)
        used += int((cells >= OCCUPIED_AT).sum())
        total += cells.numel()
    return used / total


def memory_strength(state: Any) -> float:
    """Mean occupancy of all real memory cells (0 empty, 1 every cell fully written)."""
    tables = [occupancy(table).float() for table in memory_tables(state)]
    return float(torch.cat([t.flatten() for t in tables]).mean())


def output_aux_metrics(aux: dict[str, torch.Tensor]) -> dict[str, float]:
    """Write rate and routing entropy from one output's aux tensors (absent keys: not reported)."""
    metrics: dict[str, float] = {}
    gate = aux.get("mosaic_write_gate_logits")
    if gate is not None:
        metrics["memory_write_rate"] = float(torch.sigmoid(gate.float()).mean())
    opcodes = aux.get("mosaic_opcode_logits")
    if opcodes is not None and opcodes.shape[-1] > 1:
        probs = torch.softmax(opcodes.float(), dim=-1)
        entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        metrics["routing_entropy"] = float(entropy.mean() / math.log(opcodes.shape[-1]))
    return metrics


def confidence(logits: torch.Tensor) -> float:
    """Max softmax probability of one next-byte distribution ``(V,)``."""
    return float(torch.softmax(logits.float(), dim=-1).max())
