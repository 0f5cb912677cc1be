"""Stacking dataset items into a batch: the one ``collate`` every package uses.

A dataset item is a mapping of key -> tensor (or metadata such as span lists). Items of one batch
must have the same keys; tensors of one key are stacked along a new batch axis. Ragged sequences are
right-padded only for keys the caller gives a pad value for (its ignore value, so padding never
becomes supervision); any other shape disagreement is an error rather than a silent truncation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mosaic.core.errors import DataError


def collate(items: Sequence[Mapping[str, Any]], pad_values: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Stack ``items`` key by key: tensors of shape ``S`` become ``(B, *S)`` (a scalar becomes
    ``(B,)``); tensors whose first axis differs are right-padded with ``pad_values[key]`` when the key
    has one; non-tensor values become a list with one entry per item."""
    if not items:
        raise DataError("collate: cannot build a batch from zero items")
    pads = pad_values or {}
    keys = list(items[0])
    for position, item in enumerate(items):
        if set(item) != set(keys):
            missing = sorted(set(keys) - set(item))
            extra = sorted(set(item) - set(keys))
            raise DataError(f"collate: item {position} has different keys than item 0 (missing {missing}, extra {extra})")
    batch: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in items]
        if not all(isinstance(value, torch.Tensor) for value in values):
            batch[key] = values
            continue
        shapes = {tuple(value.shape) for value in values}
        if len(shapes) == 1:
            batch[key] = torch.stack(values)
        elif key in pads and len({shape[1:] for shape in shapes}) == 1 and all(shape for shape in shapes):
            batch[key] = torch.stack(_right_pad(values, pads[key]))
        else:
            hint = ("" if key in pads else
                    "; no padding value is known for it: give the dataset a collate() or fixed-length items")
            raise DataError(f"collate: {key!r} has different shapes across items: {sorted(shapes)}{hint}")
    return batch


def _right_pad(values: list[torch.Tensor], fill: float) -> list[torch.Tensor]:
    length = max(value.shape[0] for value in values)
    return [torch.cat([value, value.new_full((length - value.shape[0], *value.shape[1:]), fill)])
            for value in values]
