"""Negotiation traces: disjoint train/eval phrasings, overlapping commitments closed in any order,
and turn labels (IDLE / RESPOND) at the event boundaries where a runtime decides."""

from __future__ import annotations

import random
import re

import pytest
import torch

from mosaic.core.events.codec import EVENT_DELIMITER, decode_event_bytes
from mosaic.data.common import OP_COMMIT, OP_IDLE, OP_NOP, OP_RESPOND
from mosaic.data.config import EventTraceConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.data.negotiation import CLOSE, EVAL, OPEN, PHRASEBOOKS, TRAIN, negotiation, open_at_end

SEED_000 = {"n_pairs": 3, "distractor_events": 4, "negotiation_pairs": 2, "sleep_replay_per_pair": 1}


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{verb\}|\{done\}|\{obj\}|\{who\})", pattern)
    return re.compile("".join(".+" if part.startswith("{") else re.escape(part) for part in parts) + "$")


def test_train_and_eval_template_sets_are_disjoint_and_large():
    assert len(TRAIN.templates()) >= 30 and len(EVAL.templates()) >= 30
    assert not set(TRAIN.templates()) & set(EVAL.templates())
    assert not {v for pair in TRAIN.verbs for v in pair} & {v for pair in EVAL.verbs for v in pair}
    assert not set(TRAIN.objects) & set(EVAL.objects)
    assert not set(TRAIN.people) & set(EVAL.people)
    for book in PHRASEBOOKS.values():
        assert any("{who}" in offer for offer in book.offers)  # third-person offers
        assert any(offer.startswith("I") for offer in book.offers)  # first-person offers
        for text in book.templates():
            assert text.isascii() and '"' not in text and "\\" not in text


def test_eval_traces_use_only_eval_phrasings():
    train_words = set(TRAIN.objects) | {v for pair in TRAIN.verbs for v in pair}
    eval_patterns = [_regex(p) for p in EVAL.templates()]
    for seed in range(40):
        for step in negotiation(random.Random(seed), "eval", 2, notes=1, close_probability=0.5, longest=False):
            if step.text is None:
                continue
            assert any(p.match(step.text) for p in eval_patterns), step.text
            assert not train_words & set(step.text.replace(",", "").replace("?", "").split()), step.text


def test_commitments_overlap_and_close_in_any_order():
    orders, left_open = set(), []
    for seed in range(200):
        steps = negotiation(random.Random(seed), "train", 2, notes=1, close_probability=0.5, longest=False)
        ids = list(dict.fromkeys(step.commitment_id for step in steps))
        assert len(ids) == 2
        opens = [i for i, step in enumerate(steps) if step.delta == OPEN]
        closes = [i for i, step in enumerate(steps) if step.delta == CLOSE]
        assert len(opens) == 2 and all(o < c for o in opens for c in closes)  # both open before any close
        between = steps[min(opens) : max(closes, default=len(steps))]
        assert any(step.tool for step in between) and any(step.delta == 0 and step.sender == "agent" for step in between)
        orders.add(tuple(steps[i].commitment_id == ids[0] for i in closes))
        left_open.append(len(open_at_end(steps)))
        for index, step in enumerate(steps):  # a tool result is always followed by the agent
            if step.tool is not None:
                assert steps[index + 1].sender == "agent" and steps[index + 1].commitment_id == step.commitment_id
    assert {(True, False), (False, True)} <= orders  # closed in either order
    assert set(left_open) == {0, 1, 2}


def _events(item):
    ids = item["input_ids"].tolist()
    events, start = [], 0
    for position, byte in enumerate(ids):
        if byte == EVENT_DELIMITER:
            events.append((decode_event_bytes(bytes(ids[start:position])), position))
            start = position + 1
    return events


@pytest.mark.parametrize("split", ["train", "eval"])
def test_seed_000_traces_label_turns_and_commitments(split):
    dataset = EventTraceDataset(EventTraceConfig(block_size=5888, split=split, **SEED_000))
    for index in range(6):
        item = dataset[index]
        opcode, labels = item["mosaic_teacher_opcode"], item["mosaic_teacher_commitment_delta"]
        events = _events(item)
        assert len({e.commitment_id for e, _ in events if e.type == "Message"}) == 2
        for (event, delimiter), (following, _) in zip(events, events[1:], strict=False):
            if event.sender == "agent":
                assert int(opcode[delimiter]) == -100  # ignored: the runtime does not decide after its own events
            else:
                want = OP_RESPOND if following.sender == "agent" else OP_IDLE
                assert int(opcode[delimiter]) == want, (event.type, following.type)
            if event.type in ("Noise", "MemoryWrite"):
                assert int(opcode[delimiter]) == OP_IDLE
            if event.type in ("MemoryQuery", "Idle", "ToolResult"):
                assert int(opcode[delimiter]) == OP_RESPOND
        for event, delimiter in events:  # inside noise the block keeps its update: NOP
            if event.type == "Noise":
                assert int(opcode[delimiter - 1]) == OP_NOP
        committed = labels != -100
        assert bool((opcode[committed & (labels != 0)] == OP_COMMIT).all())
        assert bool((opcode[committed & (labels == 0)] == OP_NOP).all())
        assert set(torch.unique(labels[committed]).tolist()) <= {-1, 0, 1}


def test_both_splits_fit_the_seed_000_block():
    for split in ("train", "eval"):
        dataset = EventTraceDataset(EventTraceConfig(block_size=5888, split=split, **SEED_000))
        longest = dataset.max_sample_length()
        for index in range(64):
            assert int((dataset[index]["target_ids"] != -100).sum()) + 1 <= longest


def test_turn_labels_can_be_turned_off():
    item = EventTraceDataset(EventTraceConfig(block_size=5888, turn_opcodes=False, **SEED_000))[0]
    assert not bool(((item["mosaic_teacher_opcode"] == OP_IDLE) | (item["mosaic_teacher_opcode"] == OP_RESPOND)).any())
