"""What a runtime reads from a model's VM: when to stay silent, where a response begins, and which
commitments change. One definition, shared by the event session and by held-out evaluation, so the
figures an evaluation reports are the decisions a session makes.

All readings use the last layer. A signal "dominates" where it exceeds one half: with opcodes in
control the signals are the executed (one-hot) controls, so this is the chosen opcode.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mosaic.core.contract.keys import IDLE_SIGNAL, RESPONSE_ONSET
from mosaic.core.errors import RuntimeStateError

IDLE, RESPOND, UNDECIDED = "idle", "respond", "undecided"
DOMINANT = 0.5


def require_signals(aux: Mapping[str, torch.Tensor], *names: str) -> None:
    missing = [name for name in names if name not in aux]
    if missing:
        raise RuntimeStateError(
            f"the model emits no {', '.join(missing)}: it has no opcode head to decide turns and commitments "
            "(train with opcodes enabled, or use turn_taking='always' and commitment_source='head')"
        )


def turn(aux: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``aux`` per layer ``(L, B, T)`` -> decision per position ``(B, T)``: 1 respond, -1 idle, 0 neither.

    IDLE wins a tie: a runtime that cannot tell stays silent."""
    require_signals(aux, IDLE_SIGNAL.name, RESPONSE_ONSET.name)
    idle = aux[IDLE_SIGNAL.name][-1] > DOMINANT
    respond = aux[RESPONSE_ONSET.name][-1] > DOMINANT
    return torch.where(idle, -1, torch.where(respond, 1, 0))


def turn_name(decision: int) -> str:
    return {1: RESPOND, -1: IDLE}.get(int(decision), UNDECIDED)


def head_delta(commitment_logits: torch.Tensor) -> int:
    """Delta -1/0/+1 of one message from its text's per-byte ``(n, 3)`` [close, neutral, open] logits:
    the class with the highest mean probability over the second half of the text.

    Why the second half: a causal head can only tell a promise from a remark once it has read the
    deciding words ("will", "done", "can you"), which sit after the subject, so its first bytes
    carry the prior, not a verdict; a long subject ("The support desk will ...") let the prior
    outvote the verdict under a whole-text mean. The last byte alone is no better: the head drifts
    back towards neutral a few bytes after the deciding words. A one-byte text is read whole."""
    probs = torch.softmax(commitment_logits.float(), dim=-1)  # (n, 3)
    tail = probs[probs.shape[0] // 2 :].mean(0)  # (3,)
    return int(tail.argmax()) - 1


def ledger_delta(commitment_logits: torch.Tensor, commit_signal: torch.Tensor) -> int:
    """The delta a ledger applies: the head's verdict where the model executed COMMIT in the text
    (the commit signal dominates at some byte of it), else 0 — a message the VM did not commit
    changes nothing. Some byte, not most: a causal VM can only commit once it has read the words
    that make the message a promise or a delivery, often late in the text, and a COMMIT on a message
    the head reads as neutral changes nothing either."""
    if commit_signal.numel() == 0 or float(commit_signal.float().max()) <= DOMINANT:
        return 0
    return head_delta(commitment_logits)
