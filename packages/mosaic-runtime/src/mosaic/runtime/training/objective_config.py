"""Weights of the MOSAIC event-prediction objective (torch-free)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mosaic.core.contract.compat import Capability, Head, Relation, Required
from mosaic.core.validators import non_negative, one_of


def _weight(default: float) -> float:
    return attrs.field(default=default, validator=non_negative)


@attrs.frozen
class MosaicObjectiveConfig:
    """Next-token cross-entropy plus weighted auxiliary terms. A term with weight 0 is not computed;
    a term with weight > 0 requires its tensors (an error names what is missing)."""

    lm_weight: float = _weight(1.0)
    # extra next-byte cross-entropy on the recalled bytes: the positions the teacher marks READ_MEM
    # (the byte before each answer byte). In an event trace they are ~12 of ~5000 bytes, so in the
    # plain mean their signal is drowned by the codec's boilerplate and recall is never learned
    # (docs/organism.md); the eval never sees this teacher mark.
    recall_weight: float = _weight(0.0)
    # where the recall term applies: ``read_mem`` (the positions the teacher marks READ_MEM, which are
    # the answers' bytes when reads happen there) or ``answers`` (the positions whose target is an
    # answer byte, ``eval_answer_mask``: for data that reads elsewhere, e.g. at the key with
    # ``access_at_key``, and carries the read to the answer)
    recall_on: str = attrs.field(default="read_mem", validator=one_of("read_mem", "answers"))
    aux_gate_weight: float = _weight(0.0)
    # weight the write gate's two targets by inverse frequency in each batch: an event trace has ~6
    # write positions among thousands of bytes, and unweighted the gate stays shut at some of them
    aux_gate_balanced: bool = False
    aux_bits_weight: float = _weight(0.0)
    aux_utility_weight: float = _weight(0.0)
    aux_opcode_weight: float = _weight(0.0)
    # weight the opcode classes by inverse frequency in each batch: an event trace has ~6 WRITE_MEM
    # positions among thousands of NOPs, and unweighted the head never predicts WRITE_MEM
    aux_opcode_balanced: bool = False
    aux_commitment_weight: float = _weight(0.0)
    # weight the commitment classes (close / neutral / open) by inverse frequency in each batch
    aux_commitment_balanced: bool = False
    aux_reg_gate_weight: float = _weight(0.0)
    aux_reg_sel_weight: float = _weight(0.0)
    aux_state_decay_weight: float = _weight(0.0)
    # the routers' own auxiliary loss (moe_aux_loss, summed over layers) of models with layer.moe
    # feed-forwards; its inner weights live in the router configs, so 1.0 adds it as configured
    aux_moe_weight: float = _weight(1.0)

    def requires(self) -> Iterable[Required]:
        """A weight > 0 trains a head: the model must compute it (else the objective would fail at
        the first step, after the run directory exists)."""
        for name, head in HEAD_OF_WEIGHT.items():
            if getattr(self, name) > 0:
                yield Required(Capability.HEADS, Relation.SUBSET, frozenset({head}), name,
                               f"{name} > 0 trains the model's {head.value} head")


#: the model head each auxiliary weight trains (aux_moe_weight is skipped when no layer.moe exists)
HEAD_OF_WEIGHT = {
    "aux_gate_weight": Head.MEMORY,
    "aux_bits_weight": Head.MEMORY,
    "aux_utility_weight": Head.MEMORY,
    "aux_opcode_weight": Head.OPCODES,
    "aux_commitment_weight": Head.COMMITMENT,
    "aux_reg_gate_weight": Head.REGISTERS,
    "aux_reg_sel_weight": Head.REGISTERS,
    "aux_state_decay_weight": Head.STATE_BANK,
}
