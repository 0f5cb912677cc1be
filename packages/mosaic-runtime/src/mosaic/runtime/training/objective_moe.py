"""The mixture-of-experts part of the objective: the routers' own auxiliary loss and their metrics.

A model whose feed-forwards are ``layer.moe`` reports per-layer tensors in ``ModelOutput.aux``
(leading layer axis): ``moe_aux_loss (L,)`` — already weighted by each router's own load-balance
and z-loss weights — and metrics such as ``moe_psi (L,)``, ``moe_beta (L, E)``, ``moe_max_vio (L,)``
and ``moe_active_experts (L,)``. Models without MoE layers emit none of these, so the term is
simply absent for them (it is not supervision that a dataset or a head could be missing).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mosaic.core.contract import keys

MOE_LOSS_KEY = keys.MOE_AUX_LOSS.name

#: per-layer scalar metrics reported as ``<name>_l<layer>`` plus the mean over layers as ``<name>``
PER_LAYER_METRICS = tuple(spec.name for spec in (keys.MOE_PSI, keys.MOE_MAX_VIO, keys.MOE_ACTIVE_EXPERTS,
                                                  keys.MOE_DROPPED_FRACTION, keys.MOE_FLIP_RATE,
                                                  keys.MOE_FISHER_RAO))


def moe_loss(aux: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """The MoE auxiliary loss summed over layers (each layer's balance matters), or None."""
    value = aux.get(MOE_LOSS_KEY)
    return None if value is None else value.float().sum()


def moe_metrics(aux: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached scalars: Ψ, MaxVio, active experts, drops and flips per layer and on average; |β|
    max and mean per layer."""
    metrics: dict[str, torch.Tensor] = {}
    for name in PER_LAYER_METRICS:
        value = aux.get(name)
        if value is None:
            continue
        value = value.detach().float().reshape(value.shape[0])  # (L,)
        metrics[name] = value.mean()
        for layer, item in enumerate(value.unbind(0)):
            metrics[f"{name}_l{layer}"] = item
    beta = aux.get(keys.MOE_BETA.name)
    if beta is not None:
        magnitude = beta.detach().float().abs()  # (L, E)
        for layer in range(magnitude.shape[0]):
            metrics[f"moe_beta_absmax_l{layer}"] = magnitude[layer].max()
            metrics[f"moe_beta_absmean_l{layer}"] = magnitude[layer].mean()
    return metrics
