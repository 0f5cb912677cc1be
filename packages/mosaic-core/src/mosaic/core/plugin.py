"""mosaic-core's own plugin: the built-in intrinsic drives.

Registered through the ``mosaic`` entry point exactly as a third-party plugin would be.
"""
