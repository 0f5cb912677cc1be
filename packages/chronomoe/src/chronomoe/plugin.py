"""chronomoe's plugin: routers and the MoE layer, registered through the `mosaic` entry point."""
