"""The built-in intrinsic drives (kind ``drive``), registered by ``mosaic.core.plugin``.

Each drive has a small attrs config (metric key, band, gain, refractory period) with defaults that
suit a runtime reporting the metric named below (every one of them is reported by the agent
runtime, ``mosaic.runtime.agent.metrics``; a drive whose metric a runtime never reports is refused
when the runtime loads it); ``factory(config)`` returns an
:class:`~mosaic.core.homeostasis.IntrinsicDrive`.

| ID | metric (default key) | healthy band | an impulse means |
|---|---|---|---|
| ``drive.memory_pressure`` | ``memory_pressure``: fraction of memory slots in use | [0, 0.85] | consolidate / evict |
| ``drive.routing_entropy`` | ``memory_routing_entropy``: entropy of the memory routers' bucket choice over the last event's tokens / its maximum (``moe_routing_entropy``, the MoE routers' expert-load entropy / log(experts), where a model has them) | [0.3, 1] | the routers send most tokens to the same buckets (experts): a collapse |
| ``drive.commitment_balance`` | ``commitment_balance``: opened - closed commitments | [0, 3] | promises piling up, or closes without opens |
| ``drive.output_confidence`` | ``output_confidence``: mean max-probability of outputs | [0.5, 1] | the model is unsure of what it emits |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from mosaic.core.homeostasis import DriveBand, HomeostasisError, IntrinsicDrive


@attrs.frozen
class DriveDefaults:
    """What sets one built-in drive apart: its name (also its default metric key), its healthy band
    and how long it stays quiet after an impulse."""

    name: str
    band: DriveBand
    refractory_s: float
    metric: str = ""  # the metric it reads by default ("": its name)

    @property
    def default_metric(self) -> str:
        return self.metric or self.name


#: The built-in drives; each gets a config class below that differs only in these defaults.
BUILTIN_DRIVES: tuple[DriveDefaults, ...] = (
    DriveDefaults("memory_pressure", DriveBand(0.0, 0.85), refractory_s=30.0),
    DriveDefaults("routing_entropy", DriveBand(0.3, 1.0), refractory_s=60.0, metric="memory_routing_entropy"),
    DriveDefaults("commitment_balance", DriveBand(0.0, 3.0), refractory_s=20.0),
    DriveDefaults("output_confidence", DriveBand(0.5, 1.0), refractory_s=10.0),
)


def drive_config_class(defaults: DriveDefaults) -> type:
    """A frozen attrs config class (metric key, band, gain, refractory period) whose defaults are
    ``defaults``: the one definition of a drive's config fields and their validators."""
    class_name = "".join(part.title() for part in defaults.name.split("_")) + "Config"
    fields = {
        "metric": attrs.field(type=str, default=defaults.default_metric, validator=attrs.validators.instance_of(str)),
        # DriveBand is frozen, so every config may share the default instance
        "band": attrs.field(type=DriveBand, default=defaults.band, validator=attrs.validators.instance_of(DriveBand)),
        "gain": attrs.field(type=float, default=1.0, validator=attrs.validators.gt(0)),
        "refractory_s": attrs.field(type=float, default=defaults.refractory_s, validator=attrs.validators.ge(0)),
    }
    config_class: type = attrs.make_class(class_name, fields, frozen=True, slots=True)
    config_class.__module__ = __name__
    config_class.__doc__ = f"Config of ``drive.{defaults.name}``."
    return config_class


MemoryPressureConfig, RoutingEntropyConfig, CommitmentBalanceConfig, OutputConfidenceConfig = (
    drive_config_class(defaults) for defaults in BUILTIN_DRIVES
)


def _drive(name: str, config: Any) -> IntrinsicDrive:
    return IntrinsicDrive(
        name=name, metric=config.metric, band=config.band, gain=config.gain, refractory_s=config.refractory_s
    )


def memory_pressure(config: Any) -> IntrinsicDrive:
    return _drive("memory_pressure", config)


def routing_entropy(config: Any) -> IntrinsicDrive:
    return _drive("routing_entropy", config)


def commitment_balance(config: Any) -> IntrinsicDrive:
    return _drive("commitment_balance", config)


def output_confidence(config: Any) -> IntrinsicDrive:
    return _drive("output_confidence", config)


def build_drives(spec: Mapping[str, Mapping[str, Any] | None], registry: Any = None) -> list[IntrinsicDrive]:
    """Build drives from ``{"drive.memory_pressure": {...config...}, ...}`` through the registry
    (the plugin registry by default), in mapping order."""
    if registry is None:
        from mosaic.core.plugins.host import get_registry

        registry = get_registry()
    drives = []
    for component_id, config in spec.items():
        if not isinstance(component_id, str) or not component_id.startswith("drive."):
            raise HomeostasisError(f"build_drives: {component_id!r} is not a drive.* component ID")
        drive = registry.build(component_id, config or {}, path=f"$.{component_id}")
        if not isinstance(drive, IntrinsicDrive):
            raise HomeostasisError(f"{component_id}: factory returned {type(drive).__name__}, not IntrinsicDrive")
        drives.append(drive)
    return drives
