"""Batch and aux key specs: the tensors that cross from datasets to models to objectives.

A ``KeySpec`` says what a key holds (dtype, shape in named axes), which value means "no label here",
and which package produces it. Producers and consumers import the spec and use ``spec.name``; no
package spells another package's keys as string literals.

Axis names: ``B`` batch, ``T`` time (input positions), ``H`` memory hashes, ``L`` layers, ``V``
opcodes, ``R`` register slots, ``E`` experts, ``bits`` routing bits per hash. Batch keys are listed
per batch (``B`` first; a dataset item drops the ``B``); aux keys as a model returns them, with the
leading layer axis ``L`` (every layer's heads are reported, never only the last one's).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from mosaic.core.errors import DataError

#: "no label here" for every integer target and class label (targets, buckets, opcodes, registers,
#: commitment classes). Float teacher signals carry a separate ``_mask`` key instead.
IGNORE_INDEX = -100

#: Padding of float teacher signals: negative means "no teacher value" wherever no mask is read.
FLOAT_TEACHER_PAD = -1.0

MASK_SUFFIX = "_mask"

_DTYPES = ("int64", "float32", "bool")


@attrs.frozen
class KeySpec:
    """One tensor key: ``name`` in the batch or aux dict, ``dtype`` ("int64", "float32", "bool"),
    ``shape`` as axis names (``B`` batch, ``T`` time, ``H`` hashes, ``L`` layers, ...), the ignore
    value for integer labels (None for floats and masks), and the producing distribution.

    ``pad`` is the value a ragged key is right-padded with when items are batched (None: the key
    is never ragged). ``masked`` float teachers come with a bool ``<name>_mask`` key of the same
    shape, True where the teacher supervises. An integer label is ``ignore`` or at least
    ``min_label`` (class ids start at 0; the commitment delta at -1)."""

    name: str
    dtype: str = attrs.field(validator=attrs.validators.in_(_DTYPES))
    shape: tuple[str, ...]
    producer: str = attrs.field(validator=attrs.validators.min_len(1))  # a distribution name
    ignore: int | None = None
    summary: str = ""
    pad: float | None = None
    masked: bool = False
    min_label: int = 0

    @property
    def mask(self) -> KeySpec:
        """The bool key that says where this float teacher supervises."""
        if not self.masked:
            raise DataError(f"{self.name} carries no mask key")
        return KeySpec(self.name + MASK_SUFFIX, "bool", self.shape, self.producer,
                       summary=f"True where {self.name} supervises")


def _teacher(name: str, dtype: str, shape: tuple[str, ...], summary: str, min_label: int = 0) -> KeySpec:
    if dtype == "int64":
        return KeySpec(name, dtype, shape, "mosaic-data", IGNORE_INDEX, summary, pad=IGNORE_INDEX,
                       min_label=min_label)
    return KeySpec(name, dtype, shape, "mosaic-data", None, summary, pad=FLOAT_TEACHER_PAD, masked=True)


# --- batch keys (a dataset's items, stacked) -----------------------------------------------------

INPUT_IDS = KeySpec("input_ids", "int64", ("B", "T"), "mosaic-data", summary="token ids seq[:-1]", pad=0)
TARGET_IDS = KeySpec("target_ids", "int64", ("B", "T"), "mosaic-data", IGNORE_INDEX,
                     "next token seq[1:]; ignore on padding and unsupervised positions", pad=IGNORE_INDEX)
TEACHER_WRITE_GATE = _teacher("mosaic_teacher_write_gate", "float32", ("B", "T"), "1 where memory is written")
TEACHER_WRITE_UTILITY = _teacher("mosaic_teacher_write_utility", "float32", ("B", "T"),
                                 "how much a write is worth keeping")
TEACHER_READ_BUCKET = _teacher("mosaic_teacher_read_bucket", "int64", ("B", "T", "H"), "bucket to read per hash")
TEACHER_WRITE_BUCKET = _teacher("mosaic_teacher_write_bucket", "int64", ("B", "T", "H"), "bucket to write per hash")
TEACHER_OPCODE = _teacher("mosaic_teacher_opcode", "int64", ("B", "T"), "v0 opcode id (NOP 0 ... RESPOND 9)")
TEACHER_REG_WRITE_GATE = _teacher("mosaic_teacher_reg_write_gate", "float32", ("B", "T"), "1 where a register is written")
TEACHER_REG_SEL = _teacher("mosaic_teacher_reg_sel", "int64", ("B", "T"), "register slot to write")
TEACHER_COMMITMENT_DELTA = _teacher("mosaic_teacher_commitment_delta", "int64", ("B", "T"),
                                    "commitment change -1 close / 0 neutral / +1 open", min_label=-1)
DROP_LOCAL = KeySpec("mosaic_drop_local", "float32", ("B", "T"), "mosaic-data",
                     summary="1 where the local mixer is dropped (answer from memory); an input control")
TEACHER_FORCING = KeySpec("mosaic_teacher_forcing", "float32", ("B",), "mosaic-data",
                          summary="per-sample probability that a token uses the teacher's decision")
EVAL_ANSWER_MASK = KeySpec("eval_answer_mask", "bool", ("B", "T"), "mosaic-data",
                           summary="positions whose target is a recalled answer (evaluation, and the recall term "
                                   "of an objective with recall_on: answers)")

# --- organism evaluation (issue 16) ------------------------------------------------------------

#: Positions whose target answers a query for a key the sample told the model to forget (the
#: answer must be the dataset's "unknown"); ``answer_exact`` over its runs is ``forget_exact``.
FORGET_ANSWER_MASK = KeySpec(
    name="eval_forget_mask", dtype="bool", shape=("B", "T"), producer="mosaic-data",
    summary="answer positions of queries for forgotten keys (evaluation only)",
)

#: Answer positions of queries that only the state gated by GATE_UP / GATE_DOWN answers (the
#: majority symbol of the priority events among noise); ``answer_exact`` over them is ``priority_exact``.
PRIORITY_ANSWER_MASK = KeySpec(
    name="eval_priority_mask", dtype="bool", shape=("B", "T"), producer="mosaic-data",
    summary="answer positions of priority-vote queries (evaluation only)",
)
#: Answer positions of queries that need all of memory, not one bucket (the latest fact, wherever it
#: was routed: SCAN's all-bucket summary); ``answer_exact`` over them is ``scan_exact``.
SCAN_ANSWER_MASK = KeySpec(
    name="eval_scan_mask", dtype="bool", shape=("B", "T"), producer="mosaic-data",
    summary="answer positions of whole-memory queries (evaluation only)",
)

TEACHER_KEYS: tuple[KeySpec, ...] = (
    TEACHER_WRITE_GATE, TEACHER_WRITE_UTILITY, TEACHER_READ_BUCKET, TEACHER_WRITE_BUCKET, TEACHER_OPCODE,
    TEACHER_REG_WRITE_GATE, TEACHER_REG_SEL, TEACHER_COMMITMENT_DELTA,
)
BATCH_KEYS: tuple[KeySpec, ...] = (
    INPUT_IDS, TARGET_IDS, *TEACHER_KEYS, *(spec.mask for spec in TEACHER_KEYS if spec.masked),
    DROP_LOCAL, TEACHER_FORCING, EVAL_ANSWER_MASK, FORGET_ANSWER_MASK, PRIORITY_ANSWER_MASK, SCAN_ANSWER_MASK,
)


# --- aux keys (ModelOutput.aux, one entry per layer) ---------------------------------------------


def _aux(name: str, dtype: str, shape: tuple[str, ...], summary: str, producer: str = "mosaic-layers") -> KeySpec:
    return KeySpec(name, dtype, ("L", *shape), producer, summary=summary)


WRITE_GATE_LOGITS = _aux("mosaic_write_gate_logits", "float32", ("B", "T"), "memory write gate")
WRITE_UTILITY_LOGITS = _aux("mosaic_write_utility_logits", "float32", ("B", "T"), "write utility head")
READ_BIT_LOGITS = _aux("mosaic_read_bit_logits", "float32", ("B", "T", "H", "bits"), "read routing bits (LSB first)")
WRITE_BIT_LOGITS = _aux("mosaic_write_bit_logits", "float32", ("B", "T", "H", "bits"), "write routing bits (LSB first)")
OPCODE_LOGITS = _aux("mosaic_opcode_logits", "float32", ("B", "T", "V"), "opcode head")
RESPONSE_ONSET = _aux("mosaic_response_onset", "float32", ("B", "T"),
                      "RESPOND's channel: 1 where the response event begins at the next byte")
# runtime signals of the VM (issue 16): from the executed controls when opcodes control the block
# (forcing included), else the opcode head's soft opinion; a runtime reads the last layer's
COMMIT_SIGNAL = _aux("mosaic_commit_signal", "float32", ("B", "T"),
                     "COMMIT's channel: 1 where the model commits the commitment head's verdict to the ledger")
IDLE_SIGNAL = _aux("mosaic_idle_signal", "float32", ("B", "T"),
                   "IDLE: one minus the update channel; a runtime stays silent where it dominates")
COMMITMENT_LOGITS = _aux("mosaic_commitment_logits", "float32", ("B", "T", "3"), "[close, neutral, open]")
REG_WRITE_GATE_LOGITS = _aux("mosaic_reg_write_gate_logits", "float32", ("B", "T"), "register write gate")
REG_SEL_LOGITS = _aux("mosaic_reg_sel_logits", "float32", ("B", "T", "R"), "register slot selection")
STATE_DECAY_REG_LOSS = _aux("mosaic_state_decay_reg_loss", "float32", (), "state-bank decay regulariser")

MOE_AUX_LOSS = _aux("moe_aux_loss", "float32", (), "router loss, already weighted by the router", "chronomoe")
MOE_LOAD_BALANCE_LOSS = _aux("moe_load_balance_loss", "float32", (), "load-balance loss", "chronomoe")
MOE_Z_LOSS = _aux("moe_z_loss", "float32", (), "router z-loss", "chronomoe")
MOE_MAX_VIO = _aux("moe_max_vio", "float32", (), "max load violation", "chronomoe")
MOE_ACTIVE_EXPERTS = _aux("moe_active_experts", "float32", (), "experts that got tokens", "chronomoe")
MOE_DROPPED_FRACTION = _aux("moe_dropped_fraction", "float32", (), "tokens dropped by capacity", "chronomoe")
MOE_EXPERT_LOAD = _aux("moe_expert_load", "float32", ("E",), "share of tokens per expert", "chronomoe")
MOE_BETA = _aux("moe_beta", "float32", ("E",), "slow routing bias", "chronomoe")
MOE_PSI = _aux("moe_psi", "float32", (), "layer coherence", "chronomoe")
MOE_FLIP_RATE = _aux("moe_flip_rate", "float32", (), "top-1 changes (router.chrono)", "chronomoe")
MOE_JS = _aux("moe_js", "float32", (), "Jensen-Shannon divergence of routing (router.chrono)", "chronomoe")
MOE_FISHER_RAO = _aux("moe_fisher_rao", "float32", (), "Fisher-Rao distance clean vs biased routing (router.chrono)",
                      "chronomoe")
MOE_TV = _aux("moe_tv", "float32", (), "total variation of routing (router.chrono)", "chronomoe")
MOE_VETO = _aux("moe_veto", "float32", (), "mean veto 1 - r (router.chrono)", "chronomoe")
MOE_DEGRADED_EXPERTS = _aux("moe_degraded_experts", "float32", (), "experts flagged degraded (router.chrono)",
                            "chronomoe")
MOE_UNREACHABLE_EXPERTS = _aux("moe_unreachable_experts", "float32", (),
                               "remote experts masked because their server does not answer", "chronomoe")

MOSAIC_AUX_KEYS: tuple[KeySpec, ...] = (
    WRITE_GATE_LOGITS, WRITE_UTILITY_LOGITS, READ_BIT_LOGITS, WRITE_BIT_LOGITS, OPCODE_LOGITS, RESPONSE_ONSET,
    COMMIT_SIGNAL, IDLE_SIGNAL, COMMITMENT_LOGITS, REG_WRITE_GATE_LOGITS, REG_SEL_LOGITS, STATE_DECAY_REG_LOSS,
)
MOE_AUX_KEYS: tuple[KeySpec, ...] = (
    MOE_AUX_LOSS, MOE_LOAD_BALANCE_LOSS, MOE_Z_LOSS, MOE_MAX_VIO, MOE_ACTIVE_EXPERTS, MOE_DROPPED_FRACTION,
    MOE_EXPERT_LOAD, MOE_BETA, MOE_PSI, MOE_FLIP_RATE, MOE_JS, MOE_FISHER_RAO, MOE_TV, MOE_VETO,
    MOE_DEGRADED_EXPERTS, MOE_UNREACHABLE_EXPERTS,
)
AUX_KEYS: tuple[KeySpec, ...] = (*MOSAIC_AUX_KEYS, *MOE_AUX_KEYS)

#: Every key spec by name.
KEY_SPECS: Mapping[str, KeySpec] = {spec.name: spec for spec in (*BATCH_KEYS, *AUX_KEYS)}

#: Ragged-key padding values, derived from the specs (padding never becomes supervision).
PAD_VALUES: Mapping[str, float] = {spec.name: spec.pad for spec in BATCH_KEYS if spec.pad is not None}
