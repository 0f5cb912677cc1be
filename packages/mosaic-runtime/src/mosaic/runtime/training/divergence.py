"""The divergence guard: a training run stops when its loss is non-finite or blows up.

An exploding run (too high a learning rate) can climb to 1e8 while every value stays finite, and
would otherwise report ``completed``. The guard compares each step's loss with the median of its
recent history, which one spike cannot move, and stops the run before the optimizer applies the
offending step, so the last checkpoint written is one from before the blow-up.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from mosaic.core.errors import TrainingError

#: the loss needs this much history before a ratio against its median means anything
MIN_HISTORY = 5


class DivergedError(TrainingError):
    """The loss became non-finite or exceeded ``divergence_factor`` times its running median."""


class DivergenceGuard:
    def __init__(self, factor: float, window: int) -> None:
        self.factor = factor  # 0 disables the ratio test; non-finite losses always stop the run
        self.history: deque[float] = deque(maxlen=window)

    def check(self, step: int, loss: float) -> None:
        """Raise :class:`DivergedError` if ``loss`` (of optimizer step ``step``) diverged; else record it."""
        if not math.isfinite(loss):
            raise DivergedError(
                f"non-finite loss or gradient at step {step} (loss_total={loss}); the run stopped before "
                "the optimizer step and its last good checkpoint is kept"
            )
        if self.factor > 0 and len(self.history) >= min(MIN_HISTORY, self.history.maxlen or MIN_HISTORY):
            median = statistics.median(self.history)
            if median > 0 and loss > self.factor * median:
                raise DivergedError(
                    f"loss diverged at step {step}: {loss:.4g} is more than {self.factor:g} x its running "
                    f"median {median:.4g}; the run stopped before the optimizer step and its last good "
                    "checkpoint is kept (lower trainer.lr, or raise trainer.divergence_factor)"
                )
        self.history.append(loss)
