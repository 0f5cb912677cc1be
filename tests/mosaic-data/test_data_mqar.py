"""dataset.mqar: Zoology's task definition, vectorised generation equal to its per-row twin,
batch-independent determinism, teacher signals, accuracy."""

from __future__ import annotations

import os

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import DataError
from mosaic.data import collate
from mosaic.data import counter_rng as crng
from mosaic.data.common import OP_READ_MEM, OP_WRITE_MEM, item_seed
from mosaic.data.config import MQARConfig
from mosaic.data.mqar import MQARDataset, generate_reference, mqar_accuracy

EXAMPLES = 200 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 25


@st.composite
def configs(draw):
    seq_len = 2 * draw(st.integers(4, 64))
    pairs = draw(st.integers(1, seq_len // 4))
    vocab = draw(st.integers(max(seq_len + 1, 2 * pairs + 2), 4 * seq_len + 64))
    return MQARConfig(
        seq_len=seq_len, num_kv_pairs=pairs, min_kv_pairs=draw(st.integers(1, pairs)), vocab_size=vocab,
        power_a=draw(st.sampled_from([0.01, 0.3, 1.0])), random_non_queries=draw(st.booleans()),
        teacher_signals=draw(st.booleans()), mem_buckets=draw(st.sampled_from([2, 16, 64])),
        mem_hashes=draw(st.integers(1, 2)), num_samples=10_000, seed=draw(st.integers(0, 2**31 - 1)),
        split=draw(st.sampled_from(["train", "eval"])),
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), indices=st.lists(st.integers(0, 9_999), min_size=1, max_size=6, unique=True),
       level=st.floats(0, 1))
def test_vectorised_generation_matches_the_per_row_reference(config, indices, level):
    dataset = MQARDataset(config)
    dataset.set_difficulty(level)
    pairs = dataset.difficulty()["num_kv_pairs"]
    batch = dataset.generate(indices)
    for row, idx in enumerate(indices):
        inputs, targets = generate_reference(config, idx, pairs)
        assert batch["input_ids"][row].tolist() == inputs
        assert batch["target_ids"][row].tolist() == targets
        single = dataset[idx]
        assert all(torch.equal(single[key], batch[key][row]) for key in batch)


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), idx=st.integers(0, 9_999))
def test_sample_follows_the_zoology_definition(config, idx):
    dataset = MQARDataset(config)
    item = dataset[idx]
    N, L, V = config.num_kv_pairs, config.seq_len, config.vocab_size
    x, y = item["input_ids"], item["target_ids"]
    assert x.shape == y.shape == (L,) and x.dtype == y.dtype == torch.int64
    keys, values = x[0 : 2 * N : 2], x[1 : 2 * N : 2]
    assert bool(((keys >= 1) & (keys < V // 2)).all()) and len(set(keys.tolist())) == N
    assert bool(((values >= V // 2) & (values < V)).all()) and len(set(values.tolist())) == N
    labelled = torch.nonzero(y != -100).flatten()
    assert len(labelled) == N  # labels only at the N query positions
    assert bool((labelled >= 2 * N).all()) and bool(((labelled - 2 * N) % 2 == 0).all())
    pairs = dict(zip(keys.tolist(), values.tolist(), strict=False))
    for t in labelled.tolist():
        assert int(y[t]) == pairs[int(x[t])]  # the query key's value is the label
    assert sorted(x[labelled].tolist()) == sorted(pairs)  # every key queried exactly once
    assert bool((x >= 0).all()) and bool((x < V).all())
    if not config.random_non_queries:
        others = torch.ones(L, dtype=torch.bool)
        others[: 2 * N] = False
        others[labelled] = False
        assert bool((x[others] == 0).all())
    assert torch.equal(item["eval_answer_mask"], y != -100)
    if config.teacher_signals:
        value_pos = torch.arange(N) * 2 + 1
        assert torch.nonzero(item["mosaic_teacher_write_gate"]).flatten().tolist() == value_pos.tolist()
        assert bool((item["mosaic_teacher_opcode"][value_pos] == OP_WRITE_MEM).all())
        assert bool((item["mosaic_teacher_opcode"][labelled] == OP_READ_MEM).all())
        for t in value_pos.tolist():
            assert item["mosaic_teacher_write_bucket"][t].tolist() == [int(x[t - 1]) % config.mem_buckets] * config.mem_hashes
        reads = torch.nonzero(item["mosaic_teacher_read_bucket"][:, 0] >= 0).flatten()
        assert reads.tolist() == labelled.tolist()
        for t in labelled.tolist():
            assert item["mosaic_teacher_read_bucket"][t].tolist() == [int(x[t]) % config.mem_buckets] * config.mem_hashes
        assert item["mosaic_teacher_forcing"].shape == ()
    else:
        assert set(item) == {"input_ids", "target_ids", "eval_answer_mask"}


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), idx=st.integers(0, 9_998))
def test_seed_split_and_index_change_the_sample(config, idx):
    # Tiny vocabularies have so few distinct samples that two streams may coincide; random fillers
    # over a 256-token vocabulary make a coincidence of two streams practically impossible.
    config = attrs.evolve(config, random_non_queries=True, vocab_size=max(config.vocab_size, 256))
    first = MQARDataset(config)[idx]["input_ids"]
    assert torch.equal(first, MQARDataset(config)[idx]["input_ids"])
    for other in (
        MQARDataset(attrs.evolve(config, seed=config.seed + 1))[idx],
        MQARDataset(attrs.evolve(config, split="eval" if config.split == "train" else "train"))[idx],
        MQARDataset(config)[idx + 1],
    ):
        assert not torch.equal(first, other["input_ids"])


def test_power_law_gaps_favour_short_gaps():
    def mean_gap(power_a: float) -> float:
        config = MQARConfig(seq_len=256, num_kv_pairs=8, vocab_size=1024, power_a=power_a, random_non_queries=False)
        batch = MQARDataset(config).generate(range(400))
        positions = torch.nonzero(batch["target_ids"] != -100)[:, 1]
        return float(((positions - 16) // 2).double().mean())

    steep, uniform = mean_gap(0.01), mean_gap(1.0)
    # Uniform without replacement over 120 gaps: mean 59.5. The power law must pull it far lower.
    assert abs(uniform - 59.5) < 3.0
    assert steep < 0.6 * uniform


def test_distinct_draws_are_uniform_over_the_population():
    keys = crng.row_keys(3, "train", range(4000))
    draws = crng.distinct(keys, 0, 10, 3)  # (4000, 3)
    assert all(len(set(row)) == 3 for row in draws.tolist())
    counts = torch.bincount(draws.flatten(), minlength=10).double()
    assert float((counts - 1200).abs().max()) < 120  # ~3.5 sigma
    first = torch.bincount(draws[:, 0], minlength=10).double()
    assert float((first - 400).abs().max()) < 75  # order is uniform too
    # The whole population, the hardest case for the redraw loop.
    everything = crng.distinct(keys, 1, 10, 10)
    assert all(sorted(row) == list(range(10)) for row in everything.tolist())


def test_vectorised_row_keys_equal_the_item_seeds():
    indices = [0, 1, 7, 4096, 2**32 - 1]
    for seed, split in ((0, "train"), (12345, "eval"), (2**31 - 1, "train")):
        low, high = crng.row_keys(seed, split, indices)
        expected = [item_seed(seed, split, i) for i in indices]
        assert [int(lo) | (int(hi) << 32) for lo, hi in zip(low[:, 0], high[:, 0], strict=False)] == expected
    with pytest.raises(DataError):
        crng.row_keys(0, "train", [2**32])


def test_accuracy_over_label_positions():
    config = MQARConfig(seq_len=64, num_kv_pairs=4, vocab_size=128)
    batch = MQARDataset(config).generate(range(8))
    y = batch["target_ids"]
    perfect = torch.nn.functional.one_hot(y.clamp(min=0), 128).float()
    assert mqar_accuracy(perfect, y) == 1.0
    half = perfect.clone()
    wrong_rows = torch.arange(4)
    labelled = y[wrong_rows] != -100
    shifted = torch.nn.functional.one_hot((y[wrong_rows] + 1).clamp(min=0) % 128, 128).float()
    half[wrong_rows] = torch.where(labelled.unsqueeze(-1), shifted, half[wrong_rows])
    assert mqar_accuracy(half, y) == 0.5
    assert MQARDataset.accuracy is mqar_accuracy


def test_sample_that_cannot_fit_is_rejected():
    with pytest.raises(DataError) as info:
        MQARDataset(MQARConfig(seq_len=64, num_kv_pairs=17, vocab_size=128))
    assert "seq_len" in str(info.value) and "68" in str(info.value) and "64" in str(info.value)


def test_loader_path_matches_generate():
    dataset = MQARDataset(MQARConfig(seq_len=64, num_kv_pairs=4, teacher_signals=True))
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, shuffle=False, collate_fn=collate)
    batch = next(iter(loader))
    direct = dataset.generate(range(5))
    assert set(batch) == set(direct)
    assert all(torch.equal(batch[key], direct[key]) for key in batch)
    assert batch["mosaic_teacher_forcing"].shape == (5,)
    assert batch["mosaic_teacher_read_bucket"].shape == (5, 64, 2)  # mem_hashes 2, as the model
