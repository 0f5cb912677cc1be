"""Three debiased EMA clocks (fast / mid / slow) that tick on *global* steps.

Each clock keeps a numerator ``m`` and an evidence weight ``w``::

    m ← α·m + (1 − α)·x·seen        w ← α·w + (1 − α)·seen        estimate = m / w

With an observation every step, ``w = 1 − α^t`` and this is exactly Adam-style bias correction:
the estimate equals a constant input from the first step on instead of creeping up from 0.

An entry that is not observed at a step (an expert no token was routed to) still *ages*: both ``m``
and ``w`` decay, so its estimate stays the time-weighted mean of what was observed, while ``w``
shrinks and says how stale that estimate is. We chose ageing over freezing (the original froze
unrouted experts) because a clock that stops when an expert starves would hide the starvation.
"""

from __future__ import annotations

import torch
from torch import nn

from chronomoe.config import CLOCK_NAMES, ClockConfig


class DebiasedEMA(nn.Module):
    """Debiased EMAs of a tensor of shape ``shape``, one per retention in ``alphas``; all state in
    buffers (``numerator``/``weight`` of shape ``(len(alphas), *shape)``)."""

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    alpha: torch.Tensor
    gain: torch.Tensor
    numerator: torch.Tensor
    weight: torch.Tensor
    steps: torch.Tensor

    def __init__(self, alphas: tuple[float, ...], shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.shape = tuple(shape)
        retention = torch.tensor(alphas, dtype=torch.float32).view(len(alphas), *([1] * len(self.shape)))
        self.register_buffer("alpha", retention, persistent=False)
        self.register_buffer("gain", 1.0 - retention, persistent=False)
        self.register_buffer("numerator", torch.zeros(len(alphas), *self.shape))
        self.register_buffer("weight", torch.zeros(len(alphas), *self.shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def update(self, value: torch.Tensor, seen: torch.Tensor | None = None) -> None:
        """Advance every retention by one global step; ``seen`` (bool, ``shape``) marks observed
        entries. Runs on the device, no host synchronisation."""
        if seen is None:
            self.numerator.mul_(self.alpha).addcmul_(self.gain, value)
            self.weight.mul_(self.alpha).add_(self.gain)
        else:
            seen_f = seen.to(self.weight.dtype)
            self.numerator.mul_(self.alpha).addcmul_(self.gain, value * seen_f)
            self.weight.mul_(self.alpha).addcmul_(self.gain, seen_f)
        self.steps.add_(1)

    def estimate_at(
        self,
        index: int | None = None,
        *,
        empty: float = 0.0,
        prior: float | None = None,
        prior_weight: float = 0.0,
    ) -> torch.Tensor:
        """Bias-corrected estimate, ``(A, *shape)`` or ``shape`` for one retention; ``empty`` where
        nothing was ever observed.

        With a ``prior`` p₀, the estimate is shrunk towards it by a pseudo-observation of weight
        ``λ = prior_weight · (1 − αᵗ)`` (a fixed share of the most evidence the clock can hold after
        t steps, so every clock is treated alike)::

            estimate = (1 + prior_weight) · (m + λ·p₀) / (w + λ) − prior_weight · p₀

        This is exactly the plain estimate for an entry observed every step (``w = 1 − αᵗ``), and
        tends to p₀ as an entry that stopped being observed ages (``w`` shrinks at the clock's
        rate), instead of freezing at its last value."""
        numerator, weight, alpha = self.numerator, self.weight, self.alpha
        if index is not None:
            numerator, weight, alpha = numerator[index], weight[index], alpha[index]
        # written in few, in-place ops: router.chrono reads these every step
        if prior is not None:
            lam = alpha.pow(self.steps).mul_(-prior_weight).add_(prior_weight)  # prior_weight·(1 − αᵗ)
            total = weight + lam
            shrunk = (numerator if prior == 0.0 else numerator + lam * prior) / total.clamp_min(1e-30)
            estimate = shrunk.mul_(1.0 + prior_weight)
            if prior != 0.0:
                estimate = estimate.sub_(prior_weight * prior)
            return estimate.masked_fill_(total <= 0, prior)
        return (numerator / weight.clamp_min(1e-30)).masked_fill_(weight <= 0, empty)


class ThreeClockEMA(DebiasedEMA):
    """:class:`DebiasedEMA` on the fast, mid and slow clocks, addressed by clock name."""

    def __init__(self, clocks: ClockConfig, shape: tuple[int, ...] = ()) -> None:
        super().__init__(clocks.alphas, shape)
        self.clocks = clocks

    def estimate(self, clock: str | None = None, *, empty: float = 0.0) -> torch.Tensor:
        """``(3, *shape)``, or ``shape`` for one clock (``"fast"``, ``"mid"``, ``"slow"``)."""
        return self.estimate_at(None if clock is None else CLOCK_NAMES.index(clock), empty=empty)

    def evidence(self, clock: str) -> torch.Tensor:
        """The clock's evidence weight in [0, 1): 0 = never observed, → 1 = observed every step."""
        return self.weight[CLOCK_NAMES.index(clock)]


def reference_ema(values: list[float], seen: list[bool], alpha: float) -> list[float]:
    """Plain-Python twin of one clock of :class:`ThreeClockEMA` (for tests): estimates after each
    step, ``nan`` before the first observation."""
    numerator = weight = 0.0
    out = []
    for x, s in zip(values, seen, strict=True):
        numerator = alpha * numerator + (1 - alpha) * (x if s else 0.0)
        weight = alpha * weight + (1 - alpha) * (1.0 if s else 0.0)
        out.append(numerator / weight if weight > 0 else float("nan"))
    return out
