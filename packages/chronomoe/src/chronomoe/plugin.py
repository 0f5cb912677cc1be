"""chronomoe's plugin: routers and the MoE layer, registered through the `mosaic` entry point.

Factories and configs are import-path strings so that listing plugins never imports torch; the
config classes live in the torch-free :mod:`chronomoe.config`.
"""

from __future__ import annotations

from mosaic.core.contract.protocols import Register
from mosaic.core.plugins import hookimpl


@hookimpl
def register_routers(register: Register) -> None:
    register(
        "router.topk",
        "chronomoe.routers:build_topk_router",
        config="chronomoe.config:TopKRouterConfig",
        summary="softmax top-k router (Mixtral) with optional Switch load-balancing loss and z-loss",
    )
    register(
        "router.chrono",
        "chronomoe.routers:build_chrono_router",
        config="chronomoe.config:ChronoRouterConfig",
        summary="top-k router with a coherence-driven slow bias on the selection key (three clocks)",
    )
    register(
        "router.loss_free",
        "chronomoe.routers:build_loss_free_router",
        config="chronomoe.config:LossFreeRouterConfig",
        summary="DeepSeek-V3 auxiliary-loss-free balancing: a load-driven bias on the selection key",
    )


@hookimpl
def register_layers(register: Register) -> None:
    register(
        "layer.moe",
        "chronomoe.moe:build_moe",
        config="chronomoe.config:MoEConfig",
        summary="mixture-of-experts MLP (B,T,D)->(B,T,D): SwiGLU experts, capacity dispatch, any router.*",
    )
    register(
        "layer.chrono_lifecycle",
        "chronomoe.training:build_chrono_lifecycle",
        config="chronomoe.training_config:ChronoLifecycleConfig",
        summary="trainer-driven ChronoSystem over a model's layer.moe feed-forwards (F_l or ad-hoc triggers)",
    )
