"""Configuration of mosaic-data's datasets: attrs frozen classes, torch-free.

Difficulty parameters come in pairs: the configured value (``n_pairs``) is the difficulty at
level 1, its ``min_`` twin (``min_pairs``, default: the same value) the difficulty at level 0.
A dataset starts at level 1; ``curriculum.difficulty_ramp`` moves it (see ``mosaic.data.curricula``).
Block fit is checked against level 1, so every level fits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from mosaic.core.contract.compat import Capability, Provided, Relation, Required
from mosaic.core.events.codec import EVENT_VOCAB_SIZE
from mosaic.core.validators import at_least, power_of_two, probability, reject

Split = Literal["train", "eval"]


def _same_memory(mem_buckets: int, mem_hashes: int) -> Iterable[Required]:
    reason = "teacher buckets are computed for the model's memory, so its geometry must match"
    yield Required(Capability.MEMORY_BUCKETS, Relation.EQUALS, mem_buckets, "mem_buckets", reason)
    yield Required(Capability.MEMORY_HASHES, Relation.EQUALS, mem_hashes, "mem_hashes", reason)


def _check_min(instance: object, low_name: str, high_name: str) -> None:
    low, high = getattr(instance, low_name), getattr(instance, high_name)
    if low is not None and not 0 <= low <= high:
        reject(low_name, f"must be in [0, {high_name}={high}], got {low}")


@attrs.frozen
class ControlCurriculumConfig:
    """``dataset.mosaic_control_curriculum``: a priority vote among noise events (GATE_UP on priority
    symbols, GATE_DOWN on noise symbols), then ``SET k IS v`` facts and a ``LAST Q IS v`` query for
    the latest fact (SCAN). See :mod:`mosaic.data.control_curriculum` for the layout and its arithmetic.

    The priority events split one symbol ahead (margin 1); the noise events split three ahead, for
    or against the priority majority at random, so only the gated count (2 x priority + 0.5 x noise)
    always has the priority's sign: ``noise_events`` must be odd and at least 3.
    """

    block_size: int = attrs.field(default=64, validator=at_least(2))
    vocab_size: int = attrs.field(default=64, validator=at_least(20))
    mem_buckets: int = attrs.field(default=64, validator=power_of_two)
    mem_hashes: int = attrs.field(default=1, validator=at_least(1))
    priority_events: int = attrs.field(default=3, validator=at_least(1))
    noise_events: int = attrs.field(default=3, validator=at_least(3))
    n_facts: int = attrs.field(default=3, validator=at_least(1))
    distractor_len: int = attrs.field(default=2, validator=at_least(0))
    # predict the random tokens too (events, keys, values, distractors): noise in the loss
    random_targets: bool = False
    teacher_forcing: float = attrs.field(default=1.0, validator=probability)
    num_samples: int = attrs.field(default=100_000, validator=at_least(1))
    seed: int = attrs.field(default=0, validator=at_least(0))
    split: Split = "train"

    def __attrs_post_init__(self) -> None:
        if self.priority_events % 2 == 0:
            reject("priority_events", f"must be odd (the priority vote has a majority), got {self.priority_events}")
        if self.noise_events % 2 == 0:
            reject("noise_events", f"must be odd (the noise splits three ahead), got {self.noise_events}")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.VOCAB_SIZE, self.vocab_size, "vocab_size")
        yield Provided(Capability.SAMPLE_LENGTH, self.block_size, "block_size")

    def requires(self) -> Iterable[Required]:
        yield from _same_memory(self.mem_buckets, self.mem_hashes)


@attrs.frozen
class MemoryCurriculumConfig:
    """``dataset.mosaic_memory_curriculum``: ``SET k IS v`` writes with distractors, then
    ``GET k Q IS v`` queries, then optional sleep replay ``REPLAY v``.

    Teacher buckets: ``bucket = key_token mod mem_buckets`` for every one of the ``mem_hashes``.
    """

    block_size: int = attrs.field(default=256, validator=at_least(2))
    vocab_size: int = attrs.field(default=512, validator=at_least(9))
    mem_buckets: int = attrs.field(default=64, validator=power_of_two)
    mem_hashes: int = attrs.field(default=2, validator=at_least(1))
    n_pairs: int = attrs.field(default=4, validator=at_least(1))
    min_pairs: int | None = None
    distractor_len: int = attrs.field(default=8, validator=at_least(0))
    min_distractor_len: int | None = None
    gap_len: int = attrs.field(default=0, validator=at_least(0))
    min_gap_len: int | None = None
    sleep_replay_per_pair: int = attrs.field(default=0, validator=at_least(0))
    # FORGET k events per sample (CLEAR_MEM on k); a later query for k is answered UNKNOWN
    forget_per_sample: int = attrs.field(default=0, validator=at_least(0))
    reg_slots: int = attrs.field(default=0, validator=at_least(0))
    shuffle_queries: bool = True
    drop_local_on_query: bool = True
    teacher_forcing: float = attrs.field(default=1.0, validator=probability)
    num_samples: int = attrs.field(default=100_000, validator=at_least(1))
    seed: int = attrs.field(default=0, validator=at_least(0))
    split: Split = "train"

    def __attrs_post_init__(self) -> None:
        _check_min(self, "min_pairs", "n_pairs")
        _check_min(self, "min_distractor_len", "distractor_len")
        _check_min(self, "min_gap_len", "gap_len")
        if self.min_pairs == 0:
            reject("min_pairs", "must be >= 1, got 0")
        content = self.vocab_size - 8
        if self.n_pairs > content:
            reject("n_pairs", f"{self.n_pairs} distinct keys need vocab_size >= {self.n_pairs + 8}, got {self.vocab_size}")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.VOCAB_SIZE, self.vocab_size, "vocab_size")
        yield Provided(Capability.SAMPLE_LENGTH, self.block_size, "block_size")

    def requires(self) -> Iterable[Required]:
        yield from _same_memory(self.mem_buckets, self.mem_hashes)


@attrs.frozen
class EventTraceConfig:
    """``dataset.mosaic_event_traces``: EventEnvelopes encoded by the mosaic-core codec.

    MemoryWrite (+ Noise) events, ``negotiation_pairs`` overlapping commitments (request, offer +1,
    ``negotiation_notes`` notes 0, a tool result, and with ``close_probability`` a delivery -1, all
    sharing one ``commitment_id``; phrasings from the ``split``'s own template set),
    MemoryQuery -> MemoryAnswer, Idle -> MemoryAnswer replay. ``turn_opcodes`` labels IDLE / RESPOND
    on event delimiters (``mosaic.data.turns``). The defaults are seed document 000's structure
    (3 pairs, 4 noise events per pair, 2 commitments, 1 replay per pair), whose longest trace fits
    the default block. Keys and values
    are ``value_digits``-digit integers; teacher buckets are
    ``event_traces.key_bucket`` of the key for every hash.

    ``dense_negotiation_fraction``: the share of items that are negotiation-dense (no memory facts,
    negotiations of ``negotiation_pairs`` commitments repeated until the block is full); the others
    keep the structure above. For training only: eval keeps 0.

    ``commitment_label_in_header``: sorted-key JSON puts ``"commitment_delta"`` *before* a message's
    text, so serialising the label would let the commitment head copy it instead of reading the
    message. By default negotiation messages are serialised with ``commitment_delta`` 0 (the
    label lives only in ``mosaic_teacher_commitment_delta``), as a runtime sees events that do not
    declare their commitments; set it to true to reproduce the original traces.
    """

    block_size: int = attrs.field(default=5888, validator=at_least(2))
    mem_buckets: int = attrs.field(default=64, validator=power_of_two)
    mem_hashes: int = attrs.field(default=2, validator=at_least(1))
    commitment_label_in_header: bool = False
    n_pairs: int = attrs.field(default=3, validator=at_least(1))
    min_pairs: int | None = None
    distractor_events: int = attrs.field(default=4, validator=at_least(0))
    min_distractor_events: int | None = None
    negotiation_pairs: int = attrs.field(default=2, validator=at_least(0))
    min_negotiation_pairs: int | None = None
    negotiation_notes: int = attrs.field(default=1, validator=at_least(0))
    close_probability: float = attrs.field(default=0.5, validator=probability)
    turn_opcodes: bool = True
    # negotiation-dense training samples: with this probability an item holds no memory facts, only
    # back-to-back negotiations of ``negotiation_pairs`` overlapping commitments until the block is
    # full, so the commitment head sees several times more labelled messages per step
    dense_negotiation_fraction: float = attrs.field(default=0.0, validator=probability)
    sleep_replay_per_pair: int = attrs.field(default=1, validator=at_least(0))
    reg_slots: int = attrs.field(default=0, validator=at_least(0))
    value_digits: int = attrs.field(default=4, validator=at_least(2))
    # memory access at the key's last byte: MemoryWrite {"data": v, "key": k} writes there, and each
    # MemoryAnswer {"key": k, "r": v} reads there (the block carries the read to the answer), so
    # the router sees the key's digits at offsets 0 and -1 instead of a whole field name away
    access_at_key: bool = False
    # one memory access per event, each at one fixed offset from its key: a MemoryWrite writes only at
    # its value's last byte (the whole value and the key 7-8 bytes back in the local window) and a
    # MemoryAnswer reads only at the byte before its first answer byte (the key 5-6 bytes back); the
    # block carries that read on to the answer's later bytes
    single_access: bool = False
    shuffle_queries: bool = True
    drop_local_on_query: bool = True
    return_spans: bool = False
    teacher_forcing: float = attrs.field(default=1.0, validator=probability)
    num_samples: int = attrs.field(default=100_000, validator=at_least(1))
    seed: int = attrs.field(default=0, validator=at_least(0))
    split: Split = "train"

    def __attrs_post_init__(self) -> None:
        _check_min(self, "min_pairs", "n_pairs")
        _check_min(self, "min_distractor_events", "distractor_events")
        _check_min(self, "min_negotiation_pairs", "negotiation_pairs")
        if self.min_pairs == 0:
            reject("min_pairs", "must be >= 1, got 0")
        fewest = self.negotiation_pairs if self.min_negotiation_pairs is None else self.min_negotiation_pairs
        if self.dense_negotiation_fraction > 0 and fewest == 0:
            reject("dense_negotiation_fraction", "needs negotiation_pairs (and min_negotiation_pairs) >= 1")
        if self.single_access and self.access_at_key:
            reject("single_access", "and access_at_key place the same accesses differently: choose one")
        if self.value_digits > 9:
            reject("value_digits", f"must be <= 9, got {self.value_digits}")
        if self.n_pairs > 9 * 10 ** (self.value_digits - 1):
            reject("n_pairs", f"{self.n_pairs} distinct keys do not fit in value_digits={self.value_digits} digits")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.VOCAB_SIZE, EVENT_VOCAB_SIZE, "type")  # the event codec's byte vocabulary
        yield Provided(Capability.SAMPLE_LENGTH, self.block_size, "block_size")

    def requires(self) -> Iterable[Required]:
        yield from _same_memory(self.mem_buckets, self.mem_hashes)


@attrs.frozen
class ToolBuildingConfig:
    """``dataset.tool_building``: one tool-building episode per sample (``mosaic.data.tool_building``).

    ``tasks``: which small tools are requested (arithmetic ``add``/``sub``/``mul``/``mod``, the
    string transforms ``pre``/``shf``, the table look-up ``tab``). ``eval_fraction`` of the (task, parameters)
    combinations are held out: they never occur in the ``train`` split.
    """

    block_size: int = attrs.field(default=1360, validator=at_least(2))
    tasks: tuple[str, ...] = attrs.field(default=("add", "sub", "mul", "mod", "pre", "shf", "tab"), converter=tuple)
    eval_fraction: float = attrs.field(default=0.2, validator=probability)
    num_samples: int = attrs.field(default=100_000, validator=at_least(1))
    seed: int = attrs.field(default=0, validator=at_least(0))
    split: Split = "train"
    # the model's memory: each character of a request's parameters is written to a bucket of its
    # own (1, 2, ...), and read back from it wherever the agent copies it (mosaic.data.tool_building)
    mem_buckets: int = attrs.field(default=16, validator=power_of_two)
    mem_hashes: int = attrs.field(default=1, validator=at_least(1))

    def __attrs_post_init__(self) -> None:
        if not self.tasks:
            reject("tasks", "must name at least one task")
        if not 0.0 < self.eval_fraction < 1.0:
            reject("eval_fraction", f"must be strictly between 0 and 1, got {self.eval_fraction}")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.VOCAB_SIZE, EVENT_VOCAB_SIZE, "type")  # the event codec's byte vocabulary
        yield Provided(Capability.SAMPLE_LENGTH, self.block_size, "block_size")

    def requires(self) -> Iterable[Required]:
        yield from _same_memory(self.mem_buckets, self.mem_hashes)


@attrs.frozen
class MQARConfig:
    """``dataset.mqar``: Zoology multi-query associative recall.

    Keys from ``[1, V/2)``, values from ``[V/2, V)`` (each distinct within a sample), the
    ``num_kv_pairs`` pairs ``k1 v1 k2 v2 ...`` first, then each key queried once at a power-law
    (``power_a``) distributed gap; labels (the value) only at query positions; other positions
    hold random tokens when ``random_non_queries``. ``input_ids`` has length ``seq_len``.
    ``teacher_signals`` adds MOSAIC teacher keys (write on values, read at queries,
    ``bucket = key mod mem_buckets``).
    """

    seq_len: int = attrs.field(default=64, validator=at_least(4))
    num_kv_pairs: int = attrs.field(default=4, validator=at_least(1))
    min_kv_pairs: int | None = None
    vocab_size: int = attrs.field(default=8192, validator=at_least(8))
    power_a: float = 0.01
    random_non_queries: bool = True
    teacher_signals: bool = False
    mem_buckets: int = attrs.field(default=64, validator=power_of_two)
    mem_hashes: int = attrs.field(default=2, validator=at_least(1))  # the model's default too
    teacher_forcing: float = attrs.field(default=1.0, validator=probability)
    num_samples: int = attrs.field(default=100_000, validator=at_least(1))
    seed: int = attrs.field(default=0, validator=at_least(0))
    split: Split = "train"

    def __attrs_post_init__(self) -> None:
        _check_min(self, "min_kv_pairs", "num_kv_pairs")
        if self.min_kv_pairs == 0:
            reject("min_kv_pairs", "must be >= 1, got 0")
        if self.seq_len % 2:
            reject("seq_len", f"must be even, got {self.seq_len}")
        if self.vocab_size <= self.seq_len:
            reject("vocab_size", f"must exceed seq_len ({self.seq_len}), got {self.vocab_size}")
        if not 0.0 < self.power_a <= 1.0:
            reject("power_a", f"must be in (0, 1], got {self.power_a}")
        if self.num_kv_pairs > self.vocab_size // 2 - 1:
            reject("num_kv_pairs", f"{self.num_kv_pairs} distinct keys need vocab_size >= "
                                   f"{2 * (self.num_kv_pairs + 1)}, got {self.vocab_size}")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.VOCAB_SIZE, self.vocab_size, "vocab_size")
        yield Provided(Capability.SAMPLE_LENGTH, self.seq_len, "seq_len")

    def requires(self) -> Iterable[Required]:
        if self.teacher_signals:
            yield from _same_memory(self.mem_buckets, self.mem_hashes)


@attrs.frozen
class TextConfig:
    """``dataset.text``: character- or byte-level language modelling on a text file.

    The first ``1 - val_fraction`` of the file is the train split, the rest the eval split. Train
    items are windows at offsets drawn per (seed, idx); eval items are consecutive windows.
    Without a ``path``, the tiny Shakespeare corpus shipped with mosaic-data is used.
    The character vocabulary is the sorted set of characters of the whole file. ``num_samples``
    defaults to ``len(split) // block_size`` windows (eval: every consecutive window).
    """

    path: str | None = None
    block_size: int = attrs.field(default=256, validator=at_least(1))
    level: Literal["char", "byte"] = "char"
    val_fraction: float = 0.1
    num_samples: int | None = None
    seed: int = attrs.field(default=0, validator=at_least(0))
    split: Split = "train"

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            reject("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if self.num_samples is not None and self.num_samples < 1:
            reject("num_samples", f"must be >= 1, got {self.num_samples}")

    def provides(self) -> Iterable[Provided]:
        if self.level == "byte":  # a char vocabulary is known only once the file is read
            yield Provided(Capability.VOCAB_SIZE, 256, "level")
        yield Provided(Capability.SAMPLE_LENGTH, self.block_size, "block_size")
