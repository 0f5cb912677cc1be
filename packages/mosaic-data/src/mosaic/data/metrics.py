"""Evaluation metrics over the keys mosaic-data's items carry.

- recall: ``eval_answer_mask`` (B, T) marks the positions whose target is a recalled answer token
  (memory curriculum: the query's ``IS``; event traces: each byte of a MemoryAnswer value; MQAR:
  every label position). An *answer* is a maximal run of consecutive marked positions.
- commitments: ``mosaic_teacher_commitment_delta`` (B, T) holds -1/0/+1 on message text bytes and
  -100 elsewhere; the commitment head's logits are ordered [close, neutral, open], so the class of
  delta ``d`` is ``d + 1``. A *span* is a maximal run of consecutive labelled positions.

Every function returns NaN when there is nothing to score, never a silent 0 or 1.
"""

from __future__ import annotations

import torch
from mosaic.data.common import IGNORE_COMMITMENT


def _runs(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) int64 run id per position (0 outside ``mask``); ids are unique across the batch."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]  # first position of each run
    ids = torch.cumsum(starts.flatten().long(), 0).view_as(mask)  # (B, T)
    return torch.where(mask, ids, torch.zeros_like(ids))


def _run_all(correct: torch.Tensor, mask: torch.Tensor) -> float:
    run = _runs(mask)
    count = int(run.max())
    if count == 0:
        return float("nan")
    wrong = torch.zeros(count + 1, dtype=torch.long).index_add_(0, run.flatten(), (~correct & mask).flatten().long())
    return float((wrong[1:] == 0).double().mean())


def recall_accuracy(logits: torch.Tensor, target_ids: torch.Tensor, answer_mask: torch.Tensor) -> float:
    """Fraction of answer tokens predicted exactly (argmax of ``logits`` (B, T, V))."""
    total = int(answer_mask.sum())
    if total == 0:
        return float("nan")
    correct = logits.argmax(dim=-1) == target_ids
    return float((correct & answer_mask).sum()) / total


def recall_exact_match(logits: torch.Tensor, target_ids: torch.Tensor, answer_mask: torch.Tensor) -> float:
    """Fraction of answers (runs of ``answer_mask``) whose every token is predicted exactly."""
    return _run_all(logits.argmax(dim=-1) == target_ids, answer_mask)


def commitment_accuracy(commitment_logits: torch.Tensor, commitment_delta: torch.Tensor) -> float:
    """Token-level accuracy of the commitment head (B, T, 3) on labelled positions."""
    labelled = commitment_delta != IGNORE_COMMITMENT
    total = int(labelled.sum())
    if total == 0:
        return float("nan")
    correct = commitment_logits.argmax(dim=-1) == commitment_delta + 1
    return float((correct & labelled).sum()) / total


def commitment_span_accuracy(commitment_logits: torch.Tensor, commitment_delta: torch.Tensor) -> float:
    """Fraction of message spans whose every byte gets the right commitment class."""
    labelled = commitment_delta != IGNORE_COMMITMENT
    return _run_all(commitment_logits.argmax(dim=-1) == commitment_delta + 1, labelled)
