"""Language modelling: MosaicLM against the Transformer baseline on character-level tiny Shakespeare.

nanoGPT's CPU configuration (``config/train_shakespeare_char.py`` with ``--block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0``): a 65-character vocabulary, the first 90 % of the text for training and the rest
for validation, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on matrices), 100 warm-up steps,
cosine decay to 1e-4, gradients clipped at 1. Both models get the same batches, steps and optimiser,
and train interleaved (one step of each in turn, one thread each), so load on a shared machine hits
both alike. nanoGPT's published val loss for this configuration is 1.88; the Transformer must land
within 0.05 of it for the comparison to be fair.

Reported per context (64, nanoGPT's, and 256): val loss at equal steps, each model's val loss at the
wall time the faster model needed for all its steps, and training tokens/s. ``--quick``: 60 steps;
``--contexts 64`` runs one context; ``--steps N`` overrides the step count (reported in the JSON).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from harness import main
from torch import nn

from mosaic.core.contract import keys
from mosaic.data.corpora import corpus_bytes
from mosaic.layers.baseline import TransformerBaseline
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig, TransformerBaselineConfig
from mosaic.layers.model import MosaicLM

NANOGPT_VAL_LOSS, TOLERANCE = 1.88, 0.05
D_MODEL, N_LAYERS, N_HEADS, BATCH = 128, 4, 4, 12
LR, MIN_LR, WARMUP, BETAS, WEIGHT_DECAY, CLIP = 1e-3, 1e-4, 100, (0.9, 0.99), 0.1, 1.0
EVAL_BATCHES = 40


def corpus() -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train ids, val ids, vocabulary size): characters mapped to ids in sorted order."""
    text = corpus_bytes("tinyshakespeare")
    alphabet = sorted(set(text))
    lookup = torch.zeros(256, dtype=torch.long)
    lookup[torch.tensor(alphabet)] = torch.arange(len(alphabet))
    ids = lookup[torch.frombuffer(bytearray(text), dtype=torch.uint8).long()]
    split = int(0.9 * len(ids))
    return ids[:split], ids[split:], len(alphabet)


def batch(data: torch.Tensor, context: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(len(data) - context - 1, (BATCH,), generator=generator)
    window = torch.stack([data[s : s + context + 1] for s in starts.tolist()])
    return window[:, :-1], window[:, 1:]


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model({keys.INPUT_IDS.name: x}).logits
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def learning_rate(step: int, steps: int) -> float:
    """nanoGPT's schedule: linear warm-up, then cosine decay to MIN_LR at the last step."""
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    progress = (step - WARMUP) / max(1, steps - WARMUP)
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (LR - MIN_LR)


def optimiser(model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS)


def evaluate(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    with torch.no_grad():
        value = sum(loss_of(model, x, y).item() for x, y in batches) / len(batches)
    model.train()
    return value


def loss_at_time(curve: list[dict[str, float]], budget: float) -> float:
    """Val loss of the last evaluation at or before ``budget`` seconds of training."""
    return [point["val_loss"] for point in curve if point["train_s"] <= budget + 1e-9][-1]


def compare(context: int, steps: int, eval_every: int, vocab: int, train: torch.Tensor,
            val: torch.Tensor) -> dict[str, Any]:
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {
        "mosaic": MosaicLM(MosaicLMConfig(vocab_size=vocab, n_layers=N_LAYERS, block=MosaicBlockConfig(d_model=D_MODEL))),
        "transformer": TransformerBaseline(TransformerBaselineConfig(
            vocab_size=vocab, d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, max_seq_len=context)),
    }
    optimisers = {name: optimiser(model) for name, model in models.items()}
    val_generator = torch.Generator().manual_seed(1)
    val_batches = [batch(val, context, val_generator) for _ in range(EVAL_BATCHES)]
    generator = torch.Generator().manual_seed(0)
    train_s = dict.fromkeys(models, 0.0)
    curves: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for name, model in models.items():
        curves[name].append({"step": 0, "train_s": 0.0, "val_loss": evaluate(model, val_batches)})
    for step in range(steps):
        x, y = batch(train, context, generator)
        for name, model in models.items():  # interleaved: the same batch, one step each
            opt = optimisers[name]
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, steps)
            start = time.perf_counter()
            loss = loss_of(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            train_s[name] += time.perf_counter() - start
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            for name, model in models.items():
                curves[name].append({"step": step + 1, "train_s": round(train_s[name], 3),
                                     "val_loss": round(evaluate(model, val_batches), 4)})
    budget = min(train_s.values())  # the wall time the faster model needed for all its steps
    faster = min(train_s, key=lambda name: train_s[name])
    result: dict[str, Any] = {"context": context, "steps": steps, "batch": BATCH, "faster_model": faster,
                              "equal_wall_time_s": round(budget, 2)}
    for name, model in models.items():
        result[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "val_loss_at_equal_steps": curves[name][-1]["val_loss"],
            "val_loss_at_equal_wall_time": loss_at_time(curves[name], budget),
            "train_s": round(train_s[name], 2),
            "tokens_per_s": round(steps * BATCH * context / train_s[name], 1),
            "curve": curves[name],
        }
    result["tokens_per_s_ratio"] = round(result["mosaic"]["tokens_per_s"] / result["transformer"]["tokens_per_s"], 4)
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 256], help="contexts to compare")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 2000, 60 with --quick)")


def run(quick: bool, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    train, val, vocab = corpus()
    steps, eval_every = (60, 30) if quick else (2000, 250)
    if args.steps is not None:
        steps, eval_every = args.steps, max(1, args.steps // 8)
    started = os.getloadavg()
    results: dict[str, Any] = {"config": {"d_model": D_MODEL, "n_layers": N_LAYERS, "n_heads": N_HEADS, "batch": BATCH,
                                          "vocab": vocab, "lr": LR, "steps": steps, "threads": torch.get_num_threads(),
                                          "mosaic_block": "MosaicBlockConfig defaults"}}
    for context in args.contexts:
        results[f"context_{context}"] = compare(context, steps, eval_every, vocab, train, val)
    if "context_64" in results and steps == 2000:
        transformer_64 = results["context_64"]["transformer"]["val_loss_at_equal_steps"]
        results["transformer_reproduces_nanogpt"] = {
            "value": transformer_64, "goal": f"{NANOGPT_VAL_LOSS} +- {TOLERANCE}",
            "met": abs(transformer_64 - NANOGPT_VAL_LOSS) <= TOLERANCE,
        }
    results["load_average"] = {"start": [round(v, 2) for v in started], "end": [round(v, 2) for v in os.getloadavg()]}
    return results


if __name__ == "__main__":
    main(run, "lm", arguments)
