"""mosaic-core: the event substrate and the plugin system of the MOSAIC toolkit.

Public names are imported on first use (PEP 562), so ``import mosaic.core`` is cheap and never
imports torch.
"""

from __future__ import annotations

from mosaic.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "__version__": "mosaic.core.version",
    # plugin system
    "hookimpl": "mosaic.core.plugins.hookspecs",
    "hookspec": "mosaic.core.plugins.hookspecs",
    "Registry": "mosaic.core.registry",
    "Component": "mosaic.core.registry",
    "get_registry": "mosaic.core.plugins.host",
    "get_host": "mosaic.core.plugins.host",
    # errors
    "MosaicError": "mosaic.core.errors",
    "ConfigError": "mosaic.core.errors",
    "ModelOutput": "mosaic.core.model_output",
    # events
    "EventEnvelope": "mosaic.core.events.envelope",
    "EventEncoder": "mosaic.core.events.codec",
    "EventDecoder": "mosaic.core.events.codec",
    "StreamingEventDecoder": "mosaic.core.events.codec",
    "EVENT_DELIMITER": "mosaic.core.events.codec",
    "EVENT_VOCAB_SIZE": "mosaic.core.events.codec",
    "EVENT_PAD_ID": "mosaic.core.events.codec",
    "EventBus": "mosaic.core.events.bus",
    "EventHandler": "mosaic.core.events.bus",
    "HomeostaticLoop": "mosaic.core.homeostasis",
    "IntrinsicDrive": "mosaic.core.homeostasis",
    "DriveBand": "mosaic.core.homeostasis",
    "DriveSignal": "mosaic.core.homeostasis",
    "IMPULSE_EVENT_TYPE": "mosaic.core.homeostasis",
    "CommitmentLedger": "mosaic.core.ledger",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
