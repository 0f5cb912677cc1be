"""Turning dataset items into batches, and the deterministic order samples are drawn in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mosaic.core.batching import collate as core_collate
from mosaic.core.errors import DataError

#: Fill values for ragged keys: padding never becomes supervision (REFERENCE §1, pitfall 6).
PAD_VALUES: Mapping[str, float] = {
    "input_ids": 0,
    "target_ids": -100,
    "mosaic_teacher_commitment_delta": -100,
    "mosaic_teacher_opcode": -1,
    "mosaic_teacher_read_bucket": -1,
    "mosaic_teacher_write_bucket": -1,
    "mosaic_teacher_reg_sel": -1,
    "mosaic_teacher_write_gate": -1.0,
    "mosaic_teacher_write_utility": -1.0,
    "mosaic_teacher_reg_write_gate": -1.0,
}


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`mosaic.core.batching.collate` with ragged sequences right-padded by ``PAD_VALUES``."""
    return core_collate(items, PAD_VALUES)


def collate_for(dataset: Any) -> Any:
    """The dataset's own ``collate`` when it has one, else :func:`collate`."""
    own = getattr(dataset, "collate", None)
    return own if callable(own) else collate


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
    ids = batch.get("input_ids")
    return int(ids.numel()) if isinstance(ids, torch.Tensor) else 0
