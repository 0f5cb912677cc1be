"""Batch and aux key specs: the tensors that cross from datasets to models to objectives.

A ``KeySpec`` says what a key holds (dtype, shape in named axes), which value means "no label here",
and which package produces it. Producers and consumers import the spec and use ``spec.name``.
"""

from __future__ import annotations

import attrs

#: "no label here" for every integer target and class label (targets, buckets, opcodes, registers,
#: commitment classes). Float teacher signals carry a separate ``_mask`` key instead.
IGNORE_INDEX = -100


@attrs.frozen
class KeySpec:
    """One tensor key: ``name`` in the batch or aux dict, ``dtype`` ("int64", "float32", "bool"),
    ``shape`` as axis names (``B`` batch, ``T`` time, ``H`` hashes, ``L`` layers, ...), the ignore
    value for integer labels (None for floats and masks), and the producing distribution."""

    name: str
    dtype: str
    shape: tuple[str, ...]
    producer: str
    ignore: int | None = None
    summary: str = ""


# --- organism evaluation (issue 16) ------------------------------------------------------------

#: Positions whose target answers a query for a key the sample told the model to forget (the
#: answer must be the dataset's "unknown"); ``answer_exact`` over its runs is ``forget_exact``.
FORGET_ANSWER_MASK = KeySpec(
    name="eval_forget_mask", dtype="bool", shape=("B", "T"), producer="mosaic-data",
    summary="answer positions of queries for forgotten keys (evaluation only)",
)


# --- runtime signals of the VM (issue 16: COMMIT, IDLE, RESPOND) -----------------------------------
# Per layer, from the executed controls when opcodes control the block (forcing included), else the
# opcode head's soft opinion. A runtime reads the last layer's.

RESPONSE_ONSET = KeySpec(
    "mosaic_response_onset", "float32", ("L", "B", "T"), "mosaic-layers",
    summary="RESPOND's channel: 1 where the response event begins at the next byte",
)
COMMIT_SIGNAL = KeySpec(
    "mosaic_commit_signal", "float32", ("L", "B", "T"), "mosaic-layers",
    summary="COMMIT's channel: 1 where the model commits the commitment head's verdict to the ledger",
)
IDLE_SIGNAL = KeySpec(
    "mosaic_idle_signal", "float32", ("L", "B", "T"), "mosaic-layers",
    summary="IDLE: one minus the update channel; a runtime stays silent where it dominates",
)
