"""A counter-based random number generator: random bits as a pure function of (row key, stream,
counter), computed for a whole batch of rows with a few array ops.

Why: a vectorised generator must give row ``i`` the same sample whichever batch it is generated
in (determinism per (seed, idx)), and a per-row ``torch.Generator`` would bring back the per-row
Python loop. Each row has a 64-bit key (``common.item_seed``) split into two 32-bit words; bits
are ``mix(mix(k0 ^ c) ^ k1)`` with ``c = stream * 2**20 + counter`` and ``mix`` a 32-bit
xorshift-multiply avalanche hash. The hashing runs on numpy ``uint32`` arrays, whose arithmetic
wraps by definition (and whose shifts are vectorised, unlike torch's int64 shifts); results are
handed back as int64 tensors. ``*_reference`` functions are the plain-Python twins.
"""

from __future__ import annotations

import numpy as np
import torch

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


def row_keys(seeds: list[int]) -> RowKeys:
    """(B, 1) uint32 low and high words of each row's 64-bit seed."""
    low = np.array([s & M32 for s in seeds], dtype=np.uint32)[:, None]
    high = np.array([s >> 32 for s in seeds], dtype=np.uint32)[:, None]
    return low, high


def bits(keys: RowKeys, stream: int, count: int, start: int = 0) -> torch.Tensor:
    """(B, count) int64 uniform in [0, 2**32) for counters start..start+count-1 of ``stream``."""
    counter = np.arange(start, start + count, dtype=np.uint32) + np.uint32(stream * STREAM_STRIDE)
    x = _mix32(keys[0] ^ counter)
    x ^= keys[1]
    return torch.from_numpy(_mix32(x).astype(np.int64))


def bits_reference(seed: int, stream: int, counter: int) -> int:
    low, high = seed & M32, seed >> 32
    return mix32_reference(mix32_reference(low ^ (stream * STREAM_STRIDE + counter)) ^ high)


def below(random_bits: torch.Tensor, n: int) -> torch.Tensor:
    """Map 32-bit values to integers in [0, n) (multiply-shift; n < 2**31)."""
    return (random_bits * n) >> 32


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
    result = torch.empty(rows, count, dtype=torch.int64)
    todo = np.arange(rows)
    draws = count + max(16, count // 2)
    while todo.size:
        sub = (keys[0][todo], keys[1][todo])
        values = below(bits(sub, stream, draws), population)  # (b, draws)
        sorted_values, order = torch.sort(values, dim=1, stable=True)
        repeat = torch.zeros_like(values, dtype=torch.bool)
        repeat[:, 1:] = sorted_values[:, 1:] == sorted_values[:, :-1]
        first = torch.ones_like(repeat).scatter_(1, order, ~repeat)  # first occurrence of its value
        rank = first.cumsum(dim=1)
        enough = rank[:, -1] >= count
        keep = first & (rank <= count) & enough.unsqueeze(1)
        done = todo[enough.numpy()]
        result[torch.from_numpy(done)] = values[keep].view(-1, count)
        todo = todo[~enough.numpy()]
        draws *= 2
    return result


def distinct_reference(seed: int, stream: int, population: int, count: int) -> list[int]:
    chosen: list[int] = []
    counter = 0
    while len(chosen) < count:
        value = below_reference(bits_reference(seed, stream, counter), population)
        if value not in chosen:
            chosen.append(value)
        counter += 1
    return chosen


def uniform(random_bits: torch.Tensor) -> torch.Tensor:
    """float64 in (0, 1) from 32-bit values."""
    return (random_bits.double() + 0.5) / 4294967296.0
