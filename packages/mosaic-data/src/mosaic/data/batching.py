"""Stacking items into batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mosaic.core.errors import DataError


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack a list of items into a batch: tensors of shape ``S`` become ``(B, *S)`` (so the scalar
    ``mosaic_teacher_forcing`` becomes ``(B,)``); non-tensor values (span metadata) become a list
    with one entry per item. Every item must have the same keys and, per key, the same shape.
    """
    if not items:
        raise DataError("collate: cannot build a batch from zero items")
    keys = list(items[0])
    batch: dict[str, Any] = {}
    for position, item in enumerate(items):
        if set(item) != set(keys):
            missing = sorted(set(keys) - set(item))
            extra = sorted(set(item) - set(keys))
            raise DataError(f"collate: item {position} has different keys than item 0 (missing {missing}, extra {extra})")
    for key in keys:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(value.shape) for value in values}
            if len(shapes) != 1:
                raise DataError(f"collate: {key!r} has different shapes across items: {sorted(shapes)}")
            batch[key] = torch.stack(values)
        else:
            batch[key] = values
    return batch
