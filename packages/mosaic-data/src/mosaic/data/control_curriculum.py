"""``dataset.mosaic_control_curriculum``: the VM's gain and whole-memory opcodes, each where it is needed.

Layout of one sample (``P`` priority events, ``N`` noise events, ``F`` facts, ``D`` distractors)::

    vote        (PRI s | NOISE s)  x (P + N)      shuffled; s is symbol A or B
                VOTE Q IS m                        m: the majority symbol of the PRIORITY events
    facts       (SET k_i IS v_i  s s ..)  x F      D distractors: symbols, each echoed once
                LAST Q IS v_F                      the value of the latest fact, whatever its key

Tokens: PAD 0, SET 1, IS 2, Q 3, VOTE 4, LAST 5, PRI 6, NOISE 7, A 8, B 9, content tokens ``>= 10``.

**The vote (GATE_UP, GATE_DOWN).** The priority symbols split one ahead (``(P+1)/2 : (P-1)/2``),
the noise symbols three ahead (``(N+3)/2 : (N-3)/2``), for or against the priority majority at
random. The state bank integrates the symbols with each token's gain (the VM's fusion channel:
GATE_UP 2, GATE_DOWN 0.5, otherwise 1), so the A-minus-B count it holds is

- gated as taught, ``2 * (+-1) + 0.5 * (+-3)``: always the priority's sign (margin 0.5);
- GATE_DOWN forced to NOP, ``2 * (+-1) + 1 * (+-3)``: the noise's sign, wrong whenever it opposes;
- GATE_UP forced to NOP, ``1 * (+-1) + 0.5 * (+-3)``: again the noise's sign.

The ungated counts do not tell the answer (a 2:1 priority plus 3:0 noise for A gives 5 As, a 1:2
priority plus 3:0 noise 4, so the answer is not monotone in the count), and the answer is read two
tokens after the last event, so a model whose only long-range path is its state bank (one layer,
a short conv, no memory reads at VOTE) needs the gains. Labels: GATE_UP on each priority symbol,
GATE_DOWN on each noise symbol; ``eval_priority_mask`` marks the ``IS`` after ``VOTE Q``.

**The latest fact (SCAN).** WRITE_MEM on each ``v_i`` (write bucket ``k_i mod NB``); the ``LAST Q
IS`` query names no key, so no bucket read finds the answer: only SCAN's all-bucket summary (a
gated EMA of every write; with hard writes of step 1, exactly the latest write) holds it. Labels:
SCAN and read bucket ``NB - 1`` (no key routes there, so the bucket read adds nothing) on that
``IS``, marked by ``eval_scan_mask``. Both answer positions are in ``eval_answer_mask``.

**The echoes.** A and B are otherwise only vote symbols, whose opcode label (GATE_*) the symbol
does not tell; the opcode loss then pushes both embeddings the same way until the bank can no
longer tell them apart (measured: cosine 0.999 between the normed embeddings, the vote at chance).
Echoed symbols among the facts (``s s``, the echo a target, NOP) keep A and B distinguishable.

**Targets.** Unless ``random_targets`` is set, a token that its local context does not predict is
not a target: an event's marker and symbol, a fact's key and value, a distractor but not its echo
(random), and ``VOTE``, ``SET`` and ``LAST`` (whose arrival only a count of what came before
predicts). The next-token loss falls on the protocol's fixed continuations, the echoes and the two
answers. Measured with the next-token loss alone and teacher-forced opcodes (one layer, 400 steps):
with the count-timed tokens as targets the vote stayed at chance; without them it reached 1.0.

Length: ``2 * (P + N) + 4 + F * (4 + D) + 4`` tokens, checked against ``block_size + 1``.
"""

from __future__ import annotations

import random

import torch

from mosaic.core.contract.keys import PRIORITY_ANSWER_MASK, SCAN_ANSWER_MASK
from mosaic.core.errors import DataError
from mosaic.data.common import (
    IGNORE_TARGET,
    OP_GATE_DOWN,
    OP_GATE_UP,
    OP_SCAN,
    SEQUENCE_NOTE,
    TARGET_IDS,
    SampleTooLongError,
    TraceBuilder,
    check_level,
    item_seed,
)
from mosaic.data.config import ControlCurriculumConfig

PAD, SET, IS, Q, VOTE, LAST, PRI, NOISE, SYMBOL_A, SYMBOL_B = range(10)
FIRST_CONTENT = 10
#: how far the noise symbols split ahead, in multiples of the priority symbols' lead of one
NOISE_LEAD = 3


def sample_length(priority: int, noise: int, facts: int, distractor_len: int) -> int:
    """Number of tokens of one sample (``seq``; the item has one fewer input position)."""
    return 2 * (priority + noise) + 4 + facts * (4 + distractor_len) + 4


class ControlCurriculumDataset(torch.utils.data.Dataset):
    """Map-style dataset; item ``idx`` is a pure function of (seed, split, idx)."""

    def __init__(self, config: ControlCurriculumConfig) -> None:
        self.config = config
        self.vocab_size = config.vocab_size
        self.block_size = config.block_size
        self.pad_token = PAD
        needed = sample_length(
            config.priority_events, config.noise_events, config.n_facts, config.distractor_len
        )
        if needed > config.block_size + 1:
            raise SampleTooLongError(
                type(self).__name__,
                "block_size",
                needed,
                config.block_size + 1,
                f"priority_events={config.priority_events}, noise_events={config.noise_events}, "
                f"n_facts={config.n_facts}, distractor_len={config.distractor_len}",
                SEQUENCE_NOTE,
            )
        self.free_bucket = config.mem_buckets - 1
        self.keys = [
            k for k in range(FIRST_CONTENT, config.vocab_size) if k % config.mem_buckets != self.free_bucket
        ]
        if len(self.keys) < config.n_facts:
            raise DataError(
                f"{type(self).__name__}: n_facts={config.n_facts} distinct keys need that many content "
                f"tokens outside bucket {self.free_bucket}; vocab_size={config.vocab_size} has "
                f"{len(self.keys)}: raise vocab_size or lower n_facts"
            )
        self.teacher_forcing = config.teacher_forcing

    def set_teacher_forcing(self, p: float) -> None:
        self.teacher_forcing = check_level(self, p, "set_teacher_forcing")

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        c = self.config
        if not 0 <= idx < len(self):
            raise IndexError(f"{type(self).__name__} index {idx} out of range [0, {len(self)})")
        rng = random.Random(item_seed(c.seed, c.split, idx))
        b = TraceBuilder(mem_hashes=c.mem_hashes, reg_slots=0, with_commitment=False)

        majority = rng.choice((SYMBOL_A, SYMBOL_B))
        minority = SYMBOL_A + SYMBOL_B - majority
        noisy = majority if rng.random() < 0.5 else minority  # the noise's lead: with or against
        events = [(PRI, majority)] * ((c.priority_events + 1) // 2) + [(PRI, minority)] * (
            c.priority_events // 2
        )
        events += [(NOISE, noisy)] * ((c.noise_events + NOISE_LEAD) // 2)
        events += [(NOISE, SYMBOL_A + SYMBOL_B - noisy)] * ((c.noise_events - NOISE_LEAD) // 2)
        rng.shuffle(events)
        random_tokens: list[int] = []  # positions of tokens nothing before them predicts
        for marker, symbol in events:
            random_tokens += b.append([marker])
            symbol_at = b.append([symbol])
            random_tokens += symbol_at
            b.mark_opcode(symbol_at, OP_GATE_UP if marker == PRI else OP_GATE_DOWN)
        vote_at = b.append([VOTE, Q, IS])
        random_tokens.append(vote_at[0])  # when the events end: a count, not the context, predicts it
        vote = vote_at[-1]
        b.append([majority])

        keys = rng.sample(self.keys, c.n_facts)
        values = [rng.randrange(FIRST_CONTENT, c.vocab_size) for _ in keys]
        for key, value in zip(keys, values, strict=True):
            random_tokens += b.append([SET, key, IS])[:2]
            value_at = b.append([value])
            b.mark_write(value_at, key % c.mem_buckets, -1)
            random_tokens += value_at
            for _ in range(c.distractor_len // 2):  # a symbol and its echo: the echo is a target
                symbol = rng.choice((SYMBOL_A, SYMBOL_B))
                random_tokens += b.append([symbol])
                b.append([symbol])
            if c.distractor_len % 2:
                random_tokens += b.append([rng.choice((SYMBOL_A, SYMBOL_B))])
        last_at = b.append([LAST, Q, IS])
        random_tokens.append(last_at[0])
        last = last_at[-1]
        b.reads.append((last, self.free_bucket))  # read bucket only: the opcode is SCAN, not READ_MEM
        b.mark_opcode([last], OP_SCAN)
        b.append([values[-1]])

        b.mark_answer([vote, last])
        item = b.finish(
            block_size=c.block_size,
            pad_token=PAD,
            teacher_forcing=self.teacher_forcing,
            name=type(self).__name__,
        )
        if not c.random_targets:
            item[TARGET_IDS][[t - 1 for t in random_tokens if t > 0]] = IGNORE_TARGET
        for spec, position in ((PRIORITY_ANSWER_MASK, vote), (SCAN_ANSWER_MASK, last)):
            mask = torch.zeros(c.block_size, dtype=torch.bool)
            mask[position] = True
            item[spec.name] = mask
        return item
