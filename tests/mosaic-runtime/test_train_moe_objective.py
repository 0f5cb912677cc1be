"""The objective's MoE term: the routers' aux loss is added with aux_moe_weight and reported per layer."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.model_output import ModelOutput
from mosaic.runtime.training.objective import MosaicEventPrediction, lm_cross_entropy
from mosaic.runtime.training.objective_config import MosaicObjectiveConfig

L, B, T, V, E = 2, 2, 4, 5, 4


def moe_output() -> tuple[ModelOutput, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    aux = {
        "moe_aux_loss": torch.tensor([0.3, 0.5]),
        "moe_psi": torch.tensor([0.9, 0.4]),
        "moe_max_vio": torch.tensor([0.2, 1.0]),
        "moe_active_experts": torch.tensor([4.0, 3.0]),
        "moe_beta": torch.tensor([[0.1, -0.3, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0]]),
    }
    out = ModelOutput(logits=torch.randn(B, T, V, generator=g), aux=aux)
    ids = torch.randint(V, (B, T), generator=g)
    return out, {"input_ids": ids, "target_ids": ids}


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.5])
def test_moe_aux_loss_is_summed_over_layers_and_weighted(weight: float) -> None:
    out, batch = moe_output()
    loss, metrics = MosaicEventPrediction(MosaicObjectiveConfig(aux_moe_weight=weight))(out, batch)
    expected = lm_cross_entropy(out, batch) + weight * 0.8
    assert torch.allclose(loss, expected)
    assert float(metrics["aux_moe"]) == pytest.approx(0.8)
    assert ("aux_moe_weighted" in metrics) == (weight > 0)


def test_moe_metrics_per_layer_and_mean() -> None:
    out, batch = moe_output()
    _, metrics = MosaicEventPrediction(MosaicObjectiveConfig())(out, batch)
    assert float(metrics["moe_psi_l0"]) == pytest.approx(0.9)
    assert float(metrics["moe_psi_l1"]) == pytest.approx(0.4)
    assert float(metrics["moe_psi"]) == pytest.approx(0.65)
    assert float(metrics["moe_max_vio_l1"]) == pytest.approx(1.0)
    assert float(metrics["moe_active_experts"]) == pytest.approx(3.5)
    assert float(metrics["moe_beta_absmax_l0"]) == pytest.approx(0.3)
    assert float(metrics["moe_beta_absmean_l0"]) == pytest.approx(0.15)
    assert float(metrics["moe_beta_absmax_l1"]) == 0.0


def test_models_without_moe_layers_get_no_moe_term() -> None:
    out, batch = moe_output()
    dense = ModelOutput(logits=out.logits, aux={})
    loss, metrics = MosaicEventPrediction(MosaicObjectiveConfig())(dense, batch)
    assert torch.allclose(loss, lm_cross_entropy(dense, batch))
    assert not [name for name in metrics if "moe" in name]
