"""What the VM did, byte by byte: a trained model's opcode, memory traffic and commitment class.

The events are encoded exactly as the runtimes encode them (codec bytes, one delimiter after each)
and run through the model in one forward pass with no teacher: every decision is the model's own.
Per byte and for one layer (the last by default) a row holds:

- ``opcode``: the argmax of the opcode head (``mosaic_opcode_logits``);
- ``read``: the bucket each hash reads (sign bits of ``mosaic_read_bit_logits``, LSB first), or
  ``None`` where the VM keeps the read channel closed (only READ_MEM and SCAN open it);
- ``write``: ``{bucket, slot, gate}`` when the token writes (write gate above the block's threshold
  and, under VM control, WRITE_MEM chosen), else ``None``; the slot follows the ring policy (the
  bucket's earlier writes mod ``mem_assoc``) and is ``None`` under the ``router`` policy;
- ``commitment``: the commitment head's class (close / neutral / open), where the model has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mosaic.core.contract import keys
from mosaic.core.events.codec import EventEncoder
from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.loading import LoadedRun
from mosaic.runtime.training.evaluation import opcode_names

COMMITMENT_CLASSES = ("close", "neutral", "open")
#: Opcodes that open the read channel (mosaic.layers.isa v0 table).
READING_OPCODES = frozenset({"READ_MEM", "SCAN"})


def _buckets(bit_logits: torch.Tensor) -> list[list[int]]:
    """(T, H, bits) logits -> per token the bucket of each hash."""
    powers = 2 ** torch.arange(bit_logits.shape[-1])
    return ((bit_logits > 0).long() * powers).sum(-1).tolist()


@torch.no_grad()
def trace_events(loaded: LoadedRun, events: Iterable[EventEnvelope], *, layer: int = -1) -> list[dict[str, Any]]:
    """One row per byte of the encoded events (see the module docstring)."""
    model = loaded.model
    ids = EventEncoder().encode_stream(list(events)).to(loaded.device)
    output = model({keys.INPUT_IDS.name: ids[None]})
    aux = {name: value[layer, 0].cpu() for name, value in output.aux.items() if value.dim() >= 3}
    names = opcode_names(model)
    block = model.blocks[layer]
    config = block.config
    controlled = block.opcode_head is not None and block.opcode_head.control
    opcodes = aux[keys.OPCODE_LOGITS.name].argmax(-1).tolist() if keys.OPCODE_LOGITS.name in aux else None
    read_buckets = _buckets(aux[keys.READ_BIT_LOGITS.name])
    write_buckets = _buckets(aux[keys.WRITE_BIT_LOGITS.name])
    gates = torch.sigmoid(aux[keys.WRITE_GATE_LOGITS.name]).tolist()
    commitments = aux[keys.COMMITMENT_LOGITS.name].argmax(-1).tolist() if keys.COMMITMENT_LOGITS.name in aux else None
    written: dict[tuple[int, int], int] = {}
    rows = []
    for t, byte in enumerate(ids.tolist()):
        opcode = names[opcodes[t]] if opcodes is not None else None
        reads = not controlled or opcode in READING_OPCODES
        writes = gates[t] > config.mem_write_threshold and (not controlled or opcode == "WRITE_MEM")
        write = None
        if writes:
            slots = []
            for h, bucket in enumerate(write_buckets[t]):
                count = written.get((h, bucket), 0)
                written[(h, bucket)] = count + 1
                slots.append(count % config.mem_assoc if config.mem_slot_policy == "ring" else None)
            write = {"bucket": write_buckets[t], "slot": slots, "gate": gates[t]}
        rows.append({
            "position": t,
            "byte": byte,
            "char": chr(byte) if 32 <= byte < 127 else f"\\x{byte:02x}" if byte < 256 else f"<{byte}>",
            "opcode": opcode,
            "read": read_buckets[t] if reads else None,
            "write": write,
            "commitment": COMMITMENT_CLASSES[commitments[t]] if commitments is not None else None,
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table."""
    lines = [f"{'pos':>5} {'byte':<5} {'opcode':<10} {'read':<10} {'write (bucket/slot/gate)':<28} commitment"]
    for row in rows:
        write = row["write"]
        write_text = "" if write is None else f"{write['bucket']}/{write['slot']}/{write['gate']:.2f}"
        read_text = "" if row["read"] is None else str(row["read"])
        lines.append(f"{row['position']:>5} {row['char']:<5} {row['opcode'] or '':<10} {read_text:<10} "
                     f"{write_text:<28} {row['commitment'] or ''}")
    return "\n".join(lines)
