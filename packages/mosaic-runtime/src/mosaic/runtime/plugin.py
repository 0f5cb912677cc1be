"""mosaic-runtime's plugin: objectives, presets and tool builders, registered through the `mosaic` entry point."""
