"""``memory.off``: a block memory that holds nothing and reads nothing, for ablations.

A MOSAIC block built with ``memory: {type: memory.off}`` keeps its local mixer, state bank,
registers and VM; its memory contributes zeros and carries an empty table (no floats of state), so
what the block recalls it recalls without the memory. MQAR's memory-off ablation uses it.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from mosaic.core.validators import positive
from mosaic.layers.state import MemoryState


@attrs.frozen
class MemoryOffConfig:
    """``memory.off`` takes only the block's width (set by the block)."""

    d_model: int = attrs.field(default=128, validator=positive)


class MemoryOff(nn.Module):
    """The contract's ``BlockMemory`` with nothing in it: a zero read, no aux outputs, an empty table."""

    def __init__(self, config: MemoryOffConfig) -> None:
        super().__init__()
        self.d_model = config.d_model
        # the read's projection to the residual stream, never called (nothing is read); there so that
        # the held-out "memory_off" ablation, which zeroes every block's ``memory.out``, applies here too
        self.out = nn.Identity()

    def init_state(self, batch_size: int, device: Any, dtype: Any) -> MemoryState:
        return MemoryState(table=torch.zeros(batch_size, 0, device=device, dtype=dtype))

    def forward(self, u: torch.Tensor, controls: Any, teacher: Any, state: MemoryState, chunk: int, *,
                scan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], MemoryState]:
        return torch.zeros_like(u), {}, state


def build_memory_off(config: MemoryOffConfig) -> MemoryOff:
    """``memory.off`` factory."""
    return MemoryOff(config)
