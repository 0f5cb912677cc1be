"""dataset.mosaic_memory_curriculum: labels point at the right tokens, samples fit, padding is
masked, samples are deterministic per (seed, split, idx, level)."""

from __future__ import annotations

import os

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.contract import IGNORE_INDEX
from mosaic.core.errors import ConfigError, DataError
from mosaic.core.plugins import get_registry
from mosaic.data.common import OP_NOP, OP_READ_MEM, OP_WRITE_MEM
from mosaic.data.config import MemoryCurriculumConfig
from mosaic.data.memory_curriculum import GET, IS, PAD, REPLAY, SET, MemoryCurriculumDataset, sample_length

EXAMPLES = 300 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 30


@st.composite
def configs(draw):
    pairs = draw(st.integers(1, 6))
    distractors = draw(st.integers(0, 5))
    gap = draw(st.integers(0, 6))
    replays = draw(st.integers(0, 2))
    needed = sample_length(pairs, distractors, gap, replays)
    return MemoryCurriculumConfig(
        block_size=needed - 1 + draw(st.integers(0, 12)),
        vocab_size=draw(st.integers(8 + pairs, 300)),
        mem_buckets=draw(st.sampled_from([2, 4, 16, 64])),
        mem_hashes=draw(st.integers(1, 3)),
        n_pairs=pairs,
        min_pairs=draw(st.integers(1, pairs)),
        distractor_len=distractors,
        gap_len=gap,
        sleep_replay_per_pair=replays,
        reg_slots=draw(st.integers(0, 3)),
        shuffle_queries=draw(st.booleans()),
        num_samples=1000,
        seed=draw(st.integers(0, 2**31 - 1)),
        split=draw(st.sampled_from(["train", "eval"])),
    )


def _check_item(dataset: MemoryCurriculumDataset, item: dict[str, torch.Tensor]) -> None:
    c = dataset.config
    pairs = dataset.difficulty()["n_pairs"]
    x, y = item["input_ids"], item["target_ids"]
    T = c.block_size
    assert x.shape == y.shape == (T,)
    real = y != -100
    n_inputs = int(real.sum())
    # Real positions are a prefix (the query answers are the last targets; nothing is cut).
    assert bool(real[:n_inputs].all()) and not bool(real[n_inputs:].any())
    assert n_inputs == sample_length(pairs, dataset.difficulty()["distractor_len"],
                                     dataset.difficulty()["gap_len"], c.sleep_replay_per_pair) - 1
    # target_ids is input_ids shifted by one on real positions.
    assert torch.equal(y[: n_inputs - 1], x[1:n_inputs])
    # No unmasked padding: PAD only after the sample (whose last token is an input without a
    # target), never a target, every label ignored there.
    assert not bool((x[: n_inputs + 1] == PAD).any())
    assert bool((x[n_inputs + 1 :] == PAD).all())
    assert not bool((y == PAD).any())
    pad = ~real
    assert bool((item["mosaic_teacher_opcode"][pad] == IGNORE_INDEX).all())
    assert bool((item["mosaic_teacher_read_bucket"][pad] == IGNORE_INDEX).all())
    assert bool((item["mosaic_teacher_write_bucket"][pad] == IGNORE_INDEX).all())
    for key in ("mosaic_teacher_write_gate", "mosaic_teacher_write_utility"):
        assert torch.equal(item[key + "_mask"], real)
        assert bool((item[key][pad] == 0).all())

    # Ground truth from the token stream itself: key -> value of each SET k IS v.
    tokens = x[:n_inputs].tolist() + [int(y[n_inputs - 1])]
    written = {}
    write_positions = []
    for t in range(len(tokens) - 3):
        if tokens[t] == SET and tokens[t + 2] == IS:
            written[tokens[t + 1]] = tokens[t + 3]
            write_positions.append(t + 3)
    assert len(written) == pairs == len(write_positions)

    # Write labels sit exactly on the values, with the key's bucket on every hash.
    gate = item["mosaic_teacher_write_gate"]
    assert sorted(torch.nonzero(gate).flatten().tolist()) == write_positions
    for index, t in enumerate(write_positions):
        key = tokens[t - 2]
        assert item["mosaic_teacher_write_bucket"][t].tolist() == [key % c.mem_buckets] * c.mem_hashes
        assert int(item["mosaic_teacher_opcode"][t]) == OP_WRITE_MEM
        if c.reg_slots:
            assert int(item["mosaic_teacher_reg_sel"][t]) == index % c.reg_slots
            assert float(item["mosaic_teacher_reg_write_gate"][t]) == 1.0
    if not c.reg_slots:
        assert "mosaic_teacher_reg_sel" not in item

    # Read labels sit on the token just before an answer and name the answer's key bucket.
    reads = torch.nonzero(item["mosaic_teacher_read_bucket"][:, 0] >= 0).flatten().tolist()
    queries, replays = [], []
    for t in reads:
        assert int(item["mosaic_teacher_opcode"][t]) == OP_READ_MEM
        bucket = item["mosaic_teacher_read_bucket"][t].tolist()
        if tokens[t] == IS:
            assert tokens[t - 3] == GET
            key = tokens[t - 2]
            assert int(y[t]) == written[key]
            assert bucket == [key % c.mem_buckets] * c.mem_hashes
            queries.append(key)
        else:
            assert tokens[t] == REPLAY
            replays.append((bucket[0], int(y[t])))
    assert sorted(queries) == sorted(written)
    keys_in_order = [tokens[t - 2] for t in write_positions]
    expected_replays = [
        (key % c.mem_buckets, written[key]) for key in keys_in_order for _ in range(c.sleep_replay_per_pair)
    ]
    assert replays == expected_replays
    answers = torch.nonzero(item["eval_answer_mask"]).flatten().tolist()
    assert answers == [t for t in reads if tokens[t] == IS]
    # Every other real position is NOP.
    labelled = set(write_positions) | set(reads)
    others = [t for t in range(n_inputs) if t not in labelled]
    assert all(int(item["mosaic_teacher_opcode"][t]) == OP_NOP for t in others)


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), idx=st.integers(0, 999), level=st.floats(0.0, 1.0))
def test_labels_point_at_the_right_tokens(config, idx, level):
    dataset = MemoryCurriculumDataset(config)
    dataset.set_difficulty(level)
    _check_item(dataset, dataset[idx])


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), idx=st.integers(0, 998))
def test_same_seed_same_sample_other_seed_or_split_differs(config, idx):
    first = MemoryCurriculumDataset(config)[idx]
    again = MemoryCurriculumDataset(config)[idx]
    assert all(torch.equal(first[k], again[k]) for k in first)
    # Enough random tokens that two different streams cannot coincide by chance.
    distractors = max(config.distractor_len, 4)
    config = attrs.evolve(
        config, vocab_size=300, distractor_len=distractors,
        block_size=sample_length(config.n_pairs, distractors, config.gap_len, config.sleep_replay_per_pair),
    )
    first = MemoryCurriculumDataset(config)[idx]
    others = (
        MemoryCurriculumDataset(attrs.evolve(config, seed=config.seed + 1))[idx],
        MemoryCurriculumDataset(attrs.evolve(config, split="eval" if config.split == "train" else "train"))[idx],
        MemoryCurriculumDataset(config)[idx + 1],
    )
    for other in others:
        assert not torch.equal(first["input_ids"], other["input_ids"])


def test_block_too_small_is_rejected_naming_parameter_and_lengths():
    needed = sample_length(4, 8, 3, 1)
    MemoryCurriculumDataset(MemoryCurriculumConfig(block_size=needed - 1, n_pairs=4, distractor_len=8, gap_len=3,
                                                   sleep_replay_per_pair=1))
    with pytest.raises(DataError) as info:
        MemoryCurriculumDataset(MemoryCurriculumConfig(block_size=needed - 2, n_pairs=4, distractor_len=8,
                                                       gap_len=3, sleep_replay_per_pair=1))
    message = str(info.value)
    assert "block_size" in message and str(needed) in message and str(needed - 1) in message
    assert info.value.needed == needed and info.value.available == needed - 1


def test_config_validation_through_the_registry():
    registry = get_registry()
    dataset = registry.build("dataset.mosaic_memory_curriculum", {"block_size": 128, "n_pairs": 3})
    assert isinstance(dataset, MemoryCurriculumDataset) and dataset.vocab_size == 512
    for bad in ({"mem_buckets": 12}, {"n_pairs": 4, "min_pairs": 5}, {"teacher_forcing": 1.5}, {"split": "test"}):
        with pytest.raises(ConfigError):
            registry.build("dataset.mosaic_memory_curriculum", bad)


def test_difficulty_levels_interpolate_and_keep_samples_deterministic():
    config = MemoryCurriculumConfig(block_size=256, n_pairs=8, min_pairs=2, distractor_len=6, min_distractor_len=0,
                                    gap_len=10, min_gap_len=0)
    dataset = MemoryCurriculumDataset(config)
    dataset.set_difficulty(0.0)
    assert dataset.difficulty() == {"n_pairs": 2, "distractor_len": 0, "gap_len": 0}
    easy = dataset[5]
    dataset.set_difficulty(0.5)
    assert dataset.difficulty() == {"n_pairs": 5, "distractor_len": 3, "gap_len": 5}
    dataset.set_difficulty(1.0)
    assert dataset.difficulty() == {"n_pairs": 8, "distractor_len": 6, "gap_len": 10}
    dataset.set_difficulty(0.0)
    assert torch.equal(dataset[5]["input_ids"], easy["input_ids"])
    for bad in (-0.1, 1.5, float("nan"), "high"):
        with pytest.raises(DataError, match="MemoryCurriculumDataset"):
            dataset.set_difficulty(bad)


def test_teacher_forcing_scalar_follows_the_dataset_setting():
    dataset = MemoryCurriculumDataset(MemoryCurriculumConfig(teacher_forcing=0.75))
    assert dataset[0]["mosaic_teacher_forcing"].shape == ()
    assert float(dataset[0]["mosaic_teacher_forcing"]) == 0.75
    before = dataset[0]["input_ids"]
    dataset.set_teacher_forcing(0.25)
    assert float(dataset[0]["mosaic_teacher_forcing"]) == 0.25
    assert torch.equal(dataset[0]["input_ids"], before)
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_drop_local_covers_each_query_and_replay_cue_or_nothing():
    config = MemoryCurriculumConfig(block_size=128, n_pairs=3, distractor_len=2, sleep_replay_per_pair=1)
    item = MemoryCurriculumDataset(config)[4]
    x, drop = item["input_ids"], item["mosaic_drop_local"]
    dropped = torch.nonzero(drop).flatten().tolist()
    expected = []
    for t in range(len(x) - 3):
        if int(x[t]) == GET:
            expected += [t, t + 1, t + 2, t + 3]
        if int(x[t]) == REPLAY:
            expected.append(t)
    assert dropped == sorted(expected) and len(dropped) == 3 * 4 + 3
    quiet = MemoryCurriculumDataset(attrs.evolve(config, drop_local_on_query=False))[4]
    assert not bool(quiet["mosaic_drop_local"].any())
    assert torch.equal(quiet["input_ids"], x)
