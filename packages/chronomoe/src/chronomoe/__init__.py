"""ChronoMoE: mixture-of-experts routers with experts tracked on three clocks.

Public names are imported lazily so that ``import chronomoe`` (and the plugin module) never pulls in
torch; ``from chronomoe import MoE`` imports what it names.
"""

from __future__ import annotations

from mosaic.core.lazy import lazy_exports

_PUBLIC = {
    "ChronoConfig": "chronomoe.config",
    "ClockConfig": "chronomoe.config",
    "MoEConfig": "chronomoe.config",
    "TopKRouterConfig": "chronomoe.config",
    "ChronoRouterConfig": "chronomoe.config",
    "LossFreeRouterConfig": "chronomoe.config",
    "alpha_of": "chronomoe.config",
    "half_life_of": "chronomoe.config",
    "DebiasedEMA": "chronomoe.clocks",
    "ThreeClockEMA": "chronomoe.clocks",
    "MoETrace": "chronomoe.coherence",
    "expert_coherence": "chronomoe.coherence",
    "layer_coherence": "chronomoe.coherence",
    "CoherenceBuffer": "chronomoe.buffer",
    "CoherenceSnapshot": "chronomoe.buffer",
    "MultiLayerCoherence": "chronomoe.buffer",
    "RouterState": "chronomoe.router_state",
    "RouterOutput": "chronomoe.routers",
    "TopKRouter": "chronomoe.routers",
    "ChronoRouter": "chronomoe.routers",
    "LossFreeRouter": "chronomoe.routers",
    "SwiGLUExperts": "chronomoe.experts",
    "MoE": "chronomoe.moe",
    "build_moe": "chronomoe.moe",
    "LifecycleCoordinator": "chronomoe.lifecycle",
    "LifecycleConfig": "chronomoe.config",
    "KernelConfig": "chronomoe.config",
    "RoleState": "chronomoe.role",
    "LayerView": "chronomoe.free_energy",
    "ExpertRegistry": "chronomoe.expert_registry",
    "ChronoSystem": "chronomoe.system",
    "Kernel": "chronomoe.kernel",
}

__all__ = list(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
