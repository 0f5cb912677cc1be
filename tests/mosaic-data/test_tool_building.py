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


def test_every_parameter_lies_one_distance_from_its_copy_in_the_code() -> None:
    distances = set()
    for task, spec in TASKS.items():
        params = {name: ("q" if kind == "str" else 987) for name, kind in spec.params}
        value = str(params[spec.params[0][0]])
        payload = definition_payload(task, params)
        description, code = payload["description"], canonical_json(payload["implementation"])
        distances.add(len(description) - description.index(value) + code.index(value))
    assert len(distances) == 1, distances
