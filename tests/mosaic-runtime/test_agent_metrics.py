"""Live memory metrics read memory back through the model (contract MemoryReadBack), never through
the state's layout."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch

from mosaic.core.errors import RuntimeStateError
from mosaic.runtime.agent.metrics import memory_occupancy, memory_strength


@attrs.frozen
class Cells:
    occupancy: torch.Tensor

    @property
    def utility(self) -> torch.Tensor:
        return self.occupancy


class ReadsBack:
    """Any layout at all: the metrics only see what memory_cells returns."""

    def memory_cells(self, state: Any) -> list[Cells]:
        return [Cells(torch.tensor([[1.0, 0.0], [0.5, 0.01]])), Cells(torch.tensor([0.0, 0.2]))]

    def replay_memory(self, state: Any, cells: Any, select: Any) -> torch.Tensor:
        return torch.zeros(1)

    def forget_memory_cells(self, state: Any, cells: Any, select: Any) -> int:
        return 0

    def refresh_memory_cells(self, state: Any, cells: Any, select: Any) -> int:
        return 0


def test_occupancy_and_strength_come_from_the_read_back() -> None:
    state = object()  # no layers, no tables: nothing of the layout is read
    assert memory_occupancy(ReadsBack(), state) == 3 / 6
    assert memory_strength(ReadsBack(), state) == pytest.approx((1.0 + 0.5 + 0.01 + 0.2) / 6)


def test_a_model_without_read_back_is_refused_by_name() -> None:
    with pytest.raises(RuntimeStateError, match="memory_cells, replay_memory, forget_memory_cells, refresh_memory_cells"):
        memory_occupancy(object(), object())
