"""Turning dataset items into batches, and the deterministic order samples are drawn in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mosaic.core.batching import collate as core_collate
from mosaic.core.contract import keys
from mosaic.core.contract.protocols import BatchedDataset, CollatingDataset
from mosaic.core.errors import DataError

#: Fill values for ragged keys, from the contract's key specs: padding never becomes supervision
#: (REFERENCE §1, pitfall 6).
PAD_VALUES: Mapping[str, float] = keys.PAD_VALUES


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`mosaic.core.batching.collate` with ragged sequences right-padded by ``PAD_VALUES``."""
    return core_collate(items, PAD_VALUES)


def collate_for(dataset: Any) -> Any:
    """The dataset's own ``collate`` when it has one, else :func:`collate`."""
    return dataset.collate if isinstance(dataset, CollatingDataset) else collate


def fetch(dataset: Any, indices: list[int]) -> list[Any]:
    """Items ``indices``; through the dataset's batched ``__getitems__`` when it has one."""
    if isinstance(dataset, BatchedDataset):
        return list(dataset.__getitems__(indices))
    return [dataset[i] for i in indices]


def sample_indices(length: int, *, seed: int, start: int, count: int) -> list[int]:
    """Indices ``start .. start+count`` of an endless stream of per-epoch permutations of
    ``range(length)``: a pure function of (seed, position), so a resumed run draws the same data."""
    if length <= 0:
        raise DataError("the dataset is empty")
    indices: list[int] = []
    position = start
    while len(indices) < count:
        epoch, offset = divmod(position, length)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(length, generator=generator)
        take = min(length - offset, count - len(indices))
        indices.extend(order[offset:offset + take].tolist())
        position += take
    return indices


def move_to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()}


def count_tokens(batch: Mapping[str, Any]) -> int:
    ids = batch.get(keys.INPUT_IDS.name)
    return int(ids.numel()) if isinstance(ids, torch.Tensor) else 0
