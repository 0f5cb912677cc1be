"""The installed version of mosaic-core, which every sibling package shares (the repository's
``VERSION`` file is its one source). Read from the installed distribution's metadata on first use of
``mosaic.core.__version__``, so importing ``mosaic.core`` never reads metadata."""

from __future__ import annotations

from importlib.metadata import version

__version__ = version("mosaic-core")
