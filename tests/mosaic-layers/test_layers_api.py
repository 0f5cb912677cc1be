"""The Python API of mosaic-layers: the public names import from ``mosaic.layers`` (lazily: importing
the package does not import torch), and a forward pass with targets returns its loss."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mosaic.core.contract import IGNORE_INDEX
from mosaic.layers.isa import V0_OPCODES

PUBLIC = ["MosaicLM", "MosaicLMConfig", "MosaicBlockConfig", "MosaicState", "TransformerBaseline",
          "TransformerBaselineConfig"]


def test_public_names_import_from_the_package() -> None:
    import mosaic.layers as layers
    from mosaic.layers import MosaicLM, MosaicLMConfig, TransformerBaseline, TransformerBaselineConfig
    from mosaic.layers.baseline import TransformerBaseline as defined_baseline
    from mosaic.layers.model import MosaicLM as defined_model

    assert MosaicLM is defined_model and TransformerBaseline is defined_baseline
    assert MosaicLMConfig().n_layers >= 1 and TransformerBaselineConfig().d_model >= 1
    assert set(PUBLIC) <= set(dir(layers)) and set(PUBLIC) <= set(layers.__all__)
    with pytest.raises(AttributeError):
        layers.NoSuchThing  # noqa: B018


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, mosaic.layers, mosaic.layers.plugin; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def small_models():
    from mosaic.layers import (
        MosaicBlockConfig,
        MosaicLM,
        MosaicLMConfig,
        TransformerBaseline,
        TransformerBaselineConfig,
    )

    block = MosaicBlockConfig(d_model=16, state_k=2, state_dim=4, mem_buckets=4, mem_assoc=2, mem_key_dim=8,
                              mem_dim=8, reg_slots=3, reg_dim=8, chunk_size=4)
    for labels_only in (False, True):
        yield MosaicLM(MosaicLMConfig(vocab_size=40, n_layers=1, block=block, logits_at_labels_only=labels_only),
                       opcodes=V0_OPCODES)
        yield TransformerBaseline(TransformerBaselineConfig(vocab_size=40, d_model=16, n_layers=1, n_heads=2,
                                                            max_seq_len=32, logits_at_labels_only=labels_only))


@pytest.mark.parametrize("model", list(small_models()), ids=["mosaic", "baseline", "mosaic-labels", "baseline-labels"])
def test_forward_with_targets_returns_the_masked_cross_entropy(model) -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 40, (2, 9))
    targets = torch.randint(0, 40, (2, 9))
    targets[:, :3] = IGNORE_INDEX
    out = model({"input_ids": ids, "target_ids": targets})
    full = model({"input_ids": ids}).logits  # (B, T, V) without targets: nothing is masked
    assert model({"input_ids": ids}).loss is None
    expected = F.cross_entropy(full.reshape(-1, 40), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    out.loss.backward()
    assert model.head.weight.grad is not None and torch.isfinite(model.head.weight.grad).all()


@pytest.mark.parametrize("model", list(small_models()), ids=["mosaic", "baseline", "mosaic-labels", "baseline-labels"])
def test_loss_with_no_labelled_position_is_zero_not_nan(model) -> None:
    ids = torch.randint(0, 40, (2, 5))
    out = model({"input_ids": ids, "target_ids": torch.full_like(ids, IGNORE_INDEX)})
    assert out.loss.item() == 0.0
