"""Configuration of ``model.delta_baseline``, declared without torch (listing and validating
presets never import it)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from mosaic.core.contract.compat import Capability, Provided, Required
from mosaic.core.validators import non_negative, positive, reject
from mosaic.layers.config import covers_vocabulary


@attrs.frozen
class DeltaBaselineConfig:
    """A causal language model whose token mixer is a gated delta rule (the DeltaNet / Gated
    DeltaNet family): per head a ``d_head × d_head`` fast-weight state, decayed by a gate α and
    corrected by the delta rule with strength β, in place of attention. Pre-norm blocks with a GELU
    MLP, as in ``model.transformer_baseline``, so the two differ only in the mixer."""

    vocab_size: int = attrs.field(default=256, validator=positive)
    d_model: int = attrs.field(default=128, validator=positive)
    n_layers: int = attrs.field(default=2, validator=positive)
    n_heads: int = attrs.field(default=4, validator=positive)
    mlp_mult: int = attrs.field(default=4, validator=positive)
    # a causal depthwise convolution over q, k and v before the rule (as Gated DeltaNet uses); 0: none
    conv_kernel: int = attrs.field(default=4, validator=non_negative)
    # tokens per chunk of the chunked (WY) form; the result does not depend on it
    chunk_size: int = attrs.field(default=64, validator=positive)
    tie_embeddings: bool = True
    logits_at_labels_only: bool = False

    def __attrs_post_init__(self) -> None:
        if self.d_model % self.n_heads:
            reject("n_heads", f"must leave d_model ({self.d_model}) divisible by it, got {self.n_heads}")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.HEADS, frozenset(), "")  # no auxiliary heads

    def requires(self) -> Iterable[Required]:
        yield covers_vocabulary(self.vocab_size)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads
