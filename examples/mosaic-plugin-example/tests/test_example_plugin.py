"""Tests of the example plugin, written with the MOSAIC plugin author kit.

The fixtures ``use_plugin`` and ``mosaic_registry`` come from ``mosaic.core.testing``, which
mosaic-core registers as a pytest plugin: no imports or conftest needed.
"""

from __future__ import annotations

import pytest

from mosaic.core.errors import ConfigError, DataError
from mosaic.core.testing import assert_plugin_ok
from mosaic_plugin_example import plugin


class AdjustableDataset:
    def __init__(self) -> None:
        self.levels: list[float] = []

    def set_difficulty(self, level: float) -> None:
        self.levels.append(level)


def test_plugin_meets_the_contract() -> None:
    assert_plugin_ok(plugin, "mosaic-plugin-example")


def test_registers_one_opcode_one_drive_one_curriculum_one_memory_and_one_router(use_plugin, mosaic_registry) -> None:
    record = use_plugin(plugin, "mosaic-plugin-example")
    assert record.components == {
        "curriculum": ["curriculum.staircase"],
        "drive": ["drive.boredom"],
        "memory": ["memory.outer_product"],
        "opcode": ["opcode.DAMPEN"],
        "router": ["router.cosine"],
    }


def test_boredom_drive_fires_only_below_its_band(use_plugin, mosaic_registry) -> None:
    from mosaic.core import HomeostaticLoop

    use_plugin(plugin, "mosaic-plugin-example")
    drive = mosaic_registry.build("drive.boredom", {"refractory_s": 0.0})
    loop = HomeostaticLoop([drive])
    assert loop.impulse({"input_novelty": 0.5}, now=0.0) is None
    impulse = loop.impulse({"input_novelty": 0.05}, now=1.0)
    assert impulse is not None and impulse.type == "Impulse"
    assert impulse.payload["drive"] == "boredom" and impulse.payload["deviation"] < 0


def test_dampen_opcode_halves_the_update(use_plugin, mosaic_registry) -> None:
    use_plugin(plugin, "mosaic-plugin-example")
    opcode = mosaic_registry.build("opcode.DAMPEN")
    assert opcode.name == "DAMPEN"
    assert opcode.value("output_scale") == 0.5
    assert opcode.value("read") == 0.0  # undeclared channels keep their defaults


def test_staircase_rises_in_equal_stairs(use_plugin, mosaic_registry) -> None:
    use_plugin(plugin, "mosaic-plugin-example")
    staircase = mosaic_registry.build("curriculum.staircase", {"stairs": 3})
    dataset = AdjustableDataset()
    metrics = [staircase.update(step, 90, dataset)["difficulty"] for step in (0, 29, 30, 59, 60, 90)]
    assert metrics == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert dataset.levels == metrics


def test_staircase_rejects_bad_config_and_unadjustable_datasets(use_plugin, mosaic_registry) -> None:
    use_plugin(plugin, "mosaic-plugin-example")
    with pytest.raises(ConfigError, match=r"\$.stairs"):
        mosaic_registry.build("curriculum.staircase", {"stairs": 1})
    staircase = mosaic_registry.build("curriculum.staircase", {})
    with pytest.raises(DataError, match="set_difficulty"):
        staircase.update(0, 10, object())


def test_cosine_router_meets_the_router_contract_and_trains_inside_a_moe_layer(use_plugin, mosaic_registry) -> None:
    import torch

    from chronomoe import plugin as chronomoe_plugin
    from mosaic.core.contract.protocols import Router

    # the isolated registry holds only what the test registers: layer.moe comes from chronomoe
    use_plugin(chronomoe_plugin, "chronomoe")
    use_plugin(plugin, "mosaic-plugin-example")
    moe = mosaic_registry.build(
        "layer.moe", {"d_model": 16, "n_experts": 4, "top_k": 2, "router": {"type": "router.cosine", "routing_dim": 8}}
    )
    assert isinstance(moe.router, Router)
    torch.manual_seed(0)
    x = torch.randn(2, 12, 16)
    target = torch.randn(2, 12, 16)
    optimizer = torch.optim.Adam(moe.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = (moe(x) - target).square().mean() + moe.aux_outputs()["moe_aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    # the router's gradient reaches its temperature and expert embeddings (it is learned, not fixed)
    assert moe.router.expert_embedding.grad is not None and moe.router.expert_embedding.grad.abs().sum() > 0
    # top_k changes at run time and the layer follows it
    moe.router.set_top_k(1)
    moe(x)
    assert moe.aux_outputs()["moe_expert_load"].sum() > 0


def test_a_router_missing_part_of_the_contract_is_refused_naming_what_it_lacks(use_plugin, mosaic_registry) -> None:
    import torch

    from chronomoe.experts import SwiGLUExperts
    from chronomoe.moe import MoE
    from mosaic.core.errors import ModelError

    class HalfRouter(torch.nn.Module):
        n_experts = 4

        def forward(self, x, sequence_length=None):
            return x

    with pytest.raises(ModelError, match="lacks top_k, needs_trace, leave_one_out, token_level, columns, observe"):
        MoE(HalfRouter(), SwiGLUExperts(4, 16, 32))
