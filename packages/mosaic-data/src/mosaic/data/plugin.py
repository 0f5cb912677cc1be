"""mosaic-data's plugin: datasets and curricula, registered through the `mosaic` entry point."""
