"""The commitment decisions a runtime reads from the VM: the verdict and COMMIT are taken at the end
of a message's text, where a byte model has read the words that make the speech act."""

from __future__ import annotations

import torch

from mosaic.runtime.agent import decisions

CLOSE, NEUTRAL, OPEN = (torch.tensor(row) * 8.0 for row in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]))


def message(prefix: torch.Tensor, suffix: torch.Tensor, *, length: int = 30) -> torch.Tensor:
    """Per-byte logits of a text whose head says ``prefix`` until its last VERDICT_BYTES bytes."""
    tail = decisions.VERDICT_BYTES
    return torch.stack([prefix] * (length - tail) + [suffix] * tail)


def test_the_verdict_is_read_where_the_phrase_ends():
    # "The report is ..." reads as a note until "ready": the prior before it must not outvote the end
    assert decisions.head_delta(message(NEUTRAL, CLOSE)) == -1
    assert decisions.head_delta(message(NEUTRAL, OPEN)) == 1
    assert decisions.head_delta(message(OPEN, NEUTRAL)) == 0
    assert decisions.head_delta(message(NEUTRAL, CLOSE, length=2)) == -1  # a text shorter than the tail


def test_commit_at_the_end_of_the_text_moves_the_ledger():
    logits = message(NEUTRAL, OPEN)
    tail = decisions.VERDICT_BYTES
    late = torch.cat([torch.zeros(len(logits) - tail), torch.ones(tail)])
    assert decisions.ledger_delta(logits, late) == 1
    assert decisions.ledger_delta(logits, 1 - late) == 0  # COMMIT only before the phrase was read
    assert decisions.ledger_delta(logits, torch.zeros(len(logits))) == 0
