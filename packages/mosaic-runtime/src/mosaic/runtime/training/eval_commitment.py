"""Held-out evaluation of commitments and turn taking, as a runtime would decide them.

Each held-out trace is run once as the runtime sees it (input bytes only: no teacher signal, no
dropped local path), then once per ablated opcode with that opcode forced to NOP at the positions
where the data teaches it. From the last layer, with the rules of ``mosaic.runtime.agent.decisions``:

- ``commitment.heldout_templates``: per class, the share of messages whose verdict (the commitment
  head's class with the highest mean probability over the second half of the message's text, as the session's ledger
  takes it) is the label, and the per-byte accuracy. Traces of the eval split are phrased from the
  eval template set only (``mosaic.data.negotiation``).
- ``commitment.ledger_exact``: the share of traces whose ledger, fed each message with the delta
  the model committed (head verdict where COMMIT was executed in the text, else 0), ends with
  exactly the open commitments of the labels.
- ``turns.silence``: the share of IDLE-labelled event boundaries where IDLE dominates (the runtime
  stays silent); ``turns.onset``: the share of RESPOND-labelled boundaries where RESPOND dominates
  (the runtime starts emitting exactly there).
- ``ablations.opcode_off.<OPCODE>``: the metric each opcode serves, with it forced to NOP:
  COMMIT -> ``ledger_exact``, IDLE -> ``silence``, RESPOND -> ``onset``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mosaic.core.contract import keys
from mosaic.core.contract.keys import COMMIT_SIGNAL, IDLE_SIGNAL
from mosaic.core.errors import EventError
from mosaic.core.events.codec import EVENT_DELIMITER, decode_event_bytes
from mosaic.core.ledger import CommitmentLedger
from mosaic.runtime.agent import decisions
from mosaic.runtime.agent.responder import text_span

COMMITMENT_KEY = keys.COMMITMENT_LOGITS.name
TEACHER_COMMITMENT = keys.TEACHER_COMMITMENT_DELTA.name
TEACHER_OPCODE = keys.TEACHER_OPCODE.name
CLASSES = ("close", "neutral", "open")
#: opcode -> the metric it serves
SERVES = {"COMMIT": "ledger_exact", "IDLE": "silence", "RESPOND": "onset"}
NOP = 0


def _taught(batch: Mapping[str, Any], opcodes: Sequence[str]) -> set[str]:
    """Which of COMMIT / IDLE / RESPOND the batch's teacher opcodes label somewhere."""
    if TEACHER_OPCODE not in batch:
        return set()
    labelled = set(torch.unique(batch[TEACHER_OPCODE]).tolist())
    return {name for name in SERVES if name in opcodes and opcodes.index(name) in labelled}


def applies(batch: Mapping[str, Any], opcodes: Sequence[str]) -> bool:
    """Whether a held-out batch has negotiation or turn labels this evaluation can read (other
    datasets, e.g. MQAR with teacher signals, cost no extra forward pass)."""
    return TEACHER_COMMITMENT in batch or bool(_taught(batch, opcodes) & {"IDLE", "RESPOND"})


class _Tally:
    def __init__(self) -> None:
        self.messages = {name: [0, 0] for name in CLASSES}  # [correct, total]
        self.bytes = {name: [0, 0] for name in CLASSES}
        self.ledger = [0, 0]
        self.silence = [0, 0]
        self.onset = [0, 0]

    @staticmethod
    def rate(pair: list[int]) -> float | None:
        return pair[0] / pair[1] if pair[1] else None


def labelled_messages(ids: list[int], labels: torch.Tensor) -> list[tuple[str, range, int]]:
    """(commitment id, text positions, label) of every labelled Message in one row."""
    found, start = [], 0
    length = next((i for i, token in enumerate(ids) if not 0 <= token < 256), len(ids))  # padding ends a row
    data = bytes(ids[:length])
    for end, byte in enumerate(ids[:length]):
        if byte != EVENT_DELIMITER:
            continue
        chunk = data[start:end]
        begin, start = start, end + 1
        try:
            event = decode_event_bytes(chunk)
        except EventError:
            continue
        span = text_span(chunk, event)
        if span is None or event.commitment_id is None:
            continue
        positions = range(begin + span.start, begin + span.stop)
        label = int(labels[positions.start])
        if label != -100:
            found.append((event.commitment_id, positions, label))
    return found


def open_after(messages: list[tuple[str, int]]) -> set[str]:
    from mosaic.core.events.envelope import EventEnvelope

    ledger = CommitmentLedger(clock=lambda: 0.0)
    for index, (commitment_id, delta) in enumerate(messages):
        ledger.consume(EventEnvelope("Message", {}, "agent", id=f"m{index}", ts=0.0, commitment_delta=delta,
                                     commitment_id=commitment_id))
    return {entry.commitment_id for entry in ledger.open_commitments()}


def _tally(tally: _Tally, aux: Mapping[str, torch.Tensor], batch: Mapping[str, Any], opcodes: Sequence[str]) -> None:
    ids = batch[keys.INPUT_IDS.name].cpu()
    if TEACHER_OPCODE in batch and IDLE_SIGNAL.name in aux:
        teacher = batch[TEACHER_OPCODE].cpu()
        turns = decisions.turn(aux).cpu()
        for name, want, pair in (("IDLE", -1, tally.silence), ("RESPOND", 1, tally.onset)):
            where = teacher == opcodes.index(name)
            pair[0] += int((turns[where] == want).sum())
            pair[1] += int(where.sum())
    if TEACHER_COMMITMENT not in batch or COMMITMENT_KEY not in aux:
        return
    labels = batch[TEACHER_COMMITMENT].cpu()
    logits = aux[COMMITMENT_KEY][-1].float().cpu()  # (B, T, 3)
    commit = aux[COMMIT_SIGNAL.name][-1].float().cpu() if COMMIT_SIGNAL.name in aux else None
    per_byte = logits.argmax(-1) - 1
    for row in range(ids.shape[0]):
        labelled = labels[row] != -100
        for delta, name in zip((-1, 0, 1), CLASSES, strict=True):
            where = labelled & (labels[row] == delta)
            tally.bytes[name][0] += int((per_byte[row][where] == delta).sum())
            tally.bytes[name][1] += int(where.sum())
        truth, committed = [], []
        for commitment_id, span, label in labelled_messages(ids[row].tolist(), labels[row]):
            verdict = decisions.head_delta(logits[row, span.start : span.stop])
            tally.messages[CLASSES[label + 1]][0] += int(verdict == label)
            tally.messages[CLASSES[label + 1]][1] += 1
            truth.append((commitment_id, label))
            if commit is not None:
                committed.append((commitment_id, decisions.ledger_delta(logits[row, span.start : span.stop],
                                                                        commit[row, span.start : span.stop])))
        if truth and commit is not None:
            tally.ledger[0] += int(open_after(committed) == open_after(truth))
            tally.ledger[1] += 1


def _ablated(batch: Mapping[str, Any], opcode: int) -> dict[str, torch.Tensor]:
    """Input bytes with ``opcode`` forced to NOP where the data teaches it, nothing else forced."""
    teacher = batch[TEACHER_OPCODE]
    forced = torch.where(teacher == opcode, torch.full_like(teacher, NOP), torch.full_like(teacher, keys.IGNORE_INDEX))
    ones = torch.ones(teacher.shape[0], device=teacher.device)
    return {keys.INPUT_IDS.name: batch[keys.INPUT_IDS.name], TEACHER_OPCODE: forced, keys.TEACHER_FORCING.name: ones}


def _report(tally: _Tally) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if any(total for _, total in tally.messages.values()):
        report["commitment"] = {
            "heldout_templates": {
                "per_class_accuracy": {name: tally.rate(pair) for name, pair in tally.messages.items()},
                "per_byte_accuracy": {name: tally.rate(pair) for name, pair in tally.bytes.items()},
                "messages": {name: pair[1] for name, pair in tally.messages.items()},
            },
            "ledger_exact": tally.rate(tally.ledger),
            "traces": tally.ledger[1],
        }
    if tally.silence[1] or tally.onset[1]:
        report["turns"] = {"silence": tally.rate(tally.silence), "onset": tally.rate(tally.onset),
                           "boundaries": {"idle": tally.silence[1], "respond": tally.onset[1]}}
    return report


def _metric(report: Mapping[str, Any], metric: str) -> float | None:
    if metric == "ledger_exact":
        return report.get("commitment", {}).get("ledger_exact")
    return report.get("turns", {}).get(metric)


@torch.no_grad()
def evaluate_commitments(model: torch.nn.Module, batches: Sequence[Mapping[str, Any]],
                         opcodes: Sequence[str]) -> dict[str, Any]:
    """The report above over ``batches`` (already on the model's device); ``{}`` when they carry
    neither commitment nor turn labels."""
    batches = [batch for batch in batches if applies(batch, opcodes)]
    if not batches:
        return {}
    clean = _Tally()
    ablated = {name: _Tally() for name in SERVES if name in opcodes}
    for batch in batches:
        aux = model({keys.INPUT_IDS.name: batch[keys.INPUT_IDS.name]}).aux
        _tally(clean, aux, batch, opcodes)
        if TEACHER_OPCODE not in batch or IDLE_SIGNAL.name not in aux:
            continue  # a model whose VM does not decide turns has nothing to ablate
        taught = _taught(batch, opcodes)
        for name, tally in ablated.items():
            if name in taught:
                _tally(tally, model(_ablated(batch, opcodes.index(name))).aux, batch, opcodes)
    report = _report(clean)
    if ablated and any(t.silence[1] or t.ledger[1] for t in ablated.values()):
        report["ablations"] = {"opcode_off": {
            name: {SERVES[name]: _metric(_report(tally), SERVES[name])} for name, tally in ablated.items()
        }}
    return report


def merge_report(report: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge ``extra`` into ``report`` key by key (nested dicts merged, never replaced wholesale)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(report.get(key), dict):
            merge_report(report[key], value)
        else:
            report[key] = value
