"""Built-in `mosaic` subcommands, one module each, imported only when invoked."""
