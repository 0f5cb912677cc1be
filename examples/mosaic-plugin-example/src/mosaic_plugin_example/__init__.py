"""An example third-party MOSAIC plugin, written exactly as an outside author would."""
