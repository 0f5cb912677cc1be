"""For each dataset, the fraction of positions carrying each kind of supervision matches its
configuration, so that no phase (queries, answers, negotiation, replay) is silently cut away."""

from __future__ import annotations

import pytest
import torch

from mosaic.data import collate
from mosaic.data.config import EventTraceConfig, MemoryCurriculumConfig, MQARConfig, TextConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.data.memory_curriculum import MemoryCurriculumDataset, sample_length
from mosaic.data.mqar import MQARDataset
from mosaic.data.text import TextDataset


def _batch(dataset, count=16):
    return collate([dataset[i] for i in range(count)])


def _fraction(mask: torch.Tensor) -> float:
    return float(mask.double().mean())


@pytest.mark.parametrize("pairs,distractors,gap,replays", [(1, 0, 0, 0), (4, 8, 5, 1), (6, 3, 20, 2)])
def test_memory_curriculum_supervision_fractions(pairs, distractors, gap, replays):
    config = MemoryCurriculumConfig(block_size=200, n_pairs=pairs, distractor_len=distractors, gap_len=gap,
                                    sleep_replay_per_pair=replays, reg_slots=2)
    batch = _batch(MemoryCurriculumDataset(config))
    T = config.block_size
    n = sample_length(pairs, distractors, gap, replays)
    assert _fraction(batch["target_ids"] != -100) == pytest.approx((n - 1) / T)
    assert _fraction(batch["mosaic_teacher_write_gate"] == 1) == pytest.approx(pairs / T)
    assert _fraction(batch["mosaic_teacher_write_gate_mask"]) == pytest.approx((n - 1) / T)
    assert _fraction(batch["mosaic_teacher_write_bucket"][..., 0] >= 0) == pytest.approx(pairs / T)
    assert _fraction(batch["mosaic_teacher_read_bucket"][..., 0] >= 0) == pytest.approx(pairs * (1 + replays) / T)
    assert _fraction(batch["eval_answer_mask"]) == pytest.approx(pairs / T)
    assert _fraction(batch["mosaic_teacher_opcode"] >= 0) == pytest.approx((n - 1) / T)
    assert _fraction(batch["mosaic_drop_local"] == 1) == pytest.approx(pairs * (4 + replays) / T)
    assert _fraction(batch["mosaic_teacher_reg_sel"] >= 0) == pytest.approx(pairs / T)


@pytest.mark.parametrize("pairs,noise,cycles,replays,digits", [(1, 0, 1, 0, 2), (2, 1, 2, 1, 4), (3, 2, 0, 0, 6)])
def test_event_trace_supervision_fractions(pairs, noise, cycles, replays, digits):
    config = EventTraceConfig(block_size=8192, n_pairs=pairs, distractor_events=noise, negotiation_pairs=cycles,
                              sleep_replay_per_pair=replays, value_digits=digits, return_spans=True)
    batch = _batch(EventTraceDataset(config))
    T = config.block_size
    assert _fraction(batch["mosaic_teacher_write_gate"] == 1) == pytest.approx(pairs * digits / T)
    reads = batch["mosaic_teacher_read_bucket"][..., 0] >= 0
    assert _fraction(reads) == pytest.approx(pairs * (1 + replays) * digits / T)
    assert _fraction(batch["eval_answer_mask"]) == pytest.approx(pairs * digits / T)
    commitment = batch["mosaic_teacher_commitment_delta"]
    for row, spans in enumerate(batch["eval_spans"]):
        kinds = [span.kind for span in spans]
        # request, offer, one note, and the message after the tool result (a delivery or a note)
        assert kinds.count("commitment") == (3 + config.negotiation_notes) * cycles
        messages = [span for span in spans if span.kind == "commitment"]
        assert sum(span.label == 1 for span in messages) == cycles
        assert sum(span.label == -1 for span in messages) <= cycles
        labelled = sum(span.end - span.start for span in messages)
        assert int((commitment[row] != -100).sum()) == labelled
        for span in messages:
            assert bool((commitment[row, span.start : span.end] == span.label).all())
        assert kinds.count("answer") == pairs and kinds.count("replay_answer") == pairs * replays
        assert kinds.count("write") == pairs
    # Every sample ends with its last answer (or last negotiation/replay event): nothing is cut.
    lengths = (batch["target_ids"] != -100).sum(dim=1)
    assert bool((lengths + 1 <= EventTraceDataset(config).max_sample_length()).all())


@pytest.mark.parametrize("seq_len,pairs", [(64, 4), (256, 16), (512, 64)])
def test_mqar_supervision_fractions(seq_len, pairs):
    config = MQARConfig(seq_len=seq_len, num_kv_pairs=pairs, teacher_signals=True)
    batch = MQARDataset(config).generate(range(32))
    assert _fraction(batch["target_ids"] != -100) == pytest.approx(pairs / seq_len)
    assert _fraction(batch["mosaic_teacher_write_gate"] == 1) == pytest.approx(pairs / seq_len)
    assert _fraction(batch["mosaic_teacher_read_bucket"][..., 0] >= 0) == pytest.approx(pairs / seq_len)
    assert _fraction(batch["mosaic_teacher_write_gate_mask"]) == 1.0


def test_text_supervises_every_position(small_text):
    batch = _batch(TextDataset(TextConfig(path=str(small_text), block_size=48)), count=8)
    assert _fraction(batch["target_ids"] != -100) == 1.0
