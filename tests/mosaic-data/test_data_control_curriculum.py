"""dataset.mosaic_control_curriculum: the vote's answer is the gated majority (and neither ungated
count nor either gate alone gives it), the latest-fact query is labelled SCAN, samples fit and are
deterministic."""

from __future__ import annotations

import attrs
import pytest
import torch

from mosaic.core.contract import IGNORE_INDEX, keys
from mosaic.core.errors import DataError, InvalidFieldError
from mosaic.core.plugins import get_registry
from mosaic.data.common import OP_GATE_DOWN, OP_GATE_UP, OP_NOP, OP_SCAN, OP_WRITE_MEM
from mosaic.data.config import ControlCurriculumConfig
from mosaic.data.control_curriculum import (
    LAST,
    NOISE,
    PAD,
    PRI,
    SET,
    SYMBOL_A,
    SYMBOL_B,
    VOTE,
    ControlCurriculumDataset,
    sample_length,
)

CONFIG = ControlCurriculumConfig(block_size=48, priority_events=3, noise_events=3, n_facts=3)


def vote(item: dict[str, torch.Tensor], gains: dict[int, float]) -> int:
    """The symbol ahead when each event's symbol counts with the gain of its opcode label."""
    ids, ops = item[keys.INPUT_IDS.name], item[keys.TEACHER_OPCODE.name]
    lead = 0.0
    for t in range(len(ids)):
        if int(ids[t]) in (SYMBOL_A, SYMBOL_B) and int(ids[t - 1]) in (PRI, NOISE):
            lead += gains.get(int(ops[t]), 1.0) * (1 if int(ids[t]) == SYMBOL_A else -1)
    assert lead != 0
    return SYMBOL_A if lead > 0 else SYMBOL_B


@pytest.mark.parametrize("priority, noise", [(3, 3), (5, 5), (1, 3)])
def test_only_the_gated_count_answers_the_vote(priority: int, noise: int) -> None:
    config = ControlCurriculumConfig(block_size=64, priority_events=priority, noise_events=noise, n_facts=2)
    data = ControlCurriculumDataset(config)
    wrong = {"gated": 0, "down_off": 0, "up_off": 0}
    items = [data[i] for i in range(200)]
    for item in items:
        answer = int(item[keys.TARGET_IDS.name][item[keys.PRIORITY_ANSWER_MASK.name]])
        ids, ops = item[keys.INPUT_IDS.name], item[keys.TEACHER_OPCODE.name]
        # GATE_UP exactly on priority symbols, GATE_DOWN exactly on noise symbols
        after = torch.cat([torch.tensor([-1]), ids[:-1]])
        assert ((ops == OP_GATE_UP) == ((after == PRI) & ((ids == SYMBOL_A) | (ids == SYMBOL_B)))).all()
        assert ((ops == OP_GATE_DOWN) == ((after == NOISE) & ((ids == SYMBOL_A) | (ids == SYMBOL_B)))).all()
        wrong["gated"] += vote(item, {OP_GATE_UP: 2.0, OP_GATE_DOWN: 0.5}) != answer
        wrong["down_off"] += vote(item, {OP_GATE_UP: 2.0}) != answer
        wrong["up_off"] += vote(item, {OP_GATE_DOWN: 0.5}) != answer
    assert wrong["gated"] == 0
    # the noise opposes the priority in about half the samples, and then each gate alone is wrong
    assert 60 < wrong["down_off"] < 140 and wrong["down_off"] == wrong["up_off"]


def test_the_latest_fact_query_is_scan_on_a_free_bucket() -> None:
    data = ControlCurriculumDataset(CONFIG)
    for i in range(50):
        item = data[i]
        ids, ops = item[keys.INPUT_IDS.name], item[keys.TEACHER_OPCODE.name]
        scan = item[keys.SCAN_ANSWER_MASK.name]
        assert int(scan.sum()) == 1 and (ops[scan] == OP_SCAN).all()
        assert (item[keys.TEACHER_READ_BUCKET.name][scan] == CONFIG.mem_buckets - 1).all()
        writes = (ops == OP_WRITE_MEM).nonzero()[:, 0]
        assert len(writes) == CONFIG.n_facts
        assert (ids[writes - 3] == SET).all()
        buckets = item[keys.TEACHER_WRITE_BUCKET.name][writes, 0]
        assert (buckets == ids[writes - 2] % CONFIG.mem_buckets).all()
        assert (buckets != CONFIG.mem_buckets - 1).all()  # no key routes to the SCAN query's bucket
        assert item[keys.TARGET_IDS.name][scan] == ids[writes[-1]]  # the latest fact's value
        answers = item[keys.EVAL_ANSWER_MASK.name]
        assert (answers == (scan | item[keys.PRIORITY_ANSWER_MASK.name])).all()
        real = torch.arange(len(ids)) < int((ids != PAD).sum()) - 1  # input positions with a next token
        assert ((ops == IGNORE_INDEX) == ~real).all()
        assert (
            (ops == OP_NOP)
            | (ops == OP_GATE_UP)
            | (ops == OP_GATE_DOWN)
            | (ops == OP_SCAN)
            | (ops == OP_WRITE_MEM)
            | ~real
        ).all()


def test_items_fit_exactly_and_are_deterministic() -> None:
    needed = sample_length(3, 3, 3, 2)
    tight = ControlCurriculumDataset(ControlCurriculumConfig(block_size=needed - 1))
    item = tight[0]
    assert (item[keys.TEACHER_OPCODE.name] != IGNORE_INDEX).all()
    again = ControlCurriculumDataset(ControlCurriculumConfig(block_size=needed - 1))[0]
    assert all(torch.equal(item[k], again[k]) for k in item)
    with pytest.raises(DataError, match="block_size"):
        ControlCurriculumDataset(ControlCurriculumConfig(block_size=needed - 2))


def test_bad_configs_are_rejected_by_name() -> None:
    with pytest.raises(InvalidFieldError, match="priority_events"):
        ControlCurriculumConfig(priority_events=2)
    with pytest.raises(InvalidFieldError, match="noise_events"):
        ControlCurriculumConfig(noise_events=4)
    with pytest.raises(DataError, match="n_facts"):
        ControlCurriculumDataset(ControlCurriculumConfig(vocab_size=20, mem_buckets=2, n_facts=6))


def test_registered_with_its_config() -> None:
    entry = get_registry().get("dataset.mosaic_control_curriculum")
    assert entry.provider == "mosaic-data"


def test_only_what_the_local_context_predicts_is_a_target() -> None:
    data = ControlCurriculumDataset(CONFIG)
    random_data = ControlCurriculumDataset(attrs.evolve(CONFIG, random_targets=True))
    for i in range(20):
        item, full = data[i], random_data[i]
        ids, targets = item[keys.INPUT_IDS.name], item[keys.TARGET_IDS.name]
        kept = targets != IGNORE_INDEX
        answers = item[keys.EVAL_ANSWER_MASK.name]
        assert kept[answers].all()
        # no random token and no count-timed token (VOTE, SET, LAST) is a target
        nxt = torch.cat([ids[1:], torch.tensor([PAD])])
        assert not (
            kept & ((nxt == VOTE) | (nxt == SET) | (nxt == LAST) | (nxt == PRI) | (nxt == NOISE))
        ).any()
        assert (full[keys.TARGET_IDS.name] != IGNORE_INDEX).sum() > 2 * kept.sum()
        assert torch.equal(full[keys.TARGET_IDS.name][kept], targets[kept])
