"""Configuration of MOSAIC blocks and models, declared without torch so that listing plugins and
validating presets never imports it.

Every field is used. Invalid values and invalid combinations raise :class:`LayerConfigError`
(a ``ModelError`` and a ``ValueError``, so that ``structure_config`` reports it under the config's
``$.path``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from mosaic.core.errors import ModelError


class LayerConfigError(ModelError, ValueError):
    """A MOSAIC layer or model configuration is invalid; the message names the field."""


def _positive(_instance: Any, attribute: Any, value: Any) -> None:
    if value <= 0:
        raise LayerConfigError(f"{attribute.name}: must be > 0, got {value}")


def _non_negative(_instance: Any, attribute: Any, value: Any) -> None:
    if value < 0:
        raise LayerConfigError(f"{attribute.name}: must be >= 0, got {value}")


def _open_unit(_instance: Any, attribute: Any, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise LayerConfigError(f"{attribute.name}: must lie strictly between 0 and 1, got {value}")


def _unit_step(_instance: Any, attribute: Any, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise LayerConfigError(f"{attribute.name}: must lie in (0, 1], got {value}")


def _component_mapping(kind: str, injected: tuple[str, ...]) -> Any:
    """Validator of an optional ``{type: <kind>.<name>, ...its config}`` mapping built through the registry;
    ``injected`` fields are set by the owner and must not appear in the mapping."""

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise LayerConfigError(f"{attribute.name}: must be a mapping with a 'type' key, got {type(value).__name__}")
        component_id = value.get("type")
        if not isinstance(component_id, str) or not component_id.startswith(f"{kind}."):
            raise LayerConfigError(f"{attribute.name}.type: must name a {kind}.<name> component, got {component_id!r}")
        shadowed = sorted(set(value) & set(injected))
        if shadowed:
            raise LayerConfigError(f"{attribute.name}: must not set {', '.join(shadowed)} (the model decides it)")

    return check


#: ``ffn``: the feed-forward that replaces the dense MLP, e.g. ``{type: layer.moe, n_experts: 8, top_k: 2,
#: router: {type: router.chrono}}``; built through the registry with ``d_model`` set by the model.
_ffn_field = attrs.field(default=None, validator=_component_mapping("layer", ("d_model",)))
#: ``lifecycle``: a training-time controller of the feed-forward layers (e.g. ``{type:
#: layer.chrono_lifecycle}``), driven by the trainer through ``after_optimizer_step``.
_lifecycle_field = attrs.field(default=None, validator=_component_mapping("layer", ()))


def _power_of_two(_instance: Any, attribute: Any, value: int) -> None:
    if value < 2 or value & (value - 1):
        raise LayerConfigError(f"{attribute.name}: must be a power of two >= 2 (routing uses log2 bits), got {value}")


@attrs.frozen
class MosaicBlockConfig:
    """One MOSAIC block: local mixer, state bank, hashed memory, registers, opcode VM, heads."""

    d_model: int = attrs.field(default=128, validator=_positive)
    # local mixer: depthwise causal conv + gated SiLU MLP
    conv_kernel: int = attrs.field(default=7, validator=_positive)
    mlp_mult: int = attrs.field(default=2, validator=_positive)
    # state bank: state_k leaky integrators of width state_dim sharing one input projection
    # (D*state_dim + state_k*state_dim*D parameters instead of the original 2*K*D^2)
    state_k: int = attrs.field(default=8, validator=_positive)
    state_dim: int = attrs.field(default=16, validator=_positive)
    state_decay_min: float = attrs.field(default=0.9, validator=_open_unit)
    state_decay_max: float = attrs.field(default=0.999, validator=_open_unit)
    state_decay_reg_min: float = attrs.field(default=0.001, validator=_open_unit)
    state_decay_reg_max: float = attrs.field(default=0.999, validator=_open_unit)
    # hashed set-associative memory, per sample (B, hashes, buckets, assoc, key_dim + mem_dim + 1)
    mem_buckets: int = attrs.field(default=64, validator=_power_of_two)
    mem_hashes: int = attrs.field(default=2, validator=_positive)
    mem_assoc: int = attrs.field(default=4, validator=_positive)
    mem_key_dim: int = attrs.field(default=32, validator=_positive)
    mem_dim: int = attrs.field(default=64, validator=_positive)
    mem_write_threshold: float = attrs.field(default=0.5, validator=_open_unit)
    mem_write_step: float = attrs.field(default=1.0, validator=_unit_step)
    mem_hard_writes: bool = True
    # route reads by the query and writes by the write key through one shared projection (LSH-like:
    # a query that matches a stored key lands in its bucket); False: separate routers on the input
    mem_route_by_key: bool = True
    # slot inside the write bucket: "ring" = the bucket's writes so far mod assoc (fills empty slots,
    # then overwrites the oldest); "router" = argmax of a learned slot router on the write key
    mem_slot_policy: Literal["ring", "router"] = "ring"
    # registers (0 disables them and their aux outputs)
    reg_slots: int = attrs.field(default=4, validator=_non_negative)
    reg_dim: int = attrs.field(default=32, validator=_positive)
    # opcode VM
    opcodes_enabled: bool = True
    opcodes_control_enabled: bool = False
    opcodes_control_temp: float = attrs.field(default=1.0, validator=_positive)
    opcodes_control_soft: bool = False
    commitment_head_enabled: bool = True
    # tokens per chunk of the vectorised scans (a tuning knob: results do not depend on it)
    chunk_size: int = attrs.field(default=32, validator=_positive)
    # None: the local mixer's dense gated SiLU MLP; else a registry layer (B, T, D) -> (B, T, D)
    ffn: dict[str, Any] | None = _ffn_field

    def __attrs_post_init__(self) -> None:
        if self.state_decay_min >= self.state_decay_max:
            raise LayerConfigError(
                f"state_decay_min ({self.state_decay_min}) must be < state_decay_max ({self.state_decay_max})"
            )
        if self.state_decay_reg_min >= self.state_decay_reg_max:
            raise LayerConfigError(
                f"state_decay_reg_min ({self.state_decay_reg_min}) must be < "
                f"state_decay_reg_max ({self.state_decay_reg_max})"
            )
        if self.opcodes_control_enabled and not self.opcodes_enabled:
            raise LayerConfigError("opcodes_control_enabled: needs opcodes_enabled (there is no opcode head)")
        if self.opcodes_control_soft and not self.opcodes_control_enabled:
            raise LayerConfigError("opcodes_control_soft: needs opcodes_control_enabled")

    @property
    def mem_bits(self) -> int:
        return self.mem_buckets.bit_length() - 1

    @property
    def mem_cell_dim(self) -> int:
        """Width of one memory cell: key, value and an occupancy channel."""
        return self.mem_key_dim + self.mem_dim + 1


@attrs.frozen
class MosaicLMConfig:
    """A language model of ``n_layers`` MOSAIC blocks over a token vocabulary."""

    vocab_size: int = attrs.field(default=256, validator=_positive)
    n_layers: int = attrs.field(default=2, validator=_positive)
    block: MosaicBlockConfig = MosaicBlockConfig()
    tie_embeddings: bool = True
    # compute the vocabulary head only where target_ids != -100 (logits (N, V), logit_targets (N,))
    logits_at_labels_only: bool = False
    # include opcodes registered by plugins after the ten v0 opcodes. Off unless a preset asks, so
    # that installing an opcode plugin never changes an existing preset or invalidates a checkpoint.
    plugin_opcodes: bool = False
    lifecycle: dict[str, Any] | None = _lifecycle_field

    def __attrs_post_init__(self) -> None:
        if self.lifecycle is not None and self.block.ffn is None:
            raise LayerConfigError("lifecycle: needs block.ffn (a layer.moe feed-forward to act on)")


@attrs.frozen
class TransformerBaselineConfig:
    """A same-width causal Transformer (pre-norm, learned positions, SDPA attention)."""

    vocab_size: int = attrs.field(default=256, validator=_positive)
    d_model: int = attrs.field(default=128, validator=_positive)
    n_layers: int = attrs.field(default=2, validator=_positive)
    n_heads: int = attrs.field(default=4, validator=_positive)
    mlp_mult: int = attrs.field(default=4, validator=_positive)
    max_seq_len: int = attrs.field(default=1024, validator=_positive)
    tie_embeddings: bool = True
    logits_at_labels_only: bool = False
    # None: the dense GELU MLP; else a registry layer (B, T, D) -> (B, T, D), e.g. layer.moe
    ffn: dict[str, Any] | None = _ffn_field
    lifecycle: dict[str, Any] | None = _lifecycle_field

    def __attrs_post_init__(self) -> None:
        if self.lifecycle is not None and self.ffn is None:
            raise LayerConfigError("lifecycle: needs ffn (a layer.moe feed-forward to act on)")
        if self.d_model % self.n_heads:
            raise LayerConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
