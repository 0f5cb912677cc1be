"""dataset.mosaic_event_traces: the stream is codec bytes; write, read and commitment labels sit on
exactly the right bytes; samples fit; padding is masked; samples are deterministic."""

from __future__ import annotations

import functools
import os

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.contract import IGNORE_INDEX
from mosaic.core.errors import DataError, InvalidFieldError
from mosaic.core.events.codec import EVENT_DELIMITER, EventDecoder
from mosaic.data.common import OP_COMMIT, OP_IDLE, OP_NOP, OP_READ_MEM, OP_RESPOND, OP_WRITE_MEM
from mosaic.data.config import EventTraceConfig
from mosaic.data.event_traces import ANSWER_FIELD, WRITE_FIELD, EventTraceDataset, TraceSpan, key_bucket
from mosaic.data.negotiation import PHRASEBOOKS


@functools.cache
def phrasings(split: str) -> dict[str, int]:
    """Every text the split's phrasebook can produce -> its class (asserted unambiguous)."""
    book, classes = PHRASEBOOKS[split], {}
    for delta, patterns in ((0, book.requests + book.notes), (1, book.offers), (-1, book.deliveries)):
        for pattern in patterns:
            for verb, done in book.verbs:
                for obj in book.objects:
                    for who in book.people:
                        text = pattern.format(verb=verb, done=done, obj=obj, who=who)
                        assert classes.setdefault(text, delta) == delta, text
    return classes

EXAMPLES = 200 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 20


@st.composite
def configs(draw):
    config = EventTraceConfig(
        block_size=8192,
        mem_buckets=draw(st.sampled_from([2, 8, 64])),
        mem_hashes=draw(st.integers(1, 2)),
        commitment_label_in_header=draw(st.booleans()),
        n_pairs=draw(st.integers(1, 3)),
        distractor_events=draw(st.integers(0, 2)),
        negotiation_pairs=draw(st.integers(0, 2)),
        sleep_replay_per_pair=draw(st.integers(0, 1)),
        reg_slots=draw(st.integers(0, 2)),
        value_digits=draw(st.integers(2, 5)),
        shuffle_queries=draw(st.booleans()),
        return_spans=True,
        num_samples=1000,
        seed=draw(st.integers(0, 2**31 - 1)),
        split=draw(st.sampled_from(["train", "eval"])),
    )
    needed = EventTraceDataset(config).max_sample_length()
    return attrs.evolve(config, block_size=needed - 1 + draw(st.integers(0, 40)))


def bucket_of(key: int, config: EventTraceConfig) -> int:
    return key_bucket(key, config.mem_buckets, config.value_digits)


@given(digits=st.integers(2, 5), bits=st.integers(1, 6), data=st.data())
def test_key_bucket_bits_each_read_one_digit(digits, bits, data):
    """Every bucket bit is a function of one digit of the key (so a linear router over the digit
    bytes can compute it): changing a digit moves only the bits dealt to that digit."""
    key = data.draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    position = data.draw(st.integers(0, digits - 1))  # from the least significant digit
    replacement = data.draw(st.integers(1 if position == digits - 1 else 0, 9))
    text = list(f"{key}"[::-1])
    text[position] = str(replacement)
    other = int("".join(text[::-1]))
    changed = key_bucket(key, 2**bits, digits) ^ key_bucket(other, 2**bits, digits)
    assert 0 <= key_bucket(key, 2**bits, digits) < 2**bits
    assert all(bit % digits == position for bit in range(bits) if changed >> bit & 1)


def _events(item):
    """(offset, envelope, raw bytes) of every event of the sample, decoded by the codec."""
    y = item["target_ids"]
    n_inputs = int((y != -100).sum())
    stream = bytes(item["input_ids"][:n_inputs].tolist() + [int(y[n_inputs - 1])])
    assert stream.endswith(bytes([EVENT_DELIMITER]))
    decoder = EventDecoder()
    events, offset = [], 0
    for chunk in stream.split(bytes([EVENT_DELIMITER]))[:-1]:
        events.append((offset, decoder.decode_bytes(chunk), chunk))
        offset += len(chunk) + 1
    return events, n_inputs


def _literal(chunk: bytes, field: str, value: int | str) -> range:
    text = str(value).encode()
    needle = f'"{field}":'.encode() + (b'"' + text + b'"' if isinstance(value, str) else text)
    start = chunk.index(needle) + len(needle) - len(text) - (1 if isinstance(value, str) else 0)
    return range(start, start + len(text))


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), idx=st.integers(0, 999))
def test_labels_point_at_the_right_bytes(config, idx):
    dataset = EventTraceDataset(config)
    item = dataset[idx]
    T = config.block_size
    x, y = item["input_ids"], item["target_ids"]
    assert x.shape == y.shape == (T,)
    events, n_inputs = _events(item)
    real = y != -100
    assert bool(real[:n_inputs].all()) and not bool(real[n_inputs:].any())
    assert torch.equal(y[: n_inputs - 1], x[1:n_inputs])
    assert bool((x[n_inputs + 1 :] == 0).all()) and not bool((y == 0).any())
    for key in ("mosaic_teacher_write_gate", "mosaic_teacher_write_utility"):
        assert torch.equal(item[key + "_mask"], real)
    assert bool((item["mosaic_teacher_opcode"][~real] == IGNORE_INDEX).all())
    assert bool((item["mosaic_teacher_commitment_delta"][~real] == -100).all())

    types = [event.type for _, event, _ in events]
    pairs = types.count("MemoryWrite")
    assert types.count("MemoryQuery") == pairs
    assert types.count("Idle") == pairs * config.sleep_replay_per_pair
    assert types.count("Message") == (3 + config.negotiation_notes) * dataset.difficulty()["negotiation_pairs"]

    writes, reads, answers, commitments, commit_ops = {}, {}, [], {}, set()
    written_order, last_query, idles, previous_type = [], None, 0, None
    for offset, event, chunk in events:
        if event.type == "MemoryWrite":
            key, value = event.payload["key"], event.payload[WRITE_FIELD]
            for t in _literal(chunk, WRITE_FIELD, value):
                writes[offset + t] = (key, len(written_order))
            written_order.append((key, value))
        elif event.type == "MemoryQuery":
            last_query = event.payload["key"]
        elif event.type == "Idle":
            # Replays run in write order, sleep_replay_per_pair per pair.
            last_query = written_order[idles // config.sleep_replay_per_pair][0]
            idles += 1
        elif event.type == "MemoryAnswer":
            key = last_query
            value = dict(written_order)[key]
            assert event.payload == {"key": key, ANSWER_FIELD: value}  # the answer names its key
            literal = _literal(chunk, ANSWER_FIELD, value)
            for t in literal:
                reads[offset + t - 1] = key
                # The read position predicts exactly the answer byte.
                assert int(y[offset + t - 1]) == chunk[t]
            if previous_type == "MemoryQuery":
                answers.extend(offset + t - 1 for t in literal)
        elif event.type == "Message":
            literal = _literal(chunk, "text", event.payload["text"])
            text = bytes(x[offset + literal.start : offset + literal.stop].tolist()).decode()
            # The class comes from the phrasebook the text was drawn from, never from the header.
            delta = phrasings(config.split)[event.payload["text"]]
            assert text == event.payload["text"]
            assert event.commitment_delta == (delta if config.commitment_label_in_header else 0)
            for t in literal:
                commitments[offset + t] = delta
                if delta != 0:
                    commit_ops.add(offset + t)
        previous_type = event.type

    gate = item["mosaic_teacher_write_gate"]
    assert sorted(torch.nonzero(gate).flatten().tolist()) == sorted(writes)
    for t, (key, index) in writes.items():
        assert item["mosaic_teacher_write_bucket"][t].tolist() == [bucket_of(key, config)] * config.mem_hashes
        assert int(item["mosaic_teacher_opcode"][t]) == OP_WRITE_MEM
        if config.reg_slots:
            assert int(item["mosaic_teacher_reg_sel"][t]) == index % config.reg_slots
    read_rows = torch.nonzero(item["mosaic_teacher_read_bucket"][:, 0] >= 0).flatten().tolist()
    assert read_rows == sorted(reads)
    for t, key in reads.items():
        assert item["mosaic_teacher_read_bucket"][t].tolist() == [bucket_of(key, config)] * config.mem_hashes
        assert int(item["mosaic_teacher_opcode"][t]) == OP_READ_MEM
        assert float(item["mosaic_drop_local"][t]) == 1.0
    assert int(item["mosaic_drop_local"].sum()) == len(reads)
    assert torch.nonzero(item["eval_answer_mask"]).flatten().tolist() == sorted(answers)
    labelled = torch.nonzero(item["mosaic_teacher_commitment_delta"] != -100).flatten().tolist()
    assert labelled == sorted(commitments)
    for t, delta in commitments.items():
        assert int(item["mosaic_teacher_commitment_delta"][t]) == delta
    ops = item["mosaic_teacher_opcode"]
    assert sorted(torch.nonzero(ops == OP_COMMIT).flatten().tolist()) == sorted(commit_ops)
    # Turns: after every event the agent did not send, RESPOND if the agent speaks next, else IDLE.
    # After the agent's own events nothing is supervised.
    turns = {}
    for (offset, event, chunk), (_, following, _) in zip(events, events[1:], strict=False):
        if event.sender != "agent":
            turns[offset + len(chunk)] = OP_RESPOND if following.sender == "agent" else OP_IDLE
        else:
            turns[offset + len(chunk)] = IGNORE_INDEX
    for t, opcode in turns.items():
        assert int(ops[t]) == opcode
    special = set(writes) | set(reads) | commit_ops | set(turns)
    assert all(int(ops[t]) == OP_NOP for t in range(n_inputs) if t not in special)

    # Each commitment_id: a request, then the offer, then notes, and a delivery only as its last message.
    messages = [event for _, event, _ in events if event.type == "Message"]
    for commitment_id in {m.commitment_id for m in messages}:
        own = [phrasings(config.split)[m.payload["text"]] for m in messages if m.commitment_id == commitment_id]
        assert commitment_id is not None and own[:2] == [0, 1]
        assert all(delta == 0 for delta in own[2:-1]) and own[-1] in (0, -1)

    # Span metadata agrees with the labels.
    spans = item["eval_spans"]
    assert all(isinstance(span, TraceSpan) for span in spans)
    assert {t for s in spans if s.kind == "commitment" for t in range(s.start, s.end)} == set(commitments)
    assert {t for s in spans if s.kind == "write" for t in range(s.start, s.end)} == set(writes)
    assert {t - 1 for s in spans if s.kind == "answer" for t in range(s.start, s.end)} == set(answers)
    for span in spans:
        if span.kind == "commitment":
            assert int(item["mosaic_teacher_commitment_delta"][span.start]) == span.label


@settings(max_examples=EXAMPLES, deadline=None)
@given(config=configs(), idx=st.integers(0, 998))
def test_deterministic_per_seed_split_and_index(config, idx):
    first = EventTraceDataset(config)[idx]
    again = EventTraceDataset(config)[idx]
    assert all(torch.equal(first[k], again[k]) for k in first if k != "eval_spans")
    assert first["eval_spans"] == again["eval_spans"]
    # Five-digit keys and values: two different streams cannot coincide by chance.
    config = attrs.evolve(config, value_digits=5, block_size=8192)
    first = EventTraceDataset(config)[idx]
    others = [
        EventTraceDataset(attrs.evolve(config, seed=config.seed + 1))[idx],
        EventTraceDataset(attrs.evolve(config, split="eval" if config.split == "train" else "train"))[idx],
        EventTraceDataset(config)[idx + 1],
    ]
    for other in others:
        assert not torch.equal(first["input_ids"], other["input_ids"])


def test_phrasings_vary_across_samples():
    dataset = EventTraceDataset(EventTraceConfig(return_spans=True, num_samples=200))
    seen = {delta: set() for delta in (-1, 0, 1)}
    for idx in range(60):
        item = dataset[idx]
        for span in item["eval_spans"]:
            if span.kind == "commitment":
                seen[span.label].add(bytes(item["input_ids"][span.start : span.end].tolist()).decode())
    for delta, texts in seen.items():
        assert len(texts) >= 20 and all(phrasings("train")[text] == delta for text in texts)


def test_block_too_small_is_rejected_with_needed_and_available():
    config = EventTraceConfig(n_pairs=2, negotiation_pairs=1)
    needed = EventTraceDataset(config).max_sample_length()
    EventTraceDataset(attrs.evolve(config, block_size=needed - 1))
    with pytest.raises(DataError) as info:
        EventTraceDataset(attrs.evolve(config, block_size=needed - 2))
    assert "block_size" in str(info.value) and str(needed) in str(info.value)
    assert (info.value.needed, info.value.available) == (needed, needed - 1)


def test_longest_sample_bound_is_reached_and_never_exceeded():
    config = EventTraceConfig(block_size=4096, n_pairs=2, negotiation_pairs=2, distractor_events=1, num_samples=300)
    dataset = EventTraceDataset(config)
    bound = dataset.max_sample_length()
    lengths = [int((dataset[i]["target_ids"] != -100).sum()) + 1 for i in range(150)]
    assert max(lengths) <= bound
    assert len(set(lengths)) > 1  # the phrasings really vary the length


def test_without_spans_items_are_tensors_only():
    item = EventTraceDataset(EventTraceConfig())[0]
    assert "eval_spans" not in item and all(isinstance(v, torch.Tensor) for v in item.values())
    assert "mosaic_teacher_reg_sel" not in item


def test_difficulty_moves_pairs_noise_and_negotiation_cycles():
    config = EventTraceConfig(block_size=8192, n_pairs=4, min_pairs=1, distractor_events=2, min_distractor_events=0,
                              negotiation_pairs=2, min_negotiation_pairs=0, sleep_replay_per_pair=0,
                              return_spans=True)
    dataset = EventTraceDataset(config)
    dataset.set_difficulty(0.0)
    assert dataset.difficulty() == {"n_pairs": 1, "distractor_events": 0, "negotiation_pairs": 0}
    easy = dataset[3]
    assert [span.kind for span in easy["eval_spans"]] == ["write", "answer"]
    dataset.set_difficulty(1.0)
    hard = dataset[3]
    kinds = [span.kind for span in hard["eval_spans"]]
    assert kinds.count("write") == 4 and kinds.count("commitment") == 8
    dataset.set_difficulty(0.0)
    assert torch.equal(dataset[3]["input_ids"], easy["input_ids"])
    with pytest.raises(DataError, match="EventTraceDataset"):
        dataset.set_teacher_forcing(2.0)


def test_commitment_label_is_not_serialised_before_the_text_by_default() -> None:
    from mosaic.core import EventDecoder
    from mosaic.core.events.codec import EVENT_DELIMITER
    from mosaic.data.config import EventTraceConfig
    from mosaic.data.event_traces import EventTraceDataset

    def message_deltas(config: EventTraceConfig) -> list[int]:
        item = EventTraceDataset(config)[0]
        raw = bytes(int(b) for b in item["input_ids"].tolist() if b != 0)
        events = [EventDecoder().decode_bytes(chunk) for chunk in raw.split(bytes([EVENT_DELIMITER])) if chunk]
        return [e.commitment_delta for e in events if e.type == "Message"]

    hidden = EventTraceConfig(block_size=2048, n_pairs=1, distractor_events=0, negotiation_pairs=1, value_digits=2,
                              sleep_replay_per_pair=0, close_probability=1.0)
    assert message_deltas(hidden) == [0, 0, 0, 0]
    shown = attrs.evolve(hidden, commitment_label_in_header=True)
    assert message_deltas(shown) == [0, 1, 0, -1]  # request, offer, note, delivery


def test_access_at_key_writes_and_reads_at_the_keys_last_byte():
    config = EventTraceConfig(block_size=8192, mem_buckets=16, mem_hashes=1, value_digits=2, access_at_key=True,
                              drop_local_on_query=False)
    item = EventTraceDataset(config)[3]
    x, opcode = item["input_ids"], item["mosaic_teacher_opcode"]
    events, _ = _events(item)
    expected_writes, expected_reads = {}, {}
    for offset, event, chunk in events:
        if event.type in ("MemoryWrite", "MemoryQuery", "MemoryAnswer"):
            key = event.payload["key"]
            last = offset + _literal(chunk, "key", key).stop - 1
            (expected_writes if event.type == "MemoryWrite" else expected_reads)[last] = bucket_of(key, config)
        if event.type == "MemoryWrite":
            assert list(event.payload) == ["data", "key"]  # the value first: the key's last byte closes it
    assert sorted((opcode == OP_WRITE_MEM).nonzero()[:, 0].tolist()) == sorted(expected_writes)
    assert sorted((opcode == OP_READ_MEM).nonzero()[:, 0].tolist()) == sorted(expected_reads)
    for t, bucket in expected_writes.items():
        assert chr(int(x[t])).isdigit() and item["mosaic_teacher_write_bucket"][t].tolist() == [bucket]
    for t, bucket in expected_reads.items():
        assert item["mosaic_teacher_read_bucket"][t].tolist() == [bucket]
    assert not bool(item["mosaic_drop_local"].any())


def test_single_access_writes_at_the_values_last_byte_and_reads_before_the_answer():
    """One access per event, each at one fixed offset from its key: a MemoryWrite writes only at its
    value's last byte, a MemoryAnswer reads only at the byte before its first answer byte (a query
    does not read); the answer's bytes stay marked for evaluation."""
    config = EventTraceConfig(block_size=8192, mem_buckets=256, mem_hashes=1, value_digits=2, single_access=True,
                              drop_local_on_query=False)
    item = EventTraceDataset(config)[3]
    x, opcode = item["input_ids"], item["mosaic_teacher_opcode"]
    events, _ = _events(item)
    expected_writes, expected_reads, answers = {}, {}, []
    for offset, event, chunk in events:
        if event.type == "MemoryWrite":
            key, value = event.payload["key"], event.payload[WRITE_FIELD]
            last = offset + _literal(chunk, WRITE_FIELD, value).stop - 1
            expected_writes[last] = bucket_of(key, config)
            assert last - (offset + _literal(chunk, "key", key).stop - 1) == 7  # 'K,"v":VV': the key 7 back
        if event.type == "MemoryAnswer":
            key, value = event.payload["key"], event.payload[ANSWER_FIELD]
            literal = _literal(chunk, ANSWER_FIELD, value)
            expected_reads[offset + literal.start - 1] = bucket_of(key, config)
            answers.extend(offset + t - 1 for t in literal)
    assert sorted((opcode == OP_WRITE_MEM).nonzero()[:, 0].tolist()) == sorted(expected_writes)
    assert sorted((opcode == OP_READ_MEM).nonzero()[:, 0].tolist()) == sorted(expected_reads)
    assert len({bucket for bucket in expected_writes.values()}) == len(expected_writes)  # 256: a bucket per key
    for t, bucket in expected_writes.items():
        assert chr(int(x[t])).isdigit() and item["mosaic_teacher_write_bucket"][t].tolist() == [bucket]
    for t, bucket in expected_reads.items():
        assert chr(int(x[t])) == ":" and item["mosaic_teacher_read_bucket"][t].tolist() == [bucket]
    assert set(item["eval_answer_mask"].nonzero()[:, 0].tolist()) < set(answers)  # query answers, not replays
    with pytest.raises(InvalidFieldError, match="single_access"):
        attrs.evolve(config, access_at_key=True)


@pytest.mark.parametrize("digits", [2, 3])
def test_every_memory_access_sees_its_whole_key_in_the_local_window(digits: int) -> None:
    """With value-position access, each write (a ``v`` byte) and each read (the position before an
    ``r`` byte) lies at most ``2 * digits + 4`` bytes after its key's first digit, so a local
    window of ``2 * digits + 5`` (the preset's conv_kernel 13 covers 4 digits) routes it by key; and
    the byte before a value's first digit tells a write from a read."""
    config = EventTraceConfig(block_size=8192, mem_buckets=16, mem_hashes=1, value_digits=digits,
                              drop_local_on_query=False)
    item = EventTraceDataset(config)[5]
    opcode = item["mosaic_teacher_opcode"]
    events, _ = _events(item)
    accesses = {OP_WRITE_MEM: [], OP_READ_MEM: []}
    for offset, event, chunk in events:
        if event.type not in ("MemoryWrite", "MemoryAnswer"):
            continue
        key_start = offset + _literal(chunk, "key", event.payload["key"]).start
        field, op = (WRITE_FIELD, OP_WRITE_MEM) if event.type == "MemoryWrite" else (ANSWER_FIELD, OP_READ_MEM)
        value = _literal(chunk, field, event.payload[field])
        assert chunk[value.start - len(field) - 4 : value.start] == f',"{field}":'.encode()  # after the key
        positions = [offset + t for t in value] if op == OP_WRITE_MEM else [offset + t - 1 for t in value]
        for t in positions:
            assert 0 <= t - key_start <= 2 * digits + 4
        accesses[op].extend(positions)
    assert WRITE_FIELD != ANSWER_FIELD
    for op, positions in accesses.items():
        assert sorted((opcode == op).nonzero()[:, 0].tolist()) == sorted(positions)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_dense_items_are_back_to_back_negotiations_that_fill_the_block(split: str) -> None:
    base = EventTraceConfig(mem_buckets=16, mem_hashes=1, return_spans=True, split=split)
    dense = EventTraceDataset(attrs.evolve(base, dense_negotiation_fraction=1.0))
    seed_structure = EventTraceDataset(base)
    classes = phrasings(split)
    for idx in range(6):
        item = dense[idx]
        events, n_inputs = _events(item)
        assert n_inputs <= base.block_size
        types = {event.type for _, event, _ in events}
        assert types == {"Message", "ToolResult"}
        messages = [(offset, event, chunk) for offset, event, chunk in events if event.type == "Message"]
        # at least twice the labelled messages of a seed-structure trace (8 per trace)
        assert len(messages) >= 2 * (3 + base.negotiation_notes) * base.negotiation_pairs
        ids = {event.commitment_id for _, event, _ in messages}  # distinct across the negotiations
        assert len(ids) * (3 + base.negotiation_notes) == len(messages)
        labels = item["mosaic_teacher_commitment_delta"]
        for offset, event, chunk in messages:
            text = event.payload["text"]
            span = _literal(chunk, "text", text)
            positions = torch.arange(offset + span.start, offset + span.stop)
            assert bool((labels[positions] == classes[text]).all()), text
        # nothing else is labelled; the block is nearly full (less than one more negotiation left over)
        assert int((labels != -100).sum()) == sum(len(event.payload["text"]) for _, event, _ in messages)
        assert n_inputs > base.block_size - 2500
    assert seed_structure[0]["input_ids"].shape == dense[0]["input_ids"].shape


def test_dense_fraction_mixes_and_zero_keeps_the_seed_structure() -> None:
    base = EventTraceConfig(mem_buckets=16, mem_hashes=1)
    plain, zero = EventTraceDataset(base), EventTraceDataset(attrs.evolve(base, dense_negotiation_fraction=0.0))
    for idx in range(3):
        assert torch.equal(plain[idx]["input_ids"], zero[idx]["input_ids"])
    mixed = EventTraceDataset(attrs.evolve(base, dense_negotiation_fraction=0.5))
    has_memory = [bool((mixed[idx]["mosaic_teacher_write_gate"] > 0).any()) for idx in range(24)]
    assert 4 <= sum(has_memory) <= 20


def test_dense_fraction_needs_negotiations() -> None:
    with pytest.raises(Exception, match="dense_negotiation_fraction"):
        EventTraceConfig(negotiation_pairs=0, dense_negotiation_fraction=0.5)
