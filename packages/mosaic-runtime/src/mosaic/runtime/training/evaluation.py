"""Held-out evaluation: recall, commitment, opcode and token accuracy, read from keys alone.

- ``token_accuracy``: next-token accuracy over every labelled position (MQAR accuracy is this, since
  MQAR labels only query positions).
- ``answer_accuracy``: accuracy at answer positions — the batch's ``eval_answer_mask`` when the
  dataset provides one, else the positions the teacher marks READ_MEM (the token just before an
  answer, whose target is the answer).
- ``commitment``: per-class accuracy on close/neutral/open positions, a 3x3 confusion matrix (rows
  teacher, columns prediction) and per-span accuracy (majority vote over each contiguous run of one
  label), from the last layer's ``mosaic_commitment_logits``.
- ``opcode``: overall and per-opcode accuracy from the last layer's ``mosaic_opcode_logits``.
- ``answer_exact`` and ``ablations``: see :mod:`mosaic.runtime.training.eval_organism`.
- ``tools``: held-out tool requests played through the runtime, for datasets with tool episodes
  (``tools.success_rate``; see :mod:`mosaic.runtime.training.eval_tools`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS, V0_OPCODE_NAMES
from mosaic.core.contract.protocols import (
    BatchedDataset,
    DeclaresContextLength,
    DeclaresOpcodes,
    RecurrentStateCounter,
)
from mosaic.core.model_output import ModelOutput
from mosaic.runtime.training.batching import collate_for, move_to
from mosaic.runtime.training.eval_commitment import evaluate_commitments, merge_report
from mosaic.runtime.training.eval_organism import organism_report, predictions_of
from mosaic.runtime.training.eval_tools import tool_building_report

COMMITMENT_CLASSES = ("close", "neutral", "open")
READ_MEM = V0_OPCODE_IDS["READ_MEM"]
IGNORE = keys.IGNORE_INDEX


def state_floats(model: Any, dataset: Any) -> dict[str, Any] | None:
    """``{per_layer, total, context_length}``: the floats of recurrent state the model carries for
    one sample at the dataset's context length (its ``block_size``); None when the model does not
    count its state or the dataset does not declare its context length (a KV cache's size depends
    on it, so no length is assumed)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if not isinstance(model, RecurrentStateCounter) or not isinstance(dataset, DeclaresContextLength):
        return None
    context = int(dataset.block_size)
    per_layer = [int(n) for n in model.recurrent_state_floats(context)]
    return {"per_layer": per_layer, "total": sum(per_layer), "context_length": context}


def opcode_names(model: Any) -> list[str]:
    """The model's opcode table (names by id); the v0 table when the model does not declare one."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if isinstance(model, DeclaresOpcodes):
        return [str(name) for name in model.opcode_names]
    return list(V0_OPCODE_NAMES)


class _Counter:
    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def add(self, correct: torch.Tensor) -> None:
        self.correct += int(correct.sum())
        self.total += int(correct.numel())

    def value(self) -> float | None:
        return self.correct / self.total if self.total else None


def token_predictions(output: ModelOutput, targets: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` argmax predictions, ``-1`` where the model computed no logits."""
    if output.logit_targets is None:
        return output.logits.argmax(-1)
    # Labelled-only logits (N, V) follow the row-major order of the labelled positions.
    predictions = torch.full_like(targets, -1)
    predictions[targets != IGNORE] = output.logits.argmax(-1)
    return predictions


class Evaluator:
    """Accumulates accuracy counts and objective metrics over held-out batches."""

    def __init__(self, opcodes: Sequence[str]) -> None:
        self.opcodes = list(opcodes)
        self.token = _Counter()
        self.answer = _Counter()
        self.opcode = _Counter()
        self.opcode_per_class = {name: _Counter() for name in self.opcodes}
        self.confusion = torch.zeros(3, 3, dtype=torch.long)
        self.span = {name: _Counter() for name in COMMITMENT_CLASSES}
        self.metric_sums: dict[str, float] = {}
        self.batches = 0

    def add(self, output: ModelOutput, batch: Mapping[str, Any], metrics: Mapping[str, torch.Tensor]) -> None:
        self.batches += 1
        for name, value in metrics.items():
            self.metric_sums[name] = self.metric_sums.get(name, 0.0) + float(value)
        targets = batch[keys.TARGET_IDS.name]
        predictions = token_predictions(output, targets)
        labelled = targets != IGNORE
        self.token.add((predictions == targets)[labelled])
        answer_mask = batch.get(keys.EVAL_ANSWER_MASK.name)
        if answer_mask is None and keys.TEACHER_OPCODE.name in batch:
            answer_mask = batch[keys.TEACHER_OPCODE.name] == READ_MEM
        if answer_mask is not None:
            answer_mask = answer_mask.bool() & labelled
            self.answer.add((predictions == targets)[answer_mask])
        self._opcodes(output, batch)
        self._commitment(output, batch)

    def _opcodes(self, output: ModelOutput, batch: Mapping[str, Any]) -> None:
        logits = output.aux.get(keys.OPCODE_LOGITS.name)
        teacher = batch.get(keys.TEACHER_OPCODE.name)
        if logits is None or teacher is None:
            return
        predicted = logits[-1].argmax(-1)  # last layer: (B, T)
        supervised = teacher >= 0
        self.opcode.add((predicted == teacher)[supervised])
        for index, name in enumerate(self.opcodes):
            mask = teacher == index
            if bool(mask.any()):
                self.opcode_per_class[name].add((predicted == teacher)[mask])

    def _commitment(self, output: ModelOutput, batch: Mapping[str, Any]) -> None:
        logits = output.aux.get(keys.COMMITMENT_LOGITS.name)
        teacher = batch.get(keys.TEACHER_COMMITMENT_DELTA.name)
        if logits is None or teacher is None:
            return
        predicted = logits[-1].argmax(-1)  # (B, T) classes 0/1/2 = close/neutral/open
        labels = teacher.long() + 1
        supervised = teacher != IGNORE
        pairs = labels[supervised] * 3 + predicted[supervised]
        self.confusion += torch.bincount(pairs.cpu(), minlength=9).reshape(3, 3)
        for row in range(labels.shape[0]):
            self._spans(labels[row].tolist(), predicted[row].tolist(), supervised[row].tolist())

    def _spans(self, labels: list[int], predicted: list[int], supervised: list[bool]) -> None:
        start = 0
        while start < len(labels):
            if not supervised[start]:
                start += 1
                continue
            end = start
            while end < len(labels) and supervised[end] and labels[end] == labels[start]:
                end += 1
            votes = predicted[start:end]
            majority = max(set(votes), key=votes.count)
            self.span[COMMITMENT_CLASSES[labels[start]]].add(torch.tensor([majority == labels[start]]))
            start = end

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "metrics": {name: total / max(self.batches, 1) for name, total in sorted(self.metric_sums.items())},
            "token_accuracy": self.token.value(),
        }
        if self.answer.total:
            report["answer_accuracy"] = self.answer.value()
            report["answer_positions"] = self.answer.total
        if self.opcode.total:
            report["opcode_accuracy"] = self.opcode.value()
            report["opcode_accuracy_per_class"] = {
                name: counter.value() for name, counter in self.opcode_per_class.items() if counter.total
            }
        if int(self.confusion.sum()):
            per_class = {}
            for index, name in enumerate(COMMITMENT_CLASSES):
                row = self.confusion[index]
                per_class[name] = float(row[index]) / float(row.sum()) if int(row.sum()) else None
            report["commitment"] = {
                "per_class_accuracy": per_class,
                "span_accuracy": {name: c.value() for name, c in self.span.items() if c.total},
                "spans": {name: c.total for name, c in self.span.items()},
                "confusion": {"labels": list(COMMITMENT_CLASSES), "matrix": self.confusion.tolist()},
            }
        return report


@torch.no_grad()
def evaluate(model: torch.nn.Module, objective: Any, dataset: Any, *, samples: int, batch_size: int,
             device: torch.device, autocast: Any = None) -> dict[str, Any]:
    """Evaluate ``model`` on the first ``samples`` items of ``dataset``."""
    was_training = model.training
    model.eval()
    evaluator = Evaluator(opcode_names(model))
    collate = collate_for(dataset)
    count = min(samples, len(dataset))
    batches, predicted = [], []
    try:
        for start in range(0, count, batch_size):
            indices = list(range(start, min(start + batch_size, count)))
            items = list(dataset.__getitems__(indices)) if isinstance(dataset, BatchedDataset) else [
                dataset[i] for i in indices]
            batch = move_to(collate(items), device)
            if autocast is not None:
                with autocast():
                    output = model(batch)
            else:
                output = model(batch)
            _, metrics = objective(output, batch)
            evaluator.add(output, batch, metrics)
            batches.append(batch)
            if keys.TARGET_IDS.name in batch:
                predicted.append(predictions_of(output, batch[keys.TARGET_IDS.name]))
        decided = evaluate_commitments(model, batches, opcode_names(model))
    finally:
        model.train(was_training)
    report = evaluator.report()
    report["samples"] = count
    # whole-answer recall and its memory/opcode ablations (mosaic.runtime.training.eval_organism)
    # this pass's predictions serve as the unablated figure unless autocast ran it (the ablations run
    # without autocast, and the two must be read the same way)
    evaluated = (batches, predicted) if autocast is None and len(predicted) == len(batches) else None
    report.update(organism_report(model, dataset, samples=count, batch_size=batch_size, device=device,
                                  opcode_names=opcode_names(model), evaluated=evaluated))
    # commitments, turns and the COMMIT/IDLE/RESPOND ablations: merged last, key by key, so that
    # other sections (e.g. ``ablations.memory_off``) are kept (mosaic.runtime.training.eval_commitment)
    merge_report(report, decided)
    report.update(tool_building_report(model, dataset, samples=count))
    return report
