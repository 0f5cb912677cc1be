"""The commitment evaluation reads held-out traces the way the runtime does: every labelled
message found by decoding the bytes, and the true ledger at the end of a trace."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.keys import COMMIT_SIGNAL, IDLE_SIGNAL
from mosaic.data.config import EventTraceConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.layers.isa import V0_OPCODE_IDS, V0_OPCODE_NAMES
from mosaic.runtime.training.batching import collate_for
from mosaic.runtime.training.eval_commitment import (
    evaluate_commitments,
    labelled_messages,
    merge_report,
    open_after,
)


def test_messages_and_true_ledger_match_the_trace():
    dataset = EventTraceDataset(EventTraceConfig(split="eval", return_spans=True))
    endings = set()
    for index in range(12):
        item = dataset[index]
        found = labelled_messages(item["input_ids"].tolist(), item["mosaic_teacher_commitment_delta"])
        spans = [span for span in item["eval_spans"] if span.kind == "commitment"]
        assert [(c, s.start, s.stop, label) for c, s, label in found] == \
            [(span.commitment_id, span.start, span.end, span.label) for span in spans]
        opened = {span.commitment_id for span in spans if span.label == 1}
        closed = {span.commitment_id for span in spans if span.label == -1}
        truth = open_after([(c, label) for c, _, label in found])
        assert truth == opened - closed
        endings.add(len(truth))
    assert len(endings) > 1  # some traces end with open commitments, some without


def test_merge_keeps_both_sides():
    report = {"commitment": {"per_class_accuracy": {"open": 1.0}}, "samples": 4}
    merge_report(report, {"commitment": {"ledger_exact": 0.5}, "turns": {"onset": 1.0}})
    assert report == {"commitment": {"per_class_accuracy": {"open": 1.0}, "ledger_exact": 0.5},
                      "turns": {"onset": 1.0}, "samples": 4}


class OracleVM(torch.nn.Module):
    """A stand-in model whose commitment head reads the true labels and whose VM executes COMMIT
    exactly where the data teaches it, unless the batch forces NOP there (the ablation)."""

    def __init__(self, batch: dict) -> None:
        super().__init__()
        self.labels = batch[keys.TEACHER_COMMITMENT_DELTA.name]
        self.commit = batch[keys.TEACHER_OPCODE.name] == V0_OPCODE_IDS["COMMIT"]

    def forward(self, batch: dict) -> SimpleNamespace:
        logits = torch.nn.functional.one_hot((self.labels + 1).clamp(min=0), 3).float() * 10.0
        commit = self.commit.clone()
        forced = batch.get(keys.TEACHER_OPCODE.name)
        if forced is not None:
            commit &= forced != V0_OPCODE_IDS["NOP"]
        zeros = torch.zeros(self.labels.shape)
        return SimpleNamespace(aux={keys.COMMITMENT_LOGITS.name: logits[None], COMMIT_SIGNAL.name: commit.float()[None],
                                    IDLE_SIGNAL.name: zeros[None], keys.RESPONSE_ONSET.name: zeros[None]})


def test_commit_feeds_the_ledger_and_forcing_it_off_drops_ledger_exact():
    """The ledger of the evaluation is built from COMMIT: a perfect head and COMMIT give
    ledger_exact 1; COMMIT forced to NOP at its positions leaves only the traces with nothing open,
    which the data keeps at most 0.7 so that the ablation can move the metric by >= 0.3."""
    dataset = EventTraceDataset(EventTraceConfig(split="eval", teacher_forcing=0.0))
    batch = collate_for(dataset)([dataset[i] for i in range(32)])
    report = evaluate_commitments(OracleVM(batch), [batch], list(V0_OPCODE_NAMES))
    assert report["commitment"]["heldout_templates"]["per_class_accuracy"] == {"close": 1.0, "neutral": 1.0,
                                                                               "open": 1.0}
    assert report["commitment"]["ledger_exact"] == 1.0
    assert report["ablations"]["opcode_off"]["COMMIT"]["ledger_exact"] <= 0.7


def test_the_ledger_commits_where_commit_dominates_at_some_byte():
    """A causal VM commits once it has read the deciding words, often late in the text: one byte
    where COMMIT dominates applies the head's verdict; none (or a signal never above one half)
    changes nothing."""
    from mosaic.runtime.agent import decisions

    opened = torch.tensor([[0.0, 0.0, 5.0]]).repeat(10, 1)  # the head reads an offer
    late = torch.zeros(10)
    late[-2] = 1.0
    assert decisions.ledger_delta(opened, late) == 1
    assert decisions.ledger_delta(opened, torch.zeros(10)) == 0
    assert decisions.ledger_delta(opened, torch.full((10,), 0.5)) == 0
    assert decisions.ledger_delta(torch.tensor([[0.0, 5.0, 0.0]]).repeat(10, 1), late) == 0  # neutral verdict


def test_the_verdict_is_read_from_the_second_half_of_the_text():
    """A causal head reads the deciding words after the subject: bytes before them (here six of ten,
    confidently neutral) must not outvote the verdict the head reaches on the rest of the text."""
    from mosaic.runtime.agent import decisions

    logits = torch.tensor([[0.0, 5.0, 0.0]]).repeat(10, 1)  # neutral while reading "The support desk"
    logits[6:] = torch.tensor([0.0, 0.0, 5.0])  # "... will sign the form": an offer
    assert decisions.head_delta(logits) == 1
    assert decisions.head_delta(logits[:1]) == 0  # a one-byte text is read whole
