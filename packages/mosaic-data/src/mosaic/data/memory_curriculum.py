"""``dataset.mosaic_memory_curriculum``: associative recall in a tiny protocol language.

Layout of one sample (``P`` pairs, ``D`` distractors per pair, ``G`` gap tokens, ``R`` replays)::

    write phase   (SET k_i IS v_i  d_1 .. d_D)  x P
    gap           g_1 .. g_G
    query phase   (GET k Q IS v)               x P   (every pair once, order shuffled)
    forgetting    (FORGET k_j)                 x F   (F of the written keys)
    query phase   (GET k Q IS v)               x P   (every pair once, order shuffled; a forgotten
                                                      key's answer is UNKNOWN)
    sleep replay  (REPLAY v_i)                 x P*R (in write order, forgotten pairs skipped)

Tokens: PAD 0, SET 1, IS 2, GET 3, Q 4, REPLAY 5, FORGET 6, UNKNOWN 7, content tokens ``>= 8``;
keys are distinct within a sample, values, distractors and gap tokens are drawn freely from the
content range.

Teacher labels (at input positions, see ``mosaic.data.common``):

- write gate / utility 1, write bucket ``k mod NB`` (every hash), opcode WRITE_MEM, register write
  into slot ``i mod reg_slots``: on the value token ``v_i`` of the write phase;
- read bucket ``k mod NB``, opcode READ_MEM: on the ``IS`` of each query (the token just before the
  answer) and on each ``REPLAY`` cue; ``eval_answer_mask`` marks the query ``IS`` positions;
- ``mosaic_drop_local`` 1 on ``GET k Q IS`` of each query and on the ``REPLAY`` cues, so the answer
  must come from memory (or state), not the local mixer;
- opcode CLEAR_MEM and read bucket ``k mod NB`` on the key of each ``FORGET k`` (the clear erases
  the slot whose key a read there matches); ``eval_forget_mask`` marks the query ``IS`` of a
  forgotten key, whose answer only an erased memory gets right;
- opcode NOP and gates 0 on every other real position; padding is ignored everywhere.

Length: ``P * (4 + D) + G + 2 * F + 5 * P + 2 * P * R`` tokens, checked against ``block_size + 1`` at
construction for the full-difficulty parameters.
"""

from __future__ import annotations

import random

import torch

from mosaic.core.contract.keys import FORGET_ANSWER_MASK
from mosaic.data.common import (
    OP_CLEAR_MEM,
    SEQUENCE_NOTE,
    SampleTooLongError,
    TraceBuilder,
    check_level,
    item_seed,
    lerp_int,
)
from mosaic.data.config import MemoryCurriculumConfig

PAD, SET, IS, GET, Q, REPLAY, FORGET, UNKNOWN = 0, 1, 2, 3, 4, 5, 6, 7
FIRST_CONTENT = 8


def sample_length(pairs: int, distractor_len: int, gap_len: int, replays: int, forgets: int = 0) -> int:
    """Number of tokens of one sample (``seq``; the item has one fewer input position), at most."""
    return pairs * (4 + distractor_len) + gap_len + 2 * forgets + 5 * pairs + 2 * pairs * replays


class MemoryCurriculumDataset(torch.utils.data.Dataset):
    """Map-style dataset; item ``idx`` is a pure function of (seed, split, idx, difficulty)."""

    def __init__(self, config: MemoryCurriculumConfig) -> None:
        self.config = config
        self.vocab_size = config.vocab_size
        self.block_size = config.block_size
        self.pad_token = PAD
        needed = sample_length(config.n_pairs, config.distractor_len, config.gap_len, config.sleep_replay_per_pair,
                               config.forget_per_sample)
        if needed > config.block_size + 1:
            raise SampleTooLongError(
                type(self).__name__, "block_size", needed, config.block_size + 1,
                f"n_pairs={config.n_pairs}, distractor_len={config.distractor_len}, gap_len={config.gap_len}, "
                f"sleep_replay_per_pair={config.sleep_replay_per_pair}", SEQUENCE_NOTE,
            )
        self.level = 1.0
        self.teacher_forcing = config.teacher_forcing

    # --- curriculum protocol (mosaic.data.curricula) -------------------------------------------

    def set_difficulty(self, level: float) -> None:
        self.level = check_level(self, level, "set_difficulty")

    def set_teacher_forcing(self, p: float) -> None:
        self.teacher_forcing = check_level(self, p, "set_teacher_forcing")

    def difficulty(self) -> dict[str, int]:
        """The difficulty parameters at the current level."""
        c = self.config
        return {
            "n_pairs": lerp_int(c.n_pairs if c.min_pairs is None else c.min_pairs, c.n_pairs, self.level),
            "distractor_len": lerp_int(
                c.distractor_len if c.min_distractor_len is None else c.min_distractor_len,
                c.distractor_len, self.level,
            ),
            "gap_len": lerp_int(c.gap_len if c.min_gap_len is None else c.min_gap_len, c.gap_len, self.level),
        }

    # --- items ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        c = self.config
        if not 0 <= idx < len(self):
            raise IndexError(f"{type(self).__name__} index {idx} out of range [0, {len(self)})")
        rng = random.Random(item_seed(c.seed, c.split, idx))
        params = self.difficulty()
        pairs = params["n_pairs"]
        content = range(FIRST_CONTENT, c.vocab_size)
        keys = rng.sample(content, pairs)
        values = [rng.randrange(FIRST_CONTENT, c.vocab_size) for _ in range(pairs)]
        buckets = [key % c.mem_buckets for key in keys]

        b = TraceBuilder(mem_hashes=c.mem_hashes, reg_slots=c.reg_slots, with_commitment=False)
        for i, (key, value) in enumerate(zip(keys, values, strict=False)):
            b.append([SET, key, IS])
            b.mark_write(b.append([value]), buckets[i], i % c.reg_slots if c.reg_slots else -1)
            b.append(rng.randrange(FIRST_CONTENT, c.vocab_size) for _ in range(params["distractor_len"]))
        b.append(rng.randrange(FIRST_CONTENT, c.vocab_size) for _ in range(params["gap_len"]))

        forgotten = set(rng.sample(range(pairs), min(c.forget_per_sample, pairs)))
        for i in sorted(forgotten):
            b.append([FORGET])
            cue = b.append([keys[i]])
            b.mark_read(cue, buckets[i])
            b.mark_opcode(cue, OP_CLEAR_MEM)

        order = list(range(pairs))
        if c.shuffle_queries:
            rng.shuffle(order)
        forget_answers = []
        for i in order:
            query = b.append([GET, keys[i], Q, IS])
            b.mark_read([query[-1]], buckets[i])
            b.mark_answer([query[-1]])
            if i in forgotten:
                forget_answers.append(query[-1])
            if c.drop_local_on_query:
                b.mark_drop_local(query)
            b.append([UNKNOWN if i in forgotten else values[i]])

        for i in range(pairs):
            if i in forgotten:
                continue
            for _ in range(c.sleep_replay_per_pair):
                cue = b.append([REPLAY])
                b.mark_read(cue, buckets[i])
                if c.drop_local_on_query:
                    b.mark_drop_local(cue)
                b.append([values[i]])
        item = b.finish(block_size=c.block_size, pad_token=PAD, teacher_forcing=self.teacher_forcing,
                        name=type(self).__name__)
        if c.forget_per_sample:
            mask = torch.zeros(c.block_size, dtype=torch.bool)
            mask[forget_answers] = True
            item[FORGET_ANSWER_MASK.name] = mask
        return item

