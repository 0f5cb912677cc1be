"""The block's memory seam: memory.hashed behind the BlockMemory protocol, chosen by config; named
fusion gates; saved weights and states keep their names."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.contract.protocols import BlockMemory, ReadableBlockMemory
from mosaic.layers.block import FusionGates, MosaicBlock
from mosaic.layers.config import LayerConfigError, MosaicBlockConfig, MosaicLMConfig
from mosaic.layers.memory import HashedMemory
from mosaic.layers.model import MosaicLM
from mosaic.layers.state import MosaicState

SMALL = {"d_model": 8, "state_k": 2, "state_dim": 2, "mem_buckets": 2, "mem_hashes": 1, "mem_assoc": 1,
         "mem_key_dim": 2, "mem_dim": 2, "reg_slots": 1, "reg_dim": 2}

#: the parameter names of a block as saved before the memory seam existed: checkpoints load by them
SAVED_KEYS = [
    "bank.decay_logit", "bank.inp.weight", "bank.out.weight", "commit_drive", "commitment.bias", "commitment.weight",
    "fusion.bias", "fusion.weight", "memory.out.weight", "memory.query.weight", "memory.read_router.weight",
    "memory.write_gate.bias", "memory.write_gate.weight", "memory.write_key.weight", "memory.write_router.weight",
    "memory.write_utility.bias", "memory.write_utility.weight", "memory.write_value.weight", "mixer.conv.bias",
    "mixer.conv.weight", "mixer.down.weight", "mixer.up.weight", "norm.weight", "opcode_head.proj.bias",
    "opcode_head.proj.weight", "registers.gate.bias", "registers.gate.weight", "registers.out.weight",
    "registers.query.weight", "registers.select.bias", "registers.select.weight", "registers.value.weight",
]


def test_default_memory_is_hashed_and_satisfies_both_protocols() -> None:
    block = MosaicBlock(MosaicBlockConfig(**SMALL))
    assert isinstance(block.memory, HashedMemory)
    assert isinstance(block.memory, BlockMemory) and isinstance(block.memory, ReadableBlockMemory)


def test_saved_parameter_names_are_unchanged() -> None:
    assert sorted(MosaicBlock(MosaicBlockConfig(**SMALL)).state_dict()) == SAVED_KEYS


def test_naming_memory_hashed_is_the_default_exactly() -> None:
    x = torch.randn(2, 7, 8, generator=torch.Generator().manual_seed(1))
    outputs = []
    for memory in (None, {"type": "memory.hashed"}):
        torch.manual_seed(0)
        block = MosaicBlock(MosaicBlockConfig(**SMALL, memory=memory))
        outputs.append(block(x)[0])
    assert isinstance(block.memory, HashedMemory)
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ({"type": "memory.hashed", "mem_buckets": 4}, "memory.hashed takes no options"),
        ({"type": "layer.moe"}, "memory.type: must name a memory"),
        ({"type": "memory.outer_product", "d_model": 8}, "memory.d_model: must not be set here"),
        ("memory.hashed", "must be a mapping"),
    ],
)
def test_memory_config_mistakes_are_named(memory: object, message: str) -> None:
    with pytest.raises(LayerConfigError, match=message):
        MosaicBlockConfig(**SMALL, memory=memory)


def test_fusion_gates_are_named_rows_of_one_projection() -> None:
    gates = FusionGates(8)
    u, scale = torch.randn(2, 3, 8), torch.rand(2, 3)
    named = gates.gates(u, scale)
    assert list(named) == ["state", "memory", "registers"] and gates.weight.shape == (3, 8)
    expected = torch.sigmoid(u @ gates.weight.T + gates.bias) * scale[..., None]
    for index, path in enumerate(FusionGates.PATHS):
        torch.testing.assert_close(named[path], expected[..., index : index + 1])


def test_saved_streaming_states_keep_their_names() -> None:
    model = MosaicLM(MosaicLMConfig(vocab_size=16, n_layers=1, block=MosaicBlockConfig(**SMALL), plugin_opcodes=False))
    state = model.prefill(torch.randint(16, (1, 5)), model.init_state(1)).state
    saved = state.state_dict()
    assert {"layers.0.memory", "layers.0.summary", "layers.0.mem_counts"} <= set(saved)
    restored = MosaicState.from_state_dict(saved)
    assert torch.equal(restored.layers[0].memory, state.layers[0].memory)
    assert len(model.memory_cells(restored)) == 1
