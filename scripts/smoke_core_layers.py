"""Smoke test of a minimal install: run inside an environment that holds only mosaic-core and
mosaic-layers (``nox -s install_core_layers``). Exits non-zero, with the reason, when the
installed pair cannot build a MosaicLM through the plugin registry and run a forward pass, or when
a package that was not asked for is importable."""

from __future__ import annotations

import importlib.util
import sys


def main() -> int:
    unwanted = [name for name in ("mosaic.data", "mosaic.runtime", "mosaic.cli", "chronomoe")
                if importlib.util.find_spec(name) is not None]
    if unwanted:
        print(f"expected only mosaic-core and mosaic-layers, but {unwanted} are importable", file=sys.stderr)
        return 1
    import torch

    from mosaic.core.plugins import get_registry

    registry = get_registry()  # the entry points of the installed wheels, nothing else
    config = {"vocab_size": 64, "n_layers": 1, "block": {"d_model": 16, "state_k": 2, "state_dim": 4,
                                                          "mem_buckets": 4, "mem_assoc": 2, "mem_key_dim": 8,
                                                          "mem_dim": 8, "reg_slots": 2, "reg_dim": 8,
                                                          "chunk_size": 4}}
    model = registry.build("model.mosaic_lm", config)
    ids = torch.randint(0, 64, (2, 12))
    logits = model({"input_ids": ids}).logits
    if tuple(logits.shape) != (2, 12, 64) or not bool(torch.isfinite(logits).all()):
        print(f"MosaicLM forward gave logits of shape {tuple(logits.shape)}, expected (2, 12, 64), finite",
              file=sys.stderr)
        return 1
    print(f"mosaic-core + mosaic-layers: MosaicLM forward ok, logits {tuple(logits.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
