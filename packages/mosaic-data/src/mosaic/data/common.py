"""The item contract shared by every mosaic-data dataset, and the builder that fills it.

An item is a dict of tensors for one sequence ``seq`` of ``n`` tokens, padded to ``block_size + 1``:

- ``input_ids`` (T,) int64 = ``seq[:-1]``; ``target_ids`` (T,) int64 = ``seq[1:]``, ``-100`` where
  nothing is to be predicted **and on every padding position**. ``T = block_size``.
- Teacher signals are aligned to *input* positions: the label at ``t`` describes what the model
  should do while it reads ``input_ids[t]``.

  ========================================  ======  ==========  =================================
  key                                       dtype   shape       ignore rule
  ========================================  ======  ==========  =================================
  ``mosaic_teacher_write_gate``             float   (T,)        ``..._mask`` False
  ``mosaic_teacher_write_utility``          float   (T,)        ``..._mask`` False
  ``mosaic_teacher_read_bucket``            int64   (T, H)      -100
  ``mosaic_teacher_write_bucket``           int64   (T, H)      -100
  ``mosaic_teacher_opcode``                 int64   (T,)        -100 (v0 ids: NOP 0 ... RESPOND 9)
  ``mosaic_teacher_reg_write_gate``         float   (T,)        ``..._mask`` False
  ``mosaic_teacher_reg_sel``                int64   (T,)        -100
  ``mosaic_teacher_commitment_delta``       int64   (T,)        -100 (labels -1 / 0 / +1)
  ``mosaic_drop_local``                     float   (T,)        an input control, 0 or 1, no mask
  ``mosaic_teacher_forcing``                float   ()          the dataset's current probability
  ``eval_answer_mask``                      bool    (T,)        positions whose target is a recall
                                                                answer (evaluation only)
  ========================================  ======  ==========  =================================

**Masks of float teacher signals.** Every float teacher target ``K`` comes with a bool tensor
``K + "_mask"`` of the same shape, True where ``K`` is supervised. Float targets never carry NaN;
masked-out positions hold 0. Integer targets use their ignore value instead of a mask.

Register keys are present only when the dataset is configured with ``reg_slots > 0``, the
commitment key only where the dataset has negotiation traces: a key that is absent means "this
dataset does not supervise that", and an objective term that needs it must fail loudly.

The keys, dtypes, shapes and ignore values are specs in :mod:`mosaic.core.contract.keys`; this
module only builds items that satisfy them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS, V0_OPCODE_NAMES
from mosaic.core.errors import DataError

# One ignore value for every integer label (the contract's); the names say where each is used.
IGNORE_INDEX = IGNORE_TARGET = IGNORE_COMMITMENT = keys.IGNORE_INDEX

# The ten v0 opcodes (ids 0-9), from the contract so that mosaic-data needs no mosaic-layers.
OP_NOP, OP_READ_MEM, OP_WRITE_MEM, OP_CLEAR_MEM, OP_IDLE = (V0_OPCODE_IDS[n] for n in V0_OPCODE_NAMES[:5])
OP_GATE_UP, OP_GATE_DOWN, OP_SCAN, OP_COMMIT, OP_RESPOND = (V0_OPCODE_IDS[n] for n in V0_OPCODE_NAMES[5:])

WRITE_GATE = keys.TEACHER_WRITE_GATE.name
WRITE_UTILITY = keys.TEACHER_WRITE_UTILITY.name
READ_BUCKET = keys.TEACHER_READ_BUCKET.name
WRITE_BUCKET = keys.TEACHER_WRITE_BUCKET.name
OPCODE = keys.TEACHER_OPCODE.name
REG_WRITE_GATE = keys.TEACHER_REG_WRITE_GATE.name
REG_SEL = keys.TEACHER_REG_SEL.name
COMMITMENT_DELTA = keys.TEACHER_COMMITMENT_DELTA.name
DROP_LOCAL = keys.DROP_LOCAL.name
TEACHER_FORCING = keys.TEACHER_FORCING.name
ANSWER_MASK = keys.EVAL_ANSWER_MASK.name
INPUT_IDS = keys.INPUT_IDS.name
TARGET_IDS = keys.TARGET_IDS.name
MASK_SUFFIX = keys.MASK_SUFFIX

_MASK64 = (1 << 64) - 1
SEQUENCE_NOTE = " (block_size + 1 sequence tokens)"


class SampleTooLongError(DataError):
    """A configuration asks for samples longer than the block they must fit in."""

    def __init__(
        self, dataset: str, parameter: str, needed: int, available: int, detail: str, note: str = ""
    ) -> None:
        self.parameter = parameter
        self.needed = needed
        self.available = available
        super().__init__(
            f"{dataset}: a sample does not fit: {detail} needs {needed} tokens, but {parameter} "
            f"leaves room for {available}{note}; raise {parameter} or lower the sample's parameters"
        )


def splitmix64(value: int) -> int:
    """A bijective 64-bit mixer (SplitMix64 finaliser): distinct inputs give distinct outputs."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def item_seed(seed: int, split: str, idx: int) -> int:
    """The 64-bit seed of item ``idx``: distinct for every (seed, split, idx), so train and eval
    items never share a random stream."""
    if not 0 <= idx < (1 << 32):
        raise DataError(f"item index {idx} is outside [0, 2**32)")
    return splitmix64(pack_seed(seed, split, idx))


def pack_seed(seed: int, split: str, idx: int) -> int:
    """(seed, split, idx) packed injectively into 64 bits (seed's low 31 bits, the split, idx)."""
    return ((seed & 0x7FFFFFFF) << 33) | ((0 if split == "train" else 1) << 32) | idx


def lerp_int(low: int, high: int, level: float) -> int:
    """The difficulty parameter at ``level`` in [0, 1], from ``low`` (level 0) to ``high`` (level 1)."""
    return int(low + (high - low) * level + 0.5)


def check_level(dataset: object, level: float, what: str) -> float:
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0.0 <= float(level) <= 1.0:
        raise DataError(f"{type(dataset).__name__}.{what}: expected a number in [0, 1], got {level!r}")
    return float(level)


class TraceBuilder:
    """Accumulates one sequence and its teacher labels (by position), then pads it into an item."""

    def __init__(self, *, mem_hashes: int, reg_slots: int, with_commitment: bool) -> None:
        self.mem_hashes = mem_hashes
        self.reg_slots = reg_slots
        self.with_commitment = with_commitment
        self.tokens: list[int] = []
        self.writes: list[tuple[int, int, int]] = []  # (position, bucket, register slot)
        self.reads: list[tuple[int, int]] = []  # (position, bucket)
        self.opcodes: list[tuple[int, int]] = []
        self.drop_local: list[int] = []
        self.commitments: list[tuple[int, int]] = []
        self.answers: list[int] = []

    def append(self, tokens: Iterable[int]) -> range:
        """Append tokens; returns their positions in the sequence."""
        start = len(self.tokens)
        self.tokens.extend(tokens)
        return range(start, len(self.tokens))

    def mark_write(self, positions: Iterable[int], bucket: int, register: int) -> None:
        for position in positions:
            self.writes.append((position, bucket, register))
            self.opcodes.append((position, OP_WRITE_MEM))

    def mark_read(self, positions: Iterable[int], bucket: int) -> None:
        for position in positions:
            self.reads.append((position, bucket))
            self.opcodes.append((position, OP_READ_MEM))

    def mark_opcode(self, positions: Iterable[int], opcode: int) -> None:
        self.opcodes.extend((position, opcode) for position in positions)

    def mark_drop_local(self, positions: Iterable[int]) -> None:
        self.drop_local.extend(positions)

    def mark_commitment(self, positions: Iterable[int], delta: int) -> None:
        self.commitments.extend((position, delta) for position in positions)

    def mark_answer(self, positions: Iterable[int]) -> None:
        self.answers.extend(positions)

    def finish(self, *, block_size: int, pad_token: int, teacher_forcing: float, name: str) -> dict[str, torch.Tensor]:
        n = len(self.tokens)
        if n > block_size + 1:
            # The constructor proves every configuration fits; reaching this is a bug, not user error.
            raise SampleTooLongError(name, "block_size", n, block_size + 1, "this sample", SEQUENCE_NOTE)
        T, H = block_size, self.mem_hashes
        seq = torch.full((T + 1,), pad_token, dtype=torch.int64)
        seq[:n] = torch.tensor(self.tokens, dtype=torch.int64)
        real = torch.arange(T) < n - 1  # input positions that have a real next token

        target_ids = seq[1:].clone()
        target_ids[~real] = IGNORE_TARGET

        write_gate = torch.zeros(T)
        write_bucket = torch.full((T, H), IGNORE_INDEX, dtype=torch.int64)
        read_bucket = torch.full((T, H), IGNORE_INDEX, dtype=torch.int64)
        opcode = torch.where(real, OP_NOP, IGNORE_INDEX)
        drop_local = torch.zeros(T)
        answer_mask = torch.zeros(T, dtype=torch.bool)
        if self.writes:
            where = _index([w[0] for w in self.writes], T)
            write_gate[where] = 1.0
            write_bucket[where] = torch.tensor([w[1] for w in self.writes]).unsqueeze(-1)
        if self.reads:
            where = _index([r[0] for r in self.reads], T)
            read_bucket[where] = torch.tensor([r[1] for r in self.reads]).unsqueeze(-1)
        if self.opcodes:
            opcode[_index([o[0] for o in self.opcodes], T)] = torch.tensor([o[1] for o in self.opcodes])
        if self.drop_local:
            drop_local[_index(self.drop_local, T)] = 1.0
        if self.answers:
            answer_mask[_index(self.answers, T)] = True

        item = {
            INPUT_IDS: seq[:-1],
            TARGET_IDS: target_ids,
            WRITE_GATE: write_gate,
            WRITE_GATE + MASK_SUFFIX: real.clone(),
            WRITE_UTILITY: write_gate.clone(),
            WRITE_UTILITY + MASK_SUFFIX: real.clone(),
            READ_BUCKET: read_bucket,
            WRITE_BUCKET: write_bucket,
            OPCODE: opcode,
            DROP_LOCAL: drop_local,
        }
        if self.reg_slots > 0:
            reg_sel = torch.full((T,), IGNORE_INDEX, dtype=torch.int64)
            if self.writes:
                reg_sel[_index([w[0] for w in self.writes], T)] = torch.tensor([w[2] for w in self.writes])
            item[REG_WRITE_GATE] = write_gate.clone()
            item[REG_WRITE_GATE + MASK_SUFFIX] = real.clone()
            item[REG_SEL] = reg_sel
        if self.with_commitment:
            commitment = torch.full((T,), IGNORE_COMMITMENT, dtype=torch.int64)
            if self.commitments:
                where = _index([c[0] for c in self.commitments], T)
                commitment[where] = torch.tensor([c[1] for c in self.commitments])
            item[COMMITMENT_DELTA] = commitment
        item[TEACHER_FORCING] = torch.tensor(float(teacher_forcing))
        item[ANSWER_MASK] = answer_mask
        return item


def _index(positions: Sequence[int], length: int) -> torch.Tensor:
    index = torch.tensor(positions, dtype=torch.int64)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= length):
        raise DataError(f"teacher label at position {int(index.max())} lies outside the {length} input positions")
    return index
