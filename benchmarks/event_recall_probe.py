"""Why held-out event-native answers fail, answer by answer (the diagnosis rows of docs/organism.md).

Loads a trained ``mosaic_event_native`` run, builds its held-out traces (the run's dataset config,
split eval, seed 1, teacher forcing 0) and, for each query answer, reports whether every byte is
right, the bucket each layer's write router chose at the value's write positions and its read router
at the answer's read positions (what ``mosaic trace RUN_DIR`` shows per byte), and whether another
key of the trace shares the answer's true bucket (``event_traces.key_bucket``).

``--force teacher_buckets`` runs with the teacher's read and write buckets (the model's own opcodes
and gates); ``--force teacher_write_gate`` with the write gate forced open at the writes. Output: one
JSON object with the counts (``answer_exact``, split by shared / own bucket; failures whose writes
went to more than one bucket, per layer).

    python benchmarks/event_recall_probe.py RUN_DIR [--samples 32] [--force teacher_buckets]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from mosaic.core.contract import keys
from mosaic.data.config import EventTraceConfig
from mosaic.data.event_traces import EventTraceDataset, key_bucket
from mosaic.runtime.loading import load_run
from mosaic.runtime.training.batching import collate

FORCED = {
    "teacher_buckets": (keys.TEACHER_READ_BUCKET.name, keys.TEACHER_WRITE_BUCKET.name),
    "teacher_write_gate": (keys.TEACHER_WRITE_GATE.name,),
}


def _buckets(bit_logits: torch.Tensor) -> torch.Tensor:
    """(L, B, T, H, bits) -> (L, B, T) bucket of the first hash, LSB first."""
    powers = 2 ** torch.arange(bit_logits.shape[-1])
    return ((bit_logits[..., 0, :] > 0).long() * powers).sum(-1)


def _forced(batch: dict[str, Any], force: str | None) -> dict[str, Any]:
    """The batch with teacher forcing 1 for the keys of ``force`` only (every other decision the model's)."""
    batch = dict(batch)
    if force is None:
        return batch
    batch[keys.TEACHER_FORCING.name] = torch.ones(batch[keys.INPUT_IDS.name].shape[0])
    for spec in (
        keys.TEACHER_OPCODE,
        keys.TEACHER_READ_BUCKET,
        keys.TEACHER_WRITE_BUCKET,
        keys.TEACHER_WRITE_GATE,
    ):
        value = batch[spec.name]
        if spec.name not in FORCED[force]:
            batch[spec.name] = torch.full_like(
                value, keys.FLOAT_TEACHER_PAD if value.is_floating_point() else keys.IGNORE_INDEX
            )
        elif value.is_floating_point():  # the gate: open at the writes, the model's own elsewhere
            batch[spec.name] = torch.where(value > 0.5, value, torch.full_like(value, keys.FLOAT_TEACHER_PAD))
    return batch


@torch.no_grad()
def probe(run_dir: Path, samples: int, force: str | None) -> dict[str, Any]:
    model = load_run(run_dir).model
    options = dict(yaml.safe_load((run_dir / "config.yaml").read_text())["targets"][0]["dataset"])
    options.pop("type")
    options.update(split="eval", seed=1, teacher_forcing=0.0, return_spans=True)
    config = EventTraceConfig(**options)
    dataset = EventTraceDataset(config)
    counts = {
        "answers": 0,
        "exact": 0,
        "shared": 0,
        "shared_exact": 0,
        "own": 0,
        "own_exact": 0,
        "failures": 0,
        "failures_write_misrouted": [0] * len(model.blocks),
    }
    for start in range(0, samples, 8):
        items = [dataset[i] for i in range(start, min(samples, start + 8))]
        batch = _forced(
            collate([{k: v for k, v in item.items() if k != "eval_spans"} for item in items]), force
        )
        output = model(batch)
        predictions = output.logits.argmax(-1)
        targets = batch[keys.TARGET_IDS.name]
        write_buckets = _buckets(output.aux[keys.WRITE_BIT_LOGITS.name])
        for row, item in enumerate(items):
            spans = item["eval_spans"]
            writes = {span.label: span for span in spans if span.kind == "write"}  # key -> its write
            ids = item[keys.INPUT_IDS.name]
            for span in spans:
                if span.kind != "answer":
                    continue
                # the answer names its key: ...,"key":KK,"r":VV
                before = bytes(ids[max(0, span.start - 24) : span.start].tolist()).decode(errors="replace")
                named = re.search(r'"key":(\d+),"r":$', before)
                if named is None:
                    raise SystemExit(f"cannot find the key of the answer at {span.start}: {before!r}")
                write = writes[int(named.group(1))]
                positions = list(range(span.start - 1, span.end - 1))
                exact = bool((predictions[row, positions] == targets[row, positions]).all())
                true = key_bucket(write.label, config.mem_buckets, config.value_digits)
                shared = any(
                    key_bucket(w.label, config.mem_buckets, config.value_digits) == true
                    for w in writes.values()
                    if w is not write
                )
                counts["answers"] += 1
                counts["exact"] += exact
                counts["shared" if shared else "own"] += 1
                counts["shared_exact" if shared else "own_exact"] += exact
                if not exact:
                    counts["failures"] += 1
                    for layer in range(len(model.blocks)):
                        routed = write_buckets[layer, row, write.start : write.end].tolist()
                        counts["failures_write_misrouted"][layer] += len(set(routed)) > 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="per-answer diagnosis of event-native recall")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--force", choices=sorted(FORCED))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(probe(args.run_dir, args.samples, args.force), indent=2))


if __name__ == "__main__":
    main()
