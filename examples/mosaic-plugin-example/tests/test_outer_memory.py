"""``memory.outer_product`` inside a real MosaicLM: chosen by the block config, trained, streamed."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.contract.protocols import BlockMemory, ReadableBlockMemory
from mosaic.core.errors import ModelError
from mosaic.core.plugins import get_registry
from mosaic_plugin_example.outer_memory import (
    OuterProductMemory,
    OuterProductMemoryConfig,
    outer_product_read,
    outer_product_reference,
)

V, B, T = 32, 4, 24
BLOCK = {"d_model": 32, "state_k": 2, "state_dim": 4, "reg_slots": 0, "opcodes_enabled": False,
         "commitment_head_enabled": False, "chunk_size": 8,
         "memory": {"type": "memory.outer_product", "key_dim": 8, "value_dim": 8}}


def model() -> torch.nn.Module:
    return get_registry().build("model.mosaic_lm", {"vocab_size": V, "n_layers": 2, "plugin_opcodes": False,
                                                    "block": BLOCK})


def test_the_fast_read_matches_its_token_by_token_twin() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 9, 5, generator=g), torch.randn(2, 9, 5, generator=g)
    v, w, s0 = torch.randn(2, 9, 3, generator=g), torch.rand(2, 9, generator=g), torch.randn(2, 5, 3, generator=g)
    fast, fast_table = outer_product_read(q, k, v, w, s0)
    slow, slow_table = outer_product_reference(q, k, v, w, s0)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast_table, slow_table)


def test_the_block_builds_the_plugin_memory_by_config() -> None:
    lm = model()
    memories = [block.memory for block in lm.blocks]
    assert all(isinstance(m, OuterProductMemory) and isinstance(m, BlockMemory) for m in memories)
    assert memories[0].config == OuterProductMemoryConfig(d_model=32, key_dim=8, value_dim=8)
    assert not isinstance(memories[0], ReadableBlockMemory)
    with pytest.raises(ModelError, match="cannot be read back"):
        lm.memory_cells(lm.init_state(1))


def test_a_mosaic_lm_with_the_plugin_memory_trains() -> None:
    torch.manual_seed(0)
    lm = model()
    keys_ = torch.randint(1, V // 2, (B, 4))
    values = torch.randint(V // 2, V, (B, 4))
    pairs = torch.stack([keys_, values], dim=-1).reshape(B, 8)
    ids = torch.cat([pairs, torch.randint(1, V, (B, 9)), pairs], dim=1)  # (B, T + 1): recall the pairs
    batch = {"input_ids": ids[:, :-1], "target_ids": ids[:, 1:]}
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = lm(batch)
        loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, V), batch["target_ids"].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert out.aux["mosaic_write_gate_logits"].shape == (2, B, T)
    assert all(p.grad is not None for p in lm.blocks[0].memory.parameters())
    assert losses[-1] < 0.7 * losses[0]


def test_streaming_carries_the_memory_state_across_calls() -> None:
    torch.manual_seed(0)
    lm = model().eval()
    ids = torch.randint(V, (2, T))
    with torch.no_grad():
        whole = lm({"input_ids": ids}).logits
        pieces = lm.prefill(ids, lm.init_state(2), chunk_tokens=5)
    torch.testing.assert_close(pieces.logits, whole, atol=1e-5, rtol=1e-5)
    table = pieces.state.layers[0].memory
    assert table.shape == (2, 8, 8) and float(table.abs().sum()) > 0
    assert pieces.state.layers[0].summary is None and pieces.state.layers[0].mem_counts is None
