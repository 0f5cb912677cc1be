"""Every built-in model, layer, router, objective and curriculum satisfies its contract Protocols,
and a model's aux outputs are the contract's aux keys with the spec's dtype and per-layer shape."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mosaic.core.contract import KEY_SPECS, keys
from mosaic.core.contract.protocols import (
    BlockMemory,
    Curriculum,
    DeclaresOpcodes,
    DescribesSources,
    FeedForward,
    LifecycleController,
    MemoryReadBack,
    Objective,
    ReadableBlockMemory,
    ReportsAux,
    Router,
    StepsAfterOptimizer,
    StreamingModel,
    StreamingState,
    TrainingHooks,
)
from mosaic.core.plugins import PluginHost, PluginSelection
from mosaic.core.registry import Registry

V, B, T, D, LAYERS = 64, 2, 24, 16, 2
BLOCK = {"d_model": D, "state_k": 2, "state_dim": 4, "mem_buckets": 8, "mem_hashes": 2, "mem_key_dim": 8,
         "mem_dim": 8, "reg_slots": 2, "reg_dim": 4, "opcodes_enabled": True, "commitment_head_enabled": True}
MOE = {"type": "layer.moe", "n_experts": 4, "top_k": 2, "router": {"type": "router.chrono"}}

#: Small configs of every built-in model: the Protocols each must satisfy follow from what it is.
MODELS: dict[str, list[dict[str, Any]]] = {
    "model.mosaic_lm": [
        {"vocab_size": V, "n_layers": LAYERS, "plugin_opcodes": False, "block": BLOCK},
        {"vocab_size": V, "n_layers": LAYERS, "plugin_opcodes": False, "block": {**BLOCK, "ffn": MOE}},
    ],
    "model.transformer_baseline": [
        {"vocab_size": V, "d_model": D, "n_heads": 2, "n_layers": LAYERS, "max_seq_len": T},
        {"vocab_size": V, "d_model": D, "n_heads": 2, "n_layers": LAYERS, "max_seq_len": T, "ffn": MOE},
    ],
    "model.delta_baseline": [
        {"vocab_size": V, "d_model": D, "n_heads": 2, "n_layers": LAYERS, "chunk_size": 8},
    ],
}
#: the optional Protocols each model satisfies (the runtime checks these before using a model)
PROTOCOLS: dict[str, tuple[type, ...]] = {
    "model.mosaic_lm": (TrainingHooks, StreamingModel, MemoryReadBack, DeclaresOpcodes),
    "model.transformer_baseline": (TrainingHooks,),
    "model.delta_baseline": (),
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    host = PluginHost(PluginSelection(strict=True))
    host.load_entry_points()
    return host.registry


def builtin(registry: Registry, kind: str) -> list[str]:
    return [cid for cid in registry.ids(kind) if registry.get(cid).provider in ("mosaic-layers", "chronomoe",
                                                                                 "mosaic-data", "mosaic-runtime")]


def batch(registry: Registry) -> dict[str, torch.Tensor]:
    dataset = registry.build("dataset.mosaic_memory_curriculum", {
        "block_size": T, "vocab_size": V, "mem_buckets": 8, "mem_hashes": 2, "n_pairs": 1, "distractor_len": 1,
        "reg_slots": 2, "num_samples": B})
    items = [dataset[i] for i in range(B)]
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


def check_aux(aux: dict[str, torch.Tensor]) -> None:
    for name, value in aux.items():
        assert name in KEY_SPECS, f"aux key {name} is not in mosaic.core.contract.keys"
        spec = KEY_SPECS[name]
        assert spec.producer in ("mosaic-layers", "chronomoe") and spec.shape[0] == "L", name
        assert value.dim() == len(spec.shape), f"{name}: {tuple(value.shape)} vs {spec.shape}"
        assert value.shape[0] == LAYERS, f"{name}: one entry per layer"
        if spec.shape[1:3] == ("B", "T"):
            assert tuple(value.shape[1:3]) == (B, T), name
        assert value.dtype == torch.float32, name


def test_every_builtin_model_is_covered(registry: Registry) -> None:
    assert sorted(builtin(registry, "model")) == sorted(MODELS) == sorted(PROTOCOLS)


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_models_satisfy_their_protocols_and_emit_contract_aux(model_id: str, registry: Registry) -> None:
    torch.manual_seed(0)
    data = batch(registry)
    for config in MODELS[model_id]:
        model = registry.build(model_id, config)
        for protocol in PROTOCOLS[model_id]:
            assert isinstance(model, protocol), f"{model_id} is not {protocol.__name__}"
        out = model(data)
        check_aux(out.aux)
        if "ffn" in config or "ffn" in config.get("block", {}):
            assert keys.MOE_AUX_LOSS.name in out.aux
        if MemoryReadBack in PROTOCOLS[model_id]:
            state = model.init_state(B)
            assert isinstance(state, StreamingState)
            stepped = model.step(data[keys.INPUT_IDS.name][:, 0], state)
            assert isinstance(stepped.state, StreamingState)
            assert len(model.memory_cells(stepped.state)) == LAYERS


def test_mosaic_lm_emits_every_mosaic_aux_key(registry: Registry) -> None:
    model = registry.build("model.mosaic_lm", MODELS["model.mosaic_lm"][0])
    assert set(model(batch(registry)).aux) == {spec.name for spec in keys.MOSAIC_AUX_KEYS}


def test_feed_forwards_routers_objectives_curricula_and_controllers(registry: Registry) -> None:
    moe = registry.build("layer.moe", {"n_experts": 4, "top_k": 2, "d_model": D, "router": {"type": "router.topk"}})
    assert isinstance(moe, FeedForward) and isinstance(moe, ReportsAux) and isinstance(moe.router, Router)
    for router_id in builtin(registry, "router"):
        layer = registry.build("layer.moe", {"n_experts": 4, "top_k": 2, "d_model": D, "router": {"type": router_id}})
        assert isinstance(layer.router, Router), router_id
        assert isinstance(layer, StepsAfterOptimizer), router_id  # the model's hooks step every feed-forward
    for objective_id in builtin(registry, "objective"):
        objective = registry.build(objective_id)
        assert isinstance(objective, Objective) and isinstance(objective, DescribesSources), objective_id
    for curriculum_id in builtin(registry, "curriculum"):
        assert isinstance(registry.build(curriculum_id), Curriculum), curriculum_id
    assert isinstance(registry.build("layer.chrono_lifecycle"), LifecycleController)


def test_every_registered_memory_is_a_block_memory(registry: Registry) -> None:
    from mosaic.layers.block import build_block_memory
    from mosaic.layers.config import MosaicBlockConfig

    memories = registry.ids("memory")
    assert "memory.hashed" in memories
    for memory_id in memories:  # the built-in one and any plugin's (the example plugin's when installed)
        block = MosaicBlockConfig(**{**BLOCK, "memory": {"type": memory_id}})
        memory = build_block_memory(block)
        assert isinstance(memory, BlockMemory), memory_id
    hashed = build_block_memory(MosaicBlockConfig(**BLOCK))
    assert isinstance(hashed, ReadableBlockMemory)


def test_protocol_checks_fail_for_objects_that_lack_a_member() -> None:
    class NoPrefill:
        def init_state(self, batch_size: int, device: Any = None) -> None: ...
        def step(self, ids: Any, state: Any) -> None: ...
        def forward(self, batch: Any, state: Any = None) -> None: ...

    assert not isinstance(NoPrefill(), StreamingModel)
    assert not isinstance(object(), TrainingHooks)
