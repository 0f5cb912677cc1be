"""The configuration of a training run's own parts: trainer, evaluation and memory budget.

Torch-free, so that presets can be validated and listed without importing torch.
"""

from __future__ import annotations

from typing import Any

import attrs

from mosaic.core.validators import between, non_negative, one_of, positive, probability, reject

#: The largest batch a trainer or evaluation takes: far past any run this toolkit makes, and it keeps a
#: batch size typed with a few digits too many from building its index list until the machine runs out
#: of memory (99,999,999,999 grew to 24 GB before the kernel killed the run).
MAX_BATCH_SIZE = 1 << 20

PRECISIONS = ("fp32", "bf16")


def _logger_ids(_instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for logger_id in value:
        if not logger_id.startswith("logger."):
            reject(attribute.name, f"lists {logger_id!r}; logger IDs look like logger.csv")
    if len(set(value)) != len(value):
        reject(attribute.name, f"lists a logger twice: {list(value)}")


@attrs.frozen
class TrainerConfig:
    """One linear training loop: AdamW, linear warmup then cosine decay, clipping, accumulation.

    ``batch_size`` is the global batch (summed over accumulation steps and data-parallel ranks).
    ``threads`` sets torch's intra-op threads (0 keeps torch's default; 1 is fastest on a shared CPU).
    ``eval_every`` / ``checkpoint_every`` of 0 mean only at the end. ``max_seconds`` > 0 stops the run
    (status ``time_limit``, checkpoint and evaluation still written) once that much time has passed.
    ``stop_at_accuracy`` > 0 stops the run (status ``target_reached``) at the first periodic held-out
    evaluation whose ``token_accuracy`` reaches it (needs ``eval_every`` and an ``eval`` section).
    ``warmup_steps`` longer than the run is clipped to ``steps`` (the trainer says so).
    ``divergence_factor`` k > 0 stops the run (status ``diverged``, last good checkpoint kept) when the
    loss exceeds k times the median of its last ``divergence_window`` values; a non-finite loss or
    gradient always stops it. ``loggers`` are metric sinks (``logger.*`` components) beside
    ``metrics.jsonl``, which every run writes because resume, ``plot`` and ``runs`` read it.
    ``find_unused_parameters`` is handed to DistributedDataParallel (docs/distributed.md).
    """

    steps: int = attrs.field(default=200, validator=positive)
    batch_size: int = attrs.field(default=8, validator=between(1, MAX_BATCH_SIZE))
    grad_accum: int = attrs.field(default=1, validator=positive)
    lr: float = attrs.field(default=3e-3, validator=positive)
    min_lr_ratio: float = attrs.field(default=0.1, validator=probability)
    warmup_steps: int = attrs.field(default=20, validator=non_negative)
    weight_decay: float = attrs.field(default=0.01, validator=non_negative)
    beta1: float = attrs.field(default=0.9, validator=between(0.0, 1.0, high_open=True))
    beta2: float = attrs.field(default=0.99, validator=between(0.0, 1.0, high_open=True))
    grad_clip: float = attrs.field(default=1.0, validator=non_negative)
    seed: int = 0
    deterministic: bool = False
    precision: str = attrs.field(default="fp32", validator=one_of(*PRECISIONS))
    compile: bool = False
    device: str = "auto"
    threads: int = attrs.field(default=0, validator=non_negative)
    log_every: int = attrs.field(default=10, validator=positive)
    eval_every: int = attrs.field(default=0, validator=non_negative)
    checkpoint_every: int = attrs.field(default=50, validator=non_negative)
    keep_checkpoints: int = attrs.field(default=2, validator=positive)
    max_seconds: float = attrs.field(default=0.0, validator=non_negative)
    stop_at_accuracy: float = attrs.field(default=0.0, validator=probability)
    divergence_factor: float = attrs.field(default=10.0, validator=non_negative)
    divergence_window: int = attrs.field(default=50, validator=positive)
    loggers: tuple[str, ...] = attrs.field(default=("logger.jsonl",), converter=tuple, validator=_logger_ids)
    find_unused_parameters: bool = True

    def __attrs_post_init__(self) -> None:
        if self.batch_size % self.grad_accum:
            reject("batch_size", f"must be a multiple of grad_accum ({self.grad_accum}), got {self.batch_size}")

    @property
    def effective_warmup(self) -> int:
        """Warmup clipped to the step budget, so that ``--steps 5`` runs with a warmup of 20."""
        return min(self.warmup_steps, self.steps)


@attrs.frozen
class EvalConfig:
    """Held-out evaluation: ``dataset`` overrides are merged over the training dataset's config
    (typically a different ``seed`` or ``split``) to build the held-out set."""

    samples: int = attrs.field(default=256, validator=positive)
    batch_size: int = attrs.field(default=32, validator=between(1, MAX_BATCH_SIZE))
    dataset: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen
class BudgetConfig:
    """The memory a preset promises to fit in, for ``presets validate`` and ``--estimate``."""

    memory_gib: float = attrs.field(default=12.0, validator=positive)
    batch_size: int = attrs.field(default=8, validator=positive)
    precision: str = attrs.field(default="bf16", validator=one_of(*PRECISIONS))
