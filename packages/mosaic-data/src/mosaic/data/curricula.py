"""Curricula: schedules over training steps that adjust a dataset. Torch-free.

The curriculum protocol
-----------------------

A plugin's dataset or curriculum follows it without importing mosaic-data; the protocols are code in
``mosaic.core.contract.protocols`` (``Curriculum``, ``DifficultyAdjustable``,
``TeacherForcingAdjustable``).

**Dataset side.** A dataset that can be adjusted implements any of

- ``set_difficulty(level: float) -> None`` — ``level`` in [0, 1] maps *linearly* each of its
  difficulty parameters (pairs, distractors, gap, ...) from its configured minimum (level 0) to its
  configured value (level 1), rounding to the nearest integer. A dataset starts at level 1. Items
  stay a pure function of (seed, split, idx, current level).
- ``set_teacher_forcing(p: float) -> None`` — ``p`` in [0, 1] becomes the value of the per-item
  ``mosaic_teacher_forcing`` scalar (the probability with which the model routes by the teacher's
  labels instead of its own predictions).

Both raise ``mosaic.core.errors.DataError`` for a value outside [0, 1].

**Curriculum side.** A curriculum is built from its config by the registry and has

- ``update(step: int, total_steps: int, dataset) -> dict[str, float]`` — called by the trainer before
  drawing the batch of ``step`` (0-based) out of ``total_steps``; it sets the dataset and returns the
  values it set, as metrics to log (``{"teacher_forcing": p}``, ``{"difficulty": level}``).

  If ``dataset`` lacks the method the curriculum needs, ``update`` raises ``DataError`` naming the
  dataset class and the method. ``total_steps`` must exceed ``warmup_steps + cooldown_steps``
  (``ConfigError`` otherwise).

**Config side (optional).** A curriculum's config may define
``check_total_steps(total_steps: int) -> list[ConfigProblem]`` (paths relative to the config, e.g.
``cooldown_steps``): the runtime calls it when it validates a preset, so that a schedule that cannot
fit the run is reported before anything is written.

Datasets are adjusted in the process that calls ``update``: a ``DataLoader`` with worker processes
holds copies, so use ``num_workers=0`` or recreate the loader's iterator after each update.

Schedules
---------

``value(step)`` is ``start`` for ``step < warmup_steps``, ``end`` for
``step >= total_steps - cooldown_steps``, and in between follows ``shape`` over
``progress = (step - warmup_steps) / (total_steps - cooldown_steps - 1 - warmup_steps)``, which is 0
at the first ramp step and 1 at the last (so the run's last step sees ``end``):
``constant`` -> ``start`` (then ``end`` in the cooldown), ``linear`` -> ``start + (end - start) * progress``,
``cosine`` -> ``end + (start - end) * (1 + cos(pi * progress)) / 2``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from mosaic.core.contract.protocols import DifficultyAdjustable, TeacherForcingAdjustable, missing_members
from mosaic.core.errors import ConfigError, ConfigProblem, DataError
from mosaic.core.validators import non_negative, probability

Shape = Literal["constant", "linear", "cosine"]


def schedule_problems(warmup_steps: int, cooldown_steps: int, total_steps: int) -> list[ConfigProblem]:
    """A schedule needs at least one step to ramp over: ``warmup_steps + cooldown_steps < total_steps``."""
    if total_steps > warmup_steps + cooldown_steps:
        return []
    return [ConfigProblem(
        "cooldown_steps",
        f"warmup_steps ({warmup_steps}) + cooldown_steps ({cooldown_steps}) leave no steps to ramp over in a "
        f"run of trainer.steps={total_steps}",
        hint=f"train for more than {warmup_steps + cooldown_steps} steps, or shorten the schedule with --set",
    )]


def schedule_value(
    step: int, total_steps: int, *, start: float, end: float, shape: Shape, warmup_steps: int, cooldown_steps: int
) -> float:
    """The scheduled value at ``step`` (see the module docstring)."""
    problems = schedule_problems(warmup_steps, cooldown_steps, total_steps)
    if problems:
        raise ConfigError(problems)
    if step < warmup_steps:
        return start
    if step >= total_steps - cooldown_steps:
        return end
    progress = (step - warmup_steps) / max(1, total_steps - cooldown_steps - 1 - warmup_steps)
    if shape == "constant":
        return start
    if shape == "linear":
        return start + (end - start) * progress
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _require(dataset: Any, protocol: type, curriculum: str) -> None:
    if not isinstance(dataset, protocol):
        raise DataError(
            f"{curriculum} cannot adjust {type(dataset).__name__}: it has no "
            f"{', '.join(f'{name}()' for name in missing_members(dataset, protocol))} "
            f"(mosaic.core.contract.protocols.{protocol.__name__})"
        )


@attrs.frozen
class TeacherForcingDecayConfig:
    """Teacher-forcing probability from ``start`` to ``end``."""

    start: float = attrs.field(default=1.0, validator=probability)
    end: float = attrs.field(default=0.0, validator=probability)
    shape: Shape = "linear"
    warmup_steps: int = attrs.field(default=0, validator=non_negative)
    cooldown_steps: int = attrs.field(default=0, validator=non_negative)

    def check_total_steps(self, total_steps: int) -> list[ConfigProblem]:
        return schedule_problems(self.warmup_steps, self.cooldown_steps, total_steps)


class TeacherForcingDecay:
    """``curriculum.teacher_forcing_decay``: calls ``dataset.set_teacher_forcing(p)``."""

    def __init__(self, config: TeacherForcingDecayConfig) -> None:
        self.config = config

    def value(self, step: int, total_steps: int) -> float:
        c = self.config
        return schedule_value(step, total_steps, start=c.start, end=c.end, shape=c.shape,
                              warmup_steps=c.warmup_steps, cooldown_steps=c.cooldown_steps)

    def update(self, step: int, total_steps: int, dataset: Any) -> dict[str, float]:
        _require(dataset, TeacherForcingAdjustable, "curriculum.teacher_forcing_decay")
        p = self.value(step, total_steps)
        dataset.set_teacher_forcing(p)
        return {"teacher_forcing": p}


@attrs.frozen
class DifficultyRampConfig:
    """Difficulty level from ``start_level`` to ``end_level``."""

    start_level: float = attrs.field(default=0.0, validator=probability)
    end_level: float = attrs.field(default=1.0, validator=probability)
    shape: Shape = "linear"
    warmup_steps: int = attrs.field(default=0, validator=non_negative)
    cooldown_steps: int = attrs.field(default=0, validator=non_negative)

    def check_total_steps(self, total_steps: int) -> list[ConfigProblem]:
        return schedule_problems(self.warmup_steps, self.cooldown_steps, total_steps)


class DifficultyRamp:
    """``curriculum.difficulty_ramp``: calls ``dataset.set_difficulty(level)``."""

    def __init__(self, config: DifficultyRampConfig) -> None:
        self.config = config

    def value(self, step: int, total_steps: int) -> float:
        c = self.config
        return schedule_value(step, total_steps, start=c.start_level, end=c.end_level, shape=c.shape,
                              warmup_steps=c.warmup_steps, cooldown_steps=c.cooldown_steps)

    def update(self, step: int, total_steps: int, dataset: Any) -> dict[str, float]:
        _require(dataset, DifficultyAdjustable, "curriculum.difficulty_ramp")
        level = self.value(step, total_steps)
        dataset.set_difficulty(level)
        return {"difficulty": level}
