"""The configuration of a training run's own parts: trainer, evaluation and memory budget.

Torch-free, so that presets can be validated and listed without importing torch.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import validators as v

PRECISIONS = ("fp32", "bf16")


def _precision(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in PRECISIONS:
        raise ValueError(f"{attribute.name} must be one of {', '.join(PRECISIONS)}, got {value!r}")


def _positive(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _non_negative(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class TrainerConfig:
    """One linear training loop: AdamW, linear warmup then cosine decay, clipping, accumulation.

    ``batch_size`` is the global batch (summed over accumulation steps and data-parallel ranks).
    ``threads`` sets torch's intra-op threads (0 keeps torch's default; 1 is fastest on a shared CPU).
    ``eval_every`` / ``checkpoint_every`` of 0 mean only at the end. ``max_seconds`` > 0 stops the run
    (status ``time_limit``, checkpoint and evaluation still written) once that much time has passed.
    """

    steps: int = attrs.field(default=200, validator=_positive)
    batch_size: int = attrs.field(default=8, validator=_positive)
    grad_accum: int = attrs.field(default=1, validator=_positive)
    lr: float = attrs.field(default=3e-3, validator=_positive)
    min_lr_ratio: float = attrs.field(default=0.1, validator=v.and_(v.ge(0.0), v.le(1.0)))
    warmup_steps: int = attrs.field(default=20, validator=_non_negative)
    weight_decay: float = attrs.field(default=0.01, validator=_non_negative)
    beta1: float = attrs.field(default=0.9, validator=v.and_(v.ge(0.0), v.lt(1.0)))
    beta2: float = attrs.field(default=0.99, validator=v.and_(v.ge(0.0), v.lt(1.0)))
    grad_clip: float = attrs.field(default=1.0, validator=_non_negative)
    seed: int = 0
    deterministic: bool = False
    precision: str = attrs.field(default="fp32", validator=_precision)
    compile: bool = False
    device: str = "auto"
    threads: int = attrs.field(default=0, validator=_non_negative)
    log_every: int = attrs.field(default=10, validator=_positive)
    eval_every: int = attrs.field(default=0, validator=_non_negative)
    checkpoint_every: int = attrs.field(default=50, validator=_non_negative)
    keep_checkpoints: int = attrs.field(default=2, validator=_positive)
    max_seconds: float = attrs.field(default=0.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})"
            )
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")


@attrs.frozen
class EvalConfig:
    """Held-out evaluation: ``dataset`` overrides are merged over the training dataset's config
    (typically a different ``seed`` or ``split``) to build the held-out set."""

    samples: int = attrs.field(default=256, validator=_positive)
    batch_size: int = attrs.field(default=32, validator=_positive)
    dataset: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen
class BudgetConfig:
    """The memory a preset promises to fit in, for ``presets validate`` and ``--estimate``."""

    memory_gib: float = attrs.field(default=12.0, validator=_positive)
    batch_size: int = attrs.field(default=8, validator=_positive)
    precision: str = attrs.field(default="bf16", validator=_precision)
