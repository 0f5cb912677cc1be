"""The built-in presets, shipped as YAML package data; each factory returns a preset's text."""

from __future__ import annotations

from importlib import resources

from mosaic.runtime.presets.mqar_grid import (
    grid_names,
    mqar_delta_64_4,
    mqar_delta_128_8,
    mqar_delta_256_16,
    mqar_delta_512_64,
    mqar_mosaic_128_8,
    mqar_mosaic_256_16,
    mqar_mosaic_512_64,
    mqar_transformer_128_8,
    mqar_transformer_256_16,
    mqar_transformer_512_64,
)

__all__ = [
    "BUILTIN_PRESETS", "preset_text", "mosaic_vm", "mosaic_event_native", "mosaic_idle", "mosaic_commitment",
    "mosaic_memory_curriculum", "mqar_mosaic", "mqar_transformer", "phase8_moe", "mqar_delta_64_4",
    "mqar_delta_128_8", "mqar_delta_256_16", "mqar_delta_512_64", "mqar_mosaic_128_8", "mqar_mosaic_256_16",
    "mqar_mosaic_512_64", "mqar_transformer_128_8", "mqar_transformer_256_16", "mqar_transformer_512_64",
]

#: name -> one-line summary (the YAML files live beside this module).
BUILTIN_PRESETS: dict[str, str] = {
    "mosaic_vm": "MOSAIC VM on the memory curriculum: READ/WRITE opcodes, registers, answer recall",
    "mosaic_gates": "MOSAIC VM on the control curriculum: GATE_UP/GATE_DOWN gain the state, SCAN reads all of memory",
    "mosaic_event_native": "MOSAIC trained on event traces (JSON envelopes as bytes) from step 0",
    "mosaic_idle": "12 GB-friendly MOSAIC sizing (4096 buckets, assoc 2) with sleep replay",
    "mosaic_commitment": "seed 000 event traces: overlapping commitments on held-out phrasings, COMMIT feeds the ledger",
    "mosaic_memory_curriculum": "associative recall curriculum with difficulty ramp and teacher forcing decay",
    "mosaic_tools": "MOSAIC writing small tools: tool requests answered by ToolDefinitions, calls and results",
    "mqar_mosaic": "MOSAIC on MQAR(64, 4, V 8192), d 64, 2 layers",
    "mqar_transformer": "Transformer baseline on MQAR(64, 4, V 8192), d 64, 2 layers",
    "phase8_moe": "ChronoMoE phase 8: char-level text, MOSAIC with layer.moe (8 experts, 2 layers), five routers",
    **grid_names(),  # mqar_<model>_<L>_<KV>: the MQAR grid (mosaic.runtime.presets.mqar_grid)
}


def preset_text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.yml").read_text(encoding="utf-8")


def mosaic_vm() -> str:
    return preset_text("mosaic_vm")


def mosaic_gates() -> str:
    return preset_text("mosaic_gates")


def mosaic_event_native() -> str:
    return preset_text("mosaic_event_native")


def mosaic_idle() -> str:
    return preset_text("mosaic_idle")


def mosaic_commitment() -> str:
    return preset_text("mosaic_commitment")


def mosaic_memory_curriculum() -> str:
    return preset_text("mosaic_memory_curriculum")


def mosaic_tools() -> str:
    return preset_text("mosaic_tools")


def mqar_mosaic() -> str:
    return preset_text("mqar_mosaic")


def mqar_transformer() -> str:
    return preset_text("mqar_transformer")


def phase8_moe() -> str:
    return preset_text("phase8_moe")
