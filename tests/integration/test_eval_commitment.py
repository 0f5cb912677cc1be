"""The commitment evaluation reads held-out traces the way the runtime does: every labelled
message found by decoding the bytes, and the true ledger at the end of a trace."""

from __future__ import annotations

from mosaic.data.config import EventTraceConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.runtime.training.eval_commitment import labelled_messages, merge_report, open_after


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
