"""A counter-based random number generator: random bits as a pure function of (row key, stream,
counter), computed for a whole batch of rows with a few array ops.

Why: a vectorised generator must give row ``i`` the same sample whichever batch it is generated
in (determinism per (seed, idx)), and a per-row ``torch.Generator`` would bring back the per-row
Python loop. Each row has a 64-bit key (``common.item_seed``, here vectorised) split into two 32-bit words; bits
are ``mix(mix(k0 ^ c) ^ k1)`` with ``c = stream * 2**20 + counter`` and ``mix`` a 32-bit
xorshift-multiply avalanche hash. The hashing runs on numpy ``uint32`` arrays, whose arithmetic
wraps by definition (and whose shifts are vectorised, unlike torch's int64 shifts); results are
handed back as tensors. ``*_reference`` functions are the plain-Python twins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mosaic.core.errors import DataError
from mosaic.data.common import pack_seed

M32 = 0xFFFFFFFF
_C1 = 0x7FEB352D
_C2 = 0x846CA68B
STREAM_STRIDE = 1 << 20


def _mix32(x: np.ndarray) -> np.ndarray:
    """In place on a fresh uint32 array."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(_C1)
    x ^= x >> np.uint32(15)
    x *= np.uint32(_C2)
    x ^= x >> np.uint32(16)
    return x


def mix32_reference(x: int) -> int:
    x ^= x >> 16
    x = (x * _C1) & M32
    x ^= x >> 15
    x = (x * _C2) & M32
    return x ^ (x >> 16)


RowKeys = tuple[np.ndarray, np.ndarray]


def row_keys(seed: int, split: str, indices: Sequence[int] | np.ndarray) -> RowKeys:
    """(B, 1) uint32 low and high words of ``common.item_seed(seed, split, idx)`` for each index,
    computed as one vectorised SplitMix64 over uint64 arrays (whose arithmetic wraps)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= 1 << 32):
        raise DataError(f"item indices must lie in [0, 2**32), got min {int(idx.min())}, max {int(idx.max())}")
    z = np.uint64(pack_seed(seed, split, 0)) | idx.astype(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z & np.uint64(M32)).astype(np.uint32)[:, None], (z >> np.uint64(32)).astype(np.uint32)[:, None]


def bits(keys: RowKeys, stream: int, count: int, start: int = 0) -> np.ndarray:
    """(B, count) uint32 uniform bits for counters start..start+count-1 of ``stream``."""
    counter = np.arange(start, start + count, dtype=np.uint32) + np.uint32(stream * STREAM_STRIDE)
    x = _mix32(keys[0] ^ counter)
    x ^= keys[1]
    return _mix32(x)


def bits_reference(seed: int, stream: int, counter: int) -> int:
    low, high = seed & M32, seed >> 32
    return mix32_reference(mix32_reference(low ^ (stream * STREAM_STRIDE + counter)) ^ high)


def below(random_bits: np.ndarray, n: int) -> np.ndarray:
    """Map uint32 bits to int64 integers in [0, n) (multiply-shift; n < 2**31)."""
    product = np.multiply(random_bits, np.uint64(n), dtype=np.uint64)
    product >>= np.uint64(32)
    return product.view(np.int64)  # values < 2**31: the same bits


def below_reference(random_bits: int, n: int) -> int:
    return (random_bits * n) >> 32


def distinct(keys: RowKeys, stream: int, population: int, count: int) -> torch.Tensor:
    """(B, count) distinct integers from [0, population) per row: the first ``count`` distinct
    values of the row's i.i.d. uniform draws, i.e. a uniform ordered sample without replacement
    (what ``numpy.random.choice(population, count, replace=False)`` draws).

    Draws enough for nearly every row at once; rows still short of ``count`` distinct values are
    redrawn with twice the draws (the same counters, extended), so a row's result never depends
    on the batch it is in.
    """
    rows = keys[0].shape[0]
    result = np.empty((rows, count), dtype=np.int64)
    todo = np.arange(rows)
    draws = count + max(16, count // 2)
    while todo.size:
        values = below(bits((keys[0][todo], keys[1][todo]), stream, draws), population)  # (b, draws)
        order = np.argsort(values, axis=1, kind="stable")
        sorted_values = np.take_along_axis(values, order, axis=1)
        repeat = np.zeros(values.shape, dtype=bool)
        repeat[:, 1:] = sorted_values[:, 1:] == sorted_values[:, :-1]
        first = np.empty_like(repeat)
        np.put_along_axis(first, order, ~repeat, axis=1)  # first occurrence of its value
        rank = np.cumsum(first, axis=1)
        enough = rank[:, -1] >= count
        keep = first & (rank <= count) & enough[:, None]
        result[todo[enough]] = values[keep].reshape(-1, count)
        todo = todo[~enough]
        draws *= 2
    return torch.from_numpy(result)


def distinct_reference(seed: int, stream: int, population: int, count: int) -> list[int]:
    chosen: list[int] = []
    counter = 0
    while len(chosen) < count:
        value = below_reference(bits_reference(seed, stream, counter), population)
        if value not in chosen:
            chosen.append(value)
        counter += 1
    return chosen


def uniform(random_bits: np.ndarray) -> torch.Tensor:
    """float64 in (0, 1) from uint32 bits."""
    return torch.from_numpy((random_bits.astype(np.float64) + 0.5) / 4294967296.0)
