"""dataset.tool_building: held-out (task, parameters) combinations never occur in training, only the
agent's events are labelled, and every request's payload has one length (one copy distance)."""

from __future__ import annotations

import random

from mosaic.core.contract import keys
from mosaic.core.events.codec import EVENT_DELIMITER
from mosaic.core.events.envelope import canonical_json
from mosaic.core.plugins import get_registry
from mosaic.data.tool_building import TASKS, definition_payload, describe, request_split


def _build(**config):
    return get_registry().build("dataset.tool_building", config)


def test_held_out_combinations_never_occur_in_training() -> None:
    train = _build(split="train")
    held_out = {(e.task, canonical_json(e.params)) for e in _build(split="eval").episodes(200)}
    rng = random.Random(0)
    seen = {
        (task, canonical_json(params)) for task, params in (train.draw(rng, "train") for _ in range(3000))
    }
    assert held_out and not held_out & seen
    assert all(
        request_split(task, params, 0.2) == "eval"
        for task, params in ((e.task, e.params) for e in _build(split="eval").episodes(50))
    )


def test_only_the_agents_events_are_labelled() -> None:
    dataset = _build()
    item = dataset[0]
    ids, targets = item[keys.INPUT_IDS.name].tolist(), item[keys.TARGET_IDS.name].tolist()
    text = bytes(i if i < 256 else 0 for i in ids)
    labelled = bytes(ids[p + 1] if p + 1 < len(ids) else 0 for p, t in enumerate(targets) if t != -100)
    assert b'"sender":"agent"' in labelled and b"ToolDefinition" in labelled and b"ToolCall" in labelled
    assert b"tool_registry" not in labelled and b'"sender":"user"' not in labelled
    assert text.count(bytes([EVENT_DELIMITER])) == 6


def test_every_request_payload_has_one_length_and_the_description_mirrors_it() -> None:
    lengths = set()
    for episode in _build(split="eval").episodes(60):
        payload = canonical_json(episode.request.payload)
        lengths.add(len(payload))
        description = definition_payload(episode.task, episode.params)["description"]
        assert description == describe(episode.request.payload) and len(description) == len(payload)
    assert len(lengths) == 1
    assert set(TASKS) >= {"add", "pre", "tab"}  # arithmetic, a string transform, a table look-up


def test_each_parameter_character_is_written_once_and_read_where_it_is_copied() -> None:
    """WRITE_MEM at each parameter character of the request (bucket 1 + its index) and at each
    character of the task (the buckets after), READ_MEM at the byte before every copy of them in the
    agent's events (the parameter in the description, code, name and call; the task in the
    description, name and call), the call's copies after the registry's reply."""
    dataset = _build(split="eval")
    for idx in range(20):
        item = dataset[idx]
        ids, targets = item[keys.INPUT_IDS.name], item[keys.TARGET_IDS.name]
        gate = item[keys.TEACHER_WRITE_GATE.name]
        written, read = item[keys.TEACHER_WRITE_BUCKET.name][:, 0], item[keys.TEACHER_READ_BUCKET.name][:, 0]
        opcode = item[keys.TEACHER_OPCODE.name]
        text = bytes(i if i < 256 else 0 for i in ids.tolist())
        params = text[text.index(b'"params":') : text.index(b',"task"')]
        value = params.split(b":")[-1].strip(b'}"')  # 372, or a letter
        task = text[text.index(b'"task":"') + 8 :].split(b'"')[0]
        writes = {int(written[p]): int(ids[p]) for p in gate.nonzero()[:, 0].tolist()}
        assert writes == {j + 1: c for j, c in enumerate(value + task)}
        recalls = (opcode == 1).nonzero()[:, 0].tolist()  # READ_MEM
        assert len(recalls) == 4 * len(value) + 3 * len(task)
        for position in recalls:
            assert int(targets[position]) == writes[int(read[position])]
        call = text.index(b'"type":"ToolCall"')
        assert max(recalls) > text.rindex(b'"type":"ToolRegistered"') and max(recalls) < call
