"""Entry point of the plugin: one function per hook, each registering components by semantic ID.

Factories and configs are given as import paths so that ``mosaic plugins list`` never imports
torch (or anything heavy) just to list this plugin.
"""

from __future__ import annotations

from typing import Any

from mosaic.core import hookimpl


@hookimpl
def register_opcodes(register: Any) -> None:
    register(
        "opcode.DAMPEN",
        "mosaic_plugin_example.opcodes:dampen",
        summary="halve the block's update for the token (a gentler IDLE)",
    )


@hookimpl
def register_curricula(register: Any) -> None:
    register(
        "curriculum.staircase",
        "mosaic_plugin_example.staircase:Staircase",
        config="mosaic_plugin_example.staircase:StaircaseConfig",
        summary="raise dataset difficulty in equal steps rather than continuously",
    )


@hookimpl
def register_memories(register: Any) -> None:
    register(
        "memory.outer_product",
        "mosaic_plugin_example.outer_memory:build_outer_product_memory",
        config="mosaic_plugin_example.outer_memory:OuterProductMemoryConfig",
        summary="linear associative memory (a key-value outer-product matrix) for a MOSAIC block",
    )


@hookimpl
def register_drives(register: Any) -> None:
    register(
        "drive.boredom",
        "mosaic_plugin_example.boredom:boredom",
        config="mosaic_plugin_example.boredom:BoredomConfig",
        summary="wake the model when recent inputs stop being novel",
    )


@hookimpl
def register_routers(register: Any) -> None:
    register(
        "router.cosine",
        "mosaic_plugin_example.cosine_router:build_cosine_router",
        config="mosaic_plugin_example.cosine_router:CosineRouterConfig",
        summary="cosine routing (X-MoE): bounded token-expert scores with a learned temperature",
    )
