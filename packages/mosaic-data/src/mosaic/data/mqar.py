"""``dataset.mqar``: Zoology's multi-query associative recall (Arora, Eyuboglu et al. 2023).

One sample, ``N`` pairs, sequence length ``L``, vocabulary ``V``::

    k_1 v_1 k_2 v_2 ... k_N v_N | query region of L - 2N + 1 slots

Keys are ``N`` distinct tokens from ``[1, V/2)``, values ``N`` distinct tokens from ``[V/2, V)``.
Key ``k_i`` is queried at slot ``2 * gap_i`` of the query region, where the ``gap``s are ``N``
distinct draws from ``[0, (L - 2N) / 2)`` with probability ``∝ (g + 1) ** (power_a - 1)``
(successive sampling without replacement, done as an exponential race). ``input_ids`` is the first
``L`` tokens; ``target_ids`` is -100 everywhere except at each query position, where it is the
queried value. With ``random_non_queries`` the empty slots hold uniform tokens from ``[0, V)``.

Accuracy (:func:`mqar_accuracy`) is the fraction of label positions whose argmax is the value.

Generation is vectorised over rows (:meth:`MQARDataset.generate`) with a counter-based RNG, so a
row is the same whichever batch produced it; :func:`generate_reference` is its per-row Python twin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mosaic.data import counter_rng as crng
from mosaic.data.common import (
    ANSWER_MASK,
    IGNORE_INDEX,
    IGNORE_TARGET,
    INPUT_IDS,
    MASK_SUFFIX,
    OP_NOP,
    OP_READ_MEM,
    OP_WRITE_MEM,
    OPCODE,
    READ_BUCKET,
    TARGET_IDS,
    TEACHER_FORCING,
    WRITE_BUCKET,
    WRITE_GATE,
    WRITE_UTILITY,
    SampleTooLongError,
    check_level,
    item_seed,
    lerp_int,
)
from mosaic.data.config import MQARConfig

_KEYS, _VALUES, _GAPS, _NOISE = 0, 1, 2, 3


def mqar_accuracy(logits: torch.Tensor, target_ids: torch.Tensor) -> float:
    """Fraction of positions with a label (``target_ids != -100``) whose argmax is the label.

    ``logits`` (B, T, V) or already reduced to the labelled positions (N, V) with ``target_ids`` (N,).
    """
    labelled = target_ids != IGNORE_TARGET
    total = int(labelled.sum())
    if total == 0:
        return float("nan")
    predicted = logits.argmax(dim=-1)
    return float((predicted[labelled] == target_ids[labelled]).sum()) / total


class MQARDataset(torch.utils.data.Dataset):
    """Map-style MQAR; also ``generate(indices)`` for whole batches and ``__getitems__`` for loaders."""

    accuracy = staticmethod(mqar_accuracy)

    def __init__(self, config: MQARConfig) -> None:
        self.config = config
        self.vocab_size = config.vocab_size
        self.block_size = config.seq_len
        if 4 * config.num_kv_pairs > config.seq_len:
            raise _too_long(config)
        self.level = 1.0
        self.teacher_forcing = config.teacher_forcing

    # --- curriculum protocol -------------------------------------------------------------------

    def set_difficulty(self, level: float) -> None:
        self.level = check_level(self, level, "set_difficulty")

    def set_teacher_forcing(self, p: float) -> None:
        self.teacher_forcing = check_level(self, p, "set_teacher_forcing")

    def difficulty(self) -> dict[str, int]:
        c = self.config
        low = c.num_kv_pairs if c.min_kv_pairs is None else c.min_kv_pairs
        return {"num_kv_pairs": lerp_int(low, c.num_kv_pairs, self.level)}

    # --- items ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        batch = self.generate([idx])
        return {key: value[0] for key, value in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        batch = self.generate(indices)
        return [dict(zip(batch, row, strict=False)) for row in zip(*batch.values(), strict=False)]

    def generate(self, indices: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """The items ``indices`` as one batch of (B, L) tensors, generated without a per-row loop."""
        c = self.config
        rows_wanted = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).numpy()
        if rows_wanted.size and (int(rows_wanted.min()) < 0 or int(rows_wanted.max()) >= len(self)):
            bad = int(rows_wanted.min()) if int(rows_wanted.min()) < 0 else int(rows_wanted.max())
            raise IndexError(f"{type(self).__name__} index {bad} out of range [0, {len(self)})")
        pairs = self.difficulty()["num_kv_pairs"]
        L, V, half = c.seq_len, c.vocab_size, c.vocab_size // 2
        keys_rng = crng.row_keys(c.seed, c.split, rows_wanted)
        rows = len(rows_wanted)

        keys = crng.distinct(keys_rng, _KEYS, half - 1, pairs) + 1  # (B, N)
        values = crng.distinct(keys_rng, _VALUES, V - half, pairs) + half  # (B, N)
        space = (L - 2 * pairs) // 2
        growth = torch.arange(1, space + 1, dtype=torch.float64) ** (1.0 - c.power_a)  # 1 / weight
        race = torch.log(crng.uniform(crng.bits(keys_rng, _GAPS, space))) * growth  # (B, space)
        gaps = race.topk(pairs, dim=1, sorted=True).indices  # successive-sampling order

        examples = torch.zeros(rows, L + 1, dtype=torch.int64)
        examples[:, 0 : 2 * pairs : 2] = keys
        examples[:, 1 : 2 * pairs : 2] = values
        query_pos = 2 * pairs + 2 * gaps  # (B, N)
        examples.scatter_(1, query_pos, keys)
        input_ids = examples[:, :L].contiguous()
        target_ids = torch.full((rows, L), IGNORE_TARGET, dtype=torch.int64)
        target_ids.scatter_(1, query_pos, values)
        if c.random_non_queries:
            noise = torch.from_numpy(crng.below(crng.bits(keys_rng, _NOISE, L), V))
            input_ids = torch.where(input_ids == 0, noise, input_ids)

        batch = {INPUT_IDS: input_ids, TARGET_IDS: target_ids}
        if c.teacher_signals:
            batch.update(self._teacher(keys, query_pos, rows, pairs))
        batch[ANSWER_MASK] = target_ids != IGNORE_TARGET
        return batch

    def _teacher(self, keys: torch.Tensor, query_pos: torch.Tensor, rows: int, pairs: int) -> dict[str, torch.Tensor]:
        c = self.config
        L, H = c.seq_len, c.mem_hashes
        buckets = keys % c.mem_buckets  # (B, N)
        value_pos = (torch.arange(pairs) * 2 + 1).expand(rows, pairs)
        write_gate = torch.zeros(rows, L).scatter_(1, value_pos, 1.0)
        opcode = torch.full((rows, L), OP_NOP, dtype=torch.int64)
        opcode.scatter_(1, value_pos, OP_WRITE_MEM).scatter_(1, query_pos, OP_READ_MEM)
        write_bucket = torch.full((rows, L), IGNORE_INDEX, dtype=torch.int64).scatter_(1, value_pos, buckets)
        read_bucket = torch.full((rows, L), IGNORE_INDEX, dtype=torch.int64).scatter_(1, query_pos, buckets)
        everywhere = torch.ones(rows, L, dtype=torch.bool)
        return {
            WRITE_GATE: write_gate,
            WRITE_GATE + MASK_SUFFIX: everywhere,
            WRITE_UTILITY: write_gate.clone(),
            WRITE_UTILITY + MASK_SUFFIX: everywhere.clone(),
            READ_BUCKET: read_bucket.unsqueeze(-1).expand(rows, L, H).contiguous(),  # (B, L, H)
            WRITE_BUCKET: write_bucket.unsqueeze(-1).expand(rows, L, H).contiguous(),
            OPCODE: opcode,
            TEACHER_FORCING: torch.full((rows,), float(self.teacher_forcing)),
        }


def generate_reference(config: MQARConfig, idx: int, pairs: int) -> tuple[list[int], list[int]]:
    """Plain per-row twin of :meth:`MQARDataset.generate`: (input_ids, target_ids) of item ``idx``."""
    c = config
    seed = item_seed(c.seed, c.split, idx)
    L, V, half = c.seq_len, c.vocab_size, c.vocab_size // 2
    keys = [k + 1 for k in crng.distinct_reference(seed, _KEYS, half - 1, pairs)]
    values = [v + half for v in crng.distinct_reference(seed, _VALUES, V - half, pairs)]
    space = (L - 2 * pairs) // 2
    race = []
    for g in range(space):
        u = (crng.bits_reference(seed, _GAPS, g) + 0.5) / 4294967296.0
        race.append(math.log(u) * float(g + 1) ** (1.0 - c.power_a))
    gaps = sorted(range(space), key=lambda g: -race[g])[:pairs]
    examples = [0] * (L + 1)
    targets = [IGNORE_TARGET] * L
    for i in range(pairs):
        examples[2 * i], examples[2 * i + 1] = keys[i], values[i]
        examples[2 * pairs + 2 * gaps[i]] = keys[i]
        targets[2 * pairs + 2 * gaps[i]] = values[i]
    inputs = examples[:L]
    if c.random_non_queries:
        inputs = [
            crng.below_reference(crng.bits_reference(seed, _NOISE, t), V) if token == 0 else token
            for t, token in enumerate(inputs)
        ]
    return inputs, targets



def _too_long(config: MQARConfig) -> SampleTooLongError:
    return SampleTooLongError(
        "MQARDataset", "seq_len", 4 * config.num_kv_pairs, config.seq_len,
        f"num_kv_pairs={config.num_kv_pairs} (the pairs plus a query region of distinct gaps)",
    )
