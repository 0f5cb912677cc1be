"""The MOSAIC objective: per-layer averaging, label mappings, masks, and loud failures."""

from __future__ import annotations

import re

import attrs
import pytest
import torch
import torch.nn.functional as F

from mosaic.core.contract import IGNORE_INDEX, keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS
from mosaic.core.errors import ObjectiveError
from mosaic.core.model_output import ModelOutput
from mosaic.runtime.training.objective import (
    METRIC_NAMES,
    MosaicEventPrediction,
    lm_cross_entropy,
    recall_cross_entropy,
)
from mosaic.runtime.training.objective_config import MosaicObjectiveConfig

L, B, T, V = 3, 2, 5, 7


def ignore_negative(labels: torch.Tensor) -> torch.Tensor:
    """Integer teacher labels with the contract's ignore value where ``labels`` is negative."""
    return labels.masked_fill(labels < 0, IGNORE_INDEX)


def outputs(seed: int = 0) -> tuple[ModelOutput, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = ModelOutput(
        logits=torch.randn(B, T, V, generator=g),
        aux={
            "mosaic_commitment_logits": torch.randn(L, B, T, 3, generator=g),
            "mosaic_opcode_logits": torch.randn(L, B, T, 10, generator=g),
            "mosaic_write_gate_logits": torch.randn(L, B, T, generator=g),
            "mosaic_read_bit_logits": torch.randn(L, B, T, 2, 3, generator=g),
            "mosaic_state_decay_reg_loss": torch.rand(L, generator=g),
        },
    )
    batch = {
        "input_ids": torch.randint(V, (B, T), generator=g),
        "target_ids": torch.randint(V, (B, T), generator=g),
        "mosaic_teacher_commitment_delta": torch.tensor([[-1, 0, 1, -100, -100], [1, 1, -100, 0, -1]]),
        "mosaic_teacher_opcode": ignore_negative(torch.randint(-1, 3, (B, T), generator=g)),
        "mosaic_teacher_write_gate": torch.randint(0, 2, (B, T), generator=g).float(),
        "mosaic_teacher_write_gate_mask": torch.tensor([[True, True, False, False, True]] * B),
        "mosaic_teacher_read_bucket": ignore_negative(torch.randint(-1, 8, (B, T, 2), generator=g)),
    }
    batch["target_ids"][0, -1] = -100
    return out, batch


def test_commitment_maps_delta_to_classes_and_averages_layers() -> None:
    out, batch = outputs()
    objective = MosaicEventPrediction(MosaicObjectiveConfig(lm_weight=0.0, aux_commitment_weight=2.0))
    loss, metrics = objective(out, batch)
    delta = batch["mosaic_teacher_commitment_delta"]
    mask = delta != -100
    expected = torch.stack([
        F.cross_entropy(out.aux["mosaic_commitment_logits"][layer][mask], delta[mask] + 1) for layer in range(L)
    ]).mean()
    assert torch.allclose(metrics["aux_commitment_ce"], expected)
    assert torch.allclose(metrics["aux_commitment_ce_weighted"], 2 * expected)
    assert torch.allclose(loss, 2 * expected)


def test_balanced_commitment_weighs_each_class_alike() -> None:
    """With aux_commitment_balanced, the term is the mean over classes of each class's mean CE: the
    one close of the batch counts as much as all its notes."""
    out, batch = outputs()
    batch["mosaic_teacher_commitment_delta"] = torch.tensor([[-1, 0, 0, 0, 0], [0, 0, 1, 1, -100]])
    config = MosaicObjectiveConfig(lm_weight=0.0, aux_commitment_weight=1.0, aux_commitment_balanced=True)
    _, metrics = MosaicEventPrediction(config)(out, batch)
    delta = batch["mosaic_teacher_commitment_delta"]
    logits = out.aux["mosaic_commitment_logits"]
    per_class = [
        F.cross_entropy(logits[:, delta == label].reshape(-1, 3), (delta[delta == label] + 1).repeat(L))
        for label in (-1, 0, 1)
    ]
    assert torch.allclose(metrics["aux_commitment_ce"], torch.stack(per_class).mean())
    _, plain = MosaicEventPrediction(attrs.evolve(config, aux_commitment_balanced=False))(out, batch)
    assert not torch.allclose(plain["aux_commitment_ce"], metrics["aux_commitment_ce"])


def test_balanced_opcode_weighs_each_taught_class_alike() -> None:
    """With aux_opcode_balanced, the opcode term is the mean over the classes present of each class's
    mean CE: the one write of a trace counts as much as all its NOPs."""
    out, batch = outputs()
    opcode = torch.tensor([[0, 0, 0, 2, 0], [0, 1, 0, 0, IGNORE_INDEX]])
    batch[keys.TEACHER_OPCODE.name] = opcode
    config = MosaicObjectiveConfig(lm_weight=0.0, aux_opcode_weight=1.0, aux_opcode_balanced=True)
    _, metrics = MosaicEventPrediction(config)(out, batch)
    logits = out.aux[keys.OPCODE_LOGITS.name]
    per_class = [
        F.cross_entropy(
            logits[:, opcode == label].reshape(-1, logits.shape[-1]), opcode[opcode == label].repeat(L)
        )
        for label in (0, 1, 2)
    ]
    assert torch.allclose(metrics["aux_opcode_ce"], torch.stack(per_class).mean())
    _, plain = MosaicEventPrediction(attrs.evolve(config, aux_opcode_balanced=False))(out, batch)
    assert not torch.allclose(plain["aux_opcode_ce"], metrics["aux_opcode_ce"])


def test_recall_on_answers_uses_the_answer_mask() -> None:
    """``recall_on: answers``: the recall term covers the positions whose target is an answer byte,
    wherever the teacher's READ_MEM is (e.g. at the key with access_at_key)."""
    out, batch = outputs()
    answers = torch.zeros(B, T, dtype=torch.bool)
    answers[0, 2] = answers[1, 0] = answers[0, 4] = True  # (0, 4) has no target label
    batch[keys.EVAL_ANSWER_MASK.name] = answers
    targets = batch[keys.TARGET_IDS.name]
    expected = torch.stack([F.cross_entropy(out.logits[b, t], targets[b, t]) for b, t in [(0, 2), (1, 0)]]).mean()
    config = MosaicObjectiveConfig(recall_weight=1.0, recall_on="answers")
    assert torch.allclose(MosaicEventPrediction(config)(out, batch)[1]["recall_ce"], expected)
    read_mem = MosaicEventPrediction(attrs.evolve(config, recall_on="read_mem"))(out, batch)[1]["recall_ce"]
    assert not torch.allclose(read_mem, expected)
    del batch[keys.EVAL_ANSWER_MASK.name]
    with pytest.raises(ObjectiveError, match=re.escape(f"recall_ce needs batch[{keys.EVAL_ANSWER_MASK.name!r}]")):
        MosaicEventPrediction(config)(out, batch)


def test_balanced_gate_weighs_writes_as_much_as_the_rest() -> None:
    """With aux_gate_balanced, the gate term is the mean of the writes' mean BCE and the other
    supervised positions' mean BCE: one write counts as much as all the bytes that do not write."""
    out, batch = outputs()
    gate = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False, True], [True, True, True, True, False]])
    batch[keys.TEACHER_WRITE_GATE.name], batch[keys.TEACHER_WRITE_GATE.name + keys.MASK_SUFFIX] = gate, mask
    config = MosaicObjectiveConfig(lm_weight=0.0, aux_gate_weight=1.0, aux_gate_balanced=True)
    _, metrics = MosaicEventPrediction(config)(out, batch)
    logits = out.aux[keys.WRITE_GATE_LOGITS.name]
    per_target = [
        F.binary_cross_entropy_with_logits(logits[:, chosen], gate[chosen].expand(L, -1))
        for chosen in (mask & (gate > 0.5), mask & (gate <= 0.5))
    ]
    assert torch.allclose(metrics["aux_gate_bce"], torch.stack(per_target).mean())
    _, plain = MosaicEventPrediction(attrs.evolve(config, aux_gate_balanced=False))(out, batch)
    assert torch.allclose(plain["aux_gate_bce"],
                          F.binary_cross_entropy_with_logits(logits[:, mask], gate[mask].expand(L, -1)))
    assert not torch.allclose(plain["aux_gate_bce"], metrics["aux_gate_bce"])


def test_every_layer_receives_gradient() -> None:
    out, batch = outputs()
    logits = out.aux["mosaic_opcode_logits"].requires_grad_()
    loss, _ = MosaicEventPrediction(MosaicObjectiveConfig(lm_weight=0.0, aux_opcode_weight=1.0))(out, batch)
    loss.backward()
    assert all(float(logits.grad[layer].abs().sum()) > 0 for layer in range(L))


def test_float_teacher_uses_its_mask() -> None:
    out, batch = outputs()
    _, metrics = MosaicEventPrediction(MosaicObjectiveConfig(lm_weight=0.0, aux_gate_weight=1.0))(out, batch)
    mask = batch["mosaic_teacher_write_gate_mask"]
    logits = out.aux["mosaic_write_gate_logits"]
    expected = F.binary_cross_entropy_with_logits(logits[:, mask], batch["mosaic_teacher_write_gate"][mask].expand(L, -1))
    assert torch.allclose(metrics["aux_gate_bce"], expected)


def test_router_bits_are_lsb_first() -> None:
    out, batch = outputs()
    batch["mosaic_teacher_read_bucket"] = torch.full((B, T, 2), 5)  # 0b101 -> bits [1, 0, 1]
    batch["mosaic_teacher_write_bucket"] = torch.full((B, T, 2), 6)  # 0b110 -> bits [0, 1, 1]
    out.aux["mosaic_read_bit_logits"] = torch.tensor([20.0, -20.0, 20.0]).expand(L, B, T, 2, 3).clone()
    out.aux["mosaic_write_bit_logits"] = torch.tensor([20.0, -20.0, 20.0]).expand(L, B, T, 2, 3).clone()
    _, metrics = MosaicEventPrediction(MosaicObjectiveConfig(lm_weight=0.0, aux_bits_weight=1.0))(out, batch)
    assert float(metrics["aux_bits_bce_read"]) < 1e-6
    assert float(metrics["aux_bits_bce_write"]) > 10.0  # two of three bits wrong with margin 20


def test_padding_targets_are_ignored_by_lm_ce() -> None:
    out, batch = outputs()
    mask = batch["target_ids"] != -100
    expected = F.cross_entropy(out.logits[mask], batch["target_ids"][mask])
    assert torch.allclose(lm_cross_entropy(out, batch), expected)


def test_labelled_only_logits() -> None:
    out, batch = outputs()
    mask = batch["target_ids"] != -100
    sparse = ModelOutput(logits=out.logits[mask], logit_targets=batch["target_ids"][mask])
    assert torch.allclose(lm_cross_entropy(sparse, batch), lm_cross_entropy(out, batch))


def test_missing_model_output_names_key_and_component() -> None:
    out, batch = outputs()
    del out.aux["mosaic_commitment_logits"]
    objective = MosaicEventPrediction(MosaicObjectiveConfig(aux_commitment_weight=0.5))
    objective.describe_sources(model="model.mosaic_lm", dataset="dataset.mosaic_event_traces")
    with pytest.raises(ObjectiveError, match="mosaic_commitment_logits.*model.mosaic_lm"):
        objective(out, batch)


def test_missing_teacher_names_key_and_dataset() -> None:
    out, batch = outputs()
    del batch["mosaic_teacher_opcode"]
    objective = MosaicEventPrediction(MosaicObjectiveConfig(aux_opcode_weight=0.1))
    objective.describe_sources(model="model.x", dataset="dataset.text")
    with pytest.raises(ObjectiveError, match="mosaic_teacher_opcode.*dataset.text"):
        objective(out, batch)


def test_zero_weight_terms_need_nothing_and_metric_names() -> None:
    out, batch = outputs()
    out.aux.clear()
    loss, metrics = MosaicEventPrediction(MosaicObjectiveConfig())(out, batch)
    assert set(metrics) == {"lm_ce", "loss_total"}
    assert torch.allclose(loss, metrics["lm_ce"])
    assert {"aux_commitment_ce", "aux_commitment_ce_weighted", "aux_bits_bce_write"} <= set(METRIC_NAMES)


def test_aux_without_layer_axis_is_rejected() -> None:
    out, batch = outputs()
    out.aux["mosaic_opcode_logits"] = out.aux["mosaic_opcode_logits"][0]  # (B, T, V): layer axis missing
    with pytest.raises(ObjectiveError, match="leading layer axis"):
        MosaicEventPrediction(MosaicObjectiveConfig(aux_opcode_weight=1.0))(out, batch)


def test_every_weighted_aux_term_declares_the_head_it_trains() -> None:
    # the objective's requirements (mosaic.core.contract.compat) come from this table: a new term
    # without a row would be checked against no head and fail only at the first training step
    from mosaic.runtime.training.objective import AUX_TERMS
    from mosaic.runtime.training.objective_config import HEAD_OF_WEIGHT

    assert {term.weight_field for term in AUX_TERMS} == set(HEAD_OF_WEIGHT)
    config = MosaicObjectiveConfig(**dict.fromkeys(HEAD_OF_WEIGHT, 0.5))
    assert {need.field for need in config.requires()} == set(HEAD_OF_WEIGHT)
    assert list(MosaicObjectiveConfig(**dict.fromkeys(HEAD_OF_WEIGHT, 0.0)).requires()) == []


@pytest.mark.parametrize(("key", "weight"), [("mosaic_teacher_opcode", "aux_opcode_weight"),
                                             ("mosaic_teacher_read_bucket", "aux_bits_weight")])
def test_an_old_minus_one_ignore_value_is_an_error(key: str, weight: str) -> None:
    out, batch = outputs()
    batch[key] = batch[key].masked_fill(batch[key] == IGNORE_INDEX, -1)
    objective = MosaicEventPrediction(MosaicObjectiveConfig(lm_weight=0.0, **{weight: 1.0}))
    with pytest.raises(ObjectiveError, match=f"{key} holds labels below 0 other than its ignore value -100"):
        objective(out, batch)


def test_recall_weight_adds_the_cross_entropy_at_read_mem_positions_only() -> None:
    """The recalled bytes (teacher READ_MEM) get an extra CE term; with labelled-only logits the
    same positions are picked from the row-major (N, V) logits."""
    out, batch = outputs()
    opcode = torch.zeros(B, T, dtype=torch.long)
    opcode[0, 1] = opcode[1, 3] = opcode[0, 4] = V0_OPCODE_IDS["READ_MEM"]  # (0, 4) has no target label
    batch[keys.TEACHER_OPCODE.name] = opcode
    targets = batch[keys.TARGET_IDS.name]
    picked = [(0, 1), (1, 3)]
    expected = torch.stack([F.cross_entropy(out.logits[b, t], targets[b, t]) for b, t in picked]).mean()
    plain = MosaicEventPrediction(MosaicObjectiveConfig())(out, batch)[0]
    loss, metrics = MosaicEventPrediction(MosaicObjectiveConfig(recall_weight=3.0))(out, batch)
    assert torch.allclose(metrics["recall_ce"], expected)
    assert torch.allclose(loss, plain + 3.0 * expected)
    labelled = targets != IGNORE_INDEX
    narrow = ModelOutput(logits=out.logits[labelled], aux=out.aux, logit_targets=targets[labelled])
    assert torch.allclose(recall_cross_entropy(narrow, batch), expected)
    del batch[keys.TEACHER_OPCODE.name]
    with pytest.raises(ObjectiveError, match="recall_ce needs"):
        MosaicEventPrediction(MosaicObjectiveConfig(recall_weight=1.0))(out, batch)
