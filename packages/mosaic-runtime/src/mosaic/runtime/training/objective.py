"""``objective.mosaic_event_prediction``: next-token cross-entropy plus the MOSAIC auxiliary terms.

Model-agnostic: it reads keys of a :class:`~mosaic.core.model_output.ModelOutput` and of the batch.
Auxiliary outputs carry a leading layer axis; each term is averaged over layers so every layer's
heads are trained. A term whose weight is > 0 but whose tensors are absent raises
:class:`ObjectiveError` naming the key and who should have produced it — supervision is never
silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from mosaic.core.contract import keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS
from mosaic.core.errors import ObjectiveError
from mosaic.core.model_output import ModelOutput
from mosaic.runtime.training.objective_config import MosaicObjectiveConfig
from mosaic.runtime.training.objective_moe import moe_loss, moe_metrics

IGNORE_TARGET = keys.IGNORE_INDEX
READ_MEM = V0_OPCODE_IDS["READ_MEM"]


@attrs.frozen
class AuxTerm:
    """One auxiliary term: its metric name, weight field, model key, teacher key and loss kind."""

    metric: str
    weight_field: str
    output_key: str
    teacher_key: str | None
    loss: Callable[..., torch.Tensor]
    masked: bool = False
    #: a boolean config field that weights the term's classes by inverse frequency (class CE, and the
    #: write gate's BCE: its two targets)
    balance_field: str | None = None


def _bce(logits: torch.Tensor, teacher: torch.Tensor, supervised: torch.Tensor | None = None, *,
         balanced: bool = False) -> torch.Tensor:
    # logits (L, B, T); teacher (B, T) float in [0, 1]; supervised (B, T) bool (the teacher's
    # ``<key>_mask``), else every non-negative position. ``balanced``: the positions with target
    # above 0.5 and the others each weigh half in total (inverse frequency), so that a few write
    # positions among thousands of bytes are not traded for the rest
    target = teacher.to(logits.dtype).unsqueeze(0).expand_as(logits)
    supervised = (teacher >= 0) if supervised is None else supervised.bool()
    mask = supervised.unsqueeze(0).expand_as(logits)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    picked = target[mask]
    if not balanced:
        return F.binary_cross_entropy_with_logits(logits[mask], picked)
    positive = picked > 0.5
    counts = torch.stack([(~positive).sum(), positive.sum()]).to(logits.dtype)
    share = torch.where(counts > 0, 1.0 / (counts.clamp(min=1) * (counts > 0).sum()), torch.zeros_like(counts))
    weight = torch.where(positive, share[1], share[0])
    return (F.binary_cross_entropy_with_logits(logits[mask], picked, reduction="none") * weight).sum()


def _bits_bce(logits: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
    # logits (L, B, T, H, bits); buckets (B, T, H) int64, negative = ignore; bit j of a bucket, LSB first
    bits = logits.shape[-1]
    shifts = torch.arange(bits, device=buckets.device)
    target = ((buckets.unsqueeze(-1).clamp(min=0) >> shifts) & 1).to(logits.dtype)  # (B, T, H, bits)
    supervised = (buckets >= 0).unsqueeze(-1).expand_as(target)
    target = target.unsqueeze(0).expand_as(logits)
    mask = supervised.unsqueeze(0).expand_as(logits)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[mask], target[mask])


def _class_ce(ignore: int, offset: int = 0) -> Callable[..., torch.Tensor]:
    def loss(logits: torch.Tensor, labels: torch.Tensor, *, balanced: bool = False) -> torch.Tensor:
        # logits (L, B, T, C); labels (B, T) with `ignore` outside supervised positions. ``balanced``:
        # each class present in the batch weighs the same in total (weights = inverse frequency), so
        # a rare class (a close among notes) is not traded for the majority at ambiguous positions
        labels = labels.long()
        mask = labels != ignore
        classes = torch.where(mask, labels + offset, torch.full_like(labels, -100))
        if not bool(mask.any()):
            return logits.sum() * 0.0
        layers, n_classes = logits.shape[0], logits.shape[-1]
        flat = logits.reshape(layers * classes.numel(), n_classes).float()
        weight = None
        if balanced:
            counts = torch.bincount(classes[mask], minlength=n_classes).float()
            present = counts > 0
            weight = torch.where(present, counts.sum() / (counts.clamp(min=1) * present.sum()), torch.zeros_like(counts))
        return F.cross_entropy(flat, classes.reshape(-1).repeat(layers), weight=weight, ignore_index=-100)

    return loss


def _scalar_mean(value: torch.Tensor, _teacher: torch.Tensor | None) -> torch.Tensor:
    return value.float().mean()


AUX_TERMS: tuple[AuxTerm, ...] = (
    AuxTerm("aux_gate_bce", "aux_gate_weight", keys.WRITE_GATE_LOGITS.name, keys.TEACHER_WRITE_GATE.name, _bce,
            masked=True, balance_field="aux_gate_balanced"),
    AuxTerm("aux_bits_bce_read", "aux_bits_weight", keys.READ_BIT_LOGITS.name, keys.TEACHER_READ_BUCKET.name,
            _bits_bce),
    AuxTerm("aux_bits_bce_write", "aux_bits_weight", keys.WRITE_BIT_LOGITS.name, keys.TEACHER_WRITE_BUCKET.name,
            _bits_bce),
    AuxTerm("aux_utility_bce", "aux_utility_weight", keys.WRITE_UTILITY_LOGITS.name,
            keys.TEACHER_WRITE_UTILITY.name, _bce, masked=True),
    AuxTerm("aux_opcode_ce", "aux_opcode_weight", keys.OPCODE_LOGITS.name, keys.TEACHER_OPCODE.name,
            _class_ce(ignore=keys.IGNORE_INDEX), balance_field="aux_opcode_balanced"),
    # delta -1/0/+1 -> classes 0/1/2 = [close, neutral, open]
    AuxTerm("aux_commitment_ce", "aux_commitment_weight", keys.COMMITMENT_LOGITS.name,
            keys.TEACHER_COMMITMENT_DELTA.name, _class_ce(ignore=keys.IGNORE_INDEX, offset=1),
            balance_field="aux_commitment_balanced"),
    AuxTerm("aux_reg_gate_bce", "aux_reg_gate_weight", keys.REG_WRITE_GATE_LOGITS.name,
            keys.TEACHER_REG_WRITE_GATE.name, _bce, masked=True),
    AuxTerm("aux_reg_sel_ce", "aux_reg_sel_weight", keys.REG_SEL_LOGITS.name, keys.TEACHER_REG_SEL.name,
            _class_ce(ignore=keys.IGNORE_INDEX)),
    AuxTerm("aux_state_decay_reg", "aux_state_decay_weight", keys.STATE_DECAY_REG_LOSS.name, None, _scalar_mean),
)

METRIC_NAMES: tuple[str, ...] = (
    "loss_total", "lm_ce", "recall_ce", *(term.metric for term in AUX_TERMS),
    *(f"{term.metric}_weighted" for term in AUX_TERMS),
)


def lm_cross_entropy(output: ModelOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token CE over positions whose target is not -100 (padding included in those)."""
    logits = output.logits
    if output.logit_targets is not None:
        # (N, V) logits computed only at labelled positions
        targets = output.logit_targets
    else:
        if keys.TARGET_IDS.name not in batch:
            raise ObjectiveError(f"lm_ce needs batch[{keys.TARGET_IDS.name!r}] (produced by the dataset)")
        targets = batch[keys.TARGET_IDS.name]
        logits = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(logits.float(), targets.reshape(-1).long(), ignore_index=IGNORE_TARGET)


def recall_cross_entropy(output: ModelOutput, batch: Mapping[str, torch.Tensor], *, on: str = "read_mem"
                         ) -> torch.Tensor:
    """Mean next-token CE over the positions the teacher marks READ_MEM (``on="read_mem"``) or whose
    target is an answer byte (``on="answers"``, ``eval_answer_mask``); 0 when a batch has none."""
    mark = keys.TEACHER_OPCODE.name if on == "read_mem" else keys.EVAL_ANSWER_MASK.name
    opcode, targets = batch.get(mark), batch.get(keys.TARGET_IDS.name)
    if opcode is None or targets is None:
        raise ObjectiveError(f"recall_ce needs batch[{mark!r}] and batch[{keys.TARGET_IDS.name!r}] "
                             f"(from a dataset that labels {'READ_MEM' if on == 'read_mem' else 'answers'})")
    labelled = targets != IGNORE_TARGET
    recalled = ((opcode == READ_MEM) if on == "read_mem" else opcode.bool()) & labelled
    if output.logit_targets is not None:  # (N, V) logits at the labelled positions, row-major
        logits, picked = output.logits[recalled[labelled]], targets[recalled]
    else:
        logits, picked = output.logits[recalled], targets[recalled]
    total = F.cross_entropy(logits.float(), picked.long(), reduction="sum")
    return total / recalled.sum().clamp(min=1)


class MosaicEventPrediction:
    """Callable objective: ``objective(output, batch) -> (loss, metrics)``."""

    def __init__(self, config: MosaicObjectiveConfig) -> None:
        self.config = config
        self.model_name = "the model"
        self.dataset_name = "the dataset"

    def describe_sources(self, *, model: str, dataset: str) -> None:
        """Name the components expected to produce tensors, for error messages."""
        self.model_name, self.dataset_name = model, dataset

    def active_terms(self) -> list[AuxTerm]:
        return [term for term in AUX_TERMS if getattr(self.config, term.weight_field) > 0]

    def __call__(self, output: ModelOutput, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        metrics: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=output.logits.device)
        if self.config.lm_weight > 0:
            lm = lm_cross_entropy(output, batch)
            metrics["lm_ce"] = lm.detach()
            total = total + self.config.lm_weight * lm
        if self.config.recall_weight > 0:
            recall = recall_cross_entropy(output, batch, on=self.config.recall_on)
            metrics["recall_ce"] = recall.detach()
            total = total + self.config.recall_weight * recall
        for term in self.active_terms():
            weight = getattr(self.config, term.weight_field)
            prediction = output.aux.get(term.output_key)
            if prediction is None:
                raise ObjectiveError(
                    f"{term.metric}: {term.weight_field} is {weight} but the model output has no "
                    f"{term.output_key!r} (expected from {self.model_name}; enable that head in the model "
                    f"config or set {term.weight_field}: 0)"
                )
            teacher = None
            if term.teacher_key is not None:
                teacher = batch.get(term.teacher_key)
                if teacher is None:
                    raise ObjectiveError(
                        f"{term.metric}: {term.weight_field} is {weight} but the batch has no "
                        f"{term.teacher_key!r} (expected from {self.dataset_name}; use a dataset that "
                        f"provides it or set {term.weight_field}: 0)"
                    )
                _check_labels(term, teacher)
                expected = prediction.shape[1:3]
                if tuple(teacher.shape[:2]) != tuple(expected):
                    raise ObjectiveError(
                        f"{term.metric}: {term.output_key} has (B, T) = {tuple(expected)} but "
                        f"{term.teacher_key} has shape {tuple(teacher.shape)}; aux outputs need a leading "
                        "layer axis (L, B, T, ...)"
                    )
            if term.masked:
                balanced = {} if term.balance_field is None else {"balanced": getattr(self.config, term.balance_field)}
                value = term.loss(prediction, teacher, batch.get(f"{term.teacher_key}{keys.MASK_SUFFIX}"), **balanced)
            elif term.balance_field is not None:
                value = term.loss(prediction, teacher, balanced=getattr(self.config, term.balance_field))
            else:
                value = term.loss(prediction, teacher)
            metrics[term.metric] = value.detach()
            metrics[f"{term.metric}_weighted"] = (weight * value).detach()
            total = total + weight * value
        moe = moe_loss(output.aux)
        if moe is not None:
            metrics["aux_moe"] = moe.detach()
            metrics.update(moe_metrics(output.aux))
            if self.config.aux_moe_weight > 0:
                metrics["aux_moe_weighted"] = (self.config.aux_moe_weight * moe).detach()
                total = total + self.config.aux_moe_weight * moe
        metrics["loss_total"] = total.detach()
        return total, metrics


def _check_labels(term: AuxTerm, teacher: torch.Tensor) -> None:
    """Integer labels are the key's labels or its one ignore value: a stray ``-1`` (the ignore value
    of older datasets) would otherwise become a class or a routing bit."""
    spec = keys.KEY_SPECS.get(term.teacher_key or "")
    if spec is None or spec.ignore is None:
        return
    if bool(((teacher < spec.min_label) & (teacher != spec.ignore)).any()):
        raise ObjectiveError(
            f"{term.metric}: {spec.name} holds labels below {spec.min_label} other than its ignore value "
            f"{spec.ignore} (mosaic.core.contract.keys; -1 is no longer an ignore value)"
        )


def build_objective(config: MosaicObjectiveConfig) -> MosaicEventPrediction:
    return MosaicEventPrediction(config)
