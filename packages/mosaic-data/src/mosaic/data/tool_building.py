"""``dataset.tool_building``: requests for small tools, each answered by the tool that solves it.

One sample is one episode of the runtime's tool flow, as the bytes a live session reads and writes
(canonical JSON events, each followed by ``EVENT_DELIMITER``)::

    ToolRequest     {"params": {...}, "task": T}                       (user)
    ToolDefinition  {"description", "implementation", "name", "parameters"}   (agent: predicted)
    ToolRegistered  {"hash", "in_reply_to", "name", "reasons", "state"}       (tool_registry)
    ToolCall        {"arguments": {...}, "tool": name}                     (agent: predicted)
    ToolResult      {"in_reply_to", "stdout", "tool", "value", "wall_seconds"}  (tool_registry)
    Message         {"text": "done"}                                       (agent: predicted)

Only the agent's events are labelled (``target_ids``; the position before each one predicts its
first byte, its last byte predicts the delimiter): the registry's ids, hashes and clock readings are
random to the model and are never predicted. The implementation is a template of the task with the
request's parameter values written into the code (``add`` with ``{"p": 372}`` ->
``def run(x):\\n    return x + 372``), and the tool's name holds them too (``add_372``), so the
model copies parameters from the request into its description, code, name and, after the
registry's reply, into its ``ToolCall``; the tool is called with the task's example arguments
(:data:`TASKS`).

Copies are memory recalls, supervised where they happen (:meth:`ToolBuildingDataset.copy_marks`):
character ``j`` of the parameters (``3``, ``7``, ``2`` of ``372``) is written (WRITE_MEM, write gate
1) to bucket ``1 + j`` at its byte in the request, and read (READ_MEM) from that bucket at every
position whose next byte is a copy of it in the agent's events. The call's copy lies beyond the
registry's reply, whose length varies with its clock reading, so no fixed-distance local mixer can
make it: the hashed memory is what carries the parameter there. The task's characters are cells
too (buckets after the parameter's), written at the request and read where the description, the
name and the call spell it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import attrs
import torch

from mosaic.core.events.codec import EVENT_DELIMITER, EVENT_PAD_ID, EVENT_VOCAB_SIZE, EventEncoder
from mosaic.core.events.envelope import EventEnvelope, canonical_json
from mosaic.data.common import (
    IGNORE_TARGET,
    SEQUENCE_NOTE,
    TARGET_IDS,
    SampleTooLongError,
    TraceBuilder,
    item_seed,
)
from mosaic.data.config import ToolBuildingConfig

REQUEST_TYPE = "ToolRequest"
AGENT = "agent"
#: Every request and agent event has this timestamp: the held-out request files use it too.
REQUEST_TS = 1.0
AGENT_TS = 2.0
#: Three-digit integers and one-letter strings: every request payload has the same length
#: (``{"params":{"p":372},"task":"add"}``, ``{"params":{"p":"a"},"task":"pre"}``).
INT_RANGE = (100, 1000)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@attrs.frozen
class ToolTask:
    """A task: its parameters (name -> ``int`` or ``str``), the tool's one argument, the code
    template (``str.format`` over the parameters), and the answer of the task. Every tool takes one
    integer ``x`` and is called with the same example, so the call's arguments do not depend on the
    task (they come before the tool's name in the canonical call, far from the request)."""

    params: tuple[tuple[str, str], ...]
    argument: str
    argument_type: str
    code: str
    solve: Callable[[dict[str, Any], Any], Any]
    example: Any  # the argument the agent calls its tool with
    probe: Any  # a second argument the evaluation calls the registered tool with


def _task(
    param: tuple[str, str], code: str, solve: Callable[[dict[str, Any], Any], Any], probe: Any = -3
) -> ToolTask:
    return ToolTask((param,), "x", "integer", code, solve, 7, probe)


#: One parameter name for every task: what the description spells before the value does not depend
#: on the task.
_N, _S = ("p", "int"), ("p", "str")
TASKS: dict[str, ToolTask] = {
    "add": _task(_N, "def run(x):\n    return x + {p}", lambda p, x: x + p["p"]),
    "sub": _task(_N, "def run(x):\n    return x - {p}", lambda p, x: x - p["p"]),
    "mul": _task(_N, "def run(x):\n    return x * {p}", lambda p, x: x * p["p"]),
    "mod": _task(_N, "def run(x):\n    return x % {p}", lambda p, x: x % p["p"], 99999),
    # string transforms: the letter prefixed to x's decimal text; the letter shifted by x
    "pre": _task(_S, "def run(x):\n    return '{p}' + str(x)", lambda p, x: p["p"] + str(x)),
    "shf": _task(_S, "def run(x):\n    return chr(ord('{p}') + x)", lambda p, x: chr(ord(p["p"]) + x)),
    # a table look-up: the parameter is the value stored under 7
    "tab": _task(_N, "def run(x):\n    return {{7: {p}}}.get(x, 0)", lambda p, x: {7: p["p"]}.get(x, 0)),
}


def tool_name(task: str, params: dict[str, Any]) -> str:
    """The tool's name: the task and its parameter values (``lin_12_34``)."""
    return "_".join([task, *(str(params[name]) for name, _ in TASKS[task].params)])


def request_split(task: str, params: dict[str, Any], eval_fraction: float) -> str:
    """``eval`` for the held-out fraction of (task, parameters) combinations, else ``train``."""
    digest = hashlib.sha256(f"{task}:{canonical_json(params)}".encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction else "train"


def describe(payload: dict[str, Any]) -> str:
    """A definition's description: the request's payload with its quotes as spaces
    (``{ params :{ p :372}, task : add }``)."""
    return canonical_json(payload).replace('"', " ")


def definition_payload(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The ``ToolDefinition`` payload that solves the request (the JSON form the registry reads)."""
    spec = TASKS[task]
    return {
        "description": describe({"params": params, "task": task}),
        "implementation": spec.code.format(**params),
        "name": tool_name(task, params),
        "parameters": {spec.argument: {"type": spec.argument_type}},
    }


@attrs.frozen
class ToolEpisode:
    """A request and what a working tool gives: the name, and results on the example and the probe."""

    request: EventEnvelope
    task: str
    params: dict[str, Any]
    name: str
    arguments: dict[str, Any]
    expected: Any
    probe_arguments: dict[str, Any]
    probe_expected: Any


#: Where each event spells the task, by the bytes just before it.
_TASK_SPELLINGS: dict[str, tuple[bytes, ...]] = {
    REQUEST_TYPE: (b'"task":"',),
    "ToolDefinition": (b" task : ", b'"name":"'),
    "ToolCall": (b'"tool":"',),
}


def _with_char_changed(params: dict[str, Any], name: str, j: int) -> dict[str, Any]:
    """``params`` with character ``j`` of parameter ``name`` replaced by another of its kind (an int
    keeps its length and sign: its first digit never becomes 0)."""
    text = str(params[name])
    new = ("2" if text[j] == "1" else "1") if text[j].isdigit() else ("b" if text[j] == "a" else "a")
    changed = text[:j] + new + text[j + 1 :]
    return {**params, name: int(changed) if isinstance(params[name], int) else changed}


def _with_params(event: EventEnvelope, episode: ToolEpisode, params: dict[str, Any]) -> EventEnvelope:
    """``event`` of ``episode`` as it would be for a request with ``params`` (ids and clocks kept)."""
    name = tool_name(episode.task, params)
    if event.type == REQUEST_TYPE:
        return event.replace(payload={"params": params, "task": episode.task})
    if event.type == "ToolDefinition":
        return event.replace(payload=definition_payload(episode.task, params))
    if event.type in ("ToolRegistered", "ToolCall", "ToolResult"):
        key = "name" if event.type == "ToolRegistered" else "tool"
        return event.replace(payload={**event.payload, key: name})
    return event


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


class ToolBuildingDataset(torch.utils.data.Dataset):
    """Map-style dataset; item ``idx`` is a pure function of (seed, split, idx)."""

    def __init__(self, config: ToolBuildingConfig) -> None:
        unknown = sorted(set(config.tasks) - set(TASKS))
        if unknown:
            from mosaic.core.errors import DataError

            raise DataError(f"dataset.tool_building: unknown tasks {unknown}; known: {', '.join(TASKS)}")
        self.config = config
        self.encoder = EventEncoder()
        self.vocab_size = EVENT_VOCAB_SIZE
        self.block_size = config.block_size
        self.pad_token = EVENT_PAD_ID
        self.teacher_forcing = 1.0
        needed = self.max_sample_length()
        if needed > config.block_size + 1:
            raise SampleTooLongError(
                type(self).__name__,
                "block_size",
                needed,
                config.block_size + 1,
                "the longest episode",
                SEQUENCE_NOTE,
            )

    def set_teacher_forcing(self, p: float) -> None:
        self.teacher_forcing = float(p)  # no teacher-forced signal here; kept for the curriculum protocol

    def __len__(self) -> int:
        return self.config.num_samples

    def draw(self, rng: random.Random, split: str) -> tuple[str, dict[str, Any]]:
        """A (task, parameters) request of ``split`` (rejection sampling over the split hash)."""
        while True:
            task = rng.choice(self.config.tasks)
            params = {
                name: (rng.randrange(*INT_RANGE) if kind == "int" else rng.choice(LETTERS))
                for name, kind in TASKS[task].params
            }
            if request_split(task, params, self.config.eval_fraction) == split:
                return task, params

    def episode(self, task: str, params: dict[str, Any], rng: random.Random) -> ToolEpisode:
        spec = TASKS[task]
        request = EventEnvelope(
            REQUEST_TYPE, {"params": params, "task": task}, "user", id=f"r{_hex(rng, 4)}", ts=REQUEST_TS
        )
        return ToolEpisode(
            request,
            task,
            params,
            tool_name(task, params),
            {spec.argument: spec.example},
            spec.solve(params, spec.example),
            {spec.argument: spec.probe},
            spec.solve(params, spec.probe),
        )

    def episodes(self, count: int) -> list[ToolEpisode]:
        """``count`` requests of this dataset's split, deterministic in (seed, split)."""
        found = []
        for idx in range(count):
            rng = random.Random(item_seed(self.config.seed, self.config.split, idx))
            found.append(self.episode(*self.draw(rng, self.config.split), rng))
        return found

    def events(self, episode: ToolEpisode, rng: random.Random) -> list[EventEnvelope]:
        """The episode's events in order (agent events are those sent by ``agent``)."""
        definition_id, call_id = f"e{_hex(rng, 4)}", f"e{_hex(rng, 4)}"
        clock = rng.uniform(1.7e9, 1.9e9)
        priority, registry = episode.request.priority, "tool_registry"
        return [
            episode.request,
            EventEnvelope(
                "ToolDefinition",
                definition_payload(episode.task, episode.params),
                AGENT,
                id=definition_id,
                ts=AGENT_TS,
            ),
            EventEnvelope(
                "ToolRegistered",
                {
                    "hash": _hex(rng, 64),
                    "in_reply_to": definition_id,
                    "name": episode.name,
                    "reasons": [],
                    "state": "active",
                },
                id=_hex(rng, 32),
                ts=clock,
                sender=registry,
                priority=priority,
            ),
            EventEnvelope(
                "ToolCall",
                {"arguments": episode.arguments, "tool": episode.name},
                AGENT,
                id=call_id,
                ts=AGENT_TS,
            ),
            EventEnvelope(
                "ToolResult",
                {
                    "in_reply_to": call_id,
                    "stdout": "",
                    "tool": episode.name,
                    "value": episode.expected,
                    "wall_seconds": round(rng.uniform(0.05, 0.5), 6),
                },
                id=_hex(rng, 32),
                ts=clock + rng.uniform(0.1, 1.0),
                sender=registry,
                priority=priority,
            ),
            EventEnvelope("Message", {"text": "done"}, AGENT, id=f"e{_hex(rng, 4)}", ts=AGENT_TS),
        ]

    def copy_marks(self, episode: ToolEpisode, events: list[EventEnvelope]) -> list[list[tuple[int, int]]]:
        """Per event, ``(byte offset, char index)`` of every byte that is a character of the request's
        parameters or task (in the request) or a copy of one (in the agent's events). Parameter
        characters come first (the bytes that change when only that character of the parameters
        changes), then the task's (where the request, the description, the name and the call spell
        it)."""
        chars = [
            (name, j) for name, _ in TASKS[episode.task].params for j in range(len(str(episode.params[name])))
        ]
        if len(chars) + len(episode.task) + 1 > self.config.mem_buckets:
            from mosaic.core.errors import DataError

            raise DataError(
                f"dataset.tool_building: task {episode.task!r} has {len(chars)} parameter characters and a "
                f"{len(episode.task)}-character name, each needs a memory bucket of its own (mem_buckets "
                f"{self.config.mem_buckets} is too few)"
            )
        encoded = [self.encoder.encode_bytes(event) for event in events]
        marks: list[list[tuple[int, int]]] = [[] for _ in events]
        for index, (name, j) in enumerate(chars):
            changed = _with_char_changed(episode.params, name, j)
            for k, event in enumerate(events):
                other = self.encoder.encode_bytes(_with_params(event, episode, changed))
                if len(other) != len(encoded[k]):  # a same-length change of a char keeps every offset
                    from mosaic.core.errors import DataError

                    raise DataError(f"{event.type}: changing a parameter character moved its bytes (a bug)")
                marks[k] += [
                    (at, index) for at, (a, b) in enumerate(zip(encoded[k], other, strict=True)) if a != b
                ]
        task = episode.task.encode()
        for k, event in enumerate(events):
            for prefix in _TASK_SPELLINGS.get(event.type, ()):
                at = encoded[k].index(prefix + task) + len(prefix)
                marks[k] += [(at + j, len(chars) + j) for j in range(len(task))]
        return marks

    def _builder(self, rng: random.Random, split: str) -> tuple[TraceBuilder, list[range]]:
        builder = TraceBuilder(mem_hashes=self.config.mem_hashes, reg_slots=0, with_commitment=False)
        predicted = []
        episode = self.episode(*self.draw(rng, split), rng)
        events = self.events(episode, rng)
        for event, marks in zip(events, self.copy_marks(episode, events), strict=True):
            offset = builder.append(self.encoder.encode_bytes(event)).start
            delimiter = builder.append([EVENT_DELIMITER]).start
            if event.type == REQUEST_TYPE:  # each character is written to a bucket of its own
                for at, index in marks:
                    builder.mark_write([offset + at], 1 + index, -1)
            if event.sender == AGENT:  # from the byte before the event to its last byte
                predicted.append(range(offset - 1, delimiter))
                for at, index in marks:  # the byte before each copied character reads its bucket
                    builder.mark_read([offset + at - 1], 1 + index)
        return builder, predicted

    def max_sample_length(self) -> int:
        rng = random.Random(0)
        return max(len(self._builder(rng, "train")[0].tokens) for _ in range(64)) + 16  # + clock digits

    def __getitem__(self, idx: int) -> dict[str, Any]:
        c = self.config
        if not 0 <= idx < len(self):
            raise IndexError(f"{type(self).__name__} index {idx} out of range [0, {len(self)})")
        builder, predicted = self._builder(random.Random(item_seed(c.seed, c.split, idx)), c.split)
        item: dict[str, Any] = builder.finish(
            block_size=c.block_size,
            pad_token=EVENT_PAD_ID,
            teacher_forcing=self.teacher_forcing,
            name=type(self).__name__,
        )
        keep = torch.zeros(c.block_size, dtype=torch.bool)
        for span in predicted:
            keep[span.start : span.stop] = True
        item[TARGET_IDS] = torch.where(
            keep, item[TARGET_IDS], torch.full_like(item[TARGET_IDS], IGNORE_TARGET)
        )
        return item
