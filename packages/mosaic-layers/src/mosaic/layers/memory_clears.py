"""Which tokens of the hashed memory clear, and how many passes find the slots they clear (see
:meth:`mosaic.layers.memory.HashedMemory.read_with_clears`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: A token clears memory only where its clear channel exceeds this in some row of the batch.
CLEAR_THRESHOLD = 0.5


def clearing_positions(clear: torch.Tensor) -> list[int]:
    """Ascending token positions of ``clear (B, T)`` at which some row clears."""
    return (clear > CLEAR_THRESHOLD).any(dim=0).nonzero()[:, 0].tolist()


def clear_chain(read_bucket: torch.Tensor, clears: torch.Tensor, buckets: int) -> int:
    """1 + the most clears that come before one clearing token in its read bucket (per row and
    hash): the passes after which every clear's pick is exact (see ``read_with_clears``).

    read_bucket (B, K, H) int64 at the K clearing positions; clears (B, K) bool, where a row's clear is
    not 0 (a clear of 0 changes nothing)."""
    one_hot = F.one_hot(read_bucket, buckets) * clears[:, :, None, None]  # (B, K, H, NB)
    earlier = one_hot.cumsum(1) - one_hot
    return int(earlier.gather(-1, read_bucket[..., None]).max()) + 1
