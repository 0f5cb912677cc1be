"""dataset.text: deterministic disjoint splits, shifted targets, tokenisation round trip."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import DataError
from mosaic.core.plugins import get_registry
from mosaic.data.config import TextConfig
from mosaic.data.corpora import corpus_bytes
from mosaic.data.text import TextDataset


def test_char_level_windows_and_shift(small_text):
    dataset = TextDataset(TextConfig(path=str(small_text), block_size=32))
    text = small_text.read_text(encoding="utf-8")
    assert dataset.vocab_size == len(set(text))
    item = dataset[3]
    assert item["input_ids"].shape == item["target_ids"].shape == (32,)
    assert torch.equal(item["input_ids"][1:], item["target_ids"][:-1])
    window = dataset.decode(item["input_ids"]) + dataset.decode(item["target_ids"][-1:])
    assert window in text
    assert dataset.decode(dataset.encode("naïve café")) == "naïve café"
    assert not bool((item["target_ids"] == -100).any())


def test_splits_are_disjoint_and_deterministic(small_text):
    train = TextDataset(TextConfig(path=str(small_text), block_size=16, seed=1))
    evaluation = TextDataset(TextConfig(path=str(small_text), block_size=16, split="eval"))
    text = small_text.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    assert len(train.ids) == cut and len(evaluation.ids) == len(text) - cut
    assert train.decode(train.ids) + evaluation.decode(evaluation.ids) == text
    # Eval windows are consecutive and cover the held-out text once.
    assert len(evaluation) == (len(evaluation.ids) - 1) // 16
    assert [evaluation.offset(i) for i in range(3)] == [0, 16, 32]
    assert torch.equal(train[5]["input_ids"], TextDataset(TextConfig(path=str(small_text), block_size=16, seed=1))[5]["input_ids"])
    offsets = {train.offset(i) for i in range(50)}
    assert len(offsets) > 40 and max(offsets) <= len(train.ids) - 17
    other_seed = TextDataset(TextConfig(path=str(small_text), block_size=16, seed=2))
    assert [train.offset(i) for i in range(10)] != [other_seed.offset(i) for i in range(10)]


def test_byte_level(small_text):
    dataset = TextDataset(TextConfig(path=str(small_text), block_size=24, level="byte"))
    assert dataset.vocab_size == 256
    raw = small_text.read_bytes()
    item = dataset[0]
    start = dataset.offset(0)
    assert bytes(item["input_ids"].tolist()) == raw[start : start + 24]


def test_errors_name_the_problem(small_text, tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        TextDataset(TextConfig(path=str(tmp_path / "missing.txt")))
    with pytest.raises(DataError) as info:
        TextDataset(TextConfig(path=str(small_text), block_size=10_000, split="eval"))
    assert "block_size" in str(info.value) and "10001" in str(info.value)
    dataset = TextDataset(TextConfig(path=str(small_text)))
    with pytest.raises(DataError, match="not in the vocabulary"):
        dataset.encode("€")


def test_files_that_are_empty_not_regular_or_too_large_are_refused(tmp_path, monkeypatch):
    import os

    import mosaic.data.text as text

    (tmp_path / "empty.txt").write_bytes(b"")
    for level in ("byte", "char"):  # byte level failed in torch.frombuffer; char level blamed block_size
        with pytest.raises(DataError, match="is empty"):
            TextDataset(TextConfig(path=str(tmp_path / "empty.txt"), level=level))
    os.mkfifo(tmp_path / "fifo")  # reading it waited for a writer for ever
    with pytest.raises(DataError, match="not a regular file"):
        TextDataset(TextConfig(path=str(tmp_path / "fifo")))
    (tmp_path / "big.txt").write_bytes(b"a" * 4096)
    monkeypatch.setattr(text, "MAX_TEXT_BYTES", 1024)
    with pytest.raises(DataError, match="larger than 1,024 bytes"):
        TextDataset(TextConfig(path=str(tmp_path / "big.txt")))


def test_shipped_tinyshakespeare_is_the_default_text():
    """No path: the corpus shipped inside the mosaic-data package, so presets run from any directory."""
    dataset = get_registry().build("dataset.text", {"block_size": 64})
    assert dataset.vocab_size == 65
    assert dataset[0]["input_ids"].shape == (64,)
    full = corpus_bytes("tinyshakespeare").decode()
    assert len(full) == 1_115_394 and full.startswith("First Citizen:\nBefore we proceed any further")


def test_a_damaged_shipped_corpus_is_refused(monkeypatch):
    import mosaic.data.corpora as corpora

    name, _, size = corpora.CORPORA["tinyshakespeare"]
    monkeypatch.setitem(corpora.CORPORA, "tinyshakespeare", (name, "0" * 64, size))
    with pytest.raises(DataError, match="damaged"):
        corpus_bytes("tinyshakespeare")
    with pytest.raises(DataError, match="no shipped corpus"):
        corpus_bytes("war_and_peace")
