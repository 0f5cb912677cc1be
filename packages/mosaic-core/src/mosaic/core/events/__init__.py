"""The event substrate: envelopes, the byte codec and the event bus.

Submodules are imported on use: ``mosaic.core.events.envelope`` and ``mosaic.core.events.bus`` are
pure Python; ``mosaic.core.events.codec`` imports torch only when a tensor is encoded or decoded.
Importing this package imports none of them.
"""
