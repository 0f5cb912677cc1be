"""The built-in intrinsic drives (kind ``drive``), registered by ``mosaic.core.plugin``.

Each drive has a small attrs config (metric key, band, gain, refractory period) with defaults that
suit a runtime reporting the metric named below; ``factory(config)`` returns an
:class:`~mosaic.core.homeostasis.IntrinsicDrive`.

| ID | metric (default key) | healthy band | an impulse means |
|---|---|---|---|
| ``drive.memory_pressure`` | ``memory_pressure``: fraction of memory slots in use | [0, 0.85] | consolidate / evict |
| ``drive.routing_entropy`` | ``routing_entropy``: router entropy / log(experts) | [0.3, 0.95] | experts collapsed or undifferentiated |
| ``drive.commitment_balance`` | ``commitment_balance``: opened - closed commitments | [0, 3] | promises piling up, or closes without opens |
| ``drive.output_confidence`` | ``output_confidence``: mean max-probability of outputs | [0.5, 1] | the model is unsure of what it emits |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from mosaic.core.homeostasis import DriveBand, HomeostasisError, IntrinsicDrive


def _drive(name: str, config: Any) -> IntrinsicDrive:
    return IntrinsicDrive(
        name=name, metric=config.metric, band=config.band, gain=config.gain, refractory_s=config.refractory_s
    )


@attrs.frozen
class MemoryPressureConfig:
    metric: str = "memory_pressure"
    band: DriveBand = attrs.field(default=DriveBand(0.0, 0.85))  # frozen, so sharing it is safe
    gain: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    refractory_s: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))


def memory_pressure(config: MemoryPressureConfig) -> IntrinsicDrive:
    return _drive("memory_pressure", config)


@attrs.frozen
class RoutingEntropyConfig:
    metric: str = "routing_entropy"
    band: DriveBand = attrs.field(default=DriveBand(0.3, 0.95))  # frozen, so sharing it is safe
    gain: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    refractory_s: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))


def routing_entropy(config: RoutingEntropyConfig) -> IntrinsicDrive:
    return _drive("routing_entropy", config)


@attrs.frozen
class CommitmentBalanceConfig:
    metric: str = "commitment_balance"
    band: DriveBand = attrs.field(default=DriveBand(0.0, 3.0))  # frozen, so sharing it is safe
    gain: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    refractory_s: float = attrs.field(default=20.0, validator=attrs.validators.ge(0))


def commitment_balance(config: CommitmentBalanceConfig) -> IntrinsicDrive:
    return _drive("commitment_balance", config)


@attrs.frozen
class OutputConfidenceConfig:
    metric: str = "output_confidence"
    band: DriveBand = attrs.field(default=DriveBand(0.5, 1.0))  # frozen, so sharing it is safe
    gain: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    refractory_s: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))


def output_confidence(config: OutputConfidenceConfig) -> IntrinsicDrive:
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
