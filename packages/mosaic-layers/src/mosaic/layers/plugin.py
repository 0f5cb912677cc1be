"""mosaic-layers' plugin: the v0 opcodes, the block and the models, registered through the same
``mosaic`` entry point a third party uses. Import paths are strings so that listing never imports
torch."""

from __future__ import annotations

from mosaic.core.contract.protocols import Register
from mosaic.core.plugins import hookimpl
from mosaic.layers.isa import V0_OPCODES, v0_opcode_factories


@hookimpl
def register_opcodes(register: Register) -> None:
    factories = v0_opcode_factories()
    for opcode in V0_OPCODES:
        register(f"opcode.{opcode.name}", factories[opcode.name], summary=opcode.meaning)


@hookimpl
def register_layers(register: Register) -> None:
    register(
        "layer.mosaic_block",
        "mosaic.layers.block:build_mosaic_block",
        summary="MOSAIC block: local mixer, state bank, hashed memory, registers, opcode VM, commitment head",
        config="mosaic.layers.config:MosaicBlockConfig",
    )


@hookimpl
def register_memories(register: Register) -> None:
    register(
        "memory.hashed",
        "mosaic.layers.memory:build_hashed_memory",
        summary="hashed set-associative memory with exact causal reads (the block's default; mem_* fields)",
        config="mosaic.layers.config:MosaicBlockConfig",
    )
    register(
        "memory.off",
        "mosaic.layers.memory_off:build_memory_off",
        summary="no memory: a zero read and an empty table (ablations)",
        config="mosaic.layers.memory_off:MemoryOffConfig",
    )


@hookimpl
def register_models(register: Register) -> None:
    register(
        "model.mosaic_lm",
        "mosaic.layers.model:build_mosaic_lm",
        summary="attention-free MOSAIC language model with streaming state",
        config="mosaic.layers.config:MosaicLMConfig",
    )
    register(
        "model.transformer_baseline",
        "mosaic.layers.baseline:build_transformer_baseline",
        summary="same-width causal Transformer baseline (SDPA attention)",
        config="mosaic.layers.config:TransformerBaselineConfig",
    )
    register(
        "model.delta_baseline",
        "mosaic.layers.delta_model:build_delta_baseline",
        summary="recurrent baseline: gated delta rule (DeltaNet family) mixer, chunked",
        config="mosaic.layers.delta_config:DeltaBaselineConfig",
    )
