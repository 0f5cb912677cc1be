"""Evaluation metrics over answer masks and commitment labels."""

from __future__ import annotations

import math

import pytest
import torch

from mosaic.data import collate
from mosaic.data.config import EventTraceConfig, MemoryCurriculumConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.data.memory_curriculum import MemoryCurriculumDataset
from mosaic.data.metrics import (
    commitment_accuracy,
    commitment_span_accuracy,
    recall_accuracy,
    recall_exact_match,
)


@pytest.fixture(scope="module")
def batch():
    dataset = EventTraceDataset(EventTraceConfig(block_size=8192, n_pairs=3, negotiation_pairs=2, value_digits=4))
    return collate([dataset[i] for i in range(4)])


def _one_hot(ids, classes):
    return torch.nn.functional.one_hot(ids.clamp(min=0), classes).float()


def test_recall_token_accuracy_and_exact_match(batch):
    y, mask = batch["target_ids"], batch["eval_answer_mask"]
    logits = _one_hot(y, 256)
    assert recall_accuracy(logits, y, mask) == 1.0 and recall_exact_match(logits, y, mask) == 1.0
    # Break one byte of one answer: 12 answers of 4 bytes each.
    b, t = torch.nonzero(mask)[5].tolist()
    logits[b, t] = _one_hot((y[b, t] + 1) % 256, 256)
    assert int(mask.sum()) == 4 * 3 * 4
    assert recall_accuracy(logits, y, mask) == pytest.approx(47 / 48)
    assert recall_exact_match(logits, y, mask) == pytest.approx(11 / 12)
    assert math.isnan(recall_accuracy(logits, y, torch.zeros_like(mask)))


def test_single_token_answers_of_the_memory_curriculum():
    dataset = MemoryCurriculumDataset(MemoryCurriculumConfig(n_pairs=4))
    batch = collate([dataset[i] for i in range(3)])
    y, mask = batch["target_ids"], batch["eval_answer_mask"]
    logits = _one_hot(y, dataset.vocab_size)
    logits[0, torch.nonzero(mask[0])[0, 0]] = 0.0  # argmax 0 = PAD, never an answer
    assert recall_exact_match(logits, y, mask) == pytest.approx(11 / 12)


def test_commitment_accuracy_token_and_span(batch):
    delta = batch["mosaic_teacher_commitment_delta"]
    logits = _one_hot(delta + 1, 3)
    assert commitment_accuracy(logits, delta) == 1.0 and commitment_span_accuracy(logits, delta) == 1.0
    labelled = torch.nonzero(delta != -100)
    b, t = labelled[0].tolist()
    logits[b, t] = _one_hot((delta[b, t] + 2) % 3, 3)  # a wrong class on one byte of one span
    spans = 4 * 2 * 4  # 4 samples, 2 commitments, 4 messages each (request, offer, note, last)
    assert commitment_span_accuracy(logits, delta) == pytest.approx((spans - 1) / spans)
    assert commitment_accuracy(logits, delta) == pytest.approx(1 - 1 / len(labelled))
