"""Weights of the MOSAIC event-prediction objective (torch-free)."""

from __future__ import annotations

import attrs


def _non_negative(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _weight(default: float) -> float:
    return attrs.field(default=default, validator=_non_negative)


@attrs.frozen
class MosaicObjectiveConfig:
    """Next-token cross-entropy plus weighted auxiliary terms. A term with weight 0 is not computed;
    a term with weight > 0 requires its tensors (an error names what is missing)."""

    lm_weight: float = _weight(1.0)
    aux_gate_weight: float = _weight(0.0)
    aux_bits_weight: float = _weight(0.0)
    aux_utility_weight: float = _weight(0.0)
    aux_opcode_weight: float = _weight(0.0)
    aux_commitment_weight: float = _weight(0.0)
    aux_reg_gate_weight: float = _weight(0.0)
    aux_reg_sel_weight: float = _weight(0.0)
    aux_state_decay_weight: float = _weight(0.0)
    # the routers' own auxiliary loss (moe_aux_loss, summed over layers) of models with layer.moe
    # feed-forwards; its inner weights live in the router configs, so 1.0 adds it as configured
    aux_moe_weight: float = _weight(1.0)
