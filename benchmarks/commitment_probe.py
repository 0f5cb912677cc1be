"""Probe a trained commitment model on held-out traces: where its verdicts fail and why.

For a run directory (``mosaic run mosaic_commitment`` or a variant), the run's eval dataset (held-out
template set, teacher forcing 0) is read twice: as the runtime sees it (the model's own opcodes),
and with the teacher's opcodes forced (``teacher_opcodes_forced``: COMMIT executed over exactly the
open and close messages). Each message's verdict is read by three rules: ``runtime`` (the rule of
``mosaic.runtime.agent.decisions``: the class with the highest mean probability over the second half
of the text, COMMIT when the commit signal dominates at some byte), ``mean`` (the class with the
highest mean probability over the whole text, COMMIT when the mean commit signal is above one half:
the runtime's rule before the second-half reading) and ``last`` (the class and the commit signal at
the text's last byte, after the whole message was read). Per rule it reports the per-class accuracy, the
share of messages whose COMMIT decision is right (executed on open/close, not on neutral), the
ledger's exactness, and the templates with a wrong verdict.

``--split train`` probes traces phrased from the training templates instead (same structure and seed);
``--seed N`` draws other held-out traces than the run's eval set (seed 1), for choosing a rule on
traces the reported figures do not use.
``--append-to docs/results/organism.json --label LABEL`` adds the figures as rows of the organism
table (metric ``commitment.heldout.<class>`` / ``commitment.commit_decided.<class>`` /
``ledger_exact``, ablation ``none`` or ``teacher_opcodes_forced``, preset ``LABEL, read: RULE``).

Weights are loaded with ``weights_only=True`` straight into the model rebuilt from the run's
config, without the run loader's config-fingerprint check, so that runs saved before a config class
gained a field (a different fingerprint, the same tensors) can still be probed; ``load_state_dict``
checks every tensor's name and shape.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import torch

from mosaic.core.contract import keys
from mosaic.core.contract.keys import COMMIT_SIGNAL
from mosaic.core.plugins import get_registry
from mosaic.data import negotiation
from mosaic.runtime.agent import decisions
from mosaic.runtime.training.batching import collate_for
from mosaic.runtime.training.eval_commitment import CLASSES, open_after
from mosaic.runtime.training.manifest import parse_manifest
from mosaic.runtime.training.run_dir import RunDir

RULES = ("runtime", "mean", "last")


def load(run_dir: Path) -> tuple[torch.nn.Module, Any, int]:
    registry = get_registry()
    run = RunDir.existing(run_dir)
    experiment = parse_manifest(run.config_text(), registry, source=str(run.config_path)).experiment(
        run.experiment_for(None)
    )
    model = experiment.model.build(registry)
    checkpoint = sorted(run.checkpoints.glob("*.pt"))[-1]
    payload = torch.load(checkpoint, weights_only=True)
    model.load_state_dict(payload["model"])
    model.eval()
    return model, experiment.eval_dataset, int(payload["step"])


def template_of(text: str, label: int, split: str) -> str:
    """The pattern of the split's phrasebook that produced ``text`` (or the text itself)."""
    book = negotiation.PHRASEBOOKS[split]
    patterns = {1: book.offers, -1: book.deliveries, 0: book.requests + book.notes}[label]
    for pattern in patterns:
        regex = re.escape(pattern)
        for slot in ("verb", "done", "obj", "who"):
            regex = regex.replace(re.escape("{" + slot + "}"), "(.+?)")
        if re.fullmatch(regex, text):
            return pattern
    return text


def verdicts(probs: torch.Tensor, commit: torch.Tensor) -> dict[str, tuple[int, bool]]:
    """Rule -> (head class -1/0/+1, COMMIT executed) from a message's per-byte probabilities and commit signal."""
    return {
        "runtime": (decisions.head_delta(probs.log()), float(commit.max()) > decisions.DOMINANT),
        "mean": (int(probs.mean(0).argmax()) - 1, float(commit.mean()) > 0.5),
        "last": (int(probs[-1].argmax()) - 1, float(commit[-1]) > 0.5),
    }


def probe(model: torch.nn.Module, dataset: Any, samples: int, forced: bool, split: str) -> dict[str, Any]:
    messages: dict[str, dict[str, list[int]]] = {rule: defaultdict(lambda: [0, 0]) for rule in RULES}
    decided: dict[str, dict[str, list[int]]] = {rule: defaultdict(lambda: [0, 0]) for rule in RULES}
    ledger = {rule: [0, 0] for rule in RULES}
    failing: dict[str, dict[str, list[int]]] = {rule: defaultdict(lambda: [0, 0]) for rule in RULES}
    collate = collate_for(dataset)
    for first in range(0, samples, 8):
        items = [dataset[index] for index in range(first, min(samples, first + 8))]
        batch = collate(items)
        inputs = {keys.INPUT_IDS.name: batch[keys.INPUT_IDS.name]}
        if forced:
            inputs[keys.TEACHER_OPCODE.name] = batch[keys.TEACHER_OPCODE.name]
            inputs[keys.TEACHER_FORCING.name] = torch.ones(len(items))
        with torch.no_grad():
            aux = model(inputs).aux
        probs = torch.softmax(aux[keys.COMMITMENT_LOGITS.name][-1].float(), -1)
        commit = aux[COMMIT_SIGNAL.name][-1].float()
        for row, item in enumerate(items):
            truth: list[tuple[str, int]] = []
            committed: dict[str, list[tuple[str, int]]] = {rule: [] for rule in RULES}
            for span in item["eval_spans"]:
                if span.kind != "commitment":
                    continue
                name = CLASSES[span.label + 1]
                text = bytes(batch[keys.INPUT_IDS.name][row, span.start : span.end].tolist()).decode()
                truth.append((span.commitment_id or "", span.label))
                for rule, (verdict, executed) in verdicts(
                    probs[row, span.start : span.end], commit[row, span.start : span.end]
                ).items():
                    messages[rule][name][0] += verdict == span.label
                    messages[rule][name][1] += 1
                    decided[rule][name][0] += executed == (span.label != 0)
                    decided[rule][name][1] += 1
                    template = f"{name}: {template_of(text, span.label, split)}"
                    failing[rule][template][0] += verdict != span.label
                    failing[rule][template][1] += 1
                    committed[rule].append((span.commitment_id or "", verdict if executed else 0))
            for rule in RULES:
                ledger[rule][0] += open_after(committed[rule]) == open_after(truth)
                ledger[rule][1] += 1

    def rate(pair: list[int]) -> float:
        return pair[0] / pair[1] if pair[1] else float("nan")

    return {
        rule: {
            "per_class_accuracy": {name: rate(messages[rule][name]) for name in CLASSES},
            "commit_decided": {name: rate(decided[rule][name]) for name in CLASSES},
            "ledger_exact": rate(ledger[rule]),
            "failing_templates": {
                template: f"{wrong}/{total}"
                for template, (wrong, total) in sorted(
                    failing[rule].items(), key=lambda kv: -kv[1][0] / kv[1][1]
                )
                if wrong
            },
        }
        for rule in RULES
    }


def rows(label: str, step: int, report: dict[str, Any], ablation: str) -> list[dict[str, Any]]:
    out = []
    for rule, figures in report.items():
        preset = f"{label}, read: {rule}"
        for name in CLASSES:
            out.append(
                {
                    "preset": preset,
                    "metric": f"commitment.heldout.{name}",
                    "ablation": ablation,
                    "value": figures["per_class_accuracy"][name],
                    "steps": step,
                    "wall_seconds": None,
                }
            )
        for name in CLASSES:
            out.append(
                {
                    "preset": preset,
                    "metric": f"commitment.commit_decided.{name}",
                    "ablation": ablation,
                    "value": figures["commit_decided"][name],
                    "steps": step,
                    "wall_seconds": None,
                }
            )
        out.append(
            {
                "preset": preset,
                "metric": "ledger_exact",
                "ablation": ablation,
                "value": figures["ledger_exact"],
                "steps": step,
                "wall_seconds": None,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="probe a trained commitment model on held-out traces")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--append-to", type=Path, help="an organism table (docs/results/organism.json)")
    parser.add_argument("--label", default=None, help="the rows' preset label (default: the run directory)")
    parser.add_argument(
        "--split",
        choices=("eval", "train"),
        default="eval",
        help="the template set the probed traces are phrased from (train: the training phrasings)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="the traces' seed (default: the run's eval seed)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, eval_spec, step = load(args.run_dir)
    config = attrs.evolve(eval_spec.config, return_spans=True, teacher_forcing=0.0, split=args.split)
    if args.seed is not None:
        config = attrs.evolve(config, seed=args.seed)
    dataset = get_registry().build(eval_spec.id, config)
    own = probe(model, dataset, args.samples, forced=False, split=config.split)
    forced = probe(model, dataset, args.samples, forced=True, split=config.split)
    print(json.dumps({"step": step, "own_opcodes": own, "teacher_opcodes_forced": forced}, indent=2))
    if args.append_to is not None:
        label = args.label or str(args.run_dir)
        table = json.loads(args.append_to.read_text())
        table["rows"] += rows(label, step, own, "none") + rows(label, step, forced, "teacher_opcodes_forced")
        args.append_to.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
