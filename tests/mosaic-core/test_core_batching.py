"""The one collate: stacking items, padding ragged keys only with the caller's pad values."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.batching import collate
from mosaic.core.errors import DataError


def test_stacks_tensors_and_lists_metadata() -> None:
    items = [{"input_ids": torch.arange(4), "spans": [i]} for i in range(3)]
    batch = collate(items)
    assert batch["input_ids"].shape == (3, 4)
    assert batch["spans"] == [[0], [1], [2]]


def test_ragged_keys_are_right_padded_with_their_ignore_value() -> None:
    items = [{"target_ids": torch.tensor([1, 2, 3])}, {"target_ids": torch.tensor([4])}]
    batch = collate(items, {"target_ids": -100})
    assert batch["target_ids"].tolist() == [[1, 2, 3], [4, -100, -100]]


def test_ragged_key_without_a_pad_value_is_an_error() -> None:
    items = [{"input_ids": torch.zeros(3)}, {"input_ids": torch.zeros(2)}]
    with pytest.raises(DataError, match="'input_ids' has different shapes.*no padding value is known"):
        collate(items, {"target_ids": -100})


def test_items_with_different_keys_or_none_are_errors() -> None:
    with pytest.raises(DataError, match="different keys"):
        collate([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(DataError, match="zero items"):
        collate([])
