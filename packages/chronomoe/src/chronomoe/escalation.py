"""Disagreement escalation with thresholds calibrated on the layer's own baseline.

The statistic is the mid-clock top-1 flip rate between clean and biased routing, read at every mid
evaluation. The first ``calibration_evals`` readings of a layer are its baseline; afterwards the
three thresholds are ``max(floor, mean + sigmas · std)`` of that baseline (population std) for warn,
decay β and reset β. The floors keep a perfectly quiet baseline (std 0) from turning every blip into
an escalation; while the baseline is being recorded the floors alone apply, so a β that flips most
routing from the first step is still caught. Host-side state only, checkpointed as plain data.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from chronomoe.config import LifecycleConfig

LEVELS = ("warn", "decay_beta", "reset_beta")


@attrs.frozen
class EscalationThresholds:
    warn: float
    decay: float
    reset: float

    def action(self, flip: float) -> str | None:
        """The strongest escalation ``flip`` reaches, or None."""
        if flip >= self.reset:
            return "reset_beta"
        if flip >= self.decay:
            return "decay_beta"
        if flip >= self.warn:
            return "warn"
        return None


def floor_thresholds(config: LifecycleConfig) -> EscalationThresholds:
    return EscalationThresholds(config.warn_floor, config.decay_floor, config.reset_floor)


def calibrated_thresholds(baseline: list[float], config: LifecycleConfig) -> EscalationThresholds:
    """``max(floor, mean + sigmas · std)`` per level from the baseline readings."""
    if not baseline:
        return floor_thresholds(config)
    mean = sum(baseline) / len(baseline)
    std = math.sqrt(sum((x - mean) ** 2 for x in baseline) / len(baseline))
    floors = (config.warn_floor, config.decay_floor, config.reset_floor)
    sigmas = config.escalation_sigmas
    return EscalationThresholds(*(max(f, mean + s * std) for f, s in zip(floors, sigmas, strict=True)))


@torch.no_grad()
def escalate_beta(state: Any, action: str | None, beta_decay: float) -> None:
    """Apply ``action`` to a RouterState's k (device-only); crystallised experts keep theirs —
    identity events are irreversible."""
    if action == "reset_beta":
        state.k.copy_(torch.where(state.crystallised, state.k, torch.zeros_like(state.k)))
    elif action == "decay_beta":
        state.k.copy_(torch.where(state.crystallised, state.k, state.k * beta_decay))


class EscalationCalibrator:
    """One layer's baseline readings and, once the window is full, its calibrated thresholds."""

    def __init__(self, config: LifecycleConfig) -> None:
        self.config = config
        self.baseline: list[float] = []

    @property
    def calibrated(self) -> bool:
        return len(self.baseline) >= self.config.calibration_evals

    def thresholds(self) -> EscalationThresholds:
        if not self.calibrated:
            return floor_thresholds(self.config)
        return calibrated_thresholds(self.baseline, self.config)

    def observe(self, flip: float) -> tuple[str | None, bool]:
        """Decide on one mid-evaluation reading; returns ``(action, calibration_just_completed)``.
        A reading taken while calibrating is judged against the floors, then joins the baseline."""
        if self.calibrated:
            return self.thresholds().action(flip), False
        action = floor_thresholds(self.config).action(flip)
        self.baseline.append(float(flip))
        return action, self.calibrated

    def state_dict(self) -> dict:
        return {"baseline": list(self.baseline)}

    def load_state_dict(self, state: dict) -> None:
        self.baseline = [float(x) for x in state["baseline"]]
