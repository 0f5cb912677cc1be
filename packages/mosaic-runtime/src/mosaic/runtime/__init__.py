"""mosaic.runtime: preset-driven training, the event runtimes and sandboxed tools.

``load_run(RUN_DIR)`` loads a trained run in Python (see :mod:`mosaic.runtime.loading`). Exports
are imported on first use, so importing this package (the plugin entry point does) stays cheap.
"""

from mosaic.core.lazy import lazy_exports

__all__ = ["LoadedRun", "load_run"]

__getattr__, __dir__ = lazy_exports(
    __name__, {"LoadedRun": "mosaic.runtime.loading", "load_run": "mosaic.runtime.loading"}
)
