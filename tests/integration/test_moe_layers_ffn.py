"""layer.moe feed-forwards in MOSAIC blocks and the Transformer baseline, chosen by configuration."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import UnknownComponentError
from mosaic.core.plugins import PluginHost, PluginSelection, get_registry
from mosaic.core.registry import Registry
from mosaic.layers.config import (
    LayerConfigError,
    MosaicBlockConfig,
    MosaicLMConfig,
    TransformerBaselineConfig,
)

V, B, T, D = 32, 2, 12, 16


def moe_spec(router: str = "router.chrono", **router_fields: object) -> dict:
    return {"type": "layer.moe", "n_experts": 4, "top_k": 2, "router": {"type": router, **router_fields}}


def mosaic(ffn: dict | None, lifecycle: dict | None = None, registry: Registry | None = None) -> torch.nn.Module:
    block = {"d_model": D, "state_k": 2, "state_dim": 4, "mem_buckets": 8, "mem_key_dim": 8, "mem_dim": 8,
             "reg_slots": 0, "opcodes_enabled": False, "commitment_head_enabled": False, "ffn": ffn}
    return (registry or get_registry()).build("model.mosaic_lm", {"vocab_size": V, "n_layers": 2, "plugin_opcodes": False,
                                                    "block": block, "lifecycle": lifecycle})


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(V, (B, T), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "target_ids": ids}


@pytest.mark.parametrize("router", ["router.topk", "router.loss_free", "router.chrono"])
def test_mosaic_block_uses_moe_and_reports_per_layer_aux(router: str) -> None:
    torch.manual_seed(0)
    model = mosaic(moe_spec(router))
    assert all(not hasattr(block.mixer, "up") for block in model.blocks), "the dense MLP is replaced"
    out = model(batch())
    assert out.aux["moe_aux_loss"].shape == (2,)
    assert out.aux["moe_beta"].shape == (2, 4)
    assert out.aux["moe_active_experts"].shape == (2,)
    assert ("moe_psi" in out.aux) == (router == "router.chrono")
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, V), batch()["target_ids"].reshape(-1))
    (loss + out.aux["moe_aux_loss"].sum()).backward()
    expert_grads = [p.grad for name, p in model.named_parameters() if ".ffn.experts." in name]
    assert expert_grads and all(g is not None and bool(g.abs().sum() > 0) for g in expert_grads)


def test_default_block_keeps_the_dense_mlp_and_has_no_moe_aux() -> None:
    model = mosaic(None)
    assert all(block.mixer.ffn is None and hasattr(block.mixer, "up") for block in model.blocks)
    assert not [key for key in model(batch()).aux if key.startswith("moe_")]
    assert model.after_optimizer_step(1, None) == []
    assert model.lifecycle_state_dict() is None


def test_transformer_baseline_uses_moe_by_config() -> None:
    torch.manual_seed(0)
    config = {"vocab_size": V, "d_model": D, "n_heads": 2, "n_layers": 3, "max_seq_len": T}
    dense = get_registry().build("model.transformer_baseline", config)
    assert dense(batch()).aux == {}
    moe = get_registry().build("model.transformer_baseline", {**config, "ffn": moe_spec("router.topk")})
    out = moe(batch())
    assert out.logits.shape == (B, T, V)
    assert out.aux["moe_expert_load"].shape == (3, 4)
    assert torch.allclose(out.aux["moe_expert_load"].sum(-1), torch.ones(3))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ffn": {"type": "router.topk"}}, "ffn.type: must name a layer"),
        ({"ffn": {"type": "layer.moe", "d_model": 8}}, "ffn.d_model: must not be set here"),
        ({"ffn": ["layer.moe"]}, "must be a mapping"),
    ],
)
def test_invalid_ffn_mapping_is_rejected(fields: dict, message: str) -> None:
    with pytest.raises(LayerConfigError, match=message):
        MosaicBlockConfig(**fields)
    with pytest.raises(LayerConfigError, match=message):
        TransformerBaselineConfig(d_model=16, n_heads=2, **fields)


def test_lifecycle_needs_a_moe_feed_forward() -> None:
    with pytest.raises(LayerConfigError, match="lifecycle: needs block.ffn"):
        MosaicLMConfig(lifecycle={"type": "layer.chrono_lifecycle"})
    with pytest.raises(LayerConfigError, match="lifecycle: needs ffn"):
        TransformerBaselineConfig(d_model=16, n_heads=2, lifecycle={"type": "layer.chrono_lifecycle"})


def test_missing_chronomoe_is_named_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mosaic.core.registry._is_installed", lambda distribution: False)
    host = PluginHost(PluginSelection(disabled=frozenset({"chronomoe"})))
    host.load_entry_points()
    # the model builds its ffn from the registry it is built by (one without chronomoe here)
    with pytest.raises(UnknownComponentError, match="layer.moe is provided by chronomoe — pip install chronomoe"):
        mosaic(moe_spec(), registry=host.registry)


def test_lifecycle_hooks_step_the_chrono_system_and_round_trip_its_state() -> None:
    torch.manual_seed(0)
    chrono = {"lifecycle": {"mid_interval": 2, "slow_interval": 3, "warmup_steps": 1, "relaxation_steps": 1}}
    spec = moe_spec("router.chrono", track_roles=True, chrono=chrono)
    model = mosaic(spec, {"type": "layer.chrono_lifecycle"})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    decisions = []
    for step in range(1, 7):
        model.train()
        out = model(batch(step))
        out.aux["moe_aux_loss"].sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        decisions += model.after_optimizer_step(step, optimizer)
    slow = [d for d in decisions if d["clock"] == "slow"]
    assert {d["train_step"] for d in slow} == {3, 6}
    assert {d["layer"] for d in slow} == {0, 1}
    state = model.lifecycle_state_dict()
    assert state["step"] == 6
    fresh = mosaic(spec, {"type": "layer.chrono_lifecycle"})
    fresh.load_lifecycle_state_dict(state)  # held until the controller attaches
    fresh.after_optimizer_step(7, torch.optim.AdamW(fresh.parameters(), lr=1e-3))
    assert fresh.lifecycle_state_dict()["step"] == 7


def test_lifecycle_rejects_routers_without_roles() -> None:
    from chronomoe.expert_registry import LifecycleError

    model = mosaic(moe_spec("router.topk"), {"type": "layer.chrono_lifecycle"})
    with pytest.raises(LifecycleError, match="router.chrono"):
        model.after_optimizer_step(1, None)
