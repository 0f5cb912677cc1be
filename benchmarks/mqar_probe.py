"""Why a trained MOSAIC falls short on MQAR: its memory decisions on held-out samples, per layer.

    python benchmarks/mqar_probe.py RUN_DIR [--samples 256]

On the run's held-out set (its own decisions, teacher forcing 0) it reports, per layer:

- ``read_route_acc`` / ``write_route_acc``: the bucket the model picks at the query / value
  positions against the teacher's (``key mod mem_buckets``); the routing bit each layer must learn;
- ``gate_at_values`` / ``gate_elsewhere``: the mean write gate (probability) where a value is and
  elsewhere: soft writes advance the ring at every token, so a gate well above 0 off the values
  overwrites stored pairs (each later token in a bucket lands on the next slot);
- ``gate_elsewhere_p99``: how large the largest stray writes get;
- ``gate_at_lookalikes``: the mean gate at look-alike values, the query region's random tokens
  from the value range that follow one from the key range (a pair to the eye, but after the pairs:
  the model has no positions and must tell the pair prefix from its state), and
  ``strong_stray_lookalike_share``: the share of the strong stray writes (gate > 0.5 off the
  values) that are look-alikes;

and overall ``accuracy`` with its split by whether the last layer routed the query right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from mosaic.core.contract import keys
from mosaic.core.plugins import get_registry
from mosaic.runtime.training.batching import collate_for, move_to
from mosaic.runtime.training.loading import load_trained_model


def bits_to_bucket(bit_logits: torch.Tensor) -> torch.Tensor:
    """(…, H, bits) logits, LSB first -> (…, H) bucket ids."""
    bits = (bit_logits > 0).long()
    weights = 2 ** torch.arange(bits.shape[-1], device=bits.device)
    return (bits * weights).sum(-1)


def lookalike_values(input_ids: torch.Tensor, pairs: int, vocab_size: int) -> torch.Tensor:
    """(B, T) bool: after the ``2 × pairs`` prefix, a value-range token ([V/2, V)) right after a
    key-range one ([1, V/2)): what a pair looks like, where no pair is."""
    half = vocab_size // 2
    previous = F.pad(input_ids[:, :-1], (1, 0))
    after_prefix = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] >= 2 * pairs
    return after_prefix & (input_ids >= half) & (previous >= 1) & (previous < half)


@torch.no_grad()
def probe(run_dir: Path, samples: int, ring_advance_at: float | None = None,
          check_config: bool = True) -> dict[str, Any]:
    registry = get_registry()
    loaded = load_trained_model(run_dir, registry=registry, device="cpu", check_config=check_config)
    if ring_advance_at is not None:  # the trained weights, read with another ring rule (mem_ring_advance_at)
        for block in loaded.model.blocks:
            block.memory.config = attrs.evolve(block.memory.config, mem_ring_advance_at=ring_advance_at)
    spec = loaded.experiment.eval_dataset
    if spec is None:
        raise SystemExit(f"{run_dir}: the run has no held-out set")
    # the teacher's routes and gates to compare with, never fed to the model (teacher forcing 0)
    dataset = registry.build(spec.id, attrs.evolve(spec.config, teacher_signals=True, teacher_forcing=0.0))
    batch = move_to(collate_for(dataset)([dataset[i] for i in range(min(samples, len(dataset)))]), "cpu")
    output = loaded.model(batch)
    targets = batch[keys.TARGET_IDS.name]
    labelled = targets != -100
    predicted = output.logits.argmax(-1)
    label_targets = output.logit_targets if output.logit_targets is not None else targets[labelled]
    if predicted.dim() > 1:
        predicted = predicted[labelled]
    correct = predicted == label_targets
    value_pos = batch[keys.TEACHER_WRITE_GATE.name] > 0.5
    teacher_read = batch[keys.TEACHER_READ_BUCKET.name][..., 0]
    teacher_write = batch[keys.TEACHER_WRITE_BUCKET.name][..., 0]
    lookalike = lookalike_values(batch[keys.INPUT_IDS.name], spec.config.num_kv_pairs, spec.config.vocab_size)
    report: dict[str, Any] = {"run": str(run_dir), "step": loaded.step, "samples": int(targets.shape[0]),
                              "ring_advance_at": ring_advance_at,
                              "accuracy": round(float(correct.float().mean()), 4), "layers": []}
    aux = output.aux
    last_read_right = None
    for layer in range(aux[keys.READ_BIT_LOGITS.name].shape[0]):
        read = bits_to_bucket(aux[keys.READ_BIT_LOGITS.name][layer])[..., 0]
        write = bits_to_bucket(aux[keys.WRITE_BIT_LOGITS.name][layer])[..., 0]
        gate = torch.sigmoid(aux[keys.WRITE_GATE_LOGITS.name][layer])
        strong_stray = (gate > 0.5) & ~value_pos
        read_right = (read == teacher_read)[labelled]
        last_read_right = read_right
        report["layers"].append({
            "read_route_acc": round(float(read_right.float().mean()), 4),
            "write_route_acc": round(float((write == teacher_write)[value_pos].float().mean()), 4),
            "gate_at_values": round(float(gate[value_pos].mean()), 4),
            "gate_elsewhere": round(float(gate[~value_pos].mean()), 4),
            "gate_elsewhere_p99": round(float(gate[~value_pos].quantile(0.99)), 4),
            "gate_at_lookalikes": round(float(gate[lookalike].mean()), 4),
            "strong_stray_lookalike_share": round(float((strong_stray & lookalike).sum() / strong_stray.sum().clamp_min(1)), 4),
        })
    if last_read_right is not None and last_read_right.numel() == correct.numel():
        for name, mask in (("accuracy_routed_right", last_read_right), ("accuracy_routed_wrong", ~last_read_right)):
            report[name] = round(float(correct[mask].float().mean()), 4) if bool(mask.any()) else None
    report["accuracy_by_distance"] = by_distance(batch[keys.INPUT_IDS.name], labelled, correct,
                                                 spec.config.num_kv_pairs)
    return report


def by_distance(input_ids: torch.Tensor, labelled: torch.Tensor, correct: torch.Tensor, pairs: int,
                bins: int = 4) -> list[list[float]]:
    """Accuracy by how many tokens lie between a pair's value and its query, in ``bins`` quantile
    bins: ``[[largest distance in the bin, accuracy], ...]``. Falling with distance: what was
    stored fades or is overwritten; flat: the read's matching (or the write) is what fails."""
    rows, query_pos = torch.nonzero(labelled, as_tuple=True)
    prefix_keys = input_ids[rows, : 2 * pairs : 2]  # (N, pairs): the keys, at even positions
    value_pos = 2 * (prefix_keys == input_ids[rows, query_pos][:, None]).float().argmax(-1) + 1
    distance = (query_pos - value_pos).float()
    edges = distance.quantile(torch.linspace(0, 1, bins + 1)[1:])
    result, low = [], -1.0
    for edge in edges.tolist():
        inside = (distance > low) & (distance <= edge)
        if bool(inside.any()):
            result.append([edge, round(float(correct[inside].float().mean()), 4)])
        low = edge
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="MOSAIC's memory decisions on MQAR's held-out set")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--ring-advance-at", type=float,
                        help="read the trained model with this mem_ring_advance_at (default: as trained)")
    parser.add_argument("--any-config", action="store_true",
                        help="load a run saved before a config field was added (skips the config fingerprint)")
    parser.add_argument("--label", help="what the run was (e.g. '(128,8) mosaic, 300 steps'): with --out")
    parser.add_argument("--out", type=Path, help="also keep the report under 'probes' in this mqar.json")
    args = parser.parse_args()
    report = probe(args.run_dir, args.samples, args.ring_advance_at, check_config=not args.any_config)
    print(json.dumps(report, indent=1))
    if args.out is not None:
        if not args.label:
            parser.error("--out needs --label")
        data = json.loads(args.out.read_text())
        report["label"] = args.label
        data["probes"] = [p for p in data.get("probes", []) if p["label"] != args.label] + [report]
        args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
