"""Organism evaluation: whole-answer recall and what it depends on, by ablation.

- ``answer_exact``: the fraction of answers whose every byte the model predicts (an answer is a
  maximal run of ``eval_answer_mask`` positions in a row; with teacher forcing 0 at eval, the model
  routes, gates and chooses its opcodes itself).
- ``ablations.memory_off.answer_exact``: the same with every block's memory read zeroed (the output
  projection of the hashed memory returns 0), so the answers must come from elsewhere.
- ``forget_exact``: the same over the answers to queries for keys the sample told the model to
  forget (``eval_forget_mask``; the right answer is "unknown"), where the data has them.
- ``priority_exact``: the same over the answers to priority votes among noise (``eval_priority_mask``),
  which need the state gained by GATE_UP / GATE_DOWN; ``scan_exact`` over the answers to queries for
  the latest fact (``eval_scan_mask``), which need SCAN's read across all buckets.
- ``ablations.opcode_off.<OPCODE>.<metric>``: each metric with ``OPCODE`` forced to NOP at the
  positions where the teacher labels it (``mosaic_teacher_opcode``), for every opcode whose metric
  is recall (READ_MEM, WRITE_MEM, SCAN, CLEAR_MEM, GATE_UP, GATE_DOWN: whichever the data labels).

Ablations act through forward hooks on the model's blocks, so the model code carries no evaluation
switches. Models without MOSAIC blocks (e.g. the Transformer baseline) get ``answer_exact`` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.keys import FORGET_ANSWER_MASK, PRIORITY_ANSWER_MASK, SCAN_ANSWER_MASK
from mosaic.runtime.training.batching import collate_for, move_to

IGNORE_TARGET = keys.IGNORE_INDEX
ANSWER_MASK = keys.EVAL_ANSWER_MASK.name
TEACHER_OPCODE = keys.TEACHER_OPCODE.name
NOP = 0
#: Opcodes whose served metric is whole-answer recall (by v0 name).
RECALL_OPCODES = ("READ_MEM", "WRITE_MEM", "CLEAR_MEM", "GATE_UP", "GATE_DOWN", "SCAN")
#: metric -> the batch mask whose runs it scores
METRIC_MASKS = {
    "answer_exact": ANSWER_MASK,
    "forget_exact": FORGET_ANSWER_MASK.name,
    "priority_exact": PRIORITY_ANSWER_MASK.name,
    "scan_exact": SCAN_ANSWER_MASK.name,
}


def answer_runs(mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` int64 id of the answer each position belongs to (0 outside ``mask``), unique across
    the batch; an answer is a maximal run of consecutive True positions of one row."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    ids = torch.cumsum(starts.flatten().long(), 0).view_as(mask)
    return torch.where(mask, ids, torch.zeros_like(ids))


class ExactCounter:
    """Counts answers and the answers whose every position is right."""

    def __init__(self) -> None:
        self.exact = 0
        self.total = 0

    def add(self, correct: torch.Tensor, mask: torch.Tensor) -> None:
        runs = answer_runs(mask)
        count = int(runs.max()) if runs.numel() else 0
        if count == 0:
            return
        wrong = torch.zeros(count + 1, dtype=torch.long, device=runs.device)
        wrong.index_add_(0, runs.flatten(), (~correct & mask).flatten().long())
        self.exact += int((wrong[1:] == 0).sum())
        self.total += count

    def value(self) -> float | None:
        return self.exact / self.total if self.total else None


def _blocks(model: torch.nn.Module) -> list[Any]:
    model = getattr(model, "module", model)
    return [block for block in getattr(model, "blocks", []) if hasattr(block, "memory")]


@contextlib.contextmanager
def memory_off(model: torch.nn.Module) -> Iterator[None]:
    """Every block's memory read contributes nothing (its output projection returns zeros)."""
    handles = [block.memory.out.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
               for block in _blocks(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def opcode_forced(model: torch.nn.Module, where: Callable[[], torch.Tensor | None]) -> Iterator[None]:
    """Every block's VM runs NOP at the positions ``where()`` marks ``(B, T)`` (the current batch's),
    whatever its opcode head prefers; elsewhere the block's own (or the teacher's) choice stands."""

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        u, teacher = args
        mask = where()
        if mask is None:
            return args
        own = torch.full(mask.shape, keys.IGNORE_INDEX, dtype=torch.long, device=u.device) if teacher is None else teacher
        return u, torch.where(mask.to(u.device), torch.full_like(own, NOP), own)

    handles = [block.opcode_head.register_forward_pre_hook(hook)
               for block in _blocks(model) if getattr(block, "opcode_head", None) is not None]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def predictions_of(output: Any, targets: torch.Tensor) -> torch.Tensor:
    """The model's predicted token ``(B, T)`` at every labelled position (-1 elsewhere when the model
    emits logits at labelled positions only)."""
    if output.logit_targets is None:
        return output.logits.argmax(-1)
    predictions = torch.full_like(targets, -1)  # labelled-only logits follow the row-major order of the labelled positions
    predictions[targets != IGNORE_TARGET] = output.logits.argmax(-1)
    return predictions


def _exact(model: torch.nn.Module, batches: Sequence[Mapping[str, Any]], current: list[Mapping[str, Any]],
           predicted: Sequence[torch.Tensor] | None = None) -> dict[str, float | None]:
    """Every metric of :data:`METRIC_MASKS` whose mask the batches carry, in one pass (or from
    ``predicted``, the same model's predictions on the same batches, already computed)."""
    counters = {metric: ExactCounter() for metric, key in METRIC_MASKS.items() if key in batches[0]}
    for index, batch in enumerate(batches):
        current[:] = [batch]
        targets = batch[keys.TARGET_IDS.name]
        predictions = predicted[index] if predicted is not None else predictions_of(model(batch), targets)
        for metric, counter in counters.items():
            counter.add(predictions == targets, batch[METRIC_MASKS[metric]].bool() & (targets != IGNORE_TARGET))
    return {metric: counter.value() for metric, counter in counters.items()}


@torch.no_grad()
def organism_report(model: torch.nn.Module, dataset: Any, *, samples: int, batch_size: int, device: torch.device,
                    opcode_names: list[str],
                    evaluated: tuple[Sequence[Mapping[str, Any]], Sequence[torch.Tensor]] | None = None
                    ) -> dict[str, Any]:
    """``answer_exact`` and its ablations on the first ``samples`` items of ``dataset``; empty when
    the dataset marks no answers. ``evaluated``: those items' batches and the model's predictions on
    them, already computed by the caller's evaluation pass (the same forward, so not run again)."""
    predicted: Sequence[torch.Tensor] | None = None
    if evaluated is not None:
        batches, predicted = list(evaluated[0]), evaluated[1]
    else:
        collate = collate_for(dataset)
        count = min(samples, len(dataset))
        batches = []
        for start in range(0, count, batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, count))]
            batches.append(move_to(collate(items), device))
    if not batches or ANSWER_MASK not in batches[0]:
        return {}
    was_training = model.training
    model.eval()
    current: list[Mapping[str, Any]] = []
    try:
        report: dict[str, Any] = dict(_exact(model, batches, current, predicted))
        if not _blocks(model):
            return report
        with memory_off(model):
            ablations: dict[str, Any] = {"memory_off": _exact(model, batches, current)}
        taught = _taught_opcodes(batches, opcode_names)
        if taught:
            ablations["opcode_off"] = {}
        for name, index in taught.items():
            with opcode_forced(model, _positions_of(current, index)):
                ablations["opcode_off"][name] = _exact(model, batches, current)
        report["ablations"] = ablations
        return report
    finally:
        model.train(was_training)


def _positions_of(current: list[Mapping[str, Any]], opcode: int) -> Callable[[], torch.Tensor | None]:
    """Where the batch being evaluated teaches ``opcode`` ``(B, T)``, read when the hook fires."""
    def where() -> torch.Tensor | None:
        return current[0][TEACHER_OPCODE] == opcode if current else None
    return where


def _taught_opcodes(batches: Sequence[Mapping[str, Any]], opcode_names: list[str]) -> dict[str, int]:
    """The recall-serving opcodes the data labels somewhere, by name -> id."""
    if TEACHER_OPCODE not in batches[0]:
        return {}
    labelled = set()
    for batch in batches:
        labelled |= set(torch.unique(batch[TEACHER_OPCODE]).tolist())
    return {name: index for index, name in enumerate(opcode_names) if name in RECALL_OPCODES and index in labelled}
