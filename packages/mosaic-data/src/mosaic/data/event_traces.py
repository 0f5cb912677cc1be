"""``dataset.mosaic_event_traces``: event-native training traces.

A sample is a stream of ``EventEnvelope``s, each encoded by mosaic-core's ``EventEncoder`` (canonical
JSON bytes, one token per byte) and followed by ``EVENT_DELIMITER`` — the same bytes the runtime
reads and writes. Order of events (``P`` pairs, ``D`` noise events per pair, ``C`` negotiation
cycles, ``R`` replays per pair)::

    (MemoryWrite {"key": k_i, "v": v_i}  Noise {"tok": n} x D)  x P
    C overlapping commitments (mosaic.data.negotiation): each a user request, an offer (+1), notes
    and a ToolResult, and a delivery (-1) or not; phrasings from the split's own template set
    (MemoryQuery {"key": k}  MemoryAnswer {"key": k, "r": v})  x P       (every pair once, shuffled)
    (Idle {"i": r}  MemoryAnswer {"key": k_i, "r": v_i})  x P*R         (in write order)

With ``dense_negotiation_fraction`` that share of items is negotiation-dense instead: no memory
facts, only negotiations of ``C`` overlapping commitments back to back (fresh ids each) while the
next one drawn would not fit the block.

Keys and values are ``value_digits``-digit integers; ids and timestamps are deterministic, so the
sample length depends only on the structure and the templates drawn. Teacher labels (positions are
byte offsets in the sequence, which are the input positions of those bytes):

- write gate / utility 1, write bucket :func:`key_bucket` of ``k`` (every hash), opcode WRITE_MEM, register write
  into slot ``i mod reg_slots``: on every byte of the ``v`` literal of each MemoryWrite;
- read bucket :func:`key_bucket` of ``k``, opcode READ_MEM (and ``mosaic_drop_local`` 1 when
  ``drop_local_on_query``): on each position whose next byte belongs to the ``r`` literal of a
  MemoryAnswer (``eval_answer_mask`` for query answers);
- ``mosaic_teacher_commitment_delta`` +1 / 0 / -1 on exactly the bytes of each message's text
  (-100 elsewhere), opcode COMMIT on the text of open and close messages;
- opcode IDLE / RESPOND on the delimiter after each event the agent did not send
  (``turn_opcodes``, see :mod:`mosaic.data.turns`);
- opcode NOP and gates 0 on every other real position; padding (``EVENT_PAD_ID``) is ignored.

``access_at_key`` moves every write and read to the key's last byte; ``single_access`` keeps one write
per MemoryWrite (the value's last byte) and one read per MemoryAnswer (the byte before its first
answer byte), so that each router sees its key at one fixed offset (docs/organism.md).

With ``return_spans`` each item also carries ``eval_spans``: a tuple of :class:`TraceSpan` (kind, byte
range, label) that ``collate`` gathers into a list per batch.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import torch

from mosaic.core.errors import DataError
from mosaic.core.events.codec import EVENT_DELIMITER, EVENT_PAD_ID, EVENT_VOCAB_SIZE, EventEncoder
from mosaic.core.events.envelope import EventEnvelope
from mosaic.data.common import (
    OP_COMMIT,
    SEQUENCE_NOTE,
    SampleTooLongError,
    TraceBuilder,
    check_level,
    item_seed,
    lerp_int,
)
from mosaic.data.config import EventTraceConfig
from mosaic.data.negotiation import Step, negotiation
from mosaic.data.turns import mark_turns


@attrs.frozen
class TraceSpan:
    """A labelled byte range ``[start, end)`` of the sequence (= input positions of those bytes).

    kinds: ``write`` (label: the key), ``answer`` / ``replay_answer`` (label: the value; the model
    predicts these bytes at positions ``start - 1 .. end - 2``), ``commitment`` (label: -1/0/+1).
    """

    kind: str
    start: int
    end: int
    label: int
    commitment_id: str | None = None


def _int_span(data: bytes, field: str, value: int) -> tuple[int, int]:
    """Byte range of the integer literal of ``"field":value`` in an event's canonical bytes."""
    needle = f'"{field}":{value}'.encode()
    position = data.find(needle)
    end = position + len(needle)
    if position < 0 or data.find(needle, end) >= 0 or data[end : end + 1].isdigit():
        raise DataError(f"event traces: cannot locate {needle.decode()!r} exactly once in {data.decode()!r}")
    return end - len(str(value)), end


def _text_span(data: bytes, text: str) -> tuple[int, int]:
    """Byte range of the ``text`` string's characters (quotes excluded) in an event's bytes."""
    needle = b'"text":"' + text.encode("utf-8") + b'"'
    position = data.find(needle)
    if position < 0 or data.find(needle, position + 1) >= 0:
        raise DataError(f"event traces: cannot locate the text {text!r} exactly once in {data.decode()!r}")
    start = position + len(b'"text":"')
    return start, start + len(text.encode("utf-8"))


#: The MemoryWrite field holding the value to store, and the MemoryAnswer field holding the recalled
#: value. Both are one letter and sort after ``"key"``, so in the canonical bytes
#: (``{"key":12,"v":34}``) a value's first digit is only ``len(',"v":') + 1`` = 6 bytes after its key's
#: last digit: every value byte, and the position before each answer byte, sees the whole key in the
#: local window (``conv_kernel`` >= 2 * value_digits + 5), so writes and reads route by key right where
#: they happen. The two letters differ so that the byte just before a value tells a write (``v``) from
#: a read (``r``); sorted-key JSON puts ``type`` and ``sender`` after the payload, out of the window.
WRITE_FIELD = "v"
ANSWER_FIELD = "r"
#: With ``access_at_key`` a MemoryWrite's value field, sorting before ``"key"`` so that the key's
#: last byte (where the write happens, routed by the key right there) closes the payload.
KEYED_VALUE_FIELD = "data"


def key_bucket(key: int, buckets: int, digits: int) -> int:
    """The teacher's memory bucket of a ``digits``-digit decimal key: the ``log2(buckets)`` bucket
    bits are dealt round-robin to the key's digits, least significant first, and bit ``j`` of a
    digit's share is bit ``j`` of that digit.

    Why not ``key mod buckets``: a block routes with the sign of a linear projection of the bytes
    it sees, and ``key mod 2**b`` of a multi-digit decimal number mixes the digits non-linearly
    (a carry across digits), so the router cannot learn it. Here every bucket bit is a function of
    one digit byte at a fixed offset, which a linear projection of the local window computes."""
    bits = buckets.bit_length() - 1
    text = f"{key:0{digits}d}"[::-1]  # least significant digit first
    bucket = 0
    for bit in range(bits):
        digit = int(text[bit % digits])
        bucket |= ((digit >> (bit // digits)) & 1) << bit
    return bucket


class _Trace:
    """One sample under construction: events appended as codec bytes, labels by position."""

    def __init__(self, config: EventTraceConfig, encoder: EventEncoder, rng: random.Random) -> None:
        self.config = config
        self.encoder = encoder
        self.builder = TraceBuilder(
            mem_hashes=config.mem_hashes, reg_slots=config.reg_slots, with_commitment=True
        )
        self.spans: list[TraceSpan] = []
        self.boundaries: list[tuple[int, str]] = []  # (delimiter position, sender) per event
        self.events = 0
        # Event ids are drawn, not counted: sorted-key JSON puts "id" before the payload, and an id
        # that counts events would tell the commitment head which step of the negotiation it reads.
        self.id_rng = rng

    def bucket(self, key: int) -> int:
        return key_bucket(key, self.config.mem_buckets, self.config.value_digits)

    def event(self, type_: str, sender: str, payload: dict, **meta: Any) -> tuple[int, bytes]:
        event_id = f"e{self.id_rng.getrandbits(16):04x}"
        envelope = EventEnvelope(type=type_, payload=payload, sender=sender, id=event_id, ts=float(self.events), **meta)
        self.events += 1
        data = self.encoder.encode_bytes(envelope)
        offset = self.builder.append(data).start
        self.boundaries.append((self.builder.append([EVENT_DELIMITER]).start, sender))
        return offset, data

    def write(self, index: int, key: int, value: int) -> None:
        if self.config.access_at_key:  # the value first, then the key: write at the key's last byte
            offset, data = self.event("MemoryWrite", "user", {KEYED_VALUE_FIELD: value, "key": key})
            start, end = _int_span(data, "key", key)
            positions = range(offset + end - 1, offset + end)
        else:
            offset, data = self.event("MemoryWrite", "user", {"key": key, WRITE_FIELD: value})
            start, end = _int_span(data, WRITE_FIELD, value)
            # single_access: once, at the value's last byte (the key at one fixed offset back)
            positions = range(offset + (end - 1 if self.config.single_access else start), offset + end)
        slot = index % self.config.reg_slots if self.config.reg_slots else -1
        self.builder.mark_write(positions, self.bucket(key), slot)
        self.spans.append(TraceSpan("write", positions.start, positions.stop, key))

    def query(self, key: int) -> None:
        offset, data = self.event("MemoryQuery", "user", {"key": key})
        if self.config.access_at_key:  # its key's bytes look like the answer's: read there as well
            _, key_end = _int_span(data, "key", key)
            self.builder.mark_read([offset + key_end - 1], self.bucket(key))

    def answer(self, key: int, value: int, kind: str) -> None:
        offset, data = self.event("MemoryAnswer", "agent", {"key": key, ANSWER_FIELD: value})
        start, end = _int_span(data, ANSWER_FIELD, value)
        predicting = range(offset + start - 1, offset + end - 1)  # positions whose next byte is the answer
        if self.config.access_at_key:  # read at the key's last byte; the block carries it to the answer
            _, key_end = _int_span(data, "key", key)
            self.builder.mark_read([offset + key_end - 1], self.bucket(key))
        elif self.config.single_access:  # once, before the first answer byte; the block carries it on
            self.builder.mark_read(predicting[:1], self.bucket(key))
        else:
            self.builder.mark_read(predicting, self.bucket(key))
        if self.config.drop_local_on_query:
            self.builder.mark_drop_local(predicting)
        if kind == "answer":
            self.builder.mark_answer(predicting)
        self.spans.append(TraceSpan(kind, offset + start, offset + end, value))

    def message(self, text: str, delta: int, commitment_id: str, sender: str) -> None:
        declared = delta if self.config.commitment_label_in_header else 0
        offset, data = self.event(
            "Message", sender, {"text": text}, commitment_delta=declared, commitment_id=commitment_id
        )
        start, end = _text_span(data, text)
        positions = range(offset + start, offset + end)
        self.builder.mark_commitment(positions, delta)
        if delta != 0:
            self.builder.mark_opcode(positions, OP_COMMIT)
        self.spans.append(TraceSpan("commitment", positions.start, positions.stop, delta, commitment_id))


class EventTraceDataset(torch.utils.data.Dataset):
    """Map-style dataset; item ``idx`` is a pure function of (seed, split, idx, difficulty)."""

    def __init__(self, config: EventTraceConfig) -> None:
        self.config = config
        self.encoder = EventEncoder()
        self.vocab_size = EVENT_VOCAB_SIZE
        self.block_size = config.block_size
        self.pad_token = EVENT_PAD_ID
        self.level = 1.0
        self.teacher_forcing = config.teacher_forcing
        needed = self.max_sample_length()
        if needed > config.block_size + 1:
            raise SampleTooLongError(
                type(self).__name__, "block_size", needed, config.block_size + 1,
                f"n_pairs={config.n_pairs}, distractor_events={config.distractor_events}, "
                f"negotiation_pairs={config.negotiation_pairs}, sleep_replay_per_pair="
                f"{config.sleep_replay_per_pair}, value_digits={config.value_digits} (longest phrasings)",
                SEQUENCE_NOTE,
            )

    # --- curriculum protocol (mosaic.data.curricula) -------------------------------------------

    def set_difficulty(self, level: float) -> None:
        self.level = check_level(self, level, "set_difficulty")

    def set_teacher_forcing(self, p: float) -> None:
        self.teacher_forcing = check_level(self, p, "set_teacher_forcing")

    def difficulty(self) -> dict[str, int]:
        c = self.config

        def at(low: int | None, high: int) -> int:
            return lerp_int(high if low is None else low, high, self.level)

        return {
            "n_pairs": at(c.min_pairs, c.n_pairs),
            "distractor_events": at(c.min_distractor_events, c.distractor_events),
            "negotiation_pairs": at(c.min_negotiation_pairs, c.negotiation_pairs),
        }

    def max_sample_length(self) -> int:
        """Tokens of the longest possible sample at full difficulty (every number has
        ``value_digits`` digits; the longest phrasing of each class is drawn)."""
        level, self.level = self.level, 1.0
        try:
            return len(self._trace(random.Random(0), longest=True).builder.tokens)
        finally:
            self.level = level

    # --- items ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.config.num_samples

    def __getitem__(self, idx: int) -> dict[str, object]:
        c = self.config
        if not 0 <= idx < len(self):
            raise IndexError(f"{type(self).__name__} index {idx} out of range [0, {len(self)})")
        trace = self._trace(random.Random(item_seed(c.seed, c.split, idx)), longest=False)
        item: dict[str, Any] = trace.builder.finish(
            block_size=c.block_size, pad_token=EVENT_PAD_ID, teacher_forcing=self.teacher_forcing,
            name=type(self).__name__,
        )
        if c.return_spans:
            item["eval_spans"] = tuple(trace.spans)
        return item

    def _trace(self, rng: random.Random, *, longest: bool) -> _Trace:
        c = self.config
        params = self.difficulty()
        if not longest and c.dense_negotiation_fraction > 0 and rng.random() < c.dense_negotiation_fraction:
            return self._dense_trace(rng, params["negotiation_pairs"])
        pairs = params["n_pairs"]
        low, high = 10 ** (c.value_digits - 1), 10**c.value_digits
        keys = rng.sample(range(low, high), pairs)
        values = [rng.randrange(low, high) for _ in range(pairs)]
        trace = _Trace(c, self.encoder, random.Random(rng.getrandbits(64)))

        for i in range(pairs):
            trace.write(i, keys[i], values[i])
            for _ in range(params["distractor_events"]):
                trace.event("Noise", "env", {"tok": rng.randrange(low, high)})

        self._negotiate(trace, self._steps(rng, params["negotiation_pairs"], longest=longest))

        order = list(range(pairs))
        if c.shuffle_queries:
            rng.shuffle(order)
        for i in order:
            trace.query(keys[i])
            trace.answer(keys[i], values[i], "answer")

        for i in range(pairs):
            for r in range(c.sleep_replay_per_pair):
                trace.event("Idle", "env", {"i": r})
                trace.answer(keys[i], values[i], "replay_answer")
        if c.turn_opcodes:
            mark_turns(trace.builder, trace.boundaries)
        return trace

    def _negotiate(self, trace: _Trace, steps: list[Step]) -> None:
        for step in steps:
            if step.text is not None:
                trace.message(step.text, step.delta, step.commitment_id, step.sender)
            else:
                trace.event("ToolResult", step.sender, {"tool": step.tool, "ok": True},
                            commitment_id=step.commitment_id)

    def _steps(self, rng: random.Random, commitments: int, *, longest: bool) -> list[Step]:
        c = self.config
        return negotiation(rng, c.split, commitments, notes=c.negotiation_notes,
                           close_probability=c.close_probability, longest=longest)

    def _length_bound(self, steps: list[Step]) -> int:
        """Tokens the steps take at most: event ids have a fixed width, and a timestamp of three
        digits bounds every one a block holds (far fewer than 1000 events)."""
        total = 0
        for step in steps:
            if step.text is not None:
                payload: dict[str, Any] = {"text": step.text}
                meta: dict[str, Any] = {"commitment_delta": step.delta if self.config.commitment_label_in_header else 0}
                kind = "Message"
            else:
                payload, meta, kind = {"tool": step.tool, "ok": True}, {}, "ToolResult"
            envelope = EventEnvelope(type=kind, payload=payload, sender=step.sender, id="e0000", ts=100.0,
                                     commitment_id=step.commitment_id, **meta)
            total += len(self.encoder.encode_bytes(envelope)) + 1
        return total

    def _dense_trace(self, rng: random.Random, commitments: int) -> _Trace:
        """Negotiations back to back until the next one drawn would not fit the block."""
        c = self.config
        trace = _Trace(c, self.encoder, random.Random(rng.getrandbits(64)))
        while True:
            steps = self._steps(rng, commitments, longest=False)
            if len(trace.builder.tokens) + self._length_bound(steps) > c.block_size + 1:
                break
            self._negotiate(trace, steps)
        if c.turn_opcodes:
            mark_turns(trace.builder, trace.boundaries)
        return trace
