"""Configuration of ``model.delta_baseline``, declared without torch (listing and validating
presets never import it)."""

from __future__ import annotations

import attrs

from mosaic.layers.config import LayerConfigError, _positive


@attrs.frozen
class DeltaBaselineConfig:
    """A causal language model whose token mixer is a gated delta rule (the DeltaNet / Gated
    DeltaNet family): per head a ``d_head × d_head`` fast-weight state, decayed by a gate α and
    corrected by the delta rule with strength β, in place of attention. Pre-norm blocks with a GELU
    MLP, as in ``model.transformer_baseline``, so the two differ only in the mixer."""

    vocab_size: int = attrs.field(default=256, validator=_positive)
    d_model: int = attrs.field(default=128, validator=_positive)
    n_layers: int = attrs.field(default=2, validator=_positive)
    n_heads: int = attrs.field(default=4, validator=_positive)
    mlp_mult: int = attrs.field(default=4, validator=_positive)
    # a causal depthwise convolution over q, k and v before the rule (as Gated DeltaNet uses); 0: none
    conv_kernel: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    # tokens per chunk of the chunked (WY) form; the result does not depend on it
    chunk_size: int = attrs.field(default=64, validator=_positive)
    tie_embeddings: bool = True
    logits_at_labels_only: bool = False

    def __attrs_post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise LayerConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads
