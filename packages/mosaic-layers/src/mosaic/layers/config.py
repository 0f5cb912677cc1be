"""Configuration of MOSAIC blocks and models, declared without torch so that listing plugins and
validating presets never imports it.

Every field is used. Invalid values and invalid combinations raise the core vocabulary's
:class:`~mosaic.core.errors.InvalidFieldError` (:mod:`mosaic.core.validators`), which names the field,
so ``structure_config`` reports it at ``$.path.field``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import attrs

from mosaic.core.component_slots import component_field
from mosaic.core.contract.compat import Capability, Head, Provided, Relation, Required
from mosaic.core.errors import InvalidFieldError
from mosaic.core.validators import between, non_negative, open_unit, positive, power_of_two, reject

#: Kept for callers that catch the layers' config errors by this name: the rules are the core
#: vocabulary's (:mod:`mosaic.core.validators`), which raise :class:`InvalidFieldError`.
LayerConfigError = InvalidFieldError


#: ``ffn``: the feed-forward that replaces the dense MLP, e.g. ``{type: layer.moe, n_experts: 8, top_k: 2,
#: router: {type: router.chrono}}``; built through the registry with ``d_model`` set by the model.
_ffn_field = component_field("layer", injected=("d_model",))
#: ``lifecycle``: a training-time controller of the feed-forward layers (e.g. ``{type:
#: layer.chrono_lifecycle}``), driven by the trainer through ``after_optimizer_step``.
_lifecycle_field = component_field("layer")
#: ``memory``: the block's memory, a ``memory.*`` component behind the ``BlockMemory`` protocol, e.g.
#: ``{type: memory.outer_product, key_dim: 16}``; built through the registry with ``d_model`` set by the
#: block. None (or ``{type: memory.hashed}``) is the hashed memory configured by the ``mem_*`` fields.
DEFAULT_MEMORY = "memory.hashed"
_memory_field = component_field("memory", injected=("d_model",))


@attrs.frozen
class MosaicBlockConfig:
    """One MOSAIC block: local mixer, state bank, memory (hashed by default), registers, opcode VM, heads."""

    d_model: int = attrs.field(default=128, validator=positive)
    # local mixer: depthwise causal conv + gated SiLU MLP
    conv_kernel: int = attrs.field(default=7, validator=positive)
    mlp_mult: int = attrs.field(default=2, validator=positive)
    # state bank: state_k leaky integrators of width state_dim sharing one input projection
    # (D*state_dim + state_k*state_dim*D parameters instead of the original 2*K*D^2)
    state_k: int = attrs.field(default=8, validator=positive)
    state_dim: int = attrs.field(default=16, validator=positive)
    state_decay_min: float = attrs.field(default=0.9, validator=open_unit)
    state_decay_max: float = attrs.field(default=0.999, validator=open_unit)
    state_decay_reg_min: float = attrs.field(default=0.001, validator=open_unit)
    state_decay_reg_max: float = attrs.field(default=0.999, validator=open_unit)
    # hashed set-associative memory, per sample (B, hashes, buckets, assoc, key_dim + mem_dim + 1)
    mem_buckets: int = attrs.field(default=64, validator=power_of_two)
    mem_hashes: int = attrs.field(default=2, validator=positive)
    mem_assoc: int = attrs.field(default=4, validator=positive)
    mem_key_dim: int = attrs.field(default=32, validator=positive)
    mem_dim: int = attrs.field(default=64, validator=positive)
    mem_write_threshold: float = attrs.field(default=0.5, validator=open_unit)
    mem_write_step: float = attrs.field(default=1.0, validator=between(0.0, 1.0, low_open=True))
    mem_hard_writes: bool = True
    # route reads by the query and writes by the write key through one shared projection (LSH-like:
    # a query that matches a stored key lands in its bucket); False: separate routers on the input
    mem_route_by_key: bool = True
    # slot inside the write bucket: "ring" = the bucket's writes so far mod assoc (fills empty slots,
    # then overwrites the oldest); "router" = argmax of a learned slot router on the write key
    mem_slot_policy: Literal["ring", "router"] = "ring"
    # "ring": a write moves its bucket's pointer on when its strength exceeds this; 0 = any write
    # (with soft writes: every token). Above 0, weak stray writes land on the next slot to be written
    # instead of moving the ring over stored pairs, as only strong writes (the teacher's values) do.
    mem_ring_advance_at: float = attrs.field(default=0.0, validator=between(0.0, 1.0, high_open=True))
    # registers (0 disables them and their aux outputs)
    reg_slots: int = attrs.field(default=4, validator=non_negative)
    reg_dim: int = attrs.field(default=32, validator=positive)
    # opcode VM
    opcodes_enabled: bool = True
    opcodes_control_enabled: bool = False
    opcodes_control_temp: float = attrs.field(default=1.0, validator=positive)
    opcodes_control_soft: bool = False
    # GATE_UP / GATE_DOWN also scale what the token drives into the state bank, so the gain lasts
    # beyond the token (mosaic_gates teaches this). Off, the gain scales only the token's own output:
    # with the straight-through estimator the state's gradient otherwise pulls the opcode head toward
    # the gain opcodes at positions that need READ/WRITE, and recall in models that never teach the
    # gates suffers (the consolidation A/B's fact model fell from 0.95 to 0.50).
    fusion_gates_state: bool = False
    commitment_head_enabled: bool = True
    # tokens per chunk of the vectorised scans (a tuning knob: results do not depend on it)
    chunk_size: int = attrs.field(default=32, validator=positive)
    # None: the local mixer's dense gated SiLU MLP; else a registry layer (B, T, D) -> (B, T, D)
    ffn: dict[str, Any] | None = _ffn_field
    # None: memory.hashed (the mem_* fields above); else a memory.* component (see DEFAULT_MEMORY)
    memory: dict[str, Any] | None = _memory_field

    def __attrs_post_init__(self) -> None:
        if self.state_decay_min >= self.state_decay_max:
            reject("state_decay_min", f"must be < state_decay_max ({self.state_decay_max}), got {self.state_decay_min}")
        if self.state_decay_reg_min >= self.state_decay_reg_max:
            reject("state_decay_reg_min", f"must be < state_decay_reg_max ({self.state_decay_reg_max}), "
                                          f"got {self.state_decay_reg_min}")
        if self.opcodes_control_enabled and not self.opcodes_enabled:
            reject("opcodes_control_enabled", "needs opcodes_enabled (there is no opcode head)")
        if self.fusion_gates_state and not self.opcodes_control_enabled:
            reject("fusion_gates_state", "needs opcodes_control_enabled (the gain comes from the VM's control)")
        if self.opcodes_control_soft and not self.opcodes_control_enabled:
            reject("opcodes_control_soft", "needs opcodes_control_enabled")
        if self.memory is not None and self.memory["type"] == DEFAULT_MEMORY and set(self.memory) != {"type"}:
            extra = ", ".join(sorted(set(self.memory) - {"type"}))
            reject("memory", f"{DEFAULT_MEMORY} takes no options ({extra}); set the block's mem_* fields instead")

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

    vocab_size: int = attrs.field(default=256, validator=positive)
    n_layers: int = attrs.field(default=2, validator=positive)
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
            reject("lifecycle", "needs block.ffn (a layer.moe feed-forward to act on)")

    # --- what the model promises the dataset and the objective (mosaic.core.contract.compat) ------

    def provides(self) -> Iterable[Provided]:
        block = self.block
        # the hashed memory's heads and geometry; a plugin memory (block.memory) promises neither
        hashed = block.memory is None or block.memory["type"] == DEFAULT_MEMORY
        heads = {Head.MEMORY, Head.STATE_BANK} if hashed else {Head.STATE_BANK}
        heads |= {Head.OPCODES} if block.opcodes_enabled else set()
        heads |= {Head.COMMITMENT} if block.commitment_head_enabled else set()
        heads |= {Head.REGISTERS} if block.reg_slots else set()
        yield Provided(Capability.HEADS, frozenset(heads), "block")
        if hashed:
            yield Provided(Capability.MEMORY_BUCKETS, block.mem_buckets, "block.mem_buckets")
            yield Provided(Capability.MEMORY_HASHES, block.mem_hashes, "block.mem_hashes")

    def requires(self) -> Iterable[Required]:
        yield covers_vocabulary(self.vocab_size)


@attrs.frozen
class TransformerBaselineConfig:
    """A same-width causal Transformer (pre-norm, learned positions, SDPA attention)."""

    vocab_size: int = attrs.field(default=256, validator=positive)
    d_model: int = attrs.field(default=128, validator=positive)
    n_layers: int = attrs.field(default=2, validator=positive)
    n_heads: int = attrs.field(default=4, validator=positive)
    mlp_mult: int = attrs.field(default=4, validator=positive)
    max_seq_len: int = attrs.field(default=1024, validator=positive)
    tie_embeddings: bool = True
    logits_at_labels_only: bool = False
    # None: the dense GELU MLP; else a registry layer (B, T, D) -> (B, T, D), e.g. layer.moe
    ffn: dict[str, Any] | None = _ffn_field
    lifecycle: dict[str, Any] | None = _lifecycle_field

    def __attrs_post_init__(self) -> None:
        if self.lifecycle is not None and self.ffn is None:
            reject("lifecycle", "needs ffn (a layer.moe feed-forward to act on)")
        if self.d_model % self.n_heads:
            reject("n_heads", f"must leave d_model ({self.d_model}) divisible by it, got {self.n_heads}")

    def provides(self) -> Iterable[Provided]:
        yield Provided(Capability.HEADS, frozenset(), "")  # no auxiliary heads

    def requires(self) -> Iterable[Required]:
        yield covers_vocabulary(self.vocab_size)
        yield Required(Capability.SAMPLE_LENGTH, Relation.AT_LEAST, self.max_seq_len, "max_seq_len",
                       "the learned positions must cover the dataset's longest sample")


def covers_vocabulary(vocab_size: int) -> Required:
    return Required(Capability.VOCAB_SIZE, Relation.AT_LEAST, vocab_size, "vocab_size",
                    "the embedding must cover every token id the dataset emits")
