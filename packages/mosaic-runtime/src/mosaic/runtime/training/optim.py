"""AdamW with weight decay on matrices only, and a linear-warmup cosine schedule."""

from __future__ import annotations

import math

import torch

from mosaic.runtime.training.train_config import TrainerConfig


def build_optimizer(model: torch.nn.Module, config: TrainerConfig) -> torch.optim.AdamW:
    """Decay 2-D (and larger) weights; never biases, norms, gains or embeddings' 1-D relatives."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def lr_factor(step: int, config: TrainerConfig) -> float:
    """Multiplier on ``config.lr`` for optimizer step ``step`` (0-based)."""
    warmup = config.effective_warmup
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(config.steps - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainerConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
