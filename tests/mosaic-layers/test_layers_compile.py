"""``torch.compile`` (the trainer's ``compile: true``) traces both model kinds: their training loss
and gradients through dynamo equal eager's. Backend ``eager`` checks the tracing, which is where
our code can break compilation, without the minutes a C++ inductor build takes on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mosaic.core.contract import keys
from mosaic.layers.baseline import TransformerBaseline
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig, TransformerBaselineConfig
from mosaic.layers.model import MosaicLM


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mosaic":  # opcode control on: the clears' passes run too
        block = MosaicBlockConfig(d_model=32, opcodes_control_enabled=True)
        return MosaicLM(MosaicLMConfig(vocab_size=40, n_layers=1, block=block))
    return TransformerBaseline(TransformerBaselineConfig(vocab_size=40, d_model=32, n_layers=1, n_heads=2,
                                                         max_seq_len=64))


def loss_and_grads(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model({keys.INPUT_IDS.name: ids})
    loss = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", ["mosaic", "transformer"])
def test_a_compiled_training_step_equals_the_eager_one(kind: str) -> None:
    torch._dynamo.reset()
    model = build(kind)
    ids = torch.randint(0, 40, (2, 48), generator=torch.Generator().manual_seed(1))
    eager_loss, eager_grads = loss_and_grads(model, ids)
    compiled = torch.compile(model, backend="eager")
    compiled_loss, compiled_grads = loss_and_grads(compiled, ids)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert len(compiled_grads) == len(eager_grads) > 0
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)
