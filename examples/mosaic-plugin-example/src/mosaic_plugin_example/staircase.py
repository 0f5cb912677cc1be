"""``curriculum.staircase``: difficulty that rises in ``steps`` equal stairs over training.

It follows the MOSAIC curriculum protocol: a curriculum has ``update(step, total_steps, dataset)``
returning the metrics to log, and adjusts a dataset only through ``dataset.set_difficulty(level)``
with ``level`` in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from mosaic.core.errors import DataError
from mosaic.core.validators import at_least, between


@attrs.frozen
class StaircaseConfig:
    # the toolkit's validator vocabulary reports a bad value under its field's path ($.stairs)
    stairs: int = attrs.field(default=4, validator=at_least(2))
    start_level: float = attrs.field(default=0.0, validator=between(0.0, 1.0))
    end_level: float = attrs.field(default=1.0, validator=between(0.0, 1.0))


class Staircase:
    def __init__(self, config: StaircaseConfig) -> None:
        self.config = config

    def level_at(self, step: int, total_steps: int) -> float:
        progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
        stair = min(math.floor(progress * self.config.stairs), self.config.stairs - 1)
        fraction = stair / (self.config.stairs - 1)
        return self.config.start_level + fraction * (self.config.end_level - self.config.start_level)

    def update(self, step: int, total_steps: int, dataset: Any) -> dict[str, float]:
        set_difficulty = getattr(dataset, "set_difficulty", None)
        if set_difficulty is None:
            raise DataError(
                f"curriculum.staircase needs a dataset with set_difficulty(level); "
                f"{type(dataset).__name__} has none"
            )
        level = self.level_at(step, total_steps)
        set_difficulty(level)
        return {"difficulty": level}
