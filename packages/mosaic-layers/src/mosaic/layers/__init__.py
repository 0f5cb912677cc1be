"""mosaic.layers: the MOSAIC language model, its block and the Transformer baseline.

The public names import from the package (``from mosaic.layers import MosaicLM``); each module is
imported on first use, so importing the package (the plugin entry point does) does not import torch.
"""

from mosaic.core.lazy import lazy_exports

_EXPORTS = {
    "MosaicLM": "mosaic.layers.model",
    "MosaicLMConfig": "mosaic.layers.config",
    "MosaicBlock": "mosaic.layers.block",
    "MosaicBlockConfig": "mosaic.layers.config",
    "MosaicState": "mosaic.layers.state",
    "BlockState": "mosaic.layers.state",
    "TransformerBaseline": "mosaic.layers.baseline",
    "TransformerBaselineConfig": "mosaic.layers.config",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
