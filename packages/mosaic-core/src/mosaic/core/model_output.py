"""What every model returns, so that objectives and runtimes read models without importing them."""

from __future__ import annotations

from typing import Any

import attrs

# The ``__init__`` attrs generates for ModelOutput refers to attrs' NOTHING sentinel as a global of
# this module, and torch.compile guards on it there: without this name, compiling any model fails.
from attrs import NOTHING  # noqa: F401


@attrs.define
class ModelOutput:
    """A model's forward result.

    - ``logits``: ``(B, T, V)``; or ``(N, V)`` when the model computed its vocabulary head only at
      labelled positions, in which case ``logit_targets`` holds the ``(N,)`` targets they predict.
    - ``aux``: auxiliary outputs **per layer**: each tensor has a leading layer axis, e.g.
      ``mosaic_opcode_logits (L, B, T, V_op)``, ``mosaic_state_decay_reg_loss (L,)``. A later layer
      never overwrites an earlier one's entry.
    - ``state``: the streaming state after the call, when the model was called with one.
    - ``loss``: when the batch had ``target_ids``, the mean next-token cross-entropy over the
      positions whose target is not ``IGNORE_INDEX`` (:mod:`mosaic.core.contract`), 0 when none is;
      else None. Training objectives compute their own terms; this is for users of the model.
    """

    logits: Any
    aux: dict[str, Any] = attrs.Factory(dict)
    logit_targets: Any = None
    state: Any = None
    loss: Any = None
