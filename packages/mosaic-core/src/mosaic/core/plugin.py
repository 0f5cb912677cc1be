"""mosaic-core's own plugin: the built-in intrinsic drives.

Registered through the ``mosaic`` entry point exactly as a third-party plugin would be. Factories
and configs are import-path strings, so listing plugins imports neither the drives nor torch.
"""

from __future__ import annotations

from mosaic.core.contract.protocols import Register
from mosaic.core.plugins.hookspecs import hookimpl

_BUILTIN_DRIVES = {
    "memory_pressure": ("MemoryPressureConfig", "impulse when memory use rises above its band"),
    "routing_entropy": ("RoutingEntropyConfig", "impulse when the memory (or MoE) routers collapse onto a few buckets (experts)"),
    "commitment_balance": ("CommitmentBalanceConfig", "impulse when open commitments pile up or go negative"),
    "output_confidence": ("OutputConfidenceConfig", "impulse when the model's output confidence drops"),
}


@hookimpl
def register_drives(register: Register) -> None:
    for name, (config_class, summary) in _BUILTIN_DRIVES.items():
        register(
            f"drive.{name}",
            f"mosaic.core.drives:{name}",
            config=f"mosaic.core.drives:{config_class}",
            summary=summary,
        )
